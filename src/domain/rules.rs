//! The registration and cancellation rules (工信部网安〔2016〕182号).

use super::card::{Carrier, Channel};
use super::error::{DomainError, Reason};

/// Limits in force. Replicated state decides which policy applies, so every
/// replica enforces the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Active cards at one carrier-province beyond which a new one needs the
    /// carrier's own hall with strict verification.
    pub own_hall_threshold: u32,
    /// Time a card flagged high-risk has to pass in-person re-verification.
    pub reverify_window_ms: u64,
}

pub const DAY_MS: u64 = 24 * 3600 * 1000;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            own_hall_threshold: 5,
            reverify_window_ms: DAY_MS,
        }
    }
}

pub struct RegistrationContext {
    pub active_at_carrier_province: u32,
    pub channel: Channel,
    pub strict_verification: bool,
    /// None: the number is free; Some(true): already active under this
    /// identity; Some(false): active under another identity.
    pub msisdn_active_holder: Option<bool>,
}

pub fn check_registration(policy: &Policy, ctx: &RegistrationContext) -> Result<(), DomainError> {
    match ctx.msisdn_active_holder {
        Some(false) => {
            return Err(DomainError::new(
                Reason::NumberInUse,
                "the number is active under another identity",
            ))
        }
        Some(true) => {
            return Err(DomainError::new(
                Reason::NumberInUse,
                "the number is already registered to this identity",
            ))
        }
        None => {}
    }
    let strict_own_hall = ctx.channel == Channel::OwnHall && ctx.strict_verification;
    if ctx.active_at_carrier_province >= policy.own_hall_threshold && !strict_own_hall {
        return Err(DomainError::new(
            Reason::LimitExceeded,
            format!(
                "the identity holds {} cards at this carrier-province; at {} or more a new card needs the carrier's own hall with strict verification",
                ctx.active_at_carrier_province, policy.own_hall_threshold
            ),
        ));
    }
    Ok(())
}

/// Only the carrier holding a card may change it.
pub fn check_carrier(holder: &Carrier, requester: &Carrier) -> Result<(), DomainError> {
    if holder != requester {
        return Err(DomainError::new(
            Reason::WrongCarrier,
            format!(
                "the card is held by {}, not {}",
                holder.as_str(),
                requester.as_str()
            ),
        ));
    }
    Ok(())
}

/// A restriction (限制入网) in force at `now_ms` bars new cards. An expiry of
/// 0 means until lifted.
pub fn check_restriction(restriction: Option<(&str, u64)>, now_ms: u64) -> Result<(), DomainError> {
    match restriction {
        Some((reason, expires_at_ms)) if expires_at_ms == 0 || now_ms < expires_at_ms => {
            Err(DomainError::new(
                Reason::Restricted,
                if expires_at_ms == 0 {
                    format!("the identity is barred from new cards ({reason}) until the restriction is lifted")
                } else {
                    format!("the identity is barred from new cards ({reason}) until {expires_at_ms} ms since the epoch")
                },
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx(active: u32, channel: Channel, strict: bool) -> RegistrationContext {
        RegistrationContext {
            active_at_carrier_province: active,
            channel,
            strict_verification: strict,
            msisdn_active_holder: None,
        }
    }

    #[test]
    fn limit_applies_at_threshold() {
        let p = Policy::default();
        assert!(check_registration(&p, &ctx(4, Channel::Agent, false)).is_ok());
        let e = check_registration(&p, &ctx(5, Channel::Agent, false)).unwrap_err();
        assert_eq!(e.reason, Reason::LimitExceeded);
        assert!(check_registration(&p, &ctx(5, Channel::OwnHall, false)).is_err());
        assert!(check_registration(&p, &ctx(5, Channel::Online, true)).is_err());
        assert!(check_registration(&p, &ctx(5, Channel::OwnHall, true)).is_ok());
    }

    #[test]
    fn number_in_use() {
        let p = Policy::default();
        for holder in [Some(true), Some(false)] {
            let c = RegistrationContext {
                msisdn_active_holder: holder,
                ..ctx(0, Channel::OwnHall, true)
            };
            assert_eq!(
                check_registration(&p, &c).unwrap_err().reason,
                Reason::NumberInUse
            );
        }
    }

    #[test]
    fn carrier_and_restriction_rules() {
        let cmcc = Carrier::parse("CMCC").unwrap();
        let cucc = Carrier::parse("CUCC").unwrap();
        assert!(check_carrier(&cmcc, &cmcc).is_ok());
        assert_eq!(
            check_carrier(&cucc, &cmcc).unwrap_err().reason,
            Reason::WrongCarrier
        );
        assert!(check_restriction(None, 5).is_ok());
        assert_eq!(
            check_restriction(Some(("fraud", 0)), 5).unwrap_err().reason,
            Reason::Restricted
        );
        assert!(check_restriction(Some(("fraud", 10)), 9).is_err());
        assert!(check_restriction(Some(("fraud", 10)), 10).is_ok());
    }

    proptest! {
        #[test]
        fn never_above_threshold_without_strict_own_hall(active in 0u32..100, threshold in 1u32..20, ch in 1i32..4, strict in any::<bool>()) {
            let p = Policy { own_hall_threshold: threshold, ..Policy::default() };
            let channel = Channel::from_code(ch).unwrap();
            let ok = check_registration(&p, &ctx(active, channel, strict)).is_ok();
            if active >= threshold && !(channel == Channel::OwnHall && strict) {
                prop_assert!(!ok);
            } else {
                prop_assert!(ok);
            }
        }
    }
}
