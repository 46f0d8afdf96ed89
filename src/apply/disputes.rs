//! Disputes: a person does not recognise a card under their identity; its
//! carrier resolves the dispute as confirmed, stripped, suspended or
//! cancelled, and the card changes in the same apply.

use oneid_storage::keys;
use oneid_storage::records::{
    CardRecord, CounterRecord, DisputeRecord, StatDelta, CARD_V, COUNTER_V, DISPUTE_V,
};

use super::cards::{self, change_status};
use super::{not_found, outbox, Step, Tx};
use crate::command::{OpenDispute, Outcome, ResolveDispute};
use crate::domain::{check_carrier, Carrier, DisputeOutcome, DomainError, Reason};

const DISPUTE_SEQ: &str = "dispute";

pub(super) fn open(tx: &mut Tx, now_ms: u64, o: &OpenDispute) -> Step<Outcome> {
    let card = match cards::load(tx, &o.id_key, &o.msisdn)? {
        Some(c) if c.status.is_held() => c,
        _ => {
            return Err(not_found(
                "no card with this number is registered under this identity",
            ))
        }
    };
    if !o.contact.is_empty() && !outbox::is_active_under(tx, &o.id_key, &o.contact)? {
        return Err(DomainError::new(
            Reason::VerificationFailed,
            "the contact number is not an active card under this identity",
        )
        .into());
    }
    if card.record.open_dispute != 0 {
        return Err(DomainError::new(
            Reason::DisputeOpen,
            format!(
                "dispute {} is already open for this card",
                card.record.open_dispute
            ),
        )
        .into());
    }
    let seq_key = keys::counter_key(DISPUTE_SEQ);
    let mut seq: CounterRecord = tx.get(COUNTER_V, &seq_key)?.unwrap_or_default();
    seq.next = seq.next.max(1);
    let id = seq.next;
    seq.next += 1;
    tx.put(COUNTER_V, seq_key, &seq)?;
    tx.stat(StatDelta::DisputeOpened);
    tx.put(
        DISPUTE_V,
        keys::dispute_key(id),
        &DisputeRecord {
            id_key: o.id_key,
            msisdn: o.msisdn.clone(),
            carrier: card.record.carrier.clone(),
            opened_at_ms: now_ms,
            outcome: 0,
            resolved_by: String::new(),
            resolved_at_ms: 0,
            contact: o.contact.clone(),
        },
    )?;
    let mut record: CardRecord = card.record;
    record.open_dispute = id;
    tx.put(CARD_V, card.key, &record)?;
    Ok(Outcome::DisputeOpened { dispute_id: id })
}

pub(super) fn resolve(tx: &mut Tx, now_ms: u64, r: &ResolveDispute) -> Step<Outcome> {
    let requester = Carrier::parse(&r.carrier)?;
    let outcome = DisputeOutcome::from_code(r.outcome as i32).ok_or_else(|| {
        DomainError::new(
            Reason::InvalidArgument,
            format!("unknown dispute outcome {}", r.outcome),
        )
    })?;
    let key = keys::dispute_key(r.dispute_id);
    let Some(mut dispute) = tx.get::<DisputeRecord>(DISPUTE_V, &key)? else {
        return Err(not_found(format!("no dispute {}", r.dispute_id)));
    };
    if dispute.outcome != 0 {
        return Err(DomainError::new(
            Reason::DisputeClosed,
            format!("dispute {} is already resolved", r.dispute_id),
        )
        .into());
    }
    // The carrier recorded at opening: a later re-registration elsewhere
    // does not hand the dispute to another carrier.
    let holder =
        Carrier::parse(&dispute.carrier).map_err(|e| super::corrupt(&key, e.to_string()))?;
    check_carrier(&holder, &requester)?;
    let card = cards::load(tx, &dispute.id_key, &dispute.msisdn)?
        .ok_or_else(|| super::corrupt(&key, "dispute names a missing card"))?;
    let card_key = card.key.clone();
    if let Some(event) = outcome.event() {
        change_status(tx, now_ms, card, event)?;
    }
    // Re-read: the status change rewrote the card.
    if let Some(mut record) = tx.get::<CardRecord>(CARD_V, &card_key)? {
        if record.open_dispute == r.dispute_id {
            record.open_dispute = 0;
            tx.put(CARD_V, card_key, &record)?;
        }
    }
    tx.stat(StatDelta::DisputeResolved(outcome.code()));
    dispute.outcome = outcome.code();
    dispute.resolved_by = r.operator.clone();
    dispute.resolved_at_ms = now_ms;
    if !dispute.contact.is_empty() {
        let text = format!(
            "[一证通查] your dispute {} about {} was resolved by {}: {}",
            r.dispute_id,
            crate::domain::Msisdn::mask(&dispute.msisdn).unwrap_or_default(),
            dispute.carrier,
            outcome.as_str()
        );
        outbox::push(tx, now_ms, &dispute.contact, "dispute_outcome", text)?;
    }
    tx.put(DISPUTE_V, key, &dispute)?;
    let after = cards::load(tx, &dispute.id_key, &dispute.msisdn)?
        .map(|c| c.status)
        .ok_or_else(|| super::corrupt(&keys::dispute_key(r.dispute_id), "card vanished"))?;
    Ok(cards::status_outcome(after))
}
