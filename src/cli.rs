//! The command line: subcommands, and the glue from each to the module that does the work.
//! The one place `anyhow` is used.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, Config};
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
        let config = Config::load(&self.config)?;
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        match self.command {
            Command::Serve => runtime.block_on(crate::serve::serve(config))?,
            Command::CheckConfig => println!("{config:#?}"),
            Command::Netbox {
                command: NetboxCommand::Apply { check, from },
            } => return runtime.block_on(apply(&config, check, from)),
        }
        Ok(ExitCode::SUCCESS)
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
        webhook_secret: &config.webhook.secret,
        sites: &config.scope.sites,
    };
    let report = netbox::apply::apply(&client, &definitions, &vars, check).await?;
    for change in &report.changes {
        println!("{}{change}", if check { "would " } else { "" });
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
