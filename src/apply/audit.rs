//! The audit trail of mutations: every applied command (accepted or refused)
//! leaves one record in replicated state, in log order, so every replica
//! holds the same trail and a regulator reads it linearizably.

use oneid_storage::keys::{self, IdKey};
use oneid_storage::records::{AuditBlock, AuditRecord, AUDIT_BLOCK_V};
use oneid_storage::StorageError;

use super::Tx;
use crate::command::{Command, Envelope, Outcome};
use crate::domain::Msisdn;

fn masked(msisdn: &str) -> String {
    Msisdn::mask(msisdn).unwrap_or_else(|| "?".into())
}

/// Enough of the keyed hash to tell identities apart in a trail, nothing
/// that leads back to the ID number.
pub fn id_subject(k: &IdKey) -> String {
    format!("id:{}", hex::encode(&k[..6]))
}

fn rotation(r: &crate::command::Rekey) -> String {
    format!("pepper v{} -> v{}", r.from, r.to)
}

/// (actor, action, subject) of a command.
fn describe(c: &Command) -> (String, &'static str, String) {
    match c {
        Command::Register(r) => (r.carrier.clone(), "register", masked(&r.msisdn)),
        Command::Cancel(x) => (x.carrier.clone(), "cancel", masked(&x.msisdn)),
        Command::FlagHighRisk(f) => ("regulator".into(), "flag_high_risk", masked(&f.msisdn)),
        Command::Reverified(r) => (r.carrier.clone(), "reverified", masked(&r.msisdn)),
        Command::SweepOverdue(_) => ("system".into(), "sweep_overdue", String::new()),
        Command::OpenDispute(o) => ("holder".into(), "open_dispute", masked(&o.msisdn)),
        Command::ResolveDispute(r) => (
            format!("{}/{}", r.carrier, r.operator),
            "resolve_dispute",
            format!("dispute:{}", r.dispute_id),
        ),
        Command::Restrict(r) => ("regulator".into(), "restrict", id_subject(&r.id_key)),
        Command::Unrestrict(u) => ("regulator".into(), "unrestrict", id_subject(&u.id_key)),
        Command::Link(l) => (l.platform.clone(), "link", masked(&l.msisdn)),
        Command::Unlink(l) => (l.platform.clone(), "unlink", masked(&l.msisdn)),
        Command::AckReverify(l) => (l.platform.clone(), "ack_reverify", masked(&l.msisdn)),
        Command::SetPolicy(_) => ("regulator".into(), "set_policy", String::new()),
        Command::FailedVerification(k) => ("system".into(), "failed_verification", id_subject(k)),
        Command::VerificationPassed(k) => ("system".into(), "verification_passed", id_subject(k)),
        Command::NotifyCount(n) => ("holder".into(), "notify_count", id_subject(&n.id_key)),
        Command::AckNotification(n) => (
            "sms_gateway".into(),
            "ack_notification",
            format!("notification:{n}"),
        ),
        Command::TrimRequestIds(_) => ("system".into(), "trim_request_ids", String::new()),
        Command::BeginRekey(r) => ("admin".into(), "begin_rekey", rotation(r)),
        Command::RekeyBatch(b) => (
            "system".into(),
            "rekey_batch",
            format!("{} ids {}", b.ids.len(), rotation(&b.rotation)),
        ),
        Command::FinishRekey(r) => ("system".into(), "finish_rekey", rotation(r)),
        Command::DropAliases(_) => ("system".into(), "drop_aliases", String::new()),
        Command::RealNameMissing(r) => (r.carrier.clone(), "real_name_missing", masked(&r.msisdn)),
        Command::RealNameCompleted(r) => {
            (r.carrier.clone(), "real_name_completed", masked(&r.msisdn))
        }
        Command::SetRules(r) => (
            "admin".into(),
            "set_rules",
            format!("version {}", r.version),
        ),
    }
}

/// Appends the record of `command` applied at (`index`, `position`).
pub fn record(
    tx: &mut Tx,
    index: u64,
    position: u32,
    now_ms: u64,
    envelope: &Envelope,
    outcome: &Outcome,
) {
    let (actor, action, subject) = describe(&envelope.command);
    // The verified caller, when there was one, over what the command says.
    let actor = if envelope.by.is_empty() {
        actor
    } else {
        envelope.by.clone()
    };
    let outcome = match outcome {
        Outcome::Rejected { reason, .. } => reason.clone(),
        _ => "ok".into(),
    };
    tx.audit(
        index,
        position,
        AuditRecord {
            at_ms: now_ms,
            actor,
            action: action.into(),
            subject,
            request_id: envelope.request_id.clone(),
            outcome,
        },
    );
}

/// Writes `rows` (in log order) as one [`AuditBlock`] per log entry, under
/// the audit key of the entry's first row.
pub(super) fn write_blocks(
    tx: &mut Tx,
    rows: Vec<(u64, u32, AuditRecord)>,
) -> Result<(), StorageError> {
    for entry in super::runs(rows, |&(index, _, _)| index) {
        let (index, first) = (entry[0].0, entry[0].1);
        let rows = entry.into_iter().map(|(_, p, row)| (p, row)).collect();
        tx.put(
            AUDIT_BLOCK_V,
            keys::audit_key(index, first),
            &AuditBlock { rows },
        )?;
    }
    Ok(())
}
