//! The command line: subcommands, and the glue from each to the module that does the work.
//! The one place `anyhow` is used.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::dhcp::{
    self, Ignored, IgnoredLease, LeaseEvent, LeaseEventKind, Listing, Mac, NetBoxSink, Spool,
    Subnet,
};
use crate::netbox::{self, NetBoxClient};

#[derive(Debug, Parser)]
#[command(
    name = "racklift",
    version,
    about = "NetBox as the control plane for bare-metal server bring-up"
)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = "RACKLIFT_CONFIG", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive NetBox's webhooks and drive devices through the lifecycle.
    Serve,
    /// Manage racklift's objects in NetBox.
    Netbox {
        #[command(subcommand)]
        command: NetboxCommand,
    },
    /// Read the configuration and print it (secrets hidden).
    CheckConfig,
    /// Called by a DHCP server's hook (dhcp-hooks/): spool one lease event and return at once;
    /// a detached `dhcp-drain` takes it to NetBox.
    DhcpLease(LeaseArgs),
    /// Push spooled lease events to NetBox (started by `dhcp-lease`; run it from a timer too).
    DhcpDrain,
    /// Show the DHCP spool: counters, leases from unknown MACs or unmanaged devices, rejected
    /// events.
    DhcpSpool {
        #[command(subcommand)]
        command: Option<SpoolCommand>,
    },
}

#[derive(Debug, clap::Args)]
struct LeaseArgs {
    #[arg(long, value_enum)]
    event: LeaseEventKind,
    #[arg(long, value_parser = parse_mac)]
    mac: Mac,
    #[arg(long, value_parser = dhcp::parse_lease_ip)]
    ip: std::net::Ipv4Addr,
    /// The client's hostname (DHCP option 12); empty means none.
    #[arg(long, default_value = "", value_parser = parse_optional_hostname)]
    hostname: Blankable<String>,
    /// The subnet the DHCP server leased from (`10.213.0.0/24`); empty means not known.
    #[arg(long, default_value = "", value_parser = parse_optional_subnet)]
    subnet: Blankable<Subnet>,
    /// Which DHCP server calls (shown in NetBox's journal).
    #[arg(long, default_value = "dhcp", value_parser = dhcp::parse_hostname)]
    server: String,
}

/// A hook argument the DHCP server may pass empty (dhcpd needs every `execute()` argument to
/// exist, so the scripts pass "" for "not known").
#[derive(Debug, Clone)]
struct Blankable<T>(Option<T>);

fn parse_mac(s: &str) -> Result<Mac, String> {
    s.parse()
}
fn parse_optional_hostname(s: &str) -> Result<Blankable<String>, String> {
    Ok(Blankable(if s.is_empty() {
        None
    } else {
        Some(dhcp::parse_hostname(s)?)
    }))
}
fn parse_optional_subnet(s: &str) -> Result<Blankable<Subnet>, String> {
    Ok(Blankable(if s.is_empty() {
        None
    } else {
        Some(s.parse()?)
    }))
}

#[derive(Debug, Subcommand)]
enum SpoolCommand {
    /// Counters and what waits (the default).
    Status,
    /// Leases from MACs NetBox has on no BMC interface, newest first.
    Unknown,
    /// Leases from BMCs of devices racklift does not manage (not enrolled, or out of scope).
    Unmanaged,
    /// Leases NetBox refused (no prefix holds the address, a 4xx), per MAC, with the reason.
    Rejected,
    /// Move rejected leases back to pending (after fixing the cause in NetBox).
    Requeue,
}

#[derive(Debug, Subcommand)]
enum NetboxCommand {
    /// Make NetBox match netbox/custom_fields.yaml and netbox/webhooks/*.yaml.
    Apply {
        /// Only print the differences; exit 1 when there are any.
        #[arg(long)]
        check: bool,
        /// Read the definitions from this directory instead of the ones built in.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
    },
}

/// Logs go to stderr, coloured only on a terminal; `RUST_LOG` filters them (default `info`).
pub fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    log_subscriber(filter, std::io::stderr, std::io::stderr().is_terminal()).init();
}

/// racklift's log lines, written to `writer`: what [`init_logging`] installs for the process,
/// and what the integration tests give each racklift they run in-process (into a file of its
/// own), so their assertions on the log read the same lines as the binary writes.
pub fn log_subscriber<W>(
    filter: tracing_subscriber::EnvFilter,
    writer: W,
    ansi: bool,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .finish()
}

