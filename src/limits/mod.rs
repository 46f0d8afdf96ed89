//! Abuse limits enforced on this node alone: a per-caller query rate (an
//! enumeration attack tries many IDs or numbers), and a bound on requests
//! served at once. Neither touches raft; the replicated lockout after failed
//! verifications (`domain::rules`) is a separate, cluster-wide defence.

pub mod caller;
pub mod rate;
pub mod shed;

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
}

impl QueryLimit {
    pub fn new(cfg: RateConfig) -> QueryLimit {
        QueryLimit {
            limiter: Arc::new(Mutex::new(RateLimiter::new(cfg))),
        }
    }

    /// Spends one of the caller's queries, or refuses with how long to wait.
    pub fn check<T>(&self, req: &Request<T>) -> Result<(), ApiError> {
        let caller = caller_key(req);
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
