//! Who a request comes from, for per-caller limits.
//!
//! For now the caller is the peer's IP address (the port changes with every
//! connection, so it is left out). Once clients present certificates, the
//! certificate's principal replaces this: change only [`caller_key`].

use std::net::SocketAddr;

use tonic::transport::server::TcpConnectInfo;
use tonic::Request;

/// Requests whose peer is unknown (in-process calls) share this key.
pub const UNKNOWN_CALLER: &str = "unknown";

pub fn caller_key<T>(req: &Request<T>) -> String {
    match req.remote_addr() {
        Some(addr) => addr.ip().to_string(),
        None => UNKNOWN_CALLER.to_string(),
    }
}

/// A request made in-process on behalf of `peer` (the HTTP gateway), so
/// [`caller_key`] sees the same caller as over gRPC.
pub fn with_peer<T>(mut req: Request<T>, peer: Option<SocketAddr>) -> Request<T> {
    if let Some(addr) = peer {
        req.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(addr),
        });
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_by_ip_not_port() {
        let from = |addr: &str| {
            caller_key(&with_peer(
                Request::new(()),
                Some(addr.parse().expect("addr")),
            ))
        };
        assert_eq!(from("10.1.2.3:5000"), "10.1.2.3");
        assert_eq!(from("10.1.2.3:5000"), from("10.1.2.3:6000"));
        assert_ne!(from("10.1.2.3:5000"), from("10.1.2.4:5000"));
        assert_eq!(
            caller_key(&with_peer(Request::new(()), None)),
            UNKNOWN_CALLER
        );
    }
}
