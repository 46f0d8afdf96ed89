/// Stable reason codes: clients switch on these strings, so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    InvalidArgument,
    InvalidId,
    InvalidMsisdn,
    InvalidCarrier,
    InvalidProvince,
    LimitExceeded,
    NumberInUse,
    NotFound,
    WrongCarrier,
    VerificationFailed,
    AlreadyCancelled,
    IllegalTransition,
    Restricted,
    DisputeOpen,
    DisputeClosed,
    LockedOut,
    /// The command's id keys were derived under a pepper version the
    /// registry has rotated away from: derive them again and retry.
    KeyRotated,
}

impl Reason {
    pub const ALL: [Reason; 17] = [
        Reason::InvalidArgument,
        Reason::InvalidId,
        Reason::InvalidMsisdn,
        Reason::InvalidCarrier,
        Reason::InvalidProvince,
        Reason::LimitExceeded,
        Reason::NumberInUse,
        Reason::NotFound,
        Reason::WrongCarrier,
        Reason::VerificationFailed,
        Reason::AlreadyCancelled,
        Reason::IllegalTransition,
        Reason::Restricted,
        Reason::DisputeOpen,
        Reason::DisputeClosed,
        Reason::LockedOut,
        Reason::KeyRotated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidArgument => "INVALID_ARGUMENT",
            Reason::InvalidId => "INVALID_ID",
            Reason::InvalidMsisdn => "INVALID_MSISDN",
            Reason::InvalidCarrier => "INVALID_CARRIER",
            Reason::InvalidProvince => "INVALID_PROVINCE",
            Reason::LimitExceeded => "LIMIT_EXCEEDED",
            Reason::NumberInUse => "NUMBER_IN_USE",
            Reason::NotFound => "NOT_FOUND",
            Reason::WrongCarrier => "WRONG_CARRIER",
            Reason::VerificationFailed => "VERIFICATION_FAILED",
            Reason::AlreadyCancelled => "ALREADY_CANCELLED",
            Reason::IllegalTransition => "ILLEGAL_TRANSITION",
            Reason::Restricted => "RESTRICTED",
            Reason::DisputeOpen => "DISPUTE_OPEN",
            Reason::DisputeClosed => "DISPUTE_CLOSED",
            Reason::LockedOut => "LOCKED_OUT",
            Reason::KeyRotated => "KEY_ROTATED",
        }
    }

    pub fn from_str_code(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", reason.as_str())]
pub struct DomainError {
    pub reason: Reason,
    pub message: String,
}

impl DomainError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        DomainError {
            reason,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert_eq!(Reason::from_str_code(r.as_str()), Some(r));
            assert!(seen.insert(r.as_str()));
        }
        assert_eq!(Reason::from_str_code("NOPE"), None);
    }
}
