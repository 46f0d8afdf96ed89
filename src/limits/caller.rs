//! Who a request comes from, for per-caller limits.
//!
//! With TLS the caller is its certificate (`carrier:CMCC [CN=...]`), so one
//! query service is one caller wherever it connects from. Without a
//! certificate (`--insecure`, the HTTP gateway) it is the peer's IP address
//! (the port changes with every connection, so it is left out).

use std::net::SocketAddr;

use tonic::transport::server::TcpConnectInfo;
use tonic::Request;

use crate::security::Principal;

/// Requests whose peer is unknown (in-process calls) share this key.
pub const UNKNOWN_CALLER: &str = "unknown";

pub fn caller_key<T>(req: &Request<T>) -> String {
    if let Some(who @ Principal::Client { .. }) = req.extensions().get::<Principal>() {
        return who.to_string();
    }
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

    #[test]
    fn a_certificate_outranks_the_address() {
        let mut req = with_peer(
            Request::new(()),
            Some("10.1.2.3:5000".parse().expect("addr")),
        );
        req.extensions_mut().insert(Principal::Operator);
        assert_eq!(
            caller_key(&req),
            "10.1.2.3",
            "no certificate, keyed by address"
        );
        req.extensions_mut().insert(Principal::Client {
            role: crate::security::Role::Query,
            subject: "CN=query-a".into(),
        });
        let key = caller_key(&req);
        assert!(key.contains("CN=query-a"), "{key}");
    }
}
