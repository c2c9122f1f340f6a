//! The HTTP server's accept loop: at most `http.max_connections` connections open at once, and
//! none held by a client that is slow to send its request headers.
//!
//! Why not `axum::serve`: it gives hyper no timer, and hyper's 30 s `header_read_timeout`
//! needs one, so under `axum::serve` a client sending a header byte now and then (or nothing
//! at all) holds its connection for ever; with a connection cap, a few hundred of them would
//! lock everyone out. Here each connection is served by hyper's HTTP/1 server with a Tokio
//! timer and `header_read_timeout`, which hyper starts whenever it waits for a request head:
//! on a new connection and on a kept-alive one between requests alike. A slow *body* is the
//! handler's to bound (the validation callback answers 408). HTTP/1 only: NetBox's webhooks
//! and the validation script's curl speak HTTP/1.1.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service;

use crate::config::HttpConfig;

/// Serves `app` on `listener` until `shutdown` completes, then waits for the open connections
/// to finish their requests. Handlers can extract `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &HttpConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut make_service: IntoMakeServiceWithConnectInfo<Router, SocketAddr> =
        app.into_make_service_with_connect_info::<SocketAddr>();
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // The permit first: while every one is taken, new connections wait in the kernel's
        // accept queue instead of being accepted and starved.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = match make_service.call(peer).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        // The router takes hyper's `Request<Incoming>` as it is (it is generic over the body).
        let service = TowerToHyperService::new(service);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A failed `accept`: a connection that went away before it was accepted is nothing; anything
/// else (out of file descriptors, say) is logged and the loop pauses a moment so it does not
/// spin on it, as `axum::serve` does.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
