//! Abuse limits enforced on this node alone: a per-caller query rate (an
//! enumeration attack tries many IDs or numbers), and a bound on requests
//! served at once. Neither touches raft; the replicated lockout after failed
//! verifications (`domain::rules`) is a separate, cluster-wide defence.

pub mod caller;
pub mod rate;
pub mod shed;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tonic::Request;

use crate::api::ApiError;
pub use caller::caller_key;
pub use rate::{RateConfig, RateLimiter};

/// The per-caller query limit, shared by every query service of a node.
#[derive(Clone)]
pub struct QueryLimit {
    limiter: Arc<Mutex<RateLimiter>>,
    unlimited: Arc<HashSet<String>>,
}

impl QueryLimit {
    /// `unlimited`: caller keys the rate does not apply to.
    pub fn new(cfg: RateConfig, unlimited: impl IntoIterator<Item = String>) -> QueryLimit {
        QueryLimit {
            limiter: Arc::new(Mutex::new(RateLimiter::new(cfg))),
            unlimited: Arc::new(unlimited.into_iter().collect()),
        }
    }

    /// Spends one of the caller's queries, or refuses with how long to wait.
    pub fn check<T>(&self, req: &Request<T>) -> Result<(), ApiError> {
        let caller = caller_key(req);
        if self.unlimited.contains(&caller) {
            return Ok(());
        }
        // A panic while holding the lock leaves the buckets consistent (each
        // update is a few arithmetic steps), so a poisoned lock is reused.
        let mut limiter = self
            .limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        limiter
            .acquire(&caller, Instant::now())
            .map_err(|retry_after| ApiError::RateLimited { retry_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_callers_are_never_refused_and_others_are() {
        let limit = QueryLimit::new(
            RateConfig {
                per_second: 0.001,
                burst: 1,
                max_callers: 4,
            },
            ["10.0.0.1".to_string()],
        );
        let from = |ip: &str| {
            caller::with_peer(
                Request::new(()),
                Some(format!("{ip}:1000").parse().expect("addr")),
            )
        };
        for _ in 0..10 {
            assert!(limit.check(&from("10.0.0.1")).is_ok());
        }
        assert!(limit.check(&from("10.0.0.2")).is_ok());
        assert!(matches!(
            limit.check(&from("10.0.0.2")),
            Err(ApiError::RateLimited { .. })
        ));
    }
}
