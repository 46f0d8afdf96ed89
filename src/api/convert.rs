//! Proto requests to validated domain values. Every check gives a reason the
//! caller can act on; nothing unvalidated reaches a command.

use crate::domain::{
    check_responsible_unit, AccountId, CardKind, Carrier, Channel, DisputeOutcome, DocType,
    DomainError, Identity, Lifecycle, Msisdn, Platform, Province, Reason,
};
use crate::pb;

pub const MAX_REQUEST_ID: usize = 128;
pub const MAX_ID_NUMBER: usize = 64;
/// Longer than any token this server returns (hex of a number and an
/// account id); checked before any decoding work.
pub const MAX_PAGE_TOKEN: usize = 512;

fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::new(Reason::InvalidArgument, message)
}

pub fn request_id(raw: &str) -> Result<String, DomainError> {
    if raw.is_empty() {
        return Err(invalid(
            "request_id is required (an idempotency key, e.g. a UUID)",
        ));
    }
    if raw.len() > MAX_REQUEST_ID {
        return Err(invalid(format!(
            "request_id is {} bytes; at most {MAX_REQUEST_ID} allowed",
            raw.len()
        )));
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("request_id must be printable ASCII without spaces"));
    }
    Ok(raw.to_string())
}

pub fn identity(raw: Option<&pb::Identity>) -> Result<Identity, DomainError> {
    let raw = raw.ok_or_else(|| invalid("identity is required"))?;
    let doc_type = DocType::from_code(raw.doc_type).ok_or_else(|| {
        DomainError::new(
            Reason::InvalidId,
            format!("doc_type {} is not a known document type", raw.doc_type),
        )
    })?;
    if raw.number.len() > MAX_ID_NUMBER {
        return Err(DomainError::new(
            Reason::InvalidId,
            format!(
                "identity number is {} bytes; at most {MAX_ID_NUMBER} allowed",
                raw.number.len()
            ),
        ));
    }
    Identity::parse(doc_type, &raw.number)
}

/// A registration with every field validated.
pub struct Registration {
    pub request_id: String,
    pub identity: Identity,
    pub msisdn: Msisdn,
    pub carrier: Carrier,
    pub province: Province,
    pub kind: CardKind,
    pub channel: Channel,
    pub strict_verification: bool,
    pub responsible_unit: Option<Identity>,
}

pub fn registration(req: &pb::RegisterCardRequest) -> Result<Registration, DomainError> {
    let holder = identity(req.identity.as_ref())?;
    let kind = kind(req.kind)?;
    let unit = match &req.responsible_unit {
        None => None,
        Some(u) => Some(identity(Some(u))?),
    };
    check_responsible_unit(kind, &holder, unit.as_ref())?;
    Ok(Registration {
        request_id: request_id(&req.request_id)?,
        identity: holder,
        msisdn: msisdn(&req.msisdn)?,
        carrier: carrier(&req.carrier)?,
        province: province(&req.province)?,
        kind,
        channel: channel(req.channel)?,
        strict_verification: req.strict_verification,
        responsible_unit: unit,
    })
}

pub fn msisdn(raw: &str) -> Result<Msisdn, DomainError> {
    Msisdn::parse(raw)
}

pub fn carrier(raw: &str) -> Result<Carrier, DomainError> {
    Carrier::parse(raw)
}

pub fn province(raw: &str) -> Result<Province, DomainError> {
    Province::parse(raw)
}

pub fn kind(raw: i32) -> Result<CardKind, DomainError> {
    CardKind::from_code(raw).ok_or_else(|| invalid(format!("kind {raw} is not PERSONAL or IOT")))
}

pub fn channel(raw: i32) -> Result<Channel, DomainError> {
    Channel::from_code(raw)
        .ok_or_else(|| invalid(format!("channel {raw} is not OWN_HALL, AGENT or ONLINE")))
}

