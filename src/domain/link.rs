//! Values of disputes and of account linkage (一证通查 2.0): platform and
//! account names, the last six characters of an ID number, dispute outcomes.

use super::error::{DomainError, Reason};
use super::lifecycle::{Event, SuspendReason};

fn invalid(message: String) -> DomainError {
    DomainError::new(Reason::InvalidArgument, message)
}

/// An internet platform's code, e.g. `wechat`, `alipay`, `douyin`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform(String);

impl Platform {
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Platform, DomainError> {
        let s = raw.trim().to_ascii_lowercase();
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            let shown: String = raw.chars().take(40).collect();
            return Err(invalid(format!(
                "platform '{shown}' must be 1 to {} letters, digits, '_' or '-'",
                Self::MAX_LEN
            )));
        }
        Ok(Platform(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A platform's account identifier, opaque to oneid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<AccountId, DomainError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(invalid(format!(
                "account id must be 1 to {} bytes (got {})",
                Self::MAX_LEN,
                raw.len()
            )));
        }
        // Printable ASCII only: keys embed it after a NUL separator.
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "account id must be printable ASCII without spaces".into(),
            ));
        }
        Ok(AccountId(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The last six characters of an ID number, as a person types them: all
/// five of a five-character passport number ([`super::Identity::last6`]
/// of such a holder is five characters, and they must be able to ask).
pub fn parse_last6(raw: &str) -> Result<String, DomainError> {
    let s = raw.trim().to_ascii_uppercase();
    if !(5..=6).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(DomainError::new(
            Reason::InvalidId,
            "id_last6 must be the last 6 characters of the ID number (all 5 of a 5-character passport number)",
        ));
    }
    Ok(s)
}

/// How a carrier resolves a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisputeOutcome {
    /// The person owns the card after all; nothing changes.
    Confirmed,
    /// 剥离: the card leaves the identity.
    Stripped,
    /// 关停: the card stays registered but out of service.
    Suspended,
    /// 销户: the card is cancelled.
    Cancelled,
}

impl DisputeOutcome {
    pub const ALL: [DisputeOutcome; 4] = [
        DisputeOutcome::Confirmed,
        DisputeOutcome::Stripped,
        DisputeOutcome::Suspended,
        DisputeOutcome::Cancelled,
    ];

    /// Matches the proto enum values; 0 is "open" in stored records.
    pub fn code(self) -> u8 {
        match self {
            DisputeOutcome::Confirmed => 1,
            DisputeOutcome::Stripped => 2,
            DisputeOutcome::Suspended => 3,
            DisputeOutcome::Cancelled => 4,
        }
    }

    pub fn from_code(c: i32) -> Option<DisputeOutcome> {
        DisputeOutcome::ALL
            .into_iter()
            .find(|o| o.code() as i32 == c)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DisputeOutcome::Confirmed => "confirmed",
            DisputeOutcome::Stripped => "stripped",
            DisputeOutcome::Suspended => "suspended",
            DisputeOutcome::Cancelled => "cancelled",
        }
    }

    /// The card event this outcome causes, if any.
    pub fn event(self) -> Option<Event> {
        match self {
            DisputeOutcome::Confirmed => None,
            DisputeOutcome::Stripped => Some(Event::Strip),
            DisputeOutcome::Suspended => Some(Event::Suspend(SuspendReason::Dispute)),
            DisputeOutcome::Cancelled => Some(Event::Cancel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn platforms() {
        assert_eq!(Platform::parse(" WeChat ").unwrap().as_str(), "wechat");
        assert_eq!(
            Platform::parse("bili_bili-2").unwrap().as_str(),
            "bili_bili-2"
        );
        for bad in ["", " ", "we chat", "微信", &"a".repeat(33), "a/b", "a\0"] {
            assert_eq!(
                Platform::parse(bad).unwrap_err().reason,
                Reason::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn accounts_and_last6() {
        assert!(AccountId::parse("user-42@x").is_ok());
        for bad in ["", "a b", "a\0b", &"a".repeat(65), "é"] {
            assert!(AccountId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_last6("12345x").unwrap(), "12345X");
        for bad in ["", "1234", "1234567", "12 345", "12345!"] {
            assert_eq!(parse_last6(bad).unwrap_err().reason, Reason::InvalidId);
        }
    }

    #[test]
    fn every_holder_can_type_their_last6() {
        use crate::domain::{DocType, Identity};
        for (doc, number) in [
            (DocType::Passport, "E1234"),
            (DocType::Passport, "E12345678"),
            (DocType::ResidentId, "11010519491231002X"),
        ] {
            let id = Identity::parse(doc, number).unwrap();
            assert_eq!(parse_last6(id.last6()).unwrap(), id.last6(), "{number}");
        }
    }

    #[test]
    fn outcomes() {
        for o in DisputeOutcome::ALL {
            assert_eq!(DisputeOutcome::from_code(o.code() as i32), Some(o));
        }
        assert_eq!(DisputeOutcome::from_code(0), None);
        assert_eq!(DisputeOutcome::Confirmed.event(), None);
        assert_eq!(DisputeOutcome::Cancelled.event(), Some(Event::Cancel));
    }

    proptest! {
        #[test]
        fn parsed_names_are_key_safe(s in "\\PC{0,80}") {
            if let Ok(p) = Platform::parse(&s) {
                prop_assert!(!p.as_str().as_bytes().contains(&0));
                prop_assert_eq!(Platform::parse(p.as_str()).unwrap(), p);
            }
            if let Ok(a) = AccountId::parse(&s) {
                prop_assert!(!a.as_str().as_bytes().contains(&0));
            }
        }
    }
}
