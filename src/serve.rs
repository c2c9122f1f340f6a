//! `racklift serve`: the NetBox client, the controller and the HTTP server, started together
//! and stopped together on SIGTERM or Ctrl-C.

use std::sync::Arc;

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
}

pub async fn serve(config: Config) -> Result<(), ServeError> {
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
        return run(store, validation, config).await;
    }
    run(client, validation, config).await
}

async fn run<S: DeviceStore>(
    store: S,
    validation: Option<ValidationCallback>,
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
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Http)?;
    tracing::info!(%addr, netbox = %config.netbox.url, path = %config.webhook.path, max_connections = config.http.max_connections, "racklift serving");
    let sessions = controller.sessions().clone();
    let controller_task = tokio::spawn(controller.run());
    crate::http::serve(listener, app, &config.http, shutdown_signal()).await;
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
