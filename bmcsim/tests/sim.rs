//! Runs the real bmcsim binary on a temporary config and talks to it the way racklift will:
//! reqwest with rustls, the run's CA as the only root, certificate verification on.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SYSTEM: &str = "/redfish/v1/Systems/1";
const RESET: &str = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";
const SESSIONS: &str = "/redfish/v1/SessionService/Sessions";

fn mockup(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/redfish-mockups")
        .join(name)
}

/// A running bmcsim; killed when dropped.
struct Sim {
    child: Child,
    admin: String,
    bmcs: serde_json::Map<String, Value>,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Sim {
    /// `bmcs` is the YAML list of BMC entries (trees given by mockup name).
    async fn start(bmcs: &str) -> Sim {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_dir = dir.path().join("ca");
        let mockups = mockup("");
        let config = format!(
            "ca_dir: {}\nadmin_listen: 127.0.0.1:0\nbmcs:\n{}",
            ca_dir.display(),
            bmcs.replace("tree: ", &format!("tree: {}/", mockups.display()))
        );
        let config_path = dir.path().join("bmcsim.yaml");
        std::fs::write(&config_path, config).expect("write config");

        let mut child = Command::new(env!("CARGO_BIN_EXE_bmcsim"))
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "bmcsim=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn bmcsim");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("bmcsim ready within 60 s")
            .expect("read stdout")
            .expect("a ready line");
        let ready: Value = serde_json::from_str(&line).expect("ready line is JSON");

        let pem = std::fs::read(ca_dir.join("ca.pem")).expect("ca.pem written before ready");
        let client = Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA PEM"))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Sim {
            child,
            admin: format!("http://{}", ready["admin"].as_str().expect("admin")),
            bmcs: ready["bmcs"].as_object().expect("bmcs").clone(),
            client,
            _dir: dir,
        }
    }

    fn url(&self, bmc: &str, tls: bool, path: &str) -> String {
        let addr = self.bmcs[bmc].as_str().expect("bmc addr");
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{addr}{path}")
    }

    async fn admin(&self, bmc: &str) -> Value {
        self.client
            .get(format!("{}/bmcs/{bmc}", self.admin))
            .send()
            .await
            .expect("admin GET")
            .json()
            .await
            .expect("admin JSON")
    }

    async fn faults(&self, bmc: &str, faults: Value) -> StatusCode {
        self.client
            .put(format!("{}/bmcs/{bmc}/faults", self.admin))
            .json(&faults)
            .send()
            .await
            .expect("admin PUT")
            .status()
    }
}

async fn json_of(response: Response) -> Value {
    response.json().await.expect("JSON body")
}

