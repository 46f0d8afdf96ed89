//! Proto requests to validated domain values. Every check gives a reason the
//! caller can act on; nothing unvalidated reaches a command.

use crate::domain::{
    CardKind, Carrier, Channel, DocType, DomainError, Identity, Msisdn, Province, Reason,
};
use crate::pb;

pub const MAX_REQUEST_ID: usize = 128;
pub const MAX_ID_NUMBER: usize = 64;

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
}

pub fn registration(req: &pb::RegisterCardRequest) -> Result<Registration, DomainError> {
    Ok(Registration {
        request_id: request_id(&req.request_id)?,
        identity: identity(req.identity.as_ref())?,
        msisdn: msisdn(&req.msisdn)?,
        carrier: carrier(&req.carrier)?,
        province: province(&req.province)?,
        kind: kind(req.kind)?,
        channel: channel(req.channel)?,
        strict_verification: req.strict_verification,
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

#[cfg(test)]
mod tests {
    use super::*;

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
