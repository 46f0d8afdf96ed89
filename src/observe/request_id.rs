//! The id that ties every log line of one gRPC request together. A caller
//! may bring its own in the `x-request-id` header (a gateway or client that
//! already logs one); anything unusable is replaced rather than refused,
//! because a request must not fail over its log label.

use http::{HeaderMap, HeaderValue};

pub const HEADER: &str = "x-request-id";
/// Longest caller-supplied id kept; a longer one would bloat every log line.
pub const MAX_LEN: usize = 128;

/// The caller's id when it is usable, else a fresh one.
pub fn pick(headers: &HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| usable(s))
        .map(str::to_owned)
        .unwrap_or_else(generate)
}

/// The id as a response header value; every id [`pick`] returns is one.
pub fn header_value(id: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(id).ok()
}

/// Non-empty, bounded, visible ASCII only: nothing that could split or
/// forge a log line.
fn usable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// 64 random bits: unique enough to find one request in a day of logs.
fn generate() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(id).expect("header value"));
        h
    }

    #[test]
    fn a_usable_caller_id_is_kept() {
        assert_eq!(pick(&with("abc-123")), "abc-123");
        let longest = "x".repeat(MAX_LEN);
        assert_eq!(pick(&with(&longest)), longest);
    }

    #[test]
    fn missing_or_unusable_ids_are_replaced() {
        for bad in ["", "has space", "tab\there", &"x".repeat(MAX_LEN + 1)] {
            let id = pick(&with(bad));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 16, "{id}");
            assert!(usable(&id));
        }
        let a = pick(&HeaderMap::new());
        let b = pick(&HeaderMap::new());
        assert!(usable(&a) && a != b, "{a} {b}");
        assert!(header_value(&a).is_some());
        // Non-ASCII bytes are not text to the header API either.
        let mut h = HeaderMap::new();
        h.insert(
            HEADER,
            HeaderValue::from_bytes(b"caf\xc3\xa9").expect("bytes"),
        );
        assert_eq!(pick(&h).len(), 16);
    }
}
