//! What each replicated command does to the registry state. Everything here
//! is deterministic: it reads only the command, the stored state and the
//! replicated clock `now_ms`, and writes through a [`Tx`] that the state
//! machine commits as one RocksDB batch.

mod audit;
mod cards;
mod dedup;
mod disputes;
mod links;
#[cfg(test)]
mod model_tests;
mod outbox;
#[cfg(test)]
mod real_name_tests;
mod rekey;
#[cfg(test)]
mod rekey_tests;
#[cfg(test)]
mod rules_tests;
mod tx;

pub use audit::id_subject;
pub use dedup::{aged_ids as aged_request_ids, first_outcome, REQUEST_ID_RETENTION_MS};
pub use rekey::state as key_state;
pub use tx::Tx;

use oneid_storage::keys;
use oneid_storage::records::{
    LockoutRecord, PolicyRecord, PolicyValues, RestrictionRecord, RulesRecord, StatDelta,
    LOCKOUT_V, POLICY_V, RESTRICTION_V, RULES_V,
};
use oneid_storage::schema::sm_cf_name;
use oneid_storage::{codec, StorageError};

use crate::command::{
    Applied, Command, Envelope, Outcome, CALLER_VERSION, COMMAND_VERSION, KEYED_VERSION,
};
use crate::domain::{
    check_rules_allow, check_rules_change, record_failed_verification, DomainError, Policy, Reason,
    LATEST_RULES, RULES_ORIGINAL, RULES_REAL_NAME,
};

/// A rule's refusal, or a storage failure that stops the apply.
pub(crate) enum Refusal {
    Rule(DomainError),
    Storage(StorageError),
}

impl From<DomainError> for Refusal {
    fn from(e: DomainError) -> Self {
        Refusal::Rule(e)
    }
}

impl From<StorageError> for Refusal {
    fn from(e: StorageError) -> Self {
        Refusal::Storage(e)
    }
}

pub(crate) type Step<T> = Result<T, Refusal>;

fn not_found(what: impl Into<String>) -> Refusal {
    Refusal::Rule(DomainError::new(Reason::NotFound, what))
}

/// A stored value that breaks an invariant: treated like a checksum failure.
fn corrupt(key: &[u8], reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        cf: sm_cf_name(key),
        key: codec::hex(key),
        reason: reason.into(),
    }
}

/// Applies one encoded command envelope, found at `position` in the entry
/// at log `index`.
pub fn apply_envelope(
    tx: &mut Tx,
    policy: &mut Policy,
    (index, position): (u64, u32),
    now_ms: u64,
    bytes: &[u8],
) -> Result<Applied, StorageError> {
    apply_decoded(
        tx,
        policy,
        (index, position),
        now_ms,
        Envelope::decode(bytes),
    )
}

/// The keys applying `envelope` is sure to look up, for [`Tx::prefetch`]:
/// a registration's (the bulk of the log) and every request id.
pub fn reads(envelope: &Envelope, out: &mut Vec<Vec<u8>>) {
    if !envelope.request_id.is_empty() {
        out.push(keys::dedup_key(&envelope.request_id));
    }
    if let Command::Register(r) = &envelope.command {
        out.push(keys::restriction_key(&r.id_key));
        out.push(keys::msisdn_key(&r.msisdn));
        out.push(keys::holder_key(&r.id_key));
    }
}

