//! The command line: subcommands, and the glue from each to the module that does the work.
//! The one place `anyhow` is used.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::dhcp::{self, Ignored, IgnoredLease, LeaseEvent, LeaseEventKind, Mac, Spool, Subnet};
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
    /// Events NetBox refused, with the reason.
    Rejected,
    /// Move rejected events back to pending (after fixing the cause in NetBox).
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

impl Cli {
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
    if let Err(e) = start_drain(&spool, config_path) {
        // The event is safe in the spool; the drain timer takes it.
        eprintln!("racklift dhcp-lease: spooled, but could not start a drain: {e:#}");
    }
    Ok(ExitCode::SUCCESS)
}

fn start_drain(spool: &Spool, config_path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
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
    let report = dhcp::drain(&client, &spool, &config.dhcp, &config.scope).await?;
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
            println!("spool        {}", spool.root().display());
            println!("pending      {}", spool.pending()?.len());
            println!("unknown MACs {}", spool.ignored(Ignored::Unknown)?.len());
            println!("not managed  {}", spool.ignored(Ignored::Unmanaged)?.len());
            println!("rejected     {}", spool.rejected()?.len());
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
        SpoolCommand::Rejected => {
            for r in spool.rejected()? {
                println!(
                    "{}  {} {} {}: {}",
                    r.at.format("%Y-%m-%d %H:%M:%SZ"),
                    r.event.kind.as_str(),
                    r.event.mac,
                    r.event.ip,
                    r.reason
                );
            }
        }
        SpoolCommand::Requeue => println!("{} events back to pending", spool.requeue_rejected()?),
    }
    Ok(())
}

fn print_ignored(leases: &[IgnoredLease]) {
    println!(
        "{:<17}  {:<15}  {:<20}  {:>5}  REASON",
        "MAC", "IP", "LAST SEEN", "COUNT"
    );
    for u in leases {
        println!(
            "{:<17}  {:<15}  {:<20}  {:>5}  {}",
            u.event.mac,
            u.event.ip,
            u.event.received_at.format("%Y-%m-%d %H:%M:%SZ"),
            u.count,
            u.reason
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
