//! Who a request comes from, for per-caller limits.
//!
//! For now the caller is the peer's IP address (the port changes with every
//! connection, so it is left out). Once clients present certificates, the
//! certificate's principal replaces this: change only [`caller_key`].

use tonic::Request;

/// Requests whose peer is unknown (in-process calls) share this key.
pub const UNKNOWN_CALLER: &str = "unknown";

pub fn caller_key<T>(req: &Request<T>) -> String {
    match req.remote_addr() {
        Some(addr) => addr.ip().to_string(),
        None => UNKNOWN_CALLER.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::transport::server::TcpConnectInfo;

    #[test]
    fn keyed_by_ip_not_port() {
        let from = |addr: &str| {
            let mut r = Request::new(());
            r.extensions_mut().insert(TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(addr.parse().expect("addr")),
            });
            caller_key(&r)
        };
        assert_eq!(from("10.1.2.3:5000"), "10.1.2.3");
        assert_eq!(from("10.1.2.3:5000"), from("10.1.2.3:6000"));
        assert_ne!(from("10.1.2.3:5000"), from("10.1.2.4:5000"));
        assert_eq!(caller_key(&Request::new(())), UNKNOWN_CALLER);
    }
}