/// [`apply_envelope`] for an envelope already decoded (or not decodable).
pub fn apply_decoded(
    tx: &mut Tx,
    policy: &mut Policy,
    (index, position): (u64, u32),
    now_ms: u64,
    decoded: Result<Envelope, crate::command::CodecError>,
) -> Result<Applied, StorageError> {
    let fresh = |outcome| Applied {
        outcome,
        replayed: false,
    };
    let envelope = match decoded {
        Ok(e) => e,
        // Every replica decodes the same bytes the same way, so a rejection
        // here is as deterministic as any other outcome.
        Err(e) => {
            return Ok(fresh(Outcome::rejected(DomainError::new(
                Reason::InvalidArgument,
                format!("undecodable command: {e}"),
            ))))
        }
    };
    if ![COMMAND_VERSION, CALLER_VERSION, KEYED_VERSION].contains(&envelope.version) {
        return Ok(fresh(Outcome::rejected(DomainError::new(
            Reason::InvalidArgument,
            format!("command version {} is not supported", envelope.version),
        ))));
    }
    let dedup = !envelope.request_id.is_empty();
    if dedup {
        if let Some(outcome) = dedup::replay(tx, &envelope.request_id)? {
            return Ok(Applied {
                outcome,
                replayed: true,
            });
        }
    }
    let tag = dedup::request_tag(&envelope.request_id);
    // A refused command writes nothing but its dedup record.
    tx.begin();
    let bound = rekey::bind(tx, &envelope).and_then(|rebound| {
        let command = rebound.as_ref().unwrap_or(&envelope.command);
        if let (Command::Register(r), Some(tag)) = (command, tag) {
            if let Some(first) = cards::first_registration(tx, r, tag)? {
                return Ok((first, true));
            }
        }
        Ok((dispatch(tx, policy, now_ms, command, tag)?, false))
    });
    let outcome = match bound {
        Ok((outcome, true)) => {
            tx.rollback();
            return Ok(Applied {
                outcome,
                replayed: true,
            });
        }
        Ok((outcome, false)) => outcome,
        Err(Refusal::Rule(e)) => {
            tx.rollback();
            Outcome::rejected(e)
        }
        Err(Refusal::Storage(e)) => return Err(e),
    };
    audit::record(tx, index, position, now_ms, &envelope, &outcome);
    // A retry after KEY_ROTATED carries the same request id and new keys:
    // it must run, not replay the refusal.
    let retriable = outcome
        .as_error()
        .is_some_and(|e| e.reason == Reason::KeyRotated);
    // The number index remembers a registration (see
    // `cards::first_registration`).
    let in_index = matches!(outcome, Outcome::Registered { .. });
    if dedup && !retriable && !in_index {
        dedup::remember(tx, &envelope.request_id, (index, now_ms), &outcome)?;
    }
    Ok(fresh(outcome))
}

/// `items` cut into runs of neighbours with the same `key` (each run is
/// non-empty): the rows of one log entry, for the per-entry records.
fn runs<T, K: PartialEq>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    for item in items {
        match out.last_mut() {
            Some(run) if key(&run[0]) == key(&item) => run.push(item),
            _ => out.push(vec![item]),
        }
    }
    out
}

/// A small RocksDB in a temporary directory, for apply's unit tests.
#[cfg(test)]
pub(crate) fn test_db() -> (tempfile::TempDir, std::sync::Arc<oneid_storage::Db>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tuning = oneid_storage::schema::Tuning {
        block_cache_bytes: 1 << 20,
        write_buffer_bytes: 1 << 20,
        max_write_buffers: 2,
    };
    let db = oneid_storage::Db::open(dir.path(), tuning).expect("open test db");
    (dir, db)
}

/// The domain's view of stored or commanded policy values, under the
/// first rules (a policy carries no rules version: see `load_policy`).
pub fn policy_of(v: &PolicyValues) -> Policy {
    Policy {
        own_hall_threshold: v.own_hall_threshold,
        reverify_window_ms: v.reverify_window_ms,
        max_per_carrier: v.max_per_carrier,
        max_total: v.max_total,
        max_failed_verifications: v.max_failed_verifications,
        lockout_ms: v.lockout_ms,
        rules: RULES_ORIGINAL,
    }
}

/// The policy stored in `db` (the defaults when none was ever set), under
/// the rules revision stored beside it.
pub fn load_policy(db: &oneid_storage::Db) -> Result<Policy, StorageError> {
    let stored = Tx::new(db).get::<PolicyRecord>(POLICY_V, keys::POLICY)?;
    let policy = stored.map_or_else(Policy::default, |r| policy_of(&r.values));
    let rules = stored_rules(db)?;
    if rules > LATEST_RULES {
        // A snapshot or a store written under rules this build does not
        // know: serving or applying on from it would decide differently.
        return Err(rules_too_new(rules));
    }
    Ok(Policy { rules, ..policy })
}

/// The rules revision stored in `db`, whether or not this build knows it.
pub fn stored_rules(db: &oneid_storage::Db) -> Result<u32, StorageError> {
    Ok(Tx::new(db)
        .get::<RulesRecord>(RULES_V, keys::RULES)?
        .map_or(RULES_ORIGINAL, |r| r.version))
}

fn rules_too_new(version: u32) -> StorageError {
    StorageError::NeedsNewerBuild(format!(
        "the log moves the rules to version {version}; this build applies rules up to \
         version {LATEST_RULES}, so this node stops rather than decide differently from \
         its peers"
    ))
}

