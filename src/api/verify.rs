//! Proof-of-possession checks shared by the count queries (一证通查 and its
//! linked-account variant). Failures are replicated state: three through
//! any mix of nodes lock the identity out for the policy's lockout time.

use oneid_storage::records::{HolderRecord, LockoutRecord};

use super::keyring::{Derived, Keyring};
use super::writer::Writer;
use super::ApiError;
use crate::command::{Command, Envelope, IdKey, KeyBinding, Outcome};
use crate::domain::{DomainError, Identity, Msisdn, Reason};
use crate::footprint;
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
    refuse_locked(reader.lockout(id_key)?)
}

/// Refuses a failure record that locks its identity out now.
fn refuse_locked(lockout: Option<LockoutRecord>) -> Result<Option<LockoutRecord>, ApiError> {
    if let Some(l) = &lockout {
        // A read may use the local clock: it decides nothing that replicas
        // must agree on, and the lockout itself was set from the log.
        if l.locked_until_ms > oneid_raft::replica::leader_stamp_ms() {
            return Err(locked_out(l.locked_until_ms));
        }
    }
    Ok(lockout)
}

/// Whose verification is being settled: an identity from the request, or
/// one read back from the state (the holder of a number).
pub enum Subject<'a> {
    Derived(&'a Identity),
    Stored(IdKey),
}

/// Records the outcome of a verification: a failure is counted (and may
/// lock the identity out); a success after earlier failures clears them.
/// Returns the error to answer a failure with.
pub async fn settle(
    keyring: &Keyring,
    writer: &Writer,
    subject: Subject<'_>,
    lockout: Option<LockoutRecord>,
    verified: bool,
    failure: &str,
) -> Result<(), ApiError> {
    let needed = !verified || lockout.is_some_and(|l| l.failures > 0);
    if !needed {
        return Ok(());
    }
    let (_, applied) = keyring
        .write(writer, || {
            let (key, keys) = match &subject {
                Subject::Derived(identity) => {
                    let k = keyring.identity(identity)?;
                    (k.key, k.binding)
                }
                Subject::Stored(key) => (*key, KeyBinding::Stored),
            };
            let command = if verified {
                Command::VerificationPassed(key)
            } else {
                Command::FailedVerification(key)
            };
            Ok(writer.execute(Envelope {
                keys,
                ..Envelope::internal(command)
            }))
        })
        .await?;
    if verified {
        return Ok(());
    }
    if let Outcome::LockedOut { until_ms } = applied.outcome {
        return Err(locked_out(until_ms));
    }
    Err(ApiError::Domain(DomainError::new(
        Reason::VerificationFailed,
        failure,
    )))
}

/// A request's identity, validated once, with the form audit trails show
/// it in (a short keyed-hash prefix under the current pepper version).
pub fn identity_subject(
    keyring: &Keyring,
    raw: Option<&pb::Identity>,
) -> (Result<Identity, DomainError>, String) {
    let (identity, _, subject) = keyed_subject(keyring, raw);
    (identity, subject)
}

/// [`identity_subject`] with the keys it derived, for a handler that goes
/// on to read under them (none when they could not be derived).
pub fn keyed_subject(
    keyring: &Keyring,
    raw: Option<&pb::Identity>,
) -> (Result<Identity, DomainError>, Option<Derived>, String) {
    match super::convert::identity(raw) {
        Ok(identity) => match keyring.derived(&identity) {
            Ok(d) => {
                let subject = crate::apply::id_subject(&d.keyed.key);
                (Ok(identity), Some(d), subject)
            }
            Err(_) => (Ok(identity), None, "identity (no key)".into()),
        },
        Err(e) => (Err(e), None, "invalid identity".into()),
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

/// Waits until reading the identity `derived` names, and the numbers in
/// `numbers`, is linearizable. Only their records are read, so the read
/// waits for the writes to them alone (a count during a bulk import skips
/// the import's entries ahead of it), unless a pepper rotation is under
/// way or the keys were derived under another version: commands may then
/// be applied under other keys than they carry, and the read waits for
/// every write before it. Rotations begin and end only by commands that
/// may touch anything, so the key state read here after the skipped
/// entries is the one they were applied under, or the read is past them.
pub async fn identity_barrier(
    writer: &Writer,
    reader: &Reader,
    derived: &Derived,
    numbers: &[&str],
) -> Result<(), ApiError> {
    let tokens: Vec<u64> = std::iter::once(footprint::identity(&derived.keyed.key))
        .chain(numbers.iter().map(|n| footprint::number(n)))
        .collect();
    if let Some(read_index) = writer.linearizable_for(&tokens).await? {
        if !derived.holds_in(&reader.key_state()?) {
            writer.wait_applied(read_index).await?;
        }
    }
    Ok(())
}

/// Waits until reading the number `msisdn` (its index entry, its card,
/// its linked accounts) and then its holder's lockout is linearizable:
/// first the writes to the number, then, once the number has named its
/// holder, the writes to that holder. Should a later write move the
/// number to another holder before the reads, that write touches the
/// number and so comes after the read index: a node that applied it had
/// applied everything before. During a pepper rotation a command may be
/// applied under other keys than it carries, so the read waits for every
/// write before it (see [`identity_barrier`]).
pub async fn number_barrier(
    writer: &Writer,
    reader: &Reader,
    msisdn: &str,
) -> Result<(), ApiError> {
    let Some(read_index) = writer
        .linearizable_for(&[footprint::number(msisdn)])
        .await?
    else {
        return Ok(());
    };
    if reader.key_state()?.rotating_to().is_some() {
        return writer.wait_applied(read_index).await;
    }
    if let Some(holder) = reader.number_holder(msisdn)? {
        writer
            .wait_touching(read_index, &[footprint::identity(&holder)])
            .await?;
    }
    Ok(())
}

/// The check both count queries make: `verify` must be an active card of
/// `identity`, the identity must not be locked out, and the outcome is
/// recorded toward the lockout. Returns the identity's card summary, read
/// in the same pass. `derived`: the identity's keys if the caller has them
/// already (derived before or after the read barrier, either is fine: they
/// are checked against the key state read with the data).
pub async fn possession(
    keyring: &Keyring,
    reader: &Reader,
    writer: &Writer,
    identity: &Identity,
    verify: &Msisdn,
    derived: Option<Derived>,
) -> Result<HolderRecord, ApiError> {
    let derived = derived.map_or_else(|| keyring.derived(identity), Ok)?;
    identity_barrier(writer, reader, &derived, &[verify.as_str()]).await?;
    let view = reader.verification(&derived.keyed.key, verify.as_str())?;
    let (lockout, verified, holder) = if derived.holds_in(&view.key_state) {
        (refuse_locked(view.lockout)?, view.active, view.holder)
    } else {
        // A rotation is moving identities (or finished one since the keys
        // were derived): find where this one lives, re-checking the move.
        keyring.read(identity, |at| {
            Ok((
                check_lockout(reader, at)?,
                reader.is_active_under(verify.as_str(), at)?,
                reader.holder(at)?,
            ))
        })?
    };
    settle(
        keyring,
        writer,
        Subject::Derived(identity),
        lockout,
        verified,
        "the verification number is not an active card under this identity",
    )
    .await?;
    Ok(holder)
}
