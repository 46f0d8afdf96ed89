//! The stored layout's generation: a data dir and every snapshot say which
//! layout they hold, so a build never reads one newer than it knows.
//!
//! Record versions (`codec`) let one record type evolve, but a build meeting
//! a record of a version it does not know can only call it corrupt, and
//! only when it happens to read that record: a node started on an older
//! binary (a rollback) would serve from a store it half understands, and
//! misread moved key spaces (session 21 moved lockouts to `sm_checks`; an
//! older build looks for them in `sm_data`, finds none, and answers as if
//! none existed). The generation is checked once, before anything is read:
//! on open (`schema::Db::open`) and before a snapshot is installed
//! (`snapshot_file::verify`).
//!
//! A layout change that an older build would misread or refuse raises
//! [`STORE_FORMAT`]. Generations:
//!
//! | generation | written by | layout |
//! |---|---|---|
//! | none | builds before session 31 | older layouts this build reads (and moves, see `Db::move_check_records`) |
//! | 1 | session 31 on | check records in `sm_checks`, version-3 holder summaries, version-2 number index records, audit and request-id age blocks |

use crate::codec;
use crate::records::{StoreFormatRecord, STORE_FORMAT_V};
use crate::schema::CF_SM_META;
use crate::StorageError;

/// The generation this build writes, and the newest it reads.
pub const STORE_FORMAT: u32 = 1;

/// The stored value of the generation this build writes.
pub fn current_record() -> Result<Vec<u8>, StorageError> {
    record_of(STORE_FORMAT)
}

/// The stored value of `generation` (tests write other builds' markers
/// with it).
pub fn record_of(generation: u32) -> Result<Vec<u8>, StorageError> {
    codec::encode(STORE_FORMAT_V, &StoreFormatRecord { generation })
}

/// Refuses a stored generation (`sm_meta` `format`'s value) newer than
/// this build's; `what` names the data dir or snapshot for the operator.
pub fn check(stored: &[u8], what: &str) -> Result<(), StorageError> {
    let record: StoreFormatRecord =
        codec::decode(STORE_FORMAT_V, stored, CF_SM_META, crate::keys::SM_FORMAT)?;
    check_generation(record.generation, what)
}

fn check_generation(generation: u32, what: &str) -> Result<(), StorageError> {
    if generation > STORE_FORMAT {
        return Err(StorageError::NeedsNewerBuild(format!(
            "{what} holds stored format {generation}, written by a newer build; this build \
             reads formats up to {STORE_FORMAT}. Run the newer build (a node cannot go back \
             to an older one: restore a backup the older build took instead)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_and_older_generations_pass() {
        check(&current_record().unwrap(), "db").unwrap();
        for g in 0..=STORE_FORMAT {
            check(&record_of(g).unwrap(), "db").unwrap();
        }
    }

    #[test]
    fn a_newer_generation_is_refused_with_both_numbers() {
        let e = check(&record_of(STORE_FORMAT + 1).unwrap(), "data dir /x").unwrap_err();
        assert!(matches!(e, StorageError::NeedsNewerBuild(_)), "{e}");
        let text = e.to_string();
        assert!(text.contains("data dir /x"), "{text}");
        assert!(
            text.contains(&format!("stored format {}", STORE_FORMAT + 1)),
            "{text}"
        );
        assert!(text.contains(&format!("up to {STORE_FORMAT}")), "{text}");
    }

    #[test]
    fn a_damaged_marker_is_corrupt_not_passed() {
        let mut bytes = current_record().unwrap();
        bytes[1] ^= 0xff;
        assert!(check(&bytes, "db").unwrap_err().is_corruption());
    }
}