/// Runs one command; `tag` is its request id's, for a registration to keep.
fn dispatch(
    tx: &mut Tx,
    policy: &mut Policy,
    now_ms: u64,
    command: &Command,
    tag: Option<[u8; 8]>,
) -> Step<Outcome> {
    match command {
        Command::Register(r) => cards::register(tx, policy, now_ms, r, tag),
        Command::Cancel(c) => cards::cancel(tx, now_ms, c),
        Command::FlagHighRisk(f) => cards::flag_high_risk(tx, policy, now_ms, f),
        Command::Reverified(r) => cards::reverified(tx, now_ms, r),
        Command::RealNameMissing(r) => {
            check_rules_allow(policy, RULES_REAL_NAME, "a real-name report")?;
            cards::real_name_missing(tx, now_ms, r)
        }
        Command::RealNameCompleted(r) => {
            check_rules_allow(policy, RULES_REAL_NAME, "a real-name report")?;
            cards::real_name_completed(tx, now_ms, r)
        }
        Command::SweepOverdue(s) => cards::sweep_overdue(tx, now_ms, s.limit),
        Command::OpenDispute(o) => disputes::open(tx, now_ms, o),
        Command::ResolveDispute(r) => disputes::resolve(tx, now_ms, r),
        Command::Restrict(r) => {
            let record = RestrictionRecord {
                reason: r.reason.clone(),
                added_at_ms: now_ms,
                expires_at_ms: if r.duration_ms == 0 {
                    0
                } else {
                    now_ms.saturating_add(r.duration_ms)
                },
            };
            tx.put(RESTRICTION_V, keys::restriction_key(&r.id_key), &record)?;
            Ok(Outcome::Done)
        }
        Command::Unrestrict(u) => {
            let key = keys::restriction_key(&u.id_key);
            if tx.get::<RestrictionRecord>(RESTRICTION_V, &key)?.is_none() {
                return Err(not_found("the identity is not restricted"));
            }
            tx.delete(key);
            Ok(Outcome::Done)
        }
        Command::SetPolicy(values) => {
            let next = policy_of(values);
            next.validate()?;
            let record = PolicyRecord {
                values: values.clone(),
                set_at_ms: now_ms,
            };
            tx.put(POLICY_V, keys::POLICY.to_vec(), &record)?;
            *policy = Policy {
                rules: policy.rules,
                ..next
            };
            Ok(Outcome::Done)
        }
        Command::SetRules(r) => {
            // The leader checked every member supports the version before
            // proposing; a node of an older build that gets here anyway
            // must halt, not refuse: its peers apply the entry.
            if r.version > LATEST_RULES {
                return Err(Refusal::Storage(rules_too_new(r.version)));
            }
            check_rules_change(policy.rules, r.version)?;
            let record = RulesRecord {
                version: r.version,
                set_at_ms: now_ms,
            };
            tx.put(RULES_V, keys::RULES.to_vec(), &record)?;
            policy.rules = r.version;
            Ok(Outcome::Done)
        }
        Command::FailedVerification(id_key) => {
            let key = keys::lockout_key(id_key);
            let rec: LockoutRecord = tx.get(LOCKOUT_V, &key)?.unwrap_or_default();
            let (failures, locked_until_ms, locked_now) =
                record_failed_verification(policy, rec.failures, rec.locked_until_ms, now_ms);
            if locked_now {
                tx.stat(StatDelta::Lockout);
            }
            tx.put(
                LOCKOUT_V,
                key,
                &LockoutRecord {
                    failures,
                    locked_until_ms,
                },
            )?;
            Ok(if locked_until_ms > now_ms {
                Outcome::LockedOut {
                    until_ms: locked_until_ms,
                }
            } else {
                Outcome::Done
            })
        }
        Command::VerificationPassed(id_key) => {
            let key = keys::lockout_key(id_key);
            match tx.get::<LockoutRecord>(LOCKOUT_V, &key)? {
                Some(rec) if rec.locked_until_ms <= now_ms => tx.delete(key),
                _ => {}
            }
            Ok(Outcome::Done)
        }
        Command::NotifyCount(n) => outbox::notify_count(tx, now_ms, n),
        Command::AckNotification(id) => outbox::ack(tx, *id),
        Command::Link(l) => links::link(tx, now_ms, l),
        Command::Unlink(l) => links::unlink(tx, l),
        Command::AckReverify(l) => links::ack_reverify(tx, l),
        Command::TrimRequestIds(t) => Ok(dedup::trim(tx, now_ms, t.limit)?),
        Command::BeginRekey(r) => rekey::begin(tx, r),
        Command::RekeyBatch(b) => rekey::batch(tx, b),
        Command::FinishRekey(r) => rekey::finish(tx, r),
        Command::DropAliases(d) => rekey::drop_aliases(tx, d.limit),
    }
}
