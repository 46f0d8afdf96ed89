//! Pure registry rules: identities, cards, the registration limit, card
//! lifecycles, disputes and account links.
//! No I/O, no clock, no randomness — the state machine and the API share them.

pub mod card;
pub mod error;
pub mod identity;
pub mod lifecycle;
pub mod link;
pub mod rules;

#[cfg(test)]
mod reference_tests;

pub use card::{CardKind, Carrier, Channel, Msisdn, Province};
pub use error::{DomainError, Reason};
pub use identity::{DocType, Identity};
pub use lifecycle::{next_status, Event, Lifecycle, SuspendReason};
pub use link::{AccountId, DisputeOutcome, Platform};
pub use rules::{
    check_carrier, check_registration, check_responsible_unit, check_restriction,
    check_rules_allow, check_rules_change, own_hall_nationwide, record_failed_verification,
    window_ms, Policy, RegistrationContext, DAY_MS, LATEST_RULES, RULES_MVNO_NATIONWIDE,
    RULES_ORIGINAL, RULES_REAL_NAME,
};
