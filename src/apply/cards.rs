//! Registration and every later change of a card's lifecycle. All status
//! changes go through [`change_status`], which keeps the holder summary, the
//! number index, the re-verification queue and linked accounts in step with
//! the card in the same batch.

use oneid_storage::keys::{self, IdKey};
use oneid_storage::records::{
    CardRecord, MsisdnRecord, PendingRecord, Registration, ReplacedRecord, RestrictionRecord,
    StatDelta, CARD_V, HOLDER_V, MSISDN_V, PENDING_V, REPLACED_V, RESTRICTION_V,
};
use oneid_storage::StorageError;

use super::{corrupt, links, not_found, Step, Tx};
use crate::command::{Cancel, FlagHighRisk, Outcome, RealNameMissing, Register, Reverified};
use crate::domain::{
    check_carrier, check_registration, check_restriction, next_status, own_hall_nationwide,
    CardKind, Carrier, Channel, DomainError, Event, Lifecycle, Policy, Reason, RegistrationContext,
};

/// A card as stored, with its key and decoded lifecycle.
pub(super) struct LoadedCard {
    pub id_key: IdKey,
    pub msisdn: String,
    pub key: Vec<u8>,
    pub record: CardRecord,
    pub status: Lifecycle,
}

impl LoadedCard {
    fn carrier(&self) -> Result<Carrier, StorageError> {
        Carrier::parse(&self.record.carrier).map_err(|e| corrupt(&self.key, e.to_string()))
    }
}

fn status_of(key: &[u8], r: &CardRecord) -> Result<Lifecycle, StorageError> {
    Lifecycle::from_parts(r.status, r.suspend_reason, r.reverify_deadline_ms).ok_or_else(|| {
        corrupt(
            key,
            format!("unknown card status {}/{}", r.status, r.suspend_reason),
        )
    })
}

/// The card `msisdn` under `id_key`, if it exists.
pub(super) fn load(tx: &Tx, id_key: &IdKey, msisdn: &str) -> Step<Option<LoadedCard>> {
    let key = keys::card_key(id_key, msisdn);
    let Some(record) = tx.get::<CardRecord>(CARD_V, &key)? else {
        return Ok(None);
    };
    let status = status_of(&key, &record)?;
    Ok(Some(LoadedCard {
        id_key: *id_key,
        msisdn: msisdn.to_string(),
        key,
        record,
        status,
    }))
}

/// The card a number was last registered as (held or not).
pub(super) fn load_by_number(tx: &Tx, msisdn: &str) -> Step<LoadedCard> {
    let number_key = keys::msisdn_key(msisdn);
    let Some(number) = tx.number(&number_key)? else {
        return Err(not_found("no card with this number is registered"));
    };
    load(tx, &number.id_key, msisdn)?
        .ok_or_else(|| corrupt(&number_key, "number index points at a missing card").into())
}

/// Moves `card` through `event`, or refuses with the card unchanged.
pub(super) fn change_status(
    tx: &mut Tx,
    now_ms: u64,
    card: LoadedCard,
    event: Event,
) -> Step<Lifecycle> {
    let from = card.status;
    let to = next_status(from, event)?;
    if to == from {
        return Ok(to);
    }
    let LoadedCard {
        id_key,
        msisdn,
        key,
        mut record,
        ..
    } = card;
    let leaves_hold = from.is_held() && !to.is_held();
    if leaves_hold || from.is_active() != to.is_active() {
        let holder_key = keys::holder_key(&id_key);
        let mut holder = tx.holder(&holder_key)?.unwrap_or_default();
        holder.set_in_service(&msisdn, to.is_active());
        if leaves_hold {
            holder.remove_kind(is_iot(&record), &record.carrier, record.province);
            tx.stat(StatDelta::Held {
                carrier: record.carrier.clone(),
                province: record.province,
                delta: -1,
            });
        }
        tx.put(HOLDER_V, holder_key, &holder)?;
    }
    if leaves_hold {
        let number_key = keys::msisdn_key(&msisdn);
        let registered_by = tx.number(&number_key)?.and_then(|n| n.registered_by);
        tx.put(
            MSISDN_V,
            number_key,
            &MsisdnRecord {
                id_key,
                held: false,
                registered_by,
            },
        )?;
    }
    // The sweep's queue: a re-verification window or the time left to
    // complete real-name registration.
    if let Some(deadline_ms) = from.deadline_ms() {
        tx.delete(keys::pending_key(deadline_ms, &msisdn));
    }
    if let Some(deadline_ms) = to.deadline_ms() {
        tx.put(
            PENDING_V,
            keys::pending_key(deadline_ms, &msisdn),
            &PendingRecord { id_key },
        )?;
    }
    // Platforms must re-verify accounts on a number whose holder is in
    // doubt (一证通查 2.0).
    if matches!(
        to,
        Lifecycle::Stripped | Lifecycle::Cancelled | Lifecycle::PendingReverify { .. }
    ) {
        links::mark_for_reverify(tx, now_ms, &msisdn, to.name())?;
    }
    let (status, reason, deadline) = to.to_parts();
    record.status = status;
    record.suspend_reason = reason;
    record.reverify_deadline_ms = deadline;
    record.updated_at_ms = now_ms;
    tx.put(CARD_V, key, &record)?;
    Ok(to)
}

