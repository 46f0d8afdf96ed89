//! Proof-of-possession checks shared by the count queries (一证通查 and its
//! linked-account variant). Failures are replicated state: three through
//! any mix of nodes lock the identity out for the policy's lockout time.

use oneid_storage::records::LockoutRecord;

use super::writer::Writer;
use super::ApiError;
use crate::command::{Command, Envelope, IdKey, Outcome};
use crate::domain::{DomainError, Msisdn, Reason};
use crate::idkey::IdHasher;
use crate::pb;
use crate::reader::Reader;

fn locked_out(until_ms: u64) -> ApiError {
    ApiError::Domain(DomainError::new(
        Reason::LockedOut,
        format!("too many failed verifications; retry after {until_ms} ms since the epoch"),
    ))
}

/// Refuses an identity that is locked out now; returns its failure record
/// for [`settle`].
pub fn check_lockout(reader: &Reader, id_key: &IdKey) -> Result<Option<LockoutRecord>, ApiError> {
    let lockout = reader.lockout(id_key)?;
    if let Some(l) = &lockout {
        // A read may use the local clock: it decides nothing that replicas
        // must agree on, and the lockout itself was set from the log.
        if l.locked_until_ms > oneid_raft::replica::leader_stamp_ms() {
            return Err(locked_out(l.locked_until_ms));
        }
    }
    Ok(lockout)
}

/// Records the outcome of a verification: a failure is counted (and may
/// lock the identity out); a success after earlier failures clears them.
/// Returns the error to answer a failure with.
pub async fn settle(
    writer: &Writer,
    id_key: IdKey,
    lockout: Option<LockoutRecord>,
    verified: bool,
    failure: &str,
) -> Result<(), ApiError> {
    if verified {
        if lockout.is_some_and(|l| l.failures > 0) {
            writer
                .execute(Envelope::internal(Command::VerificationPassed(id_key)))
                .await?;
        }
        return Ok(());
    }
    let (_, applied) = writer
        .execute(Envelope::internal(Command::FailedVerification(id_key)))
        .await?;
    if let Outcome::LockedOut { until_ms } = applied.outcome {
        return Err(locked_out(until_ms));
    }
    Err(ApiError::Domain(DomainError::new(
        Reason::VerificationFailed,
        failure,
    )))
}

/// The keyed hash of a request's identity, validated once, with the form
/// audit trails show it in (a short keyed-hash prefix).
pub fn identity_key(
    hasher: &IdHasher,
    raw: Option<&pb::Identity>,
) -> (Result<IdKey, DomainError>, String) {
    match super::convert::identity(raw) {
        Ok(identity) => {
            let key = hasher.id_key(&identity);
            (Ok(key), crate::apply::id_subject(&key))
        }
        Err(e) => (Err(e), "invalid identity".into()),
    }
}

/// A number as audit trails show it: masked.
pub fn msisdn_subject(raw: &str) -> String {
    Msisdn::mask(raw).unwrap_or_else(|| "invalid number".into())
}

/// A caller-supplied name, bounded for the trail.
pub fn short(raw: &str) -> String {
    raw.chars().filter(|c| !c.is_control()).take(32).collect()
}

/// The check both count queries make: `verify` must be an active card under
/// `id_key`, the identity must not be locked out, and the outcome is
/// recorded toward the lockout.
pub async fn possession(
    reader: &Reader,
    writer: &Writer,
    id_key: IdKey,
    verify: &Msisdn,
) -> Result<(), ApiError> {
    writer.linearizable().await?;
    let lockout = check_lockout(reader, &id_key)?;
    let verified = reader.is_active_under(verify.as_str(), &id_key)?;
    settle(
        writer,
        id_key,
        lockout,
        verified,
        "the verification number is not an active card under this identity",
    )
    .await
}