impl Cli {
    /// The command line, or exit 2 with the mistake on one line: a DHCP server logs its hook's
    /// stderr line by line, and clap's usage block would bury the reason. `--help` and
    /// `--version` print as usual.
    pub fn parse_or_exit() -> Self {
        Self::try_parse().unwrap_or_else(|error| {
            if !error.use_stderr() {
                error.exit();
            }
            eprintln!("racklift: {}", one_line(&error.to_string()));
            std::process::exit(2)
        })
    }

    pub fn run(self) -> anyhow::Result<ExitCode> {
        if matches!(self.command, Command::DhcpDrain) {
            close_inherited_fds();
        }
        let config = Config::load(&self.config)?;
        if let Command::DhcpLease(args) = self.command {
            return lease(&config, &self.config, args);
        }
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        match self.command {
            Command::Serve => runtime.block_on(crate::serve::serve(config))?,
            Command::CheckConfig => println!("{config:#?}"),
            Command::Netbox {
                command: NetboxCommand::Apply { check, from },
            } => return runtime.block_on(apply(&config, check, from)),
            Command::DhcpDrain => return runtime.block_on(drain(&config)),
            Command::DhcpSpool { command } => spool_report(&config, command)?,
            Command::DhcpLease(_) => unreachable!("handled above"),
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// clap's message up to its first blank line (what went wrong, without the usage and the
/// `--help` hint), its lines joined.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        // A value quoted back (clap quotes invalid ones as given) may hold control characters.
        .replace(char::is_control, " ")
}

/// Spools the event and starts a drain without waiting for it: the DHCP server gets control
/// back in milliseconds whatever NetBox does (ISC dhcpd blocks entirely while a hook runs).
fn lease(
    config: &Config,
    config_path: &std::path::Path,
    args: LeaseArgs,
) -> anyhow::Result<ExitCode> {
    let spool = Spool::open(&config.dhcp.spool_dir)?;
    let event = LeaseEvent {
        kind: args.event,
        mac: args.mac,
        ip: args.ip,
        hostname: args.hostname.0,
        subnet: args.subnet.0,
        server: args.server,
        received_at: chrono::Utc::now(),
    };
    spool.push(&event)?;
    if let Err(e) = start_drain(&spool, config_path, config.dhcp.log_limit_bytes) {
        // The event is safe in the spool; the drain timer takes it.
        eprintln!("racklift dhcp-lease: spooled, but could not start a drain: {e:#}");
    }
    Ok(ExitCode::SUCCESS)
}

fn start_drain(
    spool: &Spool,
    config_path: &std::path::Path,
    log_limit_bytes: u64,
) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    // A log that cannot be rotated is no reason to leave the event without a drain.
    if let Err(e) = spool.rotate_log(log_limit_bytes) {
        eprintln!("racklift dhcp-lease: {}", crate::error_chain(&e));
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spool.log_path())
        .with_context(|| format!("cannot open {}", spool.log_path().display()))?;
    std::process::Command::new(
        std::env::current_exe().context("cannot find racklift's own binary")?,
    )
    .arg("--config")
    .arg(config_path)
    .arg("dhcp-drain")
    .stdin(std::process::Stdio::null())
    .stdout(log.try_clone()?)
    .stderr(log)
    // Its own process group: a signal to the DHCP server's group does not reach it.
    .process_group(0)
    .spawn()
    .context("cannot start `racklift dhcp-drain`")?;
    Ok(())
}

/// DHCP servers leak their descriptors (Kea its lease file and log) into hooks; a drain that
/// may wait minutes for NetBox must not hold them.
fn close_inherited_fds() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // The directory's own descriptor is already closed here: EBADF is expected.
        let _ = nix::unistd::close(fd);
    }
}