fn is_iot(r: &CardRecord) -> bool {
    r.kind == CardKind::Iot.code() as u8
}

pub(super) fn status_outcome(s: Lifecycle) -> Outcome {
    let (status, suspend_reason, deadline_ms) = s.to_parts();
    Outcome::CardStatus {
        status,
        suspend_reason,
        deadline_ms,
    }
}

/// The outcome a registration retried under its request id (`tag`, see
/// [`super::dedup::request_tag`]) answered the first time. The number
/// index names the registration that made the holder, and keeps the one it
/// replaced when the number is registered again: registrations need no
/// request-id record of their own (with its age, a sixth of an import's
/// stored bytes and over half of its compaction, measured).
pub(super) fn first_registration(
    tx: &Tx,
    r: &Register,
    tag: [u8; 8],
) -> Result<Option<Outcome>, StorageError> {
    let Some(number) = tx.number(&keys::msisdn_key(&r.msisdn))? else {
        return Ok(None);
    };
    let held_after = match number.registered_by {
        Some(by) if by.request_tag == tag => Some(by.held_after),
        // Registered again since, or never by this request.
        _ => tx
            .get::<ReplacedRecord>(
                REPLACED_V,
                &keys::replaced_registration_key(&r.msisdn, &tag),
            )?
            .map(|replaced| replaced.held_after),
    };
    Ok(held_after.map(|held_after| Outcome::Registered {
        active_at_carrier_province: held_after,
    }))
}

/// Registers `r`, naming its request (`tag`, none without a request id) in
/// the number index.
pub(super) fn register(
    tx: &mut Tx,
    policy: &Policy,
    now_ms: u64,
    r: &Register,
    tag: Option<[u8; 8]>,
) -> Step<Outcome> {
    let channel = Channel::from_code(r.channel as i32).ok_or_else(|| {
        DomainError::new(
            Reason::InvalidArgument,
            format!("unknown channel code {}", r.channel),
        )
    })?;
    let restriction: Option<RestrictionRecord> =
        tx.get(RESTRICTION_V, &keys::restriction_key(&r.id_key))?;
    check_restriction(
        restriction
            .as_ref()
            .map(|x| (x.reason.as_str(), x.expires_at_ms)),
        now_ms,
    )?;
    let msisdn_key = keys::msisdn_key(&r.msisdn);
    let number = tx.number(&msisdn_key)?;
    let holder_key = keys::holder_key(&r.id_key);
    let mut holder = tx.holder(&holder_key)?.unwrap_or_default();
    let held_at_carrier = holder
        .by_carrier()
        .get(r.carrier.as_str())
        .copied()
        .unwrap_or(0);
    let own_hall_nationwide = own_hall_nationwide(policy, &r.carrier);
    let ctx = RegistrationContext {
        active_at_carrier_province: if own_hall_nationwide {
            held_at_carrier
        } else {
            holder.at(&r.carrier, r.province)
        },
        own_hall_nationwide,
        held_at_carrier,
        held_total: holder.total(),
        channel,
        strict_verification: r.strict_verification,
        msisdn_active_holder: number
            .as_ref()
            .filter(|n| n.held)
            .map(|n| n.id_key == r.id_key),
    };
    let iot = r.kind == CardKind::Iot.code() as u8;
    if iot {
        // IoT cards fall outside the personal-card limits; only the number
        // rule applies.
        check_registration(&Policy::unlimited(), &ctx)?;
    } else {
        check_registration(policy, &ctx)?;
    }
    holder.add_kind(iot, &r.carrier, r.province);
    holder.set_in_service(&r.msisdn, true);
    tx.stat(StatDelta::Held {
        carrier: r.carrier.clone(),
        province: r.province,
        delta: 1,
    });
    let (status, suspend_reason, reverify_deadline_ms) = Lifecycle::Active.to_parts();
    let card = CardRecord {
        carrier: r.carrier.clone(),
        province: r.province,
        kind: r.kind,
        channel: r.channel,
        status,
        suspend_reason,
        reverify_deadline_ms,
        registered_at_ms: now_ms,
        updated_at_ms: now_ms,
        open_dispute: 0,
        last6_tag: r.last6_tag,
        unit_key: r.unit_key,
    };
    let held = if iot {
        holder
            .iot
            .get(&(r.carrier.clone(), r.province))
            .copied()
            .unwrap_or(0)
    } else {
        holder.at(&r.carrier, r.province)
    };
    if let Some(replaced) = number.and_then(|n| n.registered_by) {
        tx.put(
            REPLACED_V,
            keys::replaced_registration_key(&r.msisdn, &replaced.request_tag),
            &ReplacedRecord {
                held_after: replaced.held_after,
            },
        )?;
    }
    tx.put(CARD_V, keys::card_key(&r.id_key, &r.msisdn), &card)?;
    tx.put(HOLDER_V, holder_key, &holder)?;
    tx.put(
        MSISDN_V,
        msisdn_key,
        &MsisdnRecord {
            id_key: r.id_key,
            held: true,
            registered_by: tag.map(|request_tag| Registration {
                request_tag,
                held_after: held,
            }),
        },
    )?;
    Ok(Outcome::Registered {
        active_at_carrier_province: held,
    })
}

