//! BMCs for the provisioning tests: sushy-tools' Redfish emulator (the real third-party peer,
//! installed by `scripts/lab test-tools`) with TLS from a test CA and basic auth, and devices in
//! NetBox whose OOB IP points at it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::{Api, Site, run_ok as run, wait_for};

/// A test CA and a leaf for 127.0.0.1 (CA:FALSE: rustls refuses a CA as an end entity).
#[derive(Debug)]
pub struct TestCa {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> Self {
        let p = |name: &str| dir.join(name).to_str().expect("utf-8").to_owned();
        run(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=racklift test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ]);
        run(&[
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &p("leaf.key"),
            "-out",
            &p("leaf.csr"),
        ]);
        std::fs::write(
            dir.join("leaf.ext"),
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("ext");
        run(&[
            "openssl",
            "x509",
            "-req",
            "-in",
            &p("leaf.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("leaf.ext"),
            "-out",
            &p("leaf.pem"),
        ]);
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("leaf.pem"),
            key: dir.join("leaf.key"),
        }
    }
}

fn sushy_venv() -> PathBuf {
    std::env::var_os("RACKLIFT_SUSHY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/racklift-lab/sushy-tools-2.2.0"))
}

/// One sushy-emulator process emulating one BMC with one system (fake driver).
#[derive(Debug)]
pub struct Sushy {
    pub port: u16,
    pub ca: PathBuf,
    pub username: String,
    pub password: String,
    pub system: String,
    child: Child,
    log: PathBuf,
}

