//! One accept loop per BMC listener: optional TLS, HTTP/1.1 (hyper), and the faults that act
//! before the Redfish service sees a request (latency, injected status, dropped connections).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::error::RedfishError;
use crate::redfish;
use crate::state::{Bmc, Prelude};

/// Returned to hyper to make it close the connection without writing an answer (the `drop`
/// fault).
#[derive(Debug)]
struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

pub async fn serve_bmc(listener: TcpListener, bmc: Arc<Bmc>, tls: Option<TlsAcceptor>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Typically EMFILE under a burst: back off instead of spinning.
                tracing::warn!(bmc = %bmc.name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(Box::pin(connection(stream, bmc.clone(), tls.clone())));
    }
}

async fn connection(stream: TcpStream, bmc: Arc<Bmc>, tls: Option<TlsAcceptor>) {
    let name = bmc.name.clone();
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let bmc = bmc.clone();
        async move { serve_request(bmc, request).await }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let result = match tls {
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => {
                builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
            }
            Err(error) => {
                tracing::debug!(bmc = %name, %error, "TLS handshake failed");
                return;
            }
        },
        None => {
            builder
                .serve_connection(TokioIo::new(stream), service)
                .await
        }
    };
    if let Err(error) = result {
        tracing::debug!(bmc = %name, %error, "connection ended");
    }
}

async fn serve_request(
    bmc: Arc<Bmc>,
    request: hyper::Request<Incoming>,
) -> Result<Response, Dropped> {
    let (prelude, latency) = bmc.begin_request();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match prelude {
        Prelude::Drop => Err(Dropped),
        Prelude::Fail(status) => Ok(if status == StatusCode::SERVICE_UNAVAILABLE {
            RedfishError::unavailable().into_response()
        } else {
            RedfishError::injected(status).into_response()
        }),
        Prelude::Proceed => Ok(redfish::handle(bmc, request.map(Body::new)).await),
    }
}
