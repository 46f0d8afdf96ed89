//! Accounts that internet platforms link to numbers (一证通查 2.0), and the
//! re-verification queue platforms work through when a number's holder is in
//! doubt.

use oneid_storage::keys;
use oneid_storage::records::{LinkRecord, ReverifyRecord, LINK_V, REVERIFY_V};
use oneid_storage::StorageError;

use super::{corrupt, not_found, Step, Tx};
use crate::command::{Link, Outcome};
use crate::domain::{DomainError, Reason};

/// Most accounts linked to one number: bounds every per-number scan.
pub const MAX_LINKS_PER_NUMBER: usize = 256;

pub(super) fn link(tx: &mut Tx, now_ms: u64, l: &Link) -> Step<Outcome> {
    let held = tx
        .number(&keys::msisdn_key(&l.msisdn))?
        .is_some_and(|n| n.held);
    if !held {
        return Err(not_found("no card with this number is registered"));
    }
    let key = keys::link_key(&l.msisdn, &l.platform, &l.account);
    if tx.get::<LinkRecord>(LINK_V, &key)?.is_some() {
        return Ok(Outcome::Done);
    }
    let existing = tx
        .scan::<LinkRecord>(LINK_V, &keys::link_prefix(&l.msisdn), MAX_LINKS_PER_NUMBER)?
        .len();
    if existing >= MAX_LINKS_PER_NUMBER {
        return Err(DomainError::new(
            Reason::LimitExceeded,
            format!("the number already has {MAX_LINKS_PER_NUMBER} linked accounts"),
        )
        .into());
    }
    tx.put(
        LINK_V,
        key,
        &LinkRecord {
            linked_at_ms: now_ms,
            needs_reverify: false,
        },
    )?;
    Ok(Outcome::Done)
}

pub(super) fn unlink(tx: &mut Tx, l: &Link) -> Step<Outcome> {
    let key = keys::link_key(&l.msisdn, &l.platform, &l.account);
    if tx.get::<LinkRecord>(LINK_V, &key)?.is_none() {
        return Err(not_found("no such linked account"));
    }
    tx.delete(key);
    tx.delete(keys::reverify_key(&l.platform, &l.msisdn, &l.account));
    Ok(Outcome::Done)
}

pub(super) fn ack_reverify(tx: &mut Tx, l: &Link) -> Step<Outcome> {
    let rkey = keys::reverify_key(&l.platform, &l.msisdn, &l.account);
    if tx.get::<ReverifyRecord>(REVERIFY_V, &rkey)?.is_none() {
        return Err(not_found("the account is not awaiting re-verification"));
    }
    tx.delete(rkey);
    let key = keys::link_key(&l.msisdn, &l.platform, &l.account);
    if let Some(mut link) = tx.get::<LinkRecord>(LINK_V, &key)? {
        link.needs_reverify = false;
        tx.put(LINK_V, key, &link)?;
    }
    Ok(Outcome::Done)
}

/// Flags every account linked to `msisdn` for re-verification by its
/// platform, in the same apply as the card change that caused it.
pub(super) fn mark_for_reverify(
    tx: &mut Tx,
    now_ms: u64,
    msisdn: &str,
    cause: &str,
) -> Result<(), StorageError> {
    let prefix = keys::link_prefix(msisdn);
    for (key, mut link) in tx.scan::<LinkRecord>(LINK_V, &prefix, MAX_LINKS_PER_NUMBER)? {
        if link.needs_reverify {
            continue;
        }
        let (platform, account) =
            keys::split_pair(&key, &prefix).ok_or_else(|| corrupt(&key, "bad link key"))?;
        let rkey = keys::reverify_key(platform, msisdn, account);
        tx.put(
            REVERIFY_V,
            rkey,
            &ReverifyRecord {
                marked_at_ms: now_ms,
                cause: cause.to_string(),
            },
        )?;
        link.needs_reverify = true;
        tx.put(LINK_V, key, &link)?;
    }
    Ok(())
}