impl Sushy {
    pub async fn start(dir: &Path, power_state: &str) -> Self {
        let venv = sushy_venv();
        assert!(
            venv.join("bin/sushy-emulator").exists(),
            "sushy-tools is missing: run scripts/lab test-tools"
        );
        let ca = TestCa::new(dir);
        let password = format!("pw-{}", fastrand::u64(..));
        let hash = Command::new(venv.join("bin/python"))
            .args(["-c", "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())", &password])
            .output()
            .expect("bcrypt");
        std::fs::write(
            dir.join("htpasswd"),
            format!("admin:{}", String::from_utf8_lossy(&hash.stdout)),
        )
        .expect("htpasswd");
        let port = super::free_port();
        let system = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            fastrand::u32(..),
            fastrand::u64(..) & 0xffff_ffff_ffff
        );
        let state = dir.join("sushy-state");
        std::fs::create_dir_all(&state).expect("state dir");
        std::fs::write(
            dir.join("sushy.conf"),
            format!(
                "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\nSUSHY_EMULATOR_FAKE_DRIVER = True\n\
                 SUSHY_EMULATOR_STATE_DIR = '{state}'\nSUSHY_EMULATOR_AUTH_FILE = '{auth}'\n\
                 SUSHY_EMULATOR_SSL_CERT = '{cert}'\nSUSHY_EMULATOR_SSL_KEY = '{key}'\n\
                 SUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': '{system}', 'name': 'node', 'power_state': '{power_state}', 'external_notifier': False, 'nics': [{{'mac': '52:54:00:00:00:01', 'ip': '10.99.0.1'}}]}}]\n",
                state = state.display(),
                auth = dir.join("htpasswd").display(),
                cert = ca.cert.display(),
                key = ca.key.display(),
            ),
        )
        .expect("sushy conf");
        let log = dir.join("sushy.log");
        let file = std::fs::File::create(&log).expect("log");
        let child = Command::new(venv.join("bin/sushy-emulator"))
            .arg("--config")
            .arg(dir.join("sushy.conf"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start sushy-emulator");
        let me = Self {
            port,
            ca: ca.ca,
            username: "admin".into(),
            password,
            system,
            child,
            log,
        };
        wait_for("sushy-emulator to answer over TLS", || async {
            me.get("/redfish/v1/").await.ok()
        })
        .await;
        me
    }

    fn client(&self) -> reqwest::Client {
        let ca =
            reqwest::Certificate::from_pem(&std::fs::read(&self.ca).expect("ca")).expect("pem");
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .expect("client")
    }

    pub async fn get(&self, path: &str) -> Result<Value, reqwest::Error> {
        self.client()
            .get(format!("https://127.0.0.1:{}{path}", self.port))
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    /// The emulated system as its BMC shows it.
    pub async fn system(&self) -> Value {
        self.get(&format!("/redfish/v1/Systems/{}", self.system))
            .await
            .expect("system")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sushy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- sushy-emulator log ---\n{}", self.log());
        }
    }
}

/// A device whose BMC interface holds `ip` (in a VRF of the test's own, so tests may share
/// 127.0.0.1) as its OOB IP, in `lifecycle`. Returns the device id.
pub async fn device_with_bmc(api: &Api, site: &Site, name: &str, ip: &str, lifecycle: &str) -> u64 {
    let device = site.device(api, name, lifecycle).await;
    let iface = api
        .post(
            "dcim/interfaces/",
            json!({"device": device, "name": "bmc", "type": "1000base-t", "mgmt_only": true}),
        )
        .await;
    let vrf = api
        .post(
            "ipam/vrfs/",
            json!({"name": format!("{}-{name}", site.slug), "enforce_unique": true}),
        )
        .await;
    let address = api
        .post(
            "ipam/ip-addresses/",
            json!({"address": format!("{ip}/32"), "vrf": vrf["id"], "status": "active",
                   "assigned_object_type": "dcim.interface", "assigned_object_id": iface["id"]}),
        )
        .await;
    api.patch(
        &format!("dcim/devices/{device}/"),
        json!({"oob_ip": address["id"]}),
    )
    .await;
    device
}

/// The `bmc:` configuration for one device's BMC.
pub fn bmc_config(dir: &Path, device: &str, port: u16, password: &str, ca: &Path) -> String {
    let file = dir.join(format!("{device}.bmc-password"));
    std::fs::write(&file, password).expect("password file");
    format!(
        "  poll_interval: 1s\n  power_timeout: 60s\n  timeout: 10s\n  devices:\n    {device}: {{username: admin, password: {{file: {}}}, port: {port}, ca_file: {}}}\n",
        file.display(),
        ca.display()
    )
}

/// `bmc:` settings for several devices on bmcsim: (device name, port, password).
pub fn sim_config(dir: &Path, ca: &Path, devices: &[(String, u16, String)]) -> String {
    let mut yaml =
        String::from("  poll_interval: 1s\n  power_timeout: 5s\n  timeout: 3s\n  devices:\n");
    for (name, port, password) in devices {
        let file = dir.join(format!("{name}.bmc-password"));
        std::fs::write(&file, password).expect("password file");
        yaml.push_str(&format!(
            "    {name}: {{username: admin, password: {{file: {}}}, port: {port}, ca_file: {}}}\n",
            file.display(),
            ca.display()
        ));
    }
    yaml
}

/// The bmcsim binary of this workspace, built once per test run.
fn bmcsim_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let out = Command::new(cargo)
                .args(["build", "--quiet", "-p", "bmcsim"])
                .current_dir(root)
                .output()
                .expect("cargo build -p bmcsim");
            assert!(
                out.status.success(),
                "building bmcsim: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| root.join("target"), PathBuf::from);
            target.join("debug/bmcsim")
        })
        .clone()
}

/// One simulated BMC: a captured tree, its credentials, its initial power.
#[derive(Debug, Clone)]
pub struct SimBmc {
    pub name: String,
    pub tree: String,
    pub power: &'static str,
}

/// A bmcsim process and the BMCs it serves.
#[derive(Debug)]
pub struct BmcSim {
    pub ca: PathBuf,
    pub password: String,
    admin: String,
    ports: std::collections::HashMap<String, u16>,
    child: Child,
    log: PathBuf,
}