/// Free text kept with a record (restriction reason, operator): non-empty,
/// bounded, no control characters.
pub fn note(field: &str, raw: &str, max: usize) -> Result<String, DomainError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(invalid(format!("{field} is required")));
    }
    if s.len() > max {
        return Err(invalid(format!(
            "{field} is {} bytes; at most {max} allowed",
            s.len()
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(s.to_string())
}

pub fn platform(raw: &str) -> Result<Platform, DomainError> {
    Platform::parse(raw)
}

pub fn account(raw: &str) -> Result<AccountId, DomainError> {
    AccountId::parse(raw)
}

pub fn dispute_outcome(raw: i32) -> Result<DisputeOutcome, DomainError> {
    DisputeOutcome::from_code(raw).ok_or_else(|| {
        invalid(format!(
            "outcome {raw} is not DISPUTE_CONFIRMED, DISPUTE_STRIPPED, DISPUTE_SUSPENDED or DISPUTE_CANCELLED"
        ))
    })
}

/// A stored lifecycle (`Lifecycle::to_parts`) as the API shows it.
pub fn card_state(status: u8, suspend_reason: u8, deadline_ms: u64) -> pb::CardState {
    let Some(life) = Lifecycle::from_parts(status, suspend_reason, deadline_ms) else {
        return pb::CardState::default();
    };
    let (code, reason) = match life {
        Lifecycle::Active => (pb::CardStatus::CardActive, ""),
        Lifecycle::Suspended(r) => (pb::CardStatus::CardSuspended, r.as_str()),
        Lifecycle::RealNameMissing { .. } => (pb::CardStatus::CardSuspended, "real_name_missing"),
        Lifecycle::PendingReverify { .. } => (pb::CardStatus::CardPendingReverify, ""),
        Lifecycle::Cancelled => (pb::CardStatus::CardCancelled, ""),
        Lifecycle::Stripped => (pb::CardStatus::CardStripped, ""),
    };
    pb::CardState {
        status: code as i32,
        suspend_reason: reason.to_string(),
        reverify_deadline_ms: if matches!(life, Lifecycle::PendingReverify { .. }) {
            deadline_ms
        } else {
            0
        },
        terminate_at_ms: if matches!(life, Lifecycle::RealNameMissing { .. }) {
            deadline_ms
        } else {
            0
        },
    }
}

/// Paging position in a platform's re-verification list.
pub fn page_token(msisdn: &str, account: &str) -> String {
    hex::encode(format!("{msisdn}\0{account}"))
}

/// A page token of bounded length, before it is parsed.
pub fn page_token_len(raw: &str) -> Result<&str, DomainError> {
    if raw.len() > MAX_PAGE_TOKEN {
        return Err(invalid(format!(
            "page_token is {} bytes; at most {MAX_PAGE_TOKEN} allowed",
            raw.len()
        )));
    }
    Ok(raw)
}

pub fn parse_page_token(raw: &str) -> Result<Option<(String, String)>, DomainError> {
    let raw = page_token_len(raw)?;
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || invalid("page_token is not one this server returned");
    let bytes = hex::decode(raw).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (m, a) = text.split_once('\0').ok_or_else(bad)?;
    Ok(Some((
        msisdn(m).map_err(|_| bad())?.as_str().to_string(),
        account(a).map_err(|_| bad())?.as_str().to_string(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_tokens_and_states() {
        assert_eq!(note("reason", "  fraud ", 10).unwrap(), "fraud");
        assert!(note("reason", " ", 10).is_err());
        assert!(note("reason", "a\nb", 10).is_err());
        assert!(note("reason", &"x".repeat(11), 10).is_err());
        let t = page_token("13800138000", "acct-1");
        assert_eq!(
            parse_page_token(&t).unwrap(),
            Some(("13800138000".into(), "acct-1".into()))
        );
        assert_eq!(parse_page_token("").unwrap(), None);
        let long = "0".repeat(MAX_PAGE_TOKEN + 1);
        let e = parse_page_token(&long).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidArgument);
        assert!(e.to_string().contains("at most"), "{e}");
        for bad in ["zz", "00", &hex::encode("13800138000")] {
            assert!(parse_page_token(bad).is_err(), "{bad}");
        }
        assert!(dispute_outcome(0).is_err());
        let s = card_state(3, 0, 99);
        assert_eq!(s.status, pb::CardStatus::CardPendingReverify as i32);
        assert_eq!(s.reverify_deadline_ms, 99);
        assert_eq!(card_state(2, 1, 0).suspend_reason, "dispute");
    }

    #[test]
    fn request_id_rules() {
        assert!(request_id("").is_err());
        assert!(request_id(&"a".repeat(MAX_REQUEST_ID + 1)).is_err());
        assert!(request_id("has space").is_err());
        assert_eq!(request_id("r-1").unwrap(), "r-1");
    }

    #[test]
    fn identity_rules() {
        assert!(identity(None).is_err());
        let unknown = pb::Identity {
            doc_type: 99,
            number: "x".into(),
        };
        assert_eq!(
            identity(Some(&unknown)).unwrap_err().reason,
            Reason::InvalidId
        );
        let long = pb::Identity {
            doc_type: 2,
            number: "A".repeat(MAX_ID_NUMBER + 1),
        };
        assert_eq!(identity(Some(&long)).unwrap_err().reason, Reason::InvalidId);
        let bad_check = pb::Identity {
            doc_type: 1,
            number: "110105194912310021".into(),
        };
        assert_eq!(
            identity(Some(&bad_check)).unwrap_err().reason,
            Reason::InvalidId
        );
        let good = pb::Identity {
            doc_type: 1,
            number: "11010519491231002x".into(),
        };
        assert_eq!(
            identity(Some(&good)).unwrap().number(),
            "11010519491231002X"
        );
    }

    #[test]
    fn enum_rules() {
        assert!(kind(0).is_err());
        assert!(kind(1).is_ok());
        assert!(channel(0).is_err());
        assert!(channel(4).is_err());
        assert!(channel(2).is_ok());
    }
}
