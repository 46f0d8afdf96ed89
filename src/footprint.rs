//! Which stored keys a replicated command may touch, as tokens, for reads
//! that wait only for the unapplied log entries that may change what they
//! read (`oneid_raft::unapplied`).
//!
//! Only the commands that fill the log are bounded: registrations (all of
//! a bulk import) and the lockout bookkeeping of count queries. Every other
//! command may touch anything, so a read waits for it as before. No
//! bounded command writes linked accounts (other than its own number's),
//! the re-verification queues, the notification outbox or disputes, so
//! reads of those alone wait for no bounded command
//! (`apply::model_tests` checks all of this against random commands).
//!
//! The bound holds while no pepper rotation is under way: a command with
//! derived keys is then applied under exactly the keys it carries
//! (`apply::rekey::bind`). A read checks that in the same view as its
//! data (the key state is one of the keys it reads), and every rotation
//! command touches anything, so no rotation can start or end between the
//! entries a read skipped and the view it took.

use crate::command::{Command, Envelope, IdKey, KeyBinding};

/// The token of an identity's records (summary, lockout, restriction,
/// and its cards together with [`number`]). Id keys are keyed hashes, so
/// their first bytes are as good as any hash of them.
pub fn identity(id_key: &IdKey) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id_key[..8]);
    u64::from_le_bytes(first)
}

/// The token of a number's records (its index entry, its card under any
/// identity together with [`identity`]): FNV-1a of its digits.
pub fn number(msisdn: &str) -> u64 {
    msisdn.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// [`oneid_raft::unapplied::Footprint`] for the registry's encoded
/// commands.
pub fn of_command(bytes: &[u8], tokens: &mut Vec<u64>) -> bool {
    let Ok(envelope) = Envelope::decode(bytes) else {
        return false;
    };
    if !matches!(envelope.keys, KeyBinding::Derived { .. }) {
        // Stored keys follow an alias after a rotation.
        return false;
    }
    match &envelope.command {
        Command::Register(r) => {
            tokens.push(identity(&r.id_key));
            tokens.push(number(&r.msisdn));
            true
        }
        Command::FailedVerification(k) | Command::VerificationPassed(k) => {
            tokens.push(identity(k));
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Register, SweepOverdue, COMMAND_VERSION};

    fn bytes(command: Command, keys: KeyBinding) -> Vec<u8> {
        Envelope {
            version: COMMAND_VERSION,
            request_id: "r".into(),
            command,
            by: String::new(),
            keys,
        }
        .encode()
        .expect("encodes")
    }

    fn register(id: u8, msisdn: &str) -> Command {
        Command::Register(Register {
            id_key: [id; 32],
            msisdn: msisdn.into(),
            carrier: "CMCC".into(),
            province: 11,
            kind: 1,
            channel: 1,
            strict_verification: false,
            last6_tag: [0; 16],
            unit_key: None,
        })
    }

    fn footprint(bytes: &[u8]) -> Option<Vec<u64>> {
        let mut tokens = Vec::new();
        of_command(bytes, &mut tokens).then_some(tokens)
    }

    #[test]
    fn a_registration_touches_its_identity_and_its_number() {
        let got = footprint(&bytes(register(7, "13800000000"), KeyBinding::default()));
        assert_eq!(got, Some(vec![identity(&[7; 32]), number("13800000000")]));
        let lockout = bytes(Command::FailedVerification([3; 32]), KeyBinding::default());
        assert_eq!(footprint(&lockout), Some(vec![identity(&[3; 32])]));
    }

    #[test]
    fn what_it_cannot_bound_touches_anything() {
        let stored = bytes(register(7, "13800000000"), KeyBinding::Stored);
        assert_eq!(footprint(&stored), None, "stored keys may follow an alias");
        let sweep = bytes(
            Command::SweepOverdue(SweepOverdue { limit: 10 }),
            KeyBinding::default(),
        );
        assert_eq!(footprint(&sweep), None);
        assert_eq!(footprint(b"not a command"), None);
    }

    #[test]
    fn tokens_tell_keys_apart() {
        assert_ne!(identity(&[1; 32]), identity(&[2; 32]));
        assert_ne!(number("13800000000"), number("13800000001"));
        assert_eq!(number("13800000000"), number("13800000000"));
    }
}
