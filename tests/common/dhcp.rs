//! Real DHCP servers (Kea, ISC dhcpd, dnsmasq) and a real DHCP client (busybox udhcpc) in
//! network namespaces a test creates and always removes (also when it fails), wired to
//! racklift through the repository's own dhcp-hooks/ scripts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{racklift_bin, run_ok as sh, wait_for};

/// A configuration for the DHCP hook side (`dhcp-lease`, `dhcp-drain`, `dhcp-spool`): NetBox at
/// `netbox_url` with `token`, the spool in `dir/spool`, quick retries, and `extra` lines for
/// the `dhcp:` section (each indented by two spaces).
pub fn hook_config(dir: &Path, netbox_url: &str, token: &str, extra: &str) -> PathBuf {
    let token_file = dir.join("hook-netbox-token");
    std::fs::write(&token_file, token).expect("token");
    let config = dir.join("hook.yaml");
    std::fs::write(
        &config,
        format!(
            "netbox:\n  url: {netbox_url}\n  token: {{file: {}}}\n  timeout: 5s\n\
             dhcp:\n  spool_dir: {}\n  drain_timeout: 120s\n  backoff_base: 200ms\n  backoff_max: 1s\n{extra}",
            token_file.display(),
            dir.join("spool").display()
        ),
    )
    .expect("hook config");
    config
}

