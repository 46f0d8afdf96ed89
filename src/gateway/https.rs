//! The HTTP/JSON gateway over HTTPS with client certificates
//! (`node.gateway_addr`), for a node with TLS on. The handshake asks for a
//! certificate signed by the cluster CA, as the gRPC port does; the
//! certificate read from it rides along with every request of the
//! connection, so the gateway admits each request by role and revocation
//! exactly as the gRPC server admits a call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::PeerCertificate;
use crate::security::principal::Certified;

/// A client that has not finished its handshake by then is dropped, so
/// idle sockets cannot pile up.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` over TLS with `tls` until `stop` resolves.
/// Connections already open when it does are left to the caller to end
/// (the node exits).
pub async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    app: Router,
    stop: impl std::future::Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                tokio::spawn(connection(acceptor.clone(), tcp, peer, app.clone()));
            }
            // Out of file descriptors and the like: the listener is still
            // good, so wait a little instead of spinning or giving up.
            Err(e) => {
                tracing::warn!(error = %e, "gateway accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(acceptor: TlsAcceptor, tcp: TcpStream, peer: SocketAddr, app: Router) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "gateway TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "gateway TLS handshake timed out");
            return;
        }
    };
    let cert = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(der) => Certified::from_der(der),
        None => Err("no client certificate".into()),
    };
    let app = app
        .layer(Extension(PeerCertificate(cert)))
        .layer(Extension(ConnectInfo(peer)));
    let mut server = auto::Builder::new(TokioExecutor::new());
    // With a timer hyper drops an HTTP/1 client that has not sent its
    // request headers within 30 s, so idle connections cannot pile up
    // after the handshake either.
    server.http1().timer(TokioTimer::new());
    server.http2().timer(TokioTimer::new());
    let served = server
        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "gateway connection ended");
    }
}