impl BmcSim {
    pub fn start(dir: &Path, bmcs: &[SimBmc]) -> Self {
        let password = format!("sim-{}", fastrand::u64(..));
        let trees = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/redfish-mockups");
        let entries: Vec<Value> = bmcs
            .iter()
            .map(|b| {
                json!({"name": b.name, "listen": "127.0.0.1:0", "tree": trees.join(&b.tree),
                       "username": "admin", "password": password, "power_state": b.power})
            })
            .collect();
        let config = dir.join("bmcsim.yaml");
        std::fs::write(
            &config,
            serde_json::to_string(&json!({"ca_dir": dir.join("sim-ca"), "admin_listen": "127.0.0.1:0", "bmcs": entries}))
                .expect("json"),
        )
        .expect("bmcsim config");
        let log = dir.join("bmcsim.log");
        let mut child = Command::new(bmcsim_bin())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start bmcsim");
        // The ready line: {"admin": addr, "bmcs": {name: addr}}. Read on a thread so a bmcsim
        // that never answers fails the test at the deadline instead of hanging it.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(super::WAIT).expect("bmcsim's ready line");
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bmcsim said {line:?}: {e}"));
        let port = |addr: &Value| {
            addr.as_str()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .expect("port")
        };
        let ports = ready["bmcs"]
            .as_object()
            .expect("bmcs")
            .iter()
            .map(|(k, v)| (k.clone(), port(v)))
            .collect();
        Self {
            ca: dir.join("sim-ca/ca.pem"),
            password,
            admin: ready["admin"].as_str().expect("admin").to_owned(),
            ports,
            child,
            log,
        }
    }

    pub fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    /// The BMC's state from the control API.
    pub async fn state(&self, name: &str) -> Value {
        reqwest::get(format!("http://{}/bmcs/{name}", self.admin))
            .await
            .expect("admin")
            .json()
            .await
            .expect("json")
    }

    pub async fn faults(&self, name: &str, faults: Value) {
        let status = reqwest::Client::new()
            .put(format!("http://{}/bmcs/{name}/faults", self.admin))
            .json(&faults)
            .send()
            .await
            .expect("admin")
            .status();
        assert!(status.is_success(), "setting faults: {status}");
    }

    /// A client that trusts this bmcsim's CA.
    fn client(&self) -> reqwest::Client {
        let ca =
            reqwest::Certificate::from_pem(&std::fs::read(&self.ca).expect("ca")).expect("pem");
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .expect("client")
    }

    /// A Redfish PATCH as another client would make it (to prepare a BMC for a test).
    pub async fn patch(&self, name: &str, path: &str, body: Value) {
        let status = self
            .client()
            .patch(format!("https://127.0.0.1:{}{path}", self.port(name)))
            .basic_auth("admin", Some(&self.password))
            .json(&body)
            .send()
            .await
            .expect("patch")
            .status();
        assert!(status.is_success(), "PATCH {path}: {status}");
    }

    /// Deletes every session open on the BMC, as its own timeout (or another administrator)
    /// would: their tokens stop working. Returns how many there were.
    pub async fn drop_sessions(&self, name: &str) -> usize {
        let client = self.client();
        let base = format!("https://127.0.0.1:{}", self.port(name));
        let get = |path: String| {
            let request = client
                .get(format!("{base}{path}"))
                .basic_auth("admin", Some(&self.password));
            async move {
                let answer = request.send().await.expect("get");
                assert!(answer.status().is_success(), "GET {path}");
                answer.json::<Value>().await.expect("json")
            }
        };
        let root = get("/redfish/v1/".into()).await;
        let sessions = root["Links"]["Sessions"]["@odata.id"]
            .as_str()
            .expect("the service root links its sessions")
            .to_owned();
        let members = get(sessions).await["Members"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for member in &members {
            let path = member["@odata.id"].as_str().expect("session link");
            let status = client
                .delete(format!("{base}{path}"))
                .basic_auth("admin", Some(&self.password))
                .send()
                .await
                .expect("delete")
                .status();
            assert!(status.is_success(), "DELETE {path}: {status}");
        }
        members.len()
    }
}

impl Drop for BmcSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- bmcsim log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}
