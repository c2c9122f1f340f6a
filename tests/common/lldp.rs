//! LLDP between a "switch" and a "server" network namespace a test creates and always removes
//! (also when it fails): veth links between them, a real lldpd in each (its own control socket
//! and configuration), and the repository's validation/racklift-validate run in the server
//! namespace, reading those neighbours through lldpcli.
//!
//! ```ignore
//! let mut fabric = Fabric::new("val", dir.path());
//! fabric.link("eth0", "swp1", "02:00:00:00:01:00");
//! fabric.link("eth1", "swp2", "02:00:00:00:01:01");
//! fabric.start("sw-lab-01", &[("swp1", "to srv eth0")]).await;
//! fabric.wait_neighbours(2).await;
//! fabric.connect_racklift(racklift.port);
//! let out = fabric.run_validation(&["--token-file", token.to_str().unwrap()]).await;
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{run_ok as sh, wait_for};

/// The validation script in this repository.
pub fn validate_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("validation/racklift-validate")
}

/// The SMBIOS dump `run_validation` gives the script (this VM has no DMI): serial
/// `SN-LAB-0001`, Acme Corp LabServer 1000, uuid 12345678-1234-5678-9abc-def012345678, one
/// 16-core/32-thread socket "Intel(R) Xeon(R) Lab CPU @ 2.40GHz", one 16 GB module.
pub fn smbios_dump() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smbios-lab.bin")
}

/// One lldpd, spawned through `ip netns exec` (which execs, so the child is lldpd's monitor).
#[derive(Debug)]
struct Lldpd {
    role: &'static str,
    child: Child,
}

/// A switch namespace and a server namespace joined by veth links, with lldpd in each.
#[derive(Debug)]
pub struct Fabric {
    switch_ns: String,
    server_ns: String,
    /// Logs (lldpd's) go here: the test's directory.
    dir: PathBuf,
    /// Sockets and lldpd configurations: lldpcli is setuid `_lldpd` and lldpd runs its `-O` file
    /// through it, so they live in a directory of their own that `_lldpd` can enter (a
    /// `tempfile` directory is 0700 and lldpd would stay paused, its configuration refused).
    run: PathBuf,
    /// (server interface, switch port, switch port MAC)
    links: Vec<(String, String, String)>,
    namespaces: Vec<String>,
    lldpd: Vec<Lldpd>,
    forwarder: Option<(PathBuf, u16, tokio::task::JoinHandle<()>)>,
}

