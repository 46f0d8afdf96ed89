//! Pepper rotation inside apply. Every id key is `HMAC(pepper_v, ...)`; a
//! rotation to version `v+1` moves each identity's records from its old
//! key to `HMAC(pepper_v+1, old key)`. Apply never sees a pepper: the keys
//! come in the commands (derived by the API node or the leader), so replicas
//! stay deterministic whatever their configuration.
//!
//! While a rotation runs, an identity lives under exactly one key: the old
//! one until the leader's batch moves it (leaving an alias `old -> new`), or
//! the new one if it first appeared during the rotation. Commands carry
//! both keys ([`KeyBinding::Derived`] with `next`) and are bound here to
//! wherever the identity lives.

use oneid_storage::keys::{self, IdKey};
use oneid_storage::records::{
    AliasRecord, CardRecord, DisputeRecord, KeyStateRecord, LockoutRecord, PendingRecord,
    RestrictionRecord, ALIAS_V, CARD_V, DISPUTE_V, HOLDER_V, KEY_STATE_V, LOCKOUT_V, MSISDN_V,
    PENDING_V, RESTRICTION_V,
};
use oneid_storage::StorageError;

use super::{Refusal, Step, Tx};
use crate::command::{Command, Envelope, KeyBinding, MoveId, Outcome, Rekey, RekeyBatch};
use crate::domain::{DomainError, Reason};

/// Cards of one identity a move reads; far above any policy's limits.
const MAX_CARDS_MOVED: usize = 1_000_000;

fn rotated(message: impl Into<String>) -> Refusal {
    Refusal::Rule(DomainError::new(Reason::KeyRotated, message))
}

fn refused(message: impl Into<String>) -> Refusal {
    Refusal::Rule(DomainError::new(Reason::IllegalTransition, message))
}

pub fn state(tx: &Tx) -> Result<KeyStateRecord, StorageError> {
    Ok(tx.get(KEY_STATE_V, keys::KEY_STATE)?.unwrap_or_default())
}

fn alias(tx: &Tx, old: &IdKey) -> Result<Option<IdKey>, StorageError> {
    Ok(tx
        .get::<AliasRecord>(ALIAS_V, &keys::moved_key(old))?
        .map(|a| a.other))
}

/// True when anything is stored under `key`: cards always come with a
/// holder record, so the id-scoped records cover every identity.
fn has_records(tx: &Tx, key: &IdKey) -> Result<bool, StorageError> {
    Ok(tx.contains(&keys::holder_key(key))?
        || tx.contains(&keys::restriction_key(key))?
        || tx.contains(&keys::lockout_key(key))?)
}

/// The command to apply in place of `envelope.command` when its id key
/// must be swapped for the one the identity lives under; `None` keeps it.
/// `KEY_ROTATED` refusals are not remembered under the request id, so the
/// API derives the keys again and retries with the same id.
pub(super) fn bind(tx: &mut Tx, envelope: &Envelope) -> Step<Option<Command>> {
    let Some(key) = envelope.command.id_key() else {
        return Ok(None);
    };
    let state = state(tx)?;
    match &envelope.keys {
        KeyBinding::Stored => {
            if let Some(moved) = alias(tx, key)? {
                return match envelope.command.rekeyed(moved, None) {
                    Some(c) => Ok(Some(c)),
                    None => Err(rotated("the command lacks keys under the new pepper")),
                };
            }
            if has_records(tx, key)? {
                return Ok(None);
            }
            Err(rotated("the identity's records have moved to new keys"))
        }
        KeyBinding::Derived { version, next } => {
            if *version != state.current {
                return Err(rotated(format!(
                    "id keys derived under pepper version {version}; the registry is at version {}",
                    state.current
                )));
            }
            let Some(to) = state.rotating_to() else {
                return Ok(None);
            };
            let Some(next) = next.as_ref().filter(|n| n.version == to) else {
                return Err(rotated(format!(
                    "a rotation to pepper version {to} is under way; keys for it are required"
                )));
            };
            let moved = alias(tx, key)?;
            if moved.is_none() && has_records(tx, key)? {
                return Ok(None);
            }
            if moved.is_some_and(|m| m != next.id_key) {
                return Err(Refusal::Rule(DomainError::new(
                    Reason::InvalidArgument,
                    format!("pepper version {to} differs between the nodes of this cluster"),
                )));
            }
            if moved.is_none() {
                // First seen during the rotation: born under the new key.
                link(tx, key, &next.id_key)?;
            }
            match envelope.command.rekeyed(next.id_key, Some(next)) {
                Some(c) => Ok(Some(c)),
                None => Err(rotated("the command lacks keys under the new pepper")),
            }
        }
    }
}

