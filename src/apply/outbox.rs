//! The notification outbox: what the SMS gateway must send (count results,
//! dispute outcomes). Each notification is written in the same apply as
//! what it reports and leaves the outbox only when the gateway acknowledges
//! it — exactly one acknowledgement succeeds.

use oneid_storage::keys::{self, IdKey};
use oneid_storage::records::{CounterRecord, OutboxRecord, COUNTER_V, OUTBOX_V};

use super::cards;
use super::{not_found, Step, Tx};
use crate::command::{NotifyCount, Outcome};
use crate::domain::{DomainError, Reason};

const OUTBOX_SEQ: &str = "outbox";

/// Queues a notification; returns its id.
pub(super) fn push(tx: &mut Tx, now_ms: u64, to: &str, kind: &str, text: String) -> Step<u64> {
    let seq_key = keys::counter_key(OUTBOX_SEQ);
    let mut seq: CounterRecord = tx.get(COUNTER_V, &seq_key)?.unwrap_or_default();
    seq.next = seq.next.max(1);
    let id = seq.next;
    seq.next += 1;
    tx.put(COUNTER_V, seq_key, &seq)?;
    tx.put(
        OUTBOX_V,
        keys::outbox_key(id),
        &OutboxRecord {
            to: to.into(),
            kind: kind.into(),
            text,
            created_at_ms: now_ms,
        },
    )?;
    Ok(id)
}

/// True when `msisdn` is an active card under `id_key` in this apply's view.
pub(super) fn is_active_under(tx: &Tx, id_key: &IdKey, msisdn: &str) -> Step<bool> {
    let held = tx
        .number(&keys::msisdn_key(msisdn))?
        .is_some_and(|n| n.held && &n.id_key == id_key);
    if !held {
        return Ok(false);
    }
    Ok(cards::load(tx, id_key, msisdn)?.is_some_and(|c| c.status.is_active()))
}

pub(super) fn notify_count(tx: &mut Tx, now_ms: u64, n: &NotifyCount) -> Step<Outcome> {
    if !is_active_under(tx, &n.id_key, &n.verify_msisdn)? {
        return Err(DomainError::new(
            Reason::VerificationFailed,
            "the verification number is not an active card under this identity",
        )
        .into());
    }
    let holder = tx.holder(&keys::holder_key(&n.id_key))?.unwrap_or_default();
    let carriers: Vec<String> = holder
        .by_carrier()
        .into_iter()
        .map(|(c, k)| format!("{c} {k}"))
        .collect();
    let iot: u32 = holder.iot.values().sum();
    let mut text = format!(
        "[一证通查] {} card(s) are registered under your ID: {}",
        holder.total(),
        carriers.join(", ")
    );
    if iot > 0 {
        text.push_str(&format!(
            "; {iot} IoT card(s) name you as responsible person"
        ));
    }
    let id = push(tx, now_ms, &n.verify_msisdn, "count_result", text)?;
    Ok(Outcome::Notified {
        notification_id: id,
    })
}

pub(super) fn ack(tx: &mut Tx, id: u64) -> Step<Outcome> {
    let key = keys::outbox_key(id);
    if tx.get::<OutboxRecord>(OUTBOX_V, &key)?.is_none() {
        return Err(not_found(format!(
            "notification {id} is not in the outbox (already acknowledged?)"
        )));
    }
    tx.delete(key);
    Ok(Outcome::Done)
}
