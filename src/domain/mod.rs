//! Pure registry rules: identities, cards and the registration limit.
//! No I/O, no clock, no randomness — the state machine and the API share them.

pub mod card;
pub mod error;
pub mod identity;
pub mod rules;

pub use card::{CardKind, CardStatus, Carrier, Channel, Msisdn, Province};
pub use error::{DomainError, Reason};
pub use identity::{DocType, Identity};
pub use rules::{check_cancel, check_registration, Policy, RegistrationContext};