fn link(tx: &mut Tx, old: &IdKey, new: &IdKey) -> Result<(), StorageError> {
    tx.put(ALIAS_V, keys::moved_key(old), &AliasRecord { other: *new })?;
    tx.put(
        ALIAS_V,
        keys::arrived_key(new),
        &AliasRecord { other: *old },
    )
}

fn put_state(tx: &mut Tx, s: &KeyStateRecord) -> Result<(), StorageError> {
    tx.put(KEY_STATE_V, keys::KEY_STATE.to_vec(), s)
}

fn aliases_left(tx: &Tx) -> Result<bool, StorageError> {
    Ok(!tx
        .scan::<AliasRecord>(ALIAS_V, keys::MOVED_PREFIX, 1)?
        .is_empty()
        || !tx
            .scan::<AliasRecord>(ALIAS_V, keys::ARRIVED_PREFIX, 1)?
            .is_empty())
}

pub(super) fn begin(tx: &mut Tx, r: &Rekey) -> Step<Outcome> {
    let mut s = state(tx)?;
    if let Some(to) = s.rotating_to() {
        return Err(refused(format!(
            "a rotation to pepper version {to} is already under way"
        )));
    }
    if r.from != s.current || r.to != s.current + 1 {
        return Err(refused(format!(
            "keys are at pepper version {}: the next rotation is to version {}",
            s.current,
            s.current + 1
        )));
    }
    if aliases_left(tx)? {
        return Err(refused(
            "the previous rotation is still forgetting its aliases; retry shortly",
        ));
    }
    s.next = r.to;
    s.moved = 0;
    put_state(tx, &s)?;
    Ok(Outcome::Done)
}

fn check_rotation(s: &KeyStateRecord, r: &Rekey) -> Step<()> {
    if s.current == r.from && s.next == r.to {
        Ok(())
    } else {
        Err(refused(format!(
            "no rotation from {} to {} is under way",
            r.from, r.to
        )))
    }
}

pub(super) fn batch(tx: &mut Tx, b: &RekeyBatch) -> Step<Outcome> {
    let mut s = state(tx)?;
    check_rotation(&s, &b.rotation)?;
    let (mut moved, mut skipped) = (0u32, 0u32);
    for m in &b.ids {
        if move_id(tx, m)? {
            moved += 1;
        } else {
            skipped += 1;
        }
    }
    s.moved += u64::from(moved);
    put_state(tx, &s)?;
    Ok(Outcome::Rekeyed { moved, skipped })
}