fn message_id(error: &Value) -> &str {
    error["error"]["@Message.ExtendedInfo"][0]["MessageId"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn sessions_etags_boot_and_reset_over_verified_tls() {
    let sim = Sim::start(
        "  - {name: ilo, listen: '127.0.0.1:0', tree: hpe-ilo5-dl360-gen10plus, username: admin, password: secret, max_sessions: 2, power_state: 'Off'}\n\
         \x20 - {name: smc, listen: '127.0.0.1:0', tree: supermicro-sys821ge-tnhr, username: ADMIN, password: pw, tls: false}\n",
    )
    .await;
    let c = &sim.client;
    let url = |path: &str| sim.url("ilo", true, path);

    // The service root is open; everything else needs credentials.
    let root = c.get(url("/redfish/v1/")).send().await.expect("root");
    assert_eq!(root.status(), 200);
    assert!(root.headers().contains_key("etag"));
    let denied = c.get(url(SYSTEM)).send().await.expect("system");
    assert_eq!(denied.status(), 401);
    assert_eq!(
        denied.headers()["www-authenticate"],
        "Basic realm=\"bmcsim\""
    );
    assert_eq!(
        message_id(&json_of(denied).await),
        "Base.1.8.NoValidSession"
    );

    // Log in.
    let login = c
        .post(url(SESSIONS))
        .json(&json!({"UserName": "admin", "Password": "secret"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 201);
    let token = login.headers()["x-auth-token"]
        .to_str()
        .expect("token")
        .to_owned();
    let location = login.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(location.starts_with(SESSIONS), "{location}");
    let session = json_of(login).await;
    assert_eq!(session["UserName"], "admin");
    let bad_login = c
        .post(url(SESSIONS))
        .json(&json!({"UserName": "admin", "Password": "nope"}))
        .send()
        .await
        .expect("bad login");
    assert_eq!(bad_login.status(), 401);

    // GET the system with the token: ETag header and @odata.etag agree.
    let system = c
        .get(url(SYSTEM))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("system");
    assert_eq!(system.status(), 200);
    let etag = system.headers()["etag"].to_str().expect("etag").to_owned();
    let body = json_of(system).await;
    assert_eq!(body["@odata.etag"], json!(etag));
    assert_eq!(body["PowerState"], "Off");

    // PATCH a one-time PXE boot with If-Match; the old tag is stale afterwards.
    let boot =
        json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}});
    let patched = c
        .patch(url(SYSTEM))
        .header("X-Auth-Token", &token)
        .header("If-Match", &etag)
        .json(&boot)
        .send()
        .await
        .expect("patch");
    assert_eq!(patched.status(), 200);
    let new_etag = patched.headers()["etag"].to_str().expect("etag").to_owned();
    assert_ne!(new_etag, etag);
    assert_eq!(
        json_of(patched).await["Boot"]["BootSourceOverrideTarget"],
        "Pxe"
    );
    let stale = c
        .patch(url(SYSTEM))
        .header("X-Auth-Token", &token)
        .header("If-Match", &etag)
        .json(&boot)
        .send()
        .await
        .expect("stale patch");
    assert_eq!(stale.status(), 412);
    let banana = c
        .patch(url(SYSTEM))
        .header("X-Auth-Token", &token)
        .json(&json!({"Boot": {"BootSourceOverrideTarget": "Banana"}}))
        .send()
        .await
        .expect("bad patch");
    assert_eq!(banana.status(), 400);
    let error = json_of(banana).await;
    assert_eq!(message_id(&error), "Base.1.8.PropertyValueNotInList");
    let text = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("Banana") && text.contains("BootSourceOverrideTarget"),
        "{text}"
    );

    // Power on: a boot that spends the one-time override.
    let reset = c
        .post(url(RESET))
        .header("X-Auth-Token", &token)
        .json(&json!({"ResetType": "On"}))
        .send()
        .await
        .expect("reset");
    assert_eq!(reset.status(), 204);
    let state = sim.admin("ilo").await;
    assert_eq!(state["power_state"], "On");
    assert_eq!(state["resets"], json!(["On"]));
    assert_eq!(
        state["boots"],
        json!([{"target": "Pxe", "enabled": "Once"}])
    );
    assert_eq!(
        state["boot"],
        json!({"target": "Pxe", "enabled": "Disabled", "mode": "UEFI"})
    );
    assert_eq!(state["sessions_open"], 1);
    assert_eq!(state["sessions_created"], 1);
    assert_eq!(state["patches"].as_array().map(Vec::len), Some(1));
    assert_eq!(state["patches"][0]["path"], SYSTEM);
    assert_eq!(state["patches"][0]["body"], boot);

    // iLO paths are case-insensitive: the capture links systems/1/bios, stores Systems/1/bios.
    let bios = c
        .get(url("/redfish/v1/systems/1/bios/"))
        .basic_auth("admin", Some("secret"))
        .send()
        .await
        .expect("bios");
    assert_eq!(bios.status(), 200);
    let missing = c
        .get(url("/redfish/v1/Systems/9"))
        .basic_auth("admin", Some("secret"))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status(), 404);
    assert!(message_id(&json_of(missing).await).ends_with("ResourceMissingAtURI"));

    // The session limit (2): a third login is refused with 503.
    let second = c
        .post(url(SESSIONS))
        .json(&json!({"UserName": "admin", "Password": "secret"}))
        .send()
        .await
        .expect("second login");
    assert_eq!(second.status(), 201);
    let third = c
        .post(url(SESSIONS))
        .json(&json!({"UserName": "admin", "Password": "secret"}))
        .send()
        .await
        .expect("third login");
    assert_eq!(third.status(), 503);
    assert_eq!(
        message_id(&json_of(third).await),
        "Base.1.8.SessionLimitExceeded"
    );
    let listed = c
        .get(url(SESSIONS))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("sessions");
    assert_eq!(json_of(listed).await["Members@odata.count"], 2);

    // Log out: 204, then the token no longer works.
    let logout = c
        .delete(url(&location))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 204);
    let after = c
        .get(url(SYSTEM))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("after logout");
    assert_eq!(after.status(), 401);
    let state = sim.admin("ilo").await;
    assert_eq!(state["sessions_open"], 1);
    assert_eq!(state["sessions_deleted"], 1);

    // The second BMC: plain HTTP, its own tree; Supermicro lists ResetType in an ActionInfo.
    let smc = |path: &str| sim.url("smc", false, path);
    let push = c
        .post(smc(RESET))
        .basic_auth("ADMIN", Some("pw"))
        .json(&json!({"ResetType": "PushPowerButton"}))
        .send()
        .await
        .expect("smc reset");
    assert_eq!(push.status(), 400);
    assert_eq!(
        message_id(&json_of(push).await),
        "Base.1.8.ActionParameterValueNotInList"
    );
    let cycle = c
        .post(smc(RESET))
        .basic_auth("ADMIN", Some("pw"))
        .json(&json!({"ResetType": "PowerCycle"}))
        .send()
        .await
        .expect("smc reset");
    assert_eq!(cycle.status(), 204);
    let state = sim.admin("smc").await;
    assert_eq!(state["resets"], json!(["PowerCycle"]));
    assert_eq!(state["restarts"], 1);
    // The iLO's state is its own.
    assert_eq!(sim.admin("ilo").await["resets"], json!(["On"]));
}

