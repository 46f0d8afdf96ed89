//! One error type for the API layer and its one, exhaustive conversion to
//! `tonic::Status`. Domain rejections carry a google.rpc.ErrorInfo whose
//! `reason` is the stable code clients switch on.

use std::collections::HashMap;

use oneid_raft::ReplicaError;
use oneid_storage::StorageError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{DomainError, Reason};

pub const ERROR_DOMAIN: &str = "oneid.v1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A rule said no (bad input or a business rule); nothing was changed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// No leader, shutting down, or the leader refused before proposing:
    /// nothing was applied, retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The write may or may not have been applied; retry with the same
    /// request_id to learn the outcome.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// A membership change refused (not the leader, unknown node, ...).
    #[error("membership change refused: {0}")]
    Membership(String),
    /// A leadership transfer refused or unfinished (not the leader, no
    /// caught-up voter, target did not win in time).
    #[error("leadership transfer refused: {0}")]
    Transfer(String),
    /// The node's stored data failed a check; it refuses to answer from it.
    #[error("stored data failed an integrity check: {0}")]
    Corrupt(String),
    #[error("internal: {0}")]
    Internal(String),
    /// This caller spent its query allowance on this node; retry after the
    /// delay (sent as a google.rpc.RetryInfo).
    #[error("too many queries from this caller; retry in {retry_after:?}")]
    RateLimited { retry_after: std::time::Duration },
    /// The node is serving its configured maximum of client requests.
    #[error("the node is serving its maximum of {0} client requests at once; retry shortly")]
    Overloaded(usize),
    /// The caller presented no usable identity.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller's role may not call this RPC at all.
    #[error("permission denied: {0}")]
    WrongRole(String),
    /// The role may call the RPC, but not for another carrier or platform.
    #[error("permission denied: {0}")]
    NotYours(String),
    /// This node cannot derive id keys under the version the registry needs.
    #[error(transparent)]
    Pepper(#[from] crate::idkey::PepperError),
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        if e.is_corruption() {
            tracing::error!("integrity check failed: {e}");
            ApiError::Corrupt(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<ReplicaError> for ApiError {
    fn from(e: ReplicaError) -> Self {
        match e {
            ReplicaError::NoLeader
            | ReplicaError::NoQuorum(_)
            | ReplicaError::ShuttingDown
            | ReplicaError::Rejected(_) => ApiError::Unavailable(e.to_string()),
            ReplicaError::Indeterminate(_) | ReplicaError::Timeout(_) => {
                ApiError::Indeterminate(e.to_string())
            }
            ReplicaError::Membership(m) => ApiError::Membership(m),
            ReplicaError::Transfer(m) => ApiError::Transfer(m),
            ReplicaError::Fatal(m) => ApiError::Internal(m),
        }
    }
}

impl ApiError {
    /// A read barrier's failure. A read changes nothing, so running out of
    /// time waiting for the barrier or this node's apply is UNAVAILABLE
    /// (retry), not OUTCOME_UNKNOWN as it is for a write.
    pub fn from_read_barrier(e: ReplicaError) -> ApiError {
        match e {
            ReplicaError::Timeout(what) => {
                ApiError::Unavailable(format!("linearizable read: timed out waiting for {what}"))
            }
            e => e.into(),
        }
    }
}

/// The gRPC code of each domain reason, in one place.
pub fn code_of(reason: Reason) -> Code {
    match reason {
        Reason::InvalidArgument
        | Reason::InvalidId
        | Reason::InvalidMsisdn
        | Reason::InvalidCarrier
        | Reason::InvalidProvince => Code::InvalidArgument,
        Reason::LimitExceeded
        | Reason::AlreadyCancelled
        | Reason::IllegalTransition
        | Reason::Restricted
        | Reason::DisputeClosed => Code::FailedPrecondition,
        Reason::NumberInUse | Reason::DisputeOpen => Code::AlreadyExists,
        Reason::LockedOut => Code::ResourceExhausted,
        Reason::KeyRotated => Code::Aborted,
        Reason::NotFound => Code::NotFound,
        Reason::WrongCarrier | Reason::VerificationFailed => Code::PermissionDenied,
    }
}

fn with_reason(code: Code, reason: &str, message: String) -> Status {
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, message, details)
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::Domain(d) => with_reason(code_of(d.reason), d.reason.as_str(), d.to_string()),
            ApiError::Unavailable(m) => with_reason(Code::Unavailable, "UNAVAILABLE", m),
            ApiError::Indeterminate(m) => with_reason(Code::Unavailable, "OUTCOME_UNKNOWN", m),
            ApiError::Membership(m) => with_reason(Code::FailedPrecondition, "MEMBERSHIP", m),
            ApiError::Transfer(m) => {
                with_reason(Code::FailedPrecondition, "LEADERSHIP_TRANSFER", m)
            }
            ApiError::Corrupt(m) => with_reason(Code::DataLoss, "DATA_CORRUPTION", m),
            ApiError::Internal(m) => with_reason(Code::Internal, "INTERNAL", m),
            ApiError::RateLimited { retry_after } => {
                let message = ApiError::RateLimited { retry_after }.to_string();
                let mut details =
                    ErrorDetails::with_error_info("RATE_LIMITED", ERROR_DOMAIN, HashMap::new());
                details.set_retry_info(Some(retry_after));
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            ApiError::Overloaded(max) => with_reason(
                Code::ResourceExhausted,
                "OVERLOADED",
                ApiError::Overloaded(max).to_string(),
            ),
            ApiError::Unauthenticated(m) => {
                with_reason(Code::Unauthenticated, "UNAUTHENTICATED", m)
            }
            ApiError::WrongRole(m) => with_reason(Code::PermissionDenied, "WRONG_ROLE", m),
            ApiError::NotYours(m) => with_reason(Code::PermissionDenied, "PERMISSION_DENIED", m),
            ApiError::Pepper(e) => {
                tracing::error!("{e}");
                with_reason(Code::FailedPrecondition, "PEPPER_VERSION", e.to_string())
            }
        }
    }
}

/// The ErrorInfo reason of a status, if it has one (for clients and tests).
pub fn reason_of(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_runs_out_of_time_is_unavailable_not_outcome_unknown() {
        let read: Status = ApiError::from_read_barrier(ReplicaError::Timeout("apply")).into();
        assert_eq!(read.code(), Code::Unavailable);
        assert_eq!(reason_of(&read).as_deref(), Some("UNAVAILABLE"));
        assert!(read.message().contains("waiting for apply"), "{read:?}");
        let write: Status = ApiError::from(ReplicaError::Timeout("apply")).into();
        assert_eq!(reason_of(&write).as_deref(), Some("OUTCOME_UNKNOWN"));
        let quorum: Status =
            ApiError::from_read_barrier(ReplicaError::NoQuorum("acked by {1}".into())).into();
        assert_eq!(reason_of(&quorum).as_deref(), Some("UNAVAILABLE"));
    }

    #[test]
    fn every_reason_maps_and_round_trips_through_status() {
        for reason in Reason::ALL {
            let status: Status = ApiError::Domain(DomainError::new(reason, "why")).into();
            assert_eq!(status.code(), code_of(reason));
            assert_eq!(reason_of(&status).as_deref(), Some(reason.as_str()));
            assert!(status.message().contains("why"));
        }
    }

    #[test]
    fn rate_limited_is_resource_exhausted_with_retry_info() {
        let retry_after = std::time::Duration::from_millis(1500);
        let status: Status = ApiError::RateLimited { retry_after }.into();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(reason_of(&status).as_deref(), Some("RATE_LIMITED"));
        let details = status.get_error_details();
        let retry = details.retry_info().expect("RetryInfo");
        assert_eq!(retry.retry_delay, Some(retry_after));
        let overloaded: Status = ApiError::Overloaded(8).into();
        assert_eq!(overloaded.code(), Code::ResourceExhausted);
        assert_eq!(reason_of(&overloaded).as_deref(), Some("OVERLOADED"));
    }

    #[test]
    fn corruption_is_data_loss() {
        let e = StorageError::Corrupt {
            cf: "sm_data",
            key: "00".into(),
            reason: "crc".into(),
        };
        let status: Status = ApiError::from(e).into();
        assert_eq!(status.code(), Code::DataLoss);
    }
}