/// The card `msisdn` was last registered as, which only the carrier holding
/// it (`carrier`) may act on.
fn carriers_card(tx: &Tx, msisdn: &str, carrier: &str) -> Step<LoadedCard> {
    let requester = Carrier::parse(carrier)?;
    let card = load_by_number(tx, msisdn)?;
    check_carrier(&card.carrier()?, &requester)?;
    Ok(card)
}

pub(super) fn cancel(tx: &mut Tx, now_ms: u64, c: &Cancel) -> Step<Outcome> {
    let card = carriers_card(tx, &c.msisdn, &c.carrier)?;
    change_status(tx, now_ms, card, Event::Cancel)?;
    Ok(Outcome::Cancelled)
}

pub(super) fn flag_high_risk(
    tx: &mut Tx,
    policy: &Policy,
    now_ms: u64,
    f: &FlagHighRisk,
) -> Step<Outcome> {
    let card = load_by_number(tx, &f.msisdn)?;
    let window = if f.window_ms == 0 {
        policy.reverify_window_ms
    } else {
        f.window_ms
    };
    let deadline_ms = now_ms.saturating_add(window);
    let to = change_status(tx, now_ms, card, Event::FlagHighRisk { deadline_ms })?;
    tx.stat(StatDelta::HighRiskFlagged);
    Ok(status_outcome(to))
}

pub(super) fn reverified(tx: &mut Tx, now_ms: u64, r: &Reverified) -> Step<Outcome> {
    let card = carriers_card(tx, &r.msisdn, &r.carrier)?;
    let to = change_status(tx, now_ms, card, Event::Reverified)?;
    tx.stat(StatDelta::Reverified);
    Ok(status_outcome(to))
}

/// Suspends the card until its holder completes real-name registration,
/// within `window_ms` (the carrier reports it, as only it knows).
pub(super) fn real_name_missing(tx: &mut Tx, now_ms: u64, r: &RealNameMissing) -> Step<Outcome> {
    let card = carriers_card(tx, &r.msisdn, &r.carrier)?;
    let deadline_ms = now_ms.saturating_add(r.window_ms);
    let to = change_status(tx, now_ms, card, Event::RealNameMissing { deadline_ms })?;
    Ok(status_outcome(to))
}

pub(super) fn real_name_completed(tx: &mut Tx, now_ms: u64, r: &Reverified) -> Step<Outcome> {
    let card = carriers_card(tx, &r.msisdn, &r.carrier)?;
    let to = change_status(tx, now_ms, card, Event::RealNameCompleted)?;
    Ok(status_outcome(to))
}

/// Moves the cards whose deadline has passed on the replicated clock: a
/// high-risk card not re-verified is suspended, a card whose holder never
/// completed real-name registration is terminated. The leader proposes it;
/// every replica applies the same entries with the same clock and moves the
/// same cards.
pub(super) fn sweep_overdue(tx: &mut Tx, now_ms: u64, limit: u32) -> Step<Outcome> {
    let due: Vec<(Vec<u8>, PendingRecord)> =
        tx.scan(PENDING_V, keys::PENDING_PREFIX, limit as usize)?;
    let mut suspended = 0;
    for (key, pending) in due {
        let (deadline, msisdn) =
            keys::parse_pending_key(&key).ok_or_else(|| corrupt(&key, "bad pending key"))?;
        if deadline > now_ms {
            break;
        }
        let msisdn = msisdn.to_string();
        match load(tx, &pending.id_key, &msisdn)? {
            Some(card)
                if card.status
                    == (Lifecycle::PendingReverify {
                        deadline_ms: deadline,
                    }) =>
            {
                change_status(tx, now_ms, card, Event::DeadlineCheck { now_ms })?;
                tx.stat(StatDelta::HighRiskSuspended);
                suspended += 1;
            }
            // Terminated: not counted as suspended (`Swept` reports the
            // high-risk suspensions, as before real-name deadlines).
            Some(card)
                if card.status
                    == (Lifecycle::RealNameMissing {
                        deadline_ms: deadline,
                    }) =>
            {
                change_status(tx, now_ms, card, Event::DeadlineCheck { now_ms })?;
            }
            // Not pending with this deadline any more: a stale queue entry.
            _ => tx.delete(key),
        }
    }
    Ok(Outcome::Swept { suspended })
}