async fn drain(config: &Config) -> anyhow::Result<ExitCode> {
    let spool = Spool::open(&config.dhcp.spool_dir)?;
    // In a burst of leases most drains find another at work: they leave before paying for a
    // NetBox client (the system's CA bundle). The drain that holds the lock rechecks the spool
    // after letting go, so nothing is left behind.
    if spool.try_lock()?.is_none() {
        tracing::info!("another drain is at work; it takes these events");
        return Ok(ExitCode::SUCCESS);
    }
    let client = NetBoxClient::new(&config.netbox)?;
    let sink = NetBoxSink {
        client: &client,
        scope: &config.scope,
    };
    let report = dhcp::drain(&sink, &spool, &config.dhcp).await?;
    if report.ran {
        let c = report.counters;
        tracing::info!(
            applied = c.applied,
            unchanged = c.unchanged,
            superseded = c.superseded,
            unknown = c.unknown,
            unmanaged = c.unmanaged,
            rejected = c.rejected,
            conflicts = c.conflicts,
            left = report.left,
            rounds = report.rounds,
            "drain finished"
        );
    } else {
        tracing::info!("another drain is at work; it takes these events");
    }
    Ok(ExitCode::SUCCESS)
}

fn spool_report(config: &Config, command: Option<SpoolCommand>) -> anyhow::Result<()> {
    let spool = Spool::open(&config.dhcp.spool_dir)?;
    match command.unwrap_or(SpoolCommand::Status) {
        SpoolCommand::Status => {
            let c = spool.counters()?;
            let [unknown, unmanaged, rejected] = Ignored::ALL.map(|kind| spool.ignored(kind));
            let (unknown, unmanaged, rejected) = (unknown?, unmanaged?, rejected?);
            println!("spool        {}", spool.root().display());
            println!("pending      {}", spool.pending_files()?.len());
            println!("unknown MACs {}", unknown.items.len());
            println!("not managed  {}", unmanaged.items.len());
            println!("rejected     {}", rejected.items.len());
            let corrupt = spool.corrupt_count()?;
            let mut unreadable: Vec<String> = [&unknown, &unmanaged, &rejected]
                .into_iter()
                .filter(|l| l.unreadable > 0)
                .map(|l| format!("{} in {}", l.unreadable, l.dir.display()))
                .collect();
            if corrupt > 0 {
                unreadable.push(format!(
                    "{corrupt} pending set aside in {}",
                    spool.corrupt_dir().display()
                ));
            }
            if !unreadable.is_empty() {
                println!("unreadable   {} (not listed)", unreadable.join(", "));
            }
            println!(
                "counters     applied {} unchanged {} superseded {} unknown {} not managed {} rejected {} conflicts {}",
                c.applied,
                c.unchanged,
                c.superseded,
                c.unknown,
                c.unmanaged,
                c.rejected,
                c.conflicts
            );
        }
        SpoolCommand::Unknown => print_ignored(&spool.ignored(Ignored::Unknown)?),
        SpoolCommand::Unmanaged => print_ignored(&spool.ignored(Ignored::Unmanaged)?),
        SpoolCommand::Rejected => print_ignored(&spool.ignored(Ignored::Rejected)?),
        SpoolCommand::Requeue => {
            let requeued = spool.requeue_rejected()?;
            println!("{} leases back to pending", requeued.items.len());
            print_unreadable(&requeued);
        }
    }
    Ok(())
}

fn print_ignored(leases: &Listing<IgnoredLease>) {
    println!(
        "{:<17}  {:<15}  {:<7}  {:<20}  {:<20}  {:>5}  REASON",
        "MAC", "IP", "EVENT", "FIRST SEEN", "LAST SEEN", "COUNT"
    );
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%SZ").to_string();
    for u in &leases.items {
        println!(
            "{:<17}  {:<15}  {:<7}  {:<20}  {:<20}  {:>5}  {}",
            u.event.mac,
            u.event.ip,
            u.event.kind.as_str(),
            time(u.first_seen),
            time(u.last_seen()),
            u.count,
            u.reason
        );
    }
    print_unreadable(leases);
}

/// Files a listing skipped: said, never an error, so one bad file cannot hide the rest.
fn print_unreadable<T>(listing: &Listing<T>) {
    if listing.unreadable > 0 {
        println!(
            "({} unreadable files in {} were skipped)",
            listing.unreadable,
            listing.dir.display()
        );
    }
}

