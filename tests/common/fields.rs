//! racklift's custom fields in the lab's NetBox, shared by every test binary: applied once per
//! binary under a shared lock, or taken exclusively by the one test that recreates them.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use super::instance::racklift;
use super::lab::lab;

/// The lab's custom fields are shared by every test binary: a binary holds this lock shared
/// for as long as it runs, and the one test that deletes and recreates racklift's fields
/// (tests/enrolment.rs) holds it exclusively, so it never pulls the fields from under another
/// binary's tests (cargo runs test binaries one after another; people and helpers may not).
static LAB_LOCK: OnceLock<std::fs::File> = OnceLock::new();

fn lab_lock_file() -> std::fs::File {
    let home =
        std::env::var("RACKLIFT_LAB_HOME").unwrap_or_else(|_| "/var/lib/racklift-lab".into());
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(&home).join("custom-fields.lock"))
        .expect("the lab's lock file")
}

/// Locks the lab's custom fields, waiting at most half an hour for the other side.
fn lock_lab(shared: bool) -> std::fs::File {
    let file = lab_lock_file();
    let deadline = std::time::Instant::now() + Duration::from_secs(1800);
    loop {
        let attempt = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match attempt {
            Ok(()) => return file,
            Err(std::fs::TryLockError::WouldBlock) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the lab's custom fields stayed locked for 30 minutes"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(std::fs::TryLockError::Error(e)) => panic!("locking the lab: {e}"),
        }
    }
}

/// Takes the lab's custom fields for this test binary alone (before any `Site::new`).
pub fn own_custom_fields() {
    assert!(
        LAB_LOCK.set(lock_lab(false)).is_ok(),
        "own_custom_fields runs before anything else touches the lab"
    );
}

/// `racklift netbox apply --from DIR` with `DIR/custom_fields.yaml` alone (no webhook: there
/// is no racklift to call): what an operator's first apply does to the custom fields.
pub fn apply_custom_fields(custom_fields_yaml: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let defs = dir.path().join("netbox");
    std::fs::create_dir_all(defs.join("webhooks")).expect("defs dir");
    std::fs::write(defs.join("custom_fields.yaml"), custom_fields_yaml)
        .expect("custom_fields.yaml");
    let token = dir.path().join("token");
    std::fs::write(&token, &lab().token).expect("token");
    let config = dir.path().join("fields.yaml");
    std::fs::write(
        &config,
        format!(
            "netbox: {{url: {}, token: {{file: {}}}}}\nwebhook: {{secret: {{file: {}}}}}\n",
            lab().url,
            token.display(),
            token.display()
        ),
    )
    .expect("config");
    racklift(
        &config,
        &["netbox", "apply", "--from", defs.to_str().expect("utf-8")],
    )
}

/// The repository's `netbox/custom_fields.yaml`.
pub fn custom_fields_yaml() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("netbox/custom_fields.yaml"))
        .expect("netbox/custom_fields.yaml")
}

/// racklift's custom fields, as `racklift netbox apply` makes them, once per test binary:
/// tests create devices with a lifecycle before their racklift applies its webhook.
pub fn ensure_custom_fields() {
    static APPLIED: OnceLock<()> = OnceLock::new();
    APPLIED.get_or_init(|| {
        LAB_LOCK.get_or_init(|| lock_lab(true));
        let out = apply_custom_fields(&custom_fields_yaml());
        assert!(
            out.status.success(),
            "racklift netbox apply (custom fields): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}
