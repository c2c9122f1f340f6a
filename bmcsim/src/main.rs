//! bmcsim: many simulated Redfish BMCs in one process, each serving a captured vendor tree with
//! real semantics (auth, sessions, ETags, PATCH validation, power), plus fault injection and a
//! control API for tests. See README.md.

mod admin;
mod config;
mod error;
mod etag;
mod patch;
mod redfish;
mod server;
mod state;
mod tls;
mod tree;

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::state::Bmc;
use crate::tree::Tree;

#[derive(Debug, Parser)]
#[command(version, about = "Simulated Redfish BMCs over captured trees")]
struct Cli {
    /// The YAML config (see README.md).
    #[arg(long)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "bmcsim=info".into()),
        )
        .init();
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.config)?;
    let trees = load_trees(&config).await?;

    // Bind everything first, so the line printed below only names ports that answer.
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding admin {}", config.admin_listen))?;
    let mut listeners = Vec::with_capacity(config.bmcs.len());
    for bmc in &config.bmcs {
        let listener = TcpListener::bind(bmc.listen)
            .await
            .with_context(|| format!("binding {} on {}", bmc.name, bmc.listen))?;
        listeners.push(listener);
    }

    let ips: Vec<_> = config.bmcs.iter().map(|b| b.listen.ip()).collect();
    let ca = tls::make(&ips)?;
    std::fs::create_dir_all(&config.ca_dir)
        .with_context(|| format!("creating {}", config.ca_dir.display()))?;
    let ca_path = config.ca_dir.join("ca.pem");
    std::fs::write(&ca_path, &ca.ca_pem)
        .with_context(|| format!("writing {}", ca_path.display()))?;
    let acceptor = TlsAcceptor::from(ca.server_config.clone());

    let mut bmcs = HashMap::new();
    let mut addresses = BTreeMap::new();
    for (bmc_config, listener) in config.bmcs.iter().zip(listeners) {
        let addr = listener.local_addr()?;
        let tree = trees[&bmc_config.tree].clone();
        let bmc = Arc::new(Bmc::new(bmc_config, addr, tree));
        let tls = bmc.tls.then(|| acceptor.clone());
        tokio::spawn(server::serve_bmc(listener, bmc.clone(), tls));
        addresses.insert(bmc.name.clone(), addr.to_string());
        bmcs.insert(bmc.name.clone(), bmc);
    }
    let admin_addr = admin_listener.local_addr()?;
    let app = admin::router(Arc::new(bmcs));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(admin_listener, app).await {
            tracing::error!(%error, "admin server stopped");
        }
    });

    let ready = serde_json::json!({"admin": admin_addr.to_string(), "bmcs": addresses});
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(
        bmcs = addresses.len(),
        trees = trees.len(),
        admin = %admin_addr,
        ca = %ca_path.display(),
        "ready"
    );

    wait_for_signal().await?;
    tracing::info!("stopping");
    Ok(())
}

/// Loads each distinct tree once (in parallel: loading parses and hashes every resource), keyed
/// by the path as configured, so BMCs naming the same directory share one copy.
async fn load_trees(config: &Config) -> anyhow::Result<HashMap<PathBuf, Arc<Tree>>> {
    let mut by_canonical: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
    for bmc in &config.bmcs {
        let canonical = bmc
            .tree
            .canonicalize()
            .with_context(|| format!("bmc {}: tree {}", bmc.name, bmc.tree.display()))?;
        let names = by_canonical.entry(canonical).or_default();
        if !names.contains(&bmc.tree) {
            names.push(bmc.tree.clone());
        }
    }
    let mut tasks = Vec::new();
    for (canonical, names) in by_canonical {
        tasks.push(tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let tree = Tree::load(&canonical)?;
            tracing::info!(
                tree = %tree.dir.display(),
                resources = tree.len(),
                ms = started.elapsed().as_millis() as u64,
                "tree loaded"
            );
            anyhow::Ok((Arc::new(tree), names))
        }));
    }
    let mut trees = HashMap::new();
    for task in tasks {
        let (tree, names) = task.await??;
        for name in names {
            trees.insert(name, tree.clone());
        }
    }
    Ok(trees)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("Ctrl-C handler")?,
    }
    Ok(())
}
