//! `racklift serve`: the NetBox client, the controller and the HTTP server, started together
//! and stopped together — on SIGTERM or Ctrl-C for the binary, when the caller says for
//! [`run`] (the integration tests start racklift in-process on a listener of their own).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::controller::Controller;
use crate::http::{AppState, Limits, ValidationCallback, router};
use crate::netbox::{ClientSetupError, DeviceStore, NetBoxClient};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Client(#[from] ClientSetupError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the address racklift listens on")]
    Http(#[source] std::io::Error),
    /// Test-only (feature `test-hooks`): see [`INHERIT_LISTENER_VAR`].
    #[cfg(all(unix, feature = "test-hooks"))]
    #[error("{INHERIT_LISTENER_VAR} is set, but stdin is not a listening TCP socket")]
    Inherited(#[source] std::io::Error),
}

/// Test-only (feature `test-hooks`): when this is set, `racklift serve` takes its stdin as its
/// listening socket instead of binding `listen`. The integration tests that must SIGKILL
/// racklift bind `127.0.0.1:0` once and hand the socket to every racklift process they start:
/// its port is known before racklift starts (the webhook NetBox calls names it), it is the
/// same after a restart, and no other process can take it in between. (systemd's
/// `StandardInput=socket` hands a socket over the same way.)
#[cfg(all(unix, feature = "test-hooks"))]
pub const INHERIT_LISTENER_VAR: &str = "RACKLIFT_TEST_LISTENER_ON_STDIN";

/// `racklift serve`: listens on `config.listen` and serves until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let listener = listen(&config).await?;
    run(listener, shutdown_signal(), config).await
}

async fn listen(config: &Config) -> Result<TcpListener, ServeError> {
    #[cfg(all(unix, feature = "test-hooks"))]
    if std::env::var_os(INHERIT_LISTENER_VAR).is_some() {
        return inherited_listener();
    }
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })
}

#[cfg(all(unix, feature = "test-hooks"))]
fn inherited_listener() -> Result<TcpListener, ServeError> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(ServeError::Inherited)?;
    let listener = std::net::TcpListener::from(fd);
    // Fails on anything but a socket: a terminal or a file as stdin is a mistake, said here.
    listener.local_addr().map_err(ServeError::Inherited)?;
    listener
        .set_nonblocking(true)
        .map_err(ServeError::Inherited)?;
    TcpListener::from_std(listener).map_err(ServeError::Inherited)
}

/// Serves on `listener` until `shutdown` completes, then lets the open requests finish and
/// stops the controller. The caller binds, so a test knows the port before racklift starts.
///
/// With the feature `test-hooks` and `RACKLIFT_TEST_PAUSE_DIR` set, device writes go through
/// the test-only pause points (src/netbox/pause.rs).
pub async fn run(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    config: Config,
) -> Result<(), ServeError> {
    let client = NetBoxClient::new(&config.netbox)?;
    config.bmc.warn_unverified();
    let validation = config.validation.token.clone().map(|token| {
        ValidationCallback::new(
            client.clone(),
            config.scope.clone(),
            token,
            &config.validation,
        )
    });
    if validation.is_none() {
        tracing::warn!("validation.token is not set: POST /v1/validation refuses every report");
    }
    #[cfg(feature = "test-hooks")]
    if let Some(dir) = std::env::var_os("RACKLIFT_TEST_PAUSE_DIR") {
        tracing::warn!("test-only pause points are ON ({})", dir.to_string_lossy());
        let store = crate::netbox::PausingStore::new(client, dir.into());
        return run_with(store, validation, listener, shutdown, config).await;
    }
    run_with(client, validation, listener, shutdown, config).await
}

async fn run_with<S: DeviceStore>(
    store: S,
    validation: Option<ValidationCallback>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    config: Config,
) -> Result<(), ServeError> {
    let controller = Arc::new(Controller::new(
        store,
        config.reconciler.clone(),
        &config.scope,
        config.bmc.clone(),
    ));
    let state = AppState::new(
        controller.queue().clone(),
        config.webhook_secret()?.clone(),
        validation,
        controller.own_writes().clone(),
    );
    let app = router(
        state,
        &Limits {
            webhook_path: config.webhook.path.clone(),
            webhook_body: config.webhook.body_limit_bytes,
            report_body: config.validation.body_limit_bytes,
        },
    );
    let addr = listener.local_addr().map_err(ServeError::Http)?;
    tracing::info!(%addr, netbox = %config.netbox.url, path = %config.webhook.path, max_connections = config.http.max_connections, "racklift serving");
    let sessions = controller.sessions().clone();
    let controller_task = tokio::spawn(controller.run());
    crate::http::serve(listener, app, &config.http, shutdown).await;
    controller_task.abort();
    // Its reconciles are dropped before their sessions are deleted.
    let _ = controller_task.await;
    // The BMCs cap their sessions: delete the ones kept between reconciles rather than leave
    // them to the BMCs' timeouts.
    sessions.close_all().await;
    tracing::info!("racklift stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