/// A stand-in for NetBox that knows no MAC: every interface lookup answers an empty list at
/// once, so a test can drain many leases without the lab (each ends in `unknown/`). Counts
/// the lookups.
#[derive(Debug)]
pub struct NoMacsNetBox {
    pub url: String,
    lookups: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl NoMacsNetBox {
    pub async fn start() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let lookups = std::sync::Arc::new(AtomicUsize::new(0));
        // racklift's one read per lease event: the lease query, answered "no such MAC".
        let app = axum::Router::new().route(
            "/graphql/",
            axum::routing::post({
                let lookups = lookups.clone();
                move || async move {
                    lookups.fetch_add(1, Ordering::SeqCst);
                    axum::Json(serde_json::json!({"data": {
                        "interface_list": [], "prefix_list": [], "ip_address_list": []
                    }}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            lookups,
            server,
        }
    }

    pub fn lookups(&self) -> usize {
        self.lookups.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for NoMacsNetBox {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The subnet inside every test's namespaces (they are isolated, so tests can share it).
pub const SUBNET: &str = "10.213.0.0/24";
const GATEWAY: &str = "10.213.0.1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Kea,
    IscDhcpd,
    Dnsmasq,
}

impl Server {
    fn hook(self) -> &'static str {
        match self {
            Self::Kea => "kea.sh",
            Self::IscDhcpd => "isc-dhcpd.sh",
            Self::Dnsmasq => "dnsmasq.sh",
        }
    }
}

/// A bridge in a server namespace, with client namespaces attached, and an uplink to the
/// host: the hook's drain runs in the server's namespace and reaches NetBox through a proxy the
/// test listens with on the uplink's host side.
#[derive(Debug)]
pub struct Lan {
    tag: String,
    /// The host side of the uplink; a proxy bound here is the server namespace's way out.
    pub uplink_ip: String,
    uplink: String,
    pub dir: PathBuf,
    namespaces: Vec<String>,
    processes: Vec<Child>,
    clients: usize,
}

/// A DHCP client in its own namespace.
#[derive(Debug)]
pub struct Client {
    pub ns: String,
    pub mac: String,
    pid: u32,
    lease_file: PathBuf,
}

impl Lan {
    /// `tag`: a few characters unique to the test (namespace names).
    pub fn new(tag: &str, dir: &Path) -> Self {
        static UPLINKS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
        let tag = format!("rl{tag}{}", std::process::id() % 10_000);
        let n = UPLINKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let uplink = format!("{tag}u");
        let lan = Self {
            uplink_ip: format!("10.214.{n}.1"),
            uplink: uplink.clone(),
            tag: tag.clone(),
            dir: dir.to_owned(),
            namespaces: vec![format!("{tag}s")],
            processes: Vec::new(),
            clients: 0,
        };
        let ns = lan.server_ns();
        sh(&["ip", "netns", "add", &ns]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", &ns, "link", "add", "br0", "type", "bridge"]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{GATEWAY}/24"),
            "dev",
            "br0",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "br0", "up"]);
        // A link left by a run that was killed would block this one.
        let _ = Command::new("ip").args(["link", "del", &uplink]).output();
        sh(&[
            "ip", "link", "add", &uplink, "type", "veth", "peer", "name", "up0", "netns", &ns,
        ]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("10.214.{n}.1/30"),
            "dev",
            &uplink,
        ]);
        sh(&["ip", "link", "set", &uplink, "up"]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.214.{n}.2/30"),
            "dev",
            "up0",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "up0", "up"]);
        lan
    }

    pub fn server_ns(&self) -> String {
        self.namespaces[0].clone()
    }

    /// Links the hook script from dhcp-hooks/ into the test's directory, with an .env beside
    /// it naming this build of racklift and the test's configuration.
    fn hook(&self, server: Server, config: &Path) -> PathBuf {
        let script = self.dir.join(server.hook());
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("dhcp-hooks")
            .join(server.hook());
        std::os::unix::fs::symlink(source, &script).expect("link hook");
        // The .env is a shell fragment the hook sources: it also records every call, so a test
        // can account for each event the server handed over.
        std::fs::write(
            script.with_extension("env"),
            format!(
                "RACKLIFT={}\nRACKLIFT_CONFIG={}\necho \"$1 ${{LEASES4_SIZE:-}}\" >> {}\n",
                racklift_bin().display(),
                config.display(),
                self.dir.join("hook-calls").display()
            ),
        )
        .expect("hook env");
        script
    }

    fn spawn(&mut self, ns: &str, args: &[&str], envs: &[(&str, String)], log: &str) -> u32 {
        let log = std::fs::File::create(self.dir.join(log)).expect("log");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in envs {
            command.env(k, v);
        }
        let child = command.spawn().expect("spawn in netns");
        let pid = child.id();
        self.processes.push(child);
        pid
    }

    /// The hook's calls that handed racklift an event (Kea's `leases4_committed` without a
    /// lease is the second half of a release and hands over nothing).
    pub fn events_handed_over(&self) -> usize {
        std::fs::read_to_string(self.dir.join("hook-calls"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l != "leases4_committed 0")
            .count()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Starts `server` on br0 with racklift's hook, and waits until it serves.
    pub async fn start_server(&mut self, server: Server, racklift_config: &Path) {
        let hook = self.hook(server, racklift_config);
        let ns = self.server_ns();
        let dir = self.dir.clone();
        let (log, ready) = match server {
            Server::Kea => {
                let conf = dir.join("kea-dhcp4.conf");
                std::fs::write(
                    &conf,
                    serde_json::json!({"Dhcp4": {
                        "interfaces-config": {"interfaces": ["br0"]},
                        "lease-database": {"type": "memfile", "persist": true,
                            "name": dir.join("kea-leases4.csv"), "lfc-interval": 0},
                        "valid-lifetime": 600, "renew-timer": 300, "rebind-timer": 500,
                        "hooks-libraries": [{
                            "library": "/usr/lib/x86_64-linux-gnu/kea/hooks/libdhcp_run_script.so",
                            "parameters": {"name": hook, "sync": false}}],
                        "subnet4": [{"id": 1, "subnet": SUBNET,
                            "pools": [{"pool": "10.213.0.100 - 10.213.0.199"}],
                            "option-data": [{"name": "routers", "data": GATEWAY}]}],
                        "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "INFO"}],
                    }})
                    .to_string(),
                )
                .expect("kea conf");
                let dirs = dir.display().to_string();
                self.spawn(
                    &ns,
                    &["kea-dhcp4", "-c", conf.to_str().expect("utf-8")],
                    &[
                        ("KEA_PIDFILE_DIR", dirs.clone()),
                        ("KEA_LOCKFILE_DIR", dirs),
                    ],
                    "kea.log",
                );
                ("kea.log", "DHCP4_STARTED")
            }
            Server::IscDhcpd => {
                let conf = dir.join("dhcpd.conf");
                let hook = hook.display();
                std::fs::write(
                    &conf,
                    format!(
                        r#"authoritative;
ddns-update-style none;
default-lease-time 600;
max-lease-time 600;
ping-check false;
subnet 10.213.0.0 netmask 255.255.255.0 {{
  range 10.213.0.100 10.213.0.199;
  option routers {GATEWAY};
}}
on commit {{
  set rl_ip = binary-to-ascii(10, 8, ".", leased-address);
  set rl_mac = concat(
    suffix(concat("0", binary-to-ascii(16, 8, "", substring(hardware, 1, 1))), 2), ":",
    suffix(concat("0", binary-to-ascii(16, 8, "", substring(hardware, 2, 1))), 2), ":",
    suffix(concat("0", binary-to-ascii(16, 8, "", substring(hardware, 3, 1))), 2), ":",
    suffix(concat("0", binary-to-ascii(16, 8, "", substring(hardware, 4, 1))), 2), ":",
    suffix(concat("0", binary-to-ascii(16, 8, "", substring(hardware, 5, 1))), 2), ":",
    suffix(concat("0", binary-to-ascii(16, 8, "", substring(hardware, 6, 1))), 2));
  set rl_name = pick-first-value(option host-name, "");
  execute("{hook}", "commit", rl_ip, rl_mac, rl_name);
}}
on release {{ execute("{hook}", "release", rl_ip, rl_mac, rl_name); }}
on expiry {{ execute("{hook}", "expiry", rl_ip, rl_mac, rl_name); }}
"#
                    ),
                )
                .expect("dhcpd conf");
                std::fs::write(dir.join("dhcpd.leases"), "").expect("leases");
                self.spawn(
                    &ns,
                    &[
                        "dhcpd",
                        "-4",
                        "-d",
                        "-cf",
                        conf.to_str().expect("utf-8"),
                        "-lf",
                        dir.join("dhcpd.leases").to_str().expect("utf-8"),
                        "-pf",
                        dir.join("dhcpd.pid").to_str().expect("utf-8"),
                        "br0",
                    ],
                    &[],
                    "dhcpd.log",
                );
                ("dhcpd.log", "Server starting service.")
            }
            Server::Dnsmasq => {
                self.spawn(
                    &ns,
                    &[
                        "dnsmasq",
                        "--keep-in-foreground",
                        "--conf-file=/dev/null",
                        "--port=0",
                        "--interface=br0",
                        "--bind-interfaces",
                        "--dhcp-authoritative",
                        "--dhcp-range=10.213.0.100,10.213.0.199,255.255.255.0,10m",
                        &format!("--dhcp-option=option:router,{GATEWAY}"),
                        &format!("--dhcp-script={}", hook.display()),
                        "--script-on-renewal",
                        "--no-ping",
                        &format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()),
                        &format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
                        "--log-facility=-",
                        "--log-dhcp",
                    ],
                    &[],
                    "dnsmasq.log",
                );
                ("dnsmasq.log", "DHCP, IP range")
            }
        };
        wait_for(
            &format!("{server:?} to start (see {})", dir.join(log).display()),
            || async { self.log(log).contains(ready).then_some(()) },
        )
        .await;
    }

    /// A namespace with `eth0` (this MAC) on the bridge, running udhcpc.
    pub fn client(&mut self, mac: &str, hostname: &str) -> Client {
        self.clients += 1;
        let ns = format!("{}c{}", self.tag, self.clients);
        let server_ns = self.server_ns();
        let port = format!("s{}", self.clients);
        sh(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        sh(&[
            "ip", "link", "add", &port, "netns", &server_ns, "type", "veth", "peer", "name",
            "eth0", "netns", &ns, "address", mac,
        ]);
        sh(&[
            "ip", "-n", &server_ns, "link", "set", &port, "master", "br0", "up",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        // udhcpc's own script would write the host's resolv.conf: this one only sets the
        // address (a renewal is unicast from it) and records the lease for the test.
        let lease_file = self.dir.join(format!("{ns}.lease"));
        let script = self.dir.join(format!("{ns}.udhcpc.sh"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n  bound|renew) ip addr flush dev \"$interface\"; ip addr add \"$ip/$mask\" dev \"$interface\"; echo \"$1 $ip\" >> {lease} ;;\n  deconfig) ip addr flush dev \"$interface\"; echo deconfig >> {lease} ;;\nesac\n",
                lease = lease_file.display()
            ),
        )
        .expect("udhcpc script");
        sh(&["chmod", "+x", script.to_str().expect("utf-8")]);
        let pid = self.spawn(
            &ns,
            &[
                "busybox",
                "udhcpc",
                "-f",
                "-i",
                "eth0",
                "-s",
                script.to_str().expect("utf-8"),
                "-x",
                &format!("hostname:{hostname}"),
                "-t",
                "20",
                "-T",
                "1",
                "-A",
                "1",
            ],
            &[],
            &format!("{ns}.udhcpc.log"),
        );
        Client {
            ns,
            mac: mac.to_owned(),
            pid,
            lease_file,
        }
    }
}

impl Client {
    /// The lines udhcpc's script recorded: `bound IP`, `renew IP`, `deconfig`.
    pub fn events(&self) -> Vec<String> {
        std::fs::read_to_string(&self.lease_file)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits for the client's lease; returns its address.
    pub async fn bound(&self) -> String {
        wait_for(&format!("udhcpc in {} to get a lease", self.ns), || async {
            self.events()
                .iter()
                .find_map(|e| e.strip_prefix("bound ").map(str::to_owned))
        })
        .await
    }

    fn signal(&self, signal: &str) {
        sh(&["kill", signal, &self.pid.to_string()]);
    }

    /// SIGUSR1: udhcpc renews its lease now.
    pub fn renew(&self) {
        self.signal("-USR1");
    }

    /// SIGUSR2: udhcpc releases its lease.
    pub fn release(&self) {
        self.signal("-USR2");
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.uplink])
            .output();
        if std::thread::panicking() {
            let dirs = [self.dir.clone(), self.dir.join("spool")];
            for entry in dirs.iter().flat_map(std::fs::read_dir).flatten().flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    eprintln!(
                        "--- {} ---\n{}",
                        path.display(),
                        std::fs::read_to_string(&path).unwrap_or_default()
                    );
                }
            }
        }
    }
}