/// Moves one identity, or returns false (writing nothing) when the batch no
/// longer matches what is stored: moved already, cards added or removed
/// since the leader read them, or nothing there.
fn move_id(tx: &mut Tx, m: &MoveId) -> Result<bool, StorageError> {
    if m.old == m.new
        || alias(tx, &m.old)?.is_some()
        || tx.contains(&keys::arrived_key(&m.new))?
        || has_records(tx, &m.new)?
        || !has_records(tx, &m.old)?
    {
        return Ok(false);
    }
    let cards: Vec<(Vec<u8>, CardRecord)> =
        tx.scan(CARD_V, &keys::card_prefix(&m.old), MAX_CARDS_MOVED)?;
    let matches = cards.len() == m.cards.len()
        && cards.iter().zip(&m.cards).all(|((k, c), mc)| {
            keys::card_msisdn(k) == Some(mc.msisdn.as_str())
                && c.unit_key.is_some() == mc.unit_key.is_some()
        });
    if !matches {
        return Ok(false);
    }
    for ((key, mut card), mc) in cards.into_iter().zip(&m.cards) {
        repoint(tx, m, &mc.msisdn, &card)?;
        card.last6_tag = mc.last6_tag;
        card.unit_key = mc.unit_key;
        tx.delete(key);
        tx.put(CARD_V, keys::card_key(&m.new, &mc.msisdn), &card)?;
    }
    // Read in either version, written in the current one.
    let old_holder = keys::holder_key(&m.old);
    if let Some(holder) = tx.holder(&old_holder)? {
        tx.delete(old_holder);
        tx.put(HOLDER_V, keys::holder_key(&m.new), &holder)?;
    }
    move_record::<RestrictionRecord>(
        tx,
        RESTRICTION_V,
        keys::restriction_key(&m.old),
        keys::restriction_key(&m.new),
    )?;
    move_record::<LockoutRecord>(
        tx,
        LOCKOUT_V,
        keys::lockout_key(&m.old),
        keys::lockout_key(&m.new),
    )?;
    link(tx, &m.old, &m.new)?;
    Ok(true)
}

/// Records outside the identity's key range that name it: the number
/// index, the re-verification queue and an open dispute.
fn repoint(tx: &mut Tx, m: &MoveId, msisdn: &str, card: &CardRecord) -> Result<(), StorageError> {
    let number = keys::msisdn_key(msisdn);
    if let Some(mut n) = tx.number(&number)? {
        if n.id_key == m.old {
            n.id_key = m.new;
            tx.put(MSISDN_V, number, &n)?;
        }
    }
    if card.reverify_deadline_ms != 0 {
        let pending = keys::pending_key(card.reverify_deadline_ms, msisdn);
        if let Some(mut p) = tx.get::<PendingRecord>(PENDING_V, &pending)? {
            if p.id_key == m.old {
                p.id_key = m.new;
                tx.put(PENDING_V, pending, &p)?;
            }
        }
    }
    if card.open_dispute != 0 {
        let dispute = keys::dispute_key(card.open_dispute);
        if let Some(mut d) = tx.get::<DisputeRecord>(DISPUTE_V, &dispute)? {
            if d.id_key == m.old {
                d.id_key = m.new;
                tx.put(DISPUTE_V, dispute, &d)?;
            }
        }
    }
    Ok(())
}

/// Decoded on the way, so a corrupt record stops the move rather than
/// being copied.
fn move_record<T: bincode::Decode<()> + bincode::Encode>(
    tx: &mut Tx,
    version: u8,
    from: Vec<u8>,
    to: Vec<u8>,
) -> Result<(), StorageError> {
    if let Some(v) = tx.get::<T>(version, &from)? {
        tx.delete(from);
        tx.put(version, to, &v)?;
    }
    Ok(())
}

pub(super) fn finish(tx: &mut Tx, r: &Rekey) -> Step<Outcome> {
    let mut s = state(tx)?;
    check_rotation(&s, r)?;
    s.current = r.to;
    s.next = 0;
    put_state(tx, &s)?;
    Ok(Outcome::Done)
}

/// Forgets up to `limit` aliases of a finished rotation: kept, they would
/// tie old keys (reversible by whoever holds the retired pepper) to new ones.
pub(super) fn drop_aliases(tx: &mut Tx, limit: u32) -> Step<Outcome> {
    if let Some(to) = state(tx)?.rotating_to() {
        return Err(refused(format!(
            "the rotation to pepper version {to} still needs its aliases"
        )));
    }
    let mut removed = 0u32;
    for prefix in [keys::MOVED_PREFIX, keys::ARRIVED_PREFIX] {
        let left = (limit - removed) as usize;
        for (key, _) in tx.scan::<AliasRecord>(ALIAS_V, prefix, left)? {
            tx.delete(key);
            removed += 1;
        }
    }
    Ok(Outcome::Trimmed { removed })
}