#[tokio::test]
async fn faults_fail_then_recover() {
    let mut sim = Sim::start(
        "  - {name: dell, listen: '127.0.0.1:0', tree: dell-idrac9-r750, username: root, password: calvin}\n",
    )
    .await;
    let c = sim.client.clone();
    let url = sim.url("dell", true, "/redfish/v1/Systems/System.Embedded.1");
    let get = || c.get(&url).basic_auth("root", Some("calvin")).send();

    assert_eq!(get().await.expect("get").status(), 200);
    assert_eq!(
        sim.faults("dell", json!({"fail_nxet": 1})).await,
        400,
        "a misspelt fault is refused"
    );

    // fail_next: two 503s with a Redfish body, then service again.
    assert_eq!(sim.faults("dell", json!({"fail_next": 2})).await, 200);
    for _ in 0..2 {
        let failed = get().await.expect("get");
        assert_eq!(failed.status(), 503);
        assert!(message_id(&json_of(failed).await).ends_with("ServiceTemporarilyUnavailable"));
    }
    assert_eq!(get().await.expect("get").status(), 200);

    // status: fixed until cleared.
    sim.faults("dell", json!({"status": 500})).await;
    assert_eq!(get().await.expect("get").status(), 500);
    assert_eq!(get().await.expect("get").status(), 500);
    sim.faults("dell", json!({})).await;
    assert_eq!(get().await.expect("get").status(), 200);

    // unauthorized: credentials and logins refused, the service root still open.
    sim.faults("dell", json!({"unauthorized": true})).await;
    assert_eq!(get().await.expect("get").status(), 401);
    let login = c
        .post(sim.url("dell", true, SESSIONS))
        .json(&json!({"UserName": "root", "Password": "calvin"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 401);
    let root = c.get(sim.url("dell", true, "/redfish/v1")).send().await;
    assert_eq!(root.expect("root").status(), 200);

    // drop: the connection closes without an answer.
    sim.faults("dell", json!({"drop": true})).await;
    assert!(get().await.is_err());

    // latency.
    sim.faults("dell", json!({"latency_ms": 300})).await;
    let started = Instant::now();
    assert_eq!(get().await.expect("get").status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // power_stuck: the reset is accepted, the power does not move.
    sim.faults("dell", json!({"power_stuck": true})).await;
    let reset = c
        .post(sim.url(
            "dell",
            true,
            "/redfish/v1/Systems/System.Embedded.1/Actions/ComputerSystem.Reset",
        ))
        .basic_auth("root", Some("calvin"))
        .json(&json!({"ResetType": "ForceOff"}))
        .send()
        .await
        .expect("reset");
    assert_eq!(reset.status(), 204);
    let state = sim.admin("dell").await;
    assert_eq!(state["power_state"], "On");
    assert_eq!(state["resets"], json!(["ForceOff"]));
    // Every request counted, the failed and dropped ones too: 1, fail_next 2 + 1, status 2 + 1,
    // unauthorized 3, drop 1, latency 1, reset 1.
    assert_eq!(state["requests"], 13);

    // reset-counters zeroes the counters, not the state.
    let reset = c
        .post(format!("{}/bmcs/dell/reset-counters", sim.admin))
        .send()
        .await
        .expect("reset counters");
    assert_eq!(reset.status(), 200);
    let state = sim.admin("dell").await;
    assert_eq!(state["requests"], 0);
    assert_eq!(state["resets"], json!([]));
    assert_eq!(state["faults"]["power_stuck"], true);
    assert_eq!(
        c.get(format!("{}/bmcs/nope", sim.admin))
            .send()
            .await
            .expect("admin")
            .status(),
        404
    );

    // SIGTERM stops it cleanly.
    let pid = sim.child.id().expect("pid");
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), sim.child.wait())
        .await
        .expect("exits within 10 s")
        .expect("wait");
    assert!(status.success(), "{status}");
}