async fn apply(config: &Config, check: bool, from: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let definitions = match &from {
        Some(dir) => netbox::apply::Definitions::from_dir(dir)?,
        None => netbox::apply::Definitions::builtin()?,
    };
    let client = NetBoxClient::new(&config.netbox)?;
    let vars = netbox::apply::Vars {
        instance: &config.scope.instance,
        webhook_url: config.webhook.url.as_ref(),
        webhook_secret: config.webhook_secret()?,
        scope: &config.scope,
    };
    let report = netbox::apply::apply(&client, &definitions, &vars, check).await?;
    for change in &report.changes {
        println!("{}{change}", if check { "would " } else { "" });
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    let verb = if check { "differ" } else { "changed" };
    println!(
        "{} {verb}, {} unchanged",
        report.changes.len(),
        report.unchanged
    );
    Ok(if check && !report.changes.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistake_is_reported_on_one_line() {
        for args in [
            &[
                "racklift",
                "dhcp-lease",
                "--event",
                "commit",
                "--mac",
                "0é000000000",
                "--ip",
                "10.0.0.1",
            ][..],
            &[
                "racklift",
                "dhcp-lease",
                "--event",
                "commit",
                "--mac",
                "02:00:00:00:00:01",
            ],
            &["racklift", "dhcp-lease", "--event", "lease\n\nUsage"],
            &["racklift", "dhcp-lease", "--bogus"],
        ] {
            let error = Cli::try_parse_from(args).expect_err("a mistake");
            let line = one_line(&error.to_string());
            assert!(line.starts_with("error: "), "{line}");
            assert!(!line.contains('\n') && !line.contains("Usage"), "{line}");
        }
        let error = Cli::try_parse_from(["racklift", "dhcp-lease", "--event", "commit"])
            .expect_err("missing");
        assert!(one_line(&error.to_string()).contains("--mac <MAC>"));
    }

    /// `PROPTEST_CASES=100000 cargo test --release --lib properties::` runs these longer.
    mod properties {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;

        use proptest::prelude::*;

        use super::*;

        fn flag() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => prop::sample::select(vec![
                    "--event", "--mac", "--ip", "--hostname", "--subnet", "--server", "--config",
                    "--help", "--version", "-h", "--", "-",
                ])
                .prop_map(str::to_owned),
                1 => any::<String>(),
            ]
        }

        fn value() -> impl Strategy<Value = OsString> {
            prop_oneof![
                2 => prop::sample::select(vec![
                    "commit", "renew", "release", "expire", "02:00:00:aa:bb:01", "0é000000000",
                    "10.213.0.100", "10.213.0.0/24", "bmc-01", "", "--mac",
                ])
                .prop_map(OsString::from),
                2 => "[0-9a-fé:.+-]{10,17}".prop_map(OsString::from),
                2 => any::<String>().prop_map(OsString::from),
                1 => any::<Vec<u8>>().prop_map(OsString::from_vec),
            ]
        }

        proptest! {
            #[test]
            fn dhcp_lease_arguments_never_panic(
                mac in dhcp::tests::properties::mac_like(),
                args in prop::collection::vec((flag(), value(), any::<bool>()), 0..8)
            ) {
                // A call as the hook scripts make it, its MAC anything, then anything at all.
                let mut argv: Vec<OsString> = ["racklift", "dhcp-lease", "--event", "commit", "--ip", "10.213.0.100", "--mac"]
                    .into_iter()
                    .map(OsString::from)
                    .collect();
                argv.push(mac.into());
                for (flag, value, joined) in args {
                    if joined {
                        let mut arg = OsString::from(format!("{flag}="));
                        arg.push(&value);
                        argv.push(arg);
                    } else {
                        argv.push(flag.into());
                        argv.push(value);
                    }
                }
                match Cli::try_parse_from(&argv) {
                    Ok(cli) => {
                        let Command::DhcpLease(lease) = cli.command else {
                            return Err(TestCaseError::fail("another subcommand"));
                        };
                        // What parsed went through the checks: it reads back the same.
                        prop_assert_eq!(lease.mac.to_string().parse::<Mac>(), Ok(lease.mac));
                        prop_assert!(lease.hostname.0.is_none_or(|h| dhcp::parse_hostname(&h).is_ok()));
                    }
                    Err(error) => {
                        let line = one_line(&error.to_string());
                        prop_assert!(!line.contains('\n'), "{}", line);
                        prop_assert!(!error.use_stderr() || line.starts_with("error: "), "{}", line);
                    }
                }
            }
        }
    }
}