impl Fabric {
    /// `tag`: a few characters unique to the test (at most 7: namespace names are
    /// `rl<tag><pid % 10000>sw` and `…sv`, and must fit in 15).
    pub fn new(tag: &str, dir: &Path) -> Self {
        let base = format!("rl{tag}{}", std::process::id() % 10_000);
        assert!(
            base.len() + 2 <= 15,
            "Fabric tag {tag:?} is too long for a namespace name"
        );
        let run = std::env::temp_dir().join(format!("{base}-lldp"));
        let mut fabric = Self {
            switch_ns: format!("{base}sw"),
            server_ns: format!("{base}sv"),
            dir: dir.to_owned(),
            run,
            links: Vec::new(),
            namespaces: Vec::new(),
            lldpd: Vec::new(),
            forwarder: None,
        };
        // Left by a run of the same pid that was killed: it would block this one.
        let _ = std::fs::remove_dir_all(&fabric.run);
        std::fs::create_dir(&fabric.run).expect("lldpd run directory");
        std::fs::set_permissions(&fabric.run, std::fs::Permissions::from_mode(0o755))
            .expect("chmod lldpd run directory");
        for ns in [fabric.switch_ns.clone(), fabric.server_ns.clone()] {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            sh(&["ip", "netns", "add", &ns]);
            fabric.namespaces.push(ns.clone());
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        fabric
    }

    pub fn server_ns(&self) -> String {
        self.server_ns.clone()
    }

    pub fn switch_ns(&self) -> String {
        self.switch_ns.clone()
    }

    /// The server lldpd's control socket (`lldpcli -u`).
    pub fn server_socket(&self) -> PathBuf {
        self.run.join("server.sock")
    }

    pub fn switch_socket(&self) -> PathBuf {
        self.run.join("switch.sock")
    }

    /// The server's hostname in LLDP (the switch sees the server under it).
    pub fn server_name(&self) -> String {
        self.server_ns.clone()
    }

    /// A veth pair: `server_if` (with `server_mac`) in the server namespace, `switch_port` in
    /// the switch namespace, both up. The n-th link's switch port gets the MAC
    /// `02:00:00:00:00:0n`, so the switch's chassis id (lldpd takes its first port's MAC) is
    /// `02:00:00:00:00:01`. Call before [`Fabric::start`] (lldpd would pick a later link up,
    /// but `start`'s port descriptions apply only to ports that exist when lldpd starts).
    pub fn link(&mut self, server_if: &str, switch_port: &str, server_mac: &str) {
        assert!(
            server_if.len() <= 15 && switch_port.len() <= 15,
            "interface names longer than 15 characters"
        );
        let switch_mac = format!("02:00:00:00:00:{:02x}", self.links.len() + 1);
        sh(&[
            "ip",
            "link",
            "add",
            "name",
            server_if,
            "address",
            server_mac,
            "netns",
            &self.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            switch_port,
            "address",
            &switch_mac,
            "netns",
            &self.switch_ns,
        ]);
        sh(&[
            "ip",
            "-n",
            &self.switch_ns,
            "link",
            "set",
            switch_port,
            "up",
        ]);
        sh(&["ip", "-n", &self.server_ns, "link", "set", server_if, "up"]);
        self.links
            .push((server_if.to_owned(), switch_port.to_owned(), switch_mac));
    }

    /// The MAC of a switch port made by [`Fabric::link`].
    pub fn switch_mac(&self, switch_port: &str) -> String {
        self.links
            .iter()
            .find(|(_, port, _)| port == switch_port)
            .map(|(_, _, mac)| mac.clone())
            .unwrap_or_else(|| panic!("no switch port {switch_port}"))
    }

    /// The switch's LLDP chassis id: its first port's MAC.
    pub fn switch_chassis_id(&self) -> String {
        self.links.first().expect("no link yet").2.clone()
    }

    /// Starts lldpd in both namespaces (transmitting every second) and waits until each has
    /// applied its configuration and every link's both ends are operationally up. The switch announces `switch_name`, port ids as interface
    /// names, and `port_descriptions` (switch port, text); a port without one is described
    /// by its name (lldpd's default).
    pub async fn start(&mut self, switch_name: &str, port_descriptions: &[(&str, &str)]) {
        assert!(self.lldpd.is_empty(), "lldpd already started");
        let mut switch_conf = format!(
            "configure system hostname {switch_name}\n\
             configure lldp portidsubtype ifname\n\
             configure lldp tx-interval 1\n"
        );
        for (port, text) in port_descriptions {
            // lldpd ignores `configure ports` for a port it does not have (yet).
            assert!(
                self.links.iter().any(|(_, p, _)| p == port),
                "port description for {port}, which is not linked yet"
            );
            assert!(
                !text.contains(['"', '\n']),
                "port description {text:?}: no quotes or newlines"
            );
            switch_conf.push_str(&format!(
                "configure ports {port} lldp portdescription \"{text}\"\n"
            ));
        }
        let server_conf = format!(
            "configure system hostname {}\nconfigure lldp tx-interval 1\n",
            self.server_name()
        );
        for (role, ns, conf) in [
            ("switch", self.switch_ns.clone(), switch_conf),
            ("server", self.server_ns.clone(), server_conf),
        ] {
            let conf_path = self.run.join(format!("{role}.conf"));
            std::fs::write(&conf_path, conf).expect("lldpd conf");
            std::fs::set_permissions(&conf_path, std::fs::Permissions::from_mode(0o644))
                .expect("chmod lldpd conf");
            let log = std::fs::File::create(self.log_path(role)).expect("lldpd log");
            let socket = self.run.join(format!("{role}.sock"));
            let child = Command::new("ip")
                .args(["netns", "exec", &ns, "lldpd", "-d", "-u"])
                .arg(&socket)
                .arg("-O")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start lldpd");
            self.lldpd.push(Lldpd { role, child });
        }
        // lldpd stays paused until lldpcli has applied the -O file; a refused one leaves it so.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mut ready = true;
            for lldpd in &mut self.lldpd {
                let log =
                    std::fs::read_to_string(self.dir.join(format!("lldpd-{}.log", lldpd.role)))
                        .unwrap_or_default();
                let exited = lldpd.child.try_wait().expect("lldpd status");
                assert!(
                    exited.is_none() && !log.contains("[WARN/control] unable to connect"),
                    "{} lldpd failed ({exited:?}):\n{log}",
                    lldpd.role
                );
                ready &= log.contains("lldpd should resume operations");
            }
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "lldpd did not apply its configuration (logs in {})",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The kernel reports a veth's operstate UP up to a second after its carrier (the
        // report carries operstate, and lldpd may already have exchanged frames).
        wait_for(
            &format!("the links of {} to be up", self.server_ns),
            || async {
                for (ns, index) in [(&self.server_ns, 0), (&self.switch_ns, 1)] {
                    let out = tokio::process::Command::new("ip")
                        .args(["-j", "-n", ns, "link", "show"])
                        .output()
                        .await
                        .ok()?;
                    let links: Value = serde_json::from_slice(&out.stdout).ok()?;
                    for link in &self.links {
                        let name = if index == 0 { &link.0 } else { &link.1 };
                        let up = links.as_array()?.iter().any(|l| {
                            l["ifname"].as_str() == Some(name.as_str()) && l["operstate"] == "UP"
                        });
                        if !up {
                            return None;
                        }
                    }
                }
                Some(())
            },
        )
        .await;
    }

    fn log_path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("lldpd-{role}.log"))
    }

    /// lldpcli against the switch's lldpd, e.g. `["configure", "ports", "swp1", "lldp",
    /// "portdescription", "new text"]`.
    pub fn switch_lldpcli(&self, args: &[&str]) -> std::process::Output {
        Command::new("lldpcli")
            .arg("-u")
            .arg(self.switch_socket())
            .args(args)
            .output()
            .expect("run lldpcli")
    }

    /// The server's LLDP neighbours now, as the report's `lldp` entries (in lldpcli's order),
    /// or `None` if lldpcli cannot answer.
    pub async fn neighbours(&self) -> Option<Vec<Value>> {
        let out = tokio::process::Command::new("lldpcli")
            .arg("-u")
            .arg(self.server_socket())
            .args(["-f", "json0", "show", "neighbors"])
            .output()
            .await
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let json0: Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(report_entries(&json0))
    }

    /// Waits until the server's lldpd knows exactly `n` neighbours; returns them as the report's
    /// `lldp` entries.
    pub async fn wait_neighbours(&self, n: usize) -> Vec<Value> {
        wait_for(
            &format!("{n} LLDP neighbours in {}", self.server_ns),
            || async { self.neighbours().await.filter(|found| found.len() == n) },
        )
        .await
    }

    /// Makes racklift (listening on 127.0.0.1:`port` on the host) reachable from the server
    /// namespace: a Unix socket (the mount namespace is shared) forwarded to it, which
    /// [`Fabric::run_validation`] then passes to the script with `--unix-socket`, together with
    /// `--url http://127.0.0.1:<port>`. No interface is added to the server, so the report's
    /// `nics` are the links only. Call from within the test's tokio runtime.
    pub fn connect_racklift(&mut self, port: u16) {
        let path = self.run.join("racklift.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).expect("bind forwarder socket");
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        if let Some((_, _, old)) = self.forwarder.replace((path, port, task)) {
            old.abort();
        }
    }

    /// Runs validation/racklift-validate in the server namespace (`ip netns exec`, so
    /// `/sys/class/net` is the namespace's) and returns its output: stdout is the report JSON.
    /// These come first, so `args` can override any of them (the last of a repeated flag wins):
    /// `--config /dev/null --cmdline /dev/null` (nothing from the host),
    /// `--dmidecode-dump tests/fixtures/smbios-lab.bin` (this VM has no DMI),
    /// `--lldpcli-socket <server socket> --lldp-wait 0` (use [`Fabric::wait_neighbours`] first),
    /// and after [`Fabric::connect_racklift`] `--unix-socket <forwarder> --url
    /// http://127.0.0.1:<port>`. Give `--token`/`--token-file`, or `--dry-run`.
    /// Async, so that the forwarder keeps running in a single-threaded test runtime.
    pub async fn run_validation(&self, args: &[&str]) -> std::process::Output {
        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", &self.server_ns])
            .arg(validate_script())
            .args(["--config", "/dev/null", "--cmdline", "/dev/null"])
            .arg("--dmidecode-dump")
            .arg(smbios_dump())
            .arg("--lldpcli-socket")
            .arg(self.server_socket())
            .args(["--lldp-wait", "0"]);
        if let Some((path, port, _)) = &self.forwarder {
            command
                .arg("--unix-socket")
                .arg(path)
                .arg("--url")
                .arg(format!("http://127.0.0.1:{port}"));
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("run racklift-validate")
    }

    /// The lldpd logs, for a test's own assertion messages.
    pub fn logs(&self) -> String {
        ["switch", "server"]
            .iter()
            .map(|role| {
                format!(
                    "--- lldpd-{role}.log ---\n{}",
                    std::fs::read_to_string(self.log_path(role)).unwrap_or_default()
                )
            })
            .collect()
    }
}

/// `lldpcli -f json0 show neighbors` → the report's `lldp` entries (as the script makes them).
pub fn report_entries(json0: &Value) -> Vec<Value> {
    let first = |v: &Value| v.as_array().and_then(|a| a.first()).cloned();
    let value = |v: &Value| first(v).map(|x| x["value"].clone()).unwrap_or(Value::Null);
    json0["lldp"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["interface"].as_array().cloned().unwrap_or_default())
        .map(|n| {
            let chassis = first(&n["chassis"]).unwrap_or(Value::Null);
            let port = first(&n["port"]).unwrap_or(Value::Null);
            let port_id = first(&port["id"]).unwrap_or(Value::Null);
            json!({
                "interface": n["name"],
                "chassis_name": value(&chassis["name"]),
                "chassis_id": value(&chassis["id"]),
                "port_id": port_id["value"],
                "port_id_type": port_id["type"],
                "port_description": value(&port["descr"]),
            })
        })
        .collect()
}

impl Drop for Fabric {
    fn drop(&mut self) {
        if let Some((_, _, task)) = self.forwarder.take() {
            task.abort();
        }
        // SIGTERM (lldpd removes its socket and tells the peer), then wait on our own child:
        // `kill -0` would succeed on a zombie.
        for lldpd in &self.lldpd {
            let _ = Command::new("kill")
                .args(["-TERM", &lldpd.child.id().to_string()])
                .output();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        for lldpd in &mut self.lldpd {
            while matches!(lldpd.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = lldpd.child.kill();
            let _ = lldpd.child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
            for role in ["switch", "server"] {
                eprintln!(
                    "--- {role}.conf ---\n{}",
                    std::fs::read_to_string(self.run.join(format!("{role}.conf")))
                        .unwrap_or_default()
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.run);
    }
}
