//! The registration and cancellation rules (工信部网安〔2016〕182号).

use super::card::{CardKind, Carrier, Channel};
use super::error::{DomainError, Reason};
use super::identity::{DocType, Identity};

/// Limits in force. Replicated state decides which policy applies, so every
/// replica enforces the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Active cards at one carrier-province beyond which a new one needs the
    /// carrier's own hall with strict verification.
    pub own_hall_threshold: u32,
    /// Time a card flagged high-risk has to pass in-person re-verification.
    pub reverify_window_ms: u64,
    /// Hard limit on cards one identity holds at one carrier nationwide; no
    /// channel exceeds it. 0: none.
    pub max_per_carrier: u32,
    /// Hard limit on cards one identity holds in all; 0: none.
    pub max_total: u32,
    /// Failed count verifications that lock an identity out.
    pub max_failed_verifications: u32,
    /// How long a lockout lasts.
    pub lockout_ms: u64,
    /// The revision of the rules in force (`RULES_*`): set by its own
    /// replicated command, never by a policy change, so that every replica,
    /// whatever its build, decides an entry under the revision the log says.
    pub rules: u32,
}

/// The rules as first built: the own-hall threshold counts an MVNO's cards
/// per province, like a basic carrier's.
pub const RULES_ORIGINAL: u32 = 1;
/// 182号 as written: an MVNO's cards count in all provinces together
/// ("the same carrier-province, or the same MVNO").
pub const RULES_MVNO_NATIONWIDE: u32 = 2;
/// Carriers may report cards whose holder never completed real-name
/// registration (suspended, then terminated). Gated like a rule change
/// because older builds cannot decode those commands: they would refuse an
/// entry their peers apply.
pub const RULES_REAL_NAME: u32 = 3;
/// The newest revision this build applies. A build applies every revision
/// up to it exactly as the build that introduced it did; a log that moves
/// past it stops this node's apply (see `apply`), never runs differently.
pub const LATEST_RULES: u32 = RULES_REAL_NAME;

/// Refuses a command the rules in force do not have yet (`since`).
pub fn check_rules_allow(policy: &Policy, since: u32, what: &str) -> Result<(), DomainError> {
    if policy.rules < since {
        return Err(DomainError::new(
            Reason::IllegalTransition,
            format!(
                "{what} needs rules version {since} (the rules are at version {}); an \
                 administrator moves the cluster there with `oneid policy rules {since}` once \
                 every node runs a build that applies it",
                policy.rules
            ),
        ));
    }
    Ok(())
}

/// Whether the rules may move from `current` to `next`: forward only (a
/// step back would change how later entries are decided for cards
/// registered under the newer rules), and only to a revision this build
/// knows.
pub fn check_rules_change(current: u32, next: u32) -> Result<(), DomainError> {
    if next == 0 || next > LATEST_RULES {
        return Err(DomainError::new(
            Reason::InvalidArgument,
            format!("rules version {next} is unknown; this build knows 1 to {LATEST_RULES}"),
        ));
    }
    if next <= current {
        return Err(DomainError::new(
            Reason::IllegalTransition,
            format!("the rules are at version {current}; a rules version only moves forward"),
        ));
    }
    Ok(())
}

/// Whether the own-hall threshold counts a new card at `carrier` with the
/// carrier's cards in every province (an MVNO, once the rules say so)
/// rather than in the card's province.
pub fn own_hall_nationwide(policy: &Policy, carrier: &str) -> bool {
    policy.rules >= RULES_MVNO_NATIONWIDE && super::card::is_mvno(carrier)
}

pub const DAY_MS: u64 = 24 * 3600 * 1000;

/// Longest re-verification window or lockout a regulator may set: ten
/// years. Longer is no policy but a typo, and near `u64::MAX` a deadline
/// would never come.
pub const MAX_WINDOW_SECONDS: u64 = 10 * 366 * 24 * 3600;

/// A policy time window given in seconds, in milliseconds.
pub fn window_ms(name: &str, seconds: u64) -> Result<u64, DomainError> {
    if seconds > MAX_WINDOW_SECONDS {
        return Err(DomainError::new(
            Reason::InvalidArgument,
            format!("{name} is {seconds} s; at most {MAX_WINDOW_SECONDS} s (ten years) allowed"),
        ));
    }
    Ok(seconds * 1000)
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            own_hall_threshold: 5,
            reverify_window_ms: DAY_MS,
            max_per_carrier: 0,
            max_total: 0,
            max_failed_verifications: 3,
            lockout_ms: DAY_MS,
            rules: RULES_ORIGINAL,
        }
    }
}

pub struct RegistrationContext {
    /// Active personal cards the own-hall threshold counts (see
    /// [`own_hall_nationwide`]).
    pub active_at_carrier_province: u32,
    /// Whether that count is an MVNO's in all provinces.
    pub own_hall_nationwide: bool,
    /// Held at the same carrier in all provinces.
    pub held_at_carrier: u32,
    /// Held in all.
    pub held_total: u32,
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
    for (held, limit, scope) in [
        (
            ctx.held_at_carrier,
            policy.max_per_carrier,
            "at this carrier nationwide",
        ),
        (ctx.held_total, policy.max_total, "in all"),
    ] {
        if limit > 0 && held >= limit {
            return Err(DomainError::new(
                Reason::LimitExceeded,
                format!("the identity holds {held} cards {scope}; the national limit is {limit}"),
            ));
        }
    }
    let strict_own_hall = ctx.channel == Channel::OwnHall && ctx.strict_verification;
    if ctx.active_at_carrier_province >= policy.own_hall_threshold && !strict_own_hall {
        return Err(DomainError::new(
            Reason::LimitExceeded,
            format!(
                "the identity holds {} cards at this {}; at {} or more a new card needs the carrier's own hall with strict verification",
                ctx.active_at_carrier_province,
                // Worded as before rules 2 for every other card: refusals
                // are stored (dedup records, audit), and old entries must
                // store the same bytes on every build.
                if ctx.own_hall_nationwide { "MVNO in all provinces" } else { "carrier-province" },
                policy.own_hall_threshold
            ),
        ));
    }
    Ok(())
}

impl Policy {
    /// No limits at all: for cards the personal-card limits do not cover.
    pub fn unlimited() -> Policy {
        Policy {
            own_hall_threshold: u32::MAX,
            max_per_carrier: 0,
            max_total: 0,
            ..Policy::default()
        }
    }

    /// Refuses a policy that could not be enforced sensibly.
    pub fn validate(&self) -> Result<(), DomainError> {
        let bad = |m: &str| Err(DomainError::new(Reason::InvalidArgument, m));
        if self.own_hall_threshold == 0 {
            return bad("own_hall_threshold must be at least 1");
        }
        if self.reverify_window_ms == 0 || self.lockout_ms == 0 {
            return bad("time windows must be positive");
        }
        if self.max_failed_verifications == 0 {
            return bad("max_failed_verifications must be at least 1");
        }
        if self.max_total > 0 && self.max_per_carrier > self.max_total {
            return bad("max_per_carrier cannot exceed max_total");
        }
        Ok(())
    }
}

/// A failed verification against an identity's lockout state
/// `(failures so far, locked until)`: the new state, and whether this
/// failure locked it.
pub fn record_failed_verification(
    policy: &Policy,
    failures: u32,
    locked_until_ms: u64,
    now_ms: u64,
) -> (u32, u64, bool) {
    if locked_until_ms > now_ms {
        return (failures, locked_until_ms, false);
    }
    let failures = failures + 1;
    if failures >= policy.max_failed_verifications {
        (0, now_ms.saturating_add(policy.lockout_ms), true)
    } else {
        (failures, 0, false)
    }
}

/// An IoT card names the unit responsible for it (by unified social credit
/// code) and is held by a responsible person; a personal card names no unit.
pub fn check_responsible_unit(
    kind: CardKind,
    holder: &Identity,
    unit: Option<&Identity>,
) -> Result<(), DomainError> {
    let bad = |m: &str| Err(DomainError::new(Reason::InvalidArgument, m));
    match (kind, unit) {
        (CardKind::Personal, None) => Ok(()),
        (CardKind::Personal, Some(_)) => bad("responsible_unit is only for IOT cards"),
        (CardKind::Iot, None) => {
            bad("an IOT card needs a responsible_unit (unified social credit code)")
        }
        (CardKind::Iot, Some(u)) if u.doc_type() != DocType::UnifiedSocialCreditCode => {
            bad("responsible_unit must be a UNIFIED_SOCIAL_CREDIT_CODE")
        }
        (CardKind::Iot, Some(_)) if holder.doc_type() == DocType::UnifiedSocialCreditCode => {
            bad("an IOT card's identity is its responsible person, not a unit")
        }
        (CardKind::Iot, Some(_)) => Ok(()),
    }
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

    #[test]
    fn policy_windows_stop_at_ten_years() {
        assert_eq!(window_ms("w", 86_400).unwrap(), 86_400_000);
        assert_eq!(
            window_ms("w", MAX_WINDOW_SECONDS).unwrap(),
            MAX_WINDOW_SECONDS * 1000
        );
        for too_long in [MAX_WINDOW_SECONDS + 1, u64::MAX / 1000 + 1, u64::MAX] {
            let e = window_ms("lockout_seconds", too_long).unwrap_err();
            assert_eq!(e.reason, Reason::InvalidArgument);
            assert!(e.message.contains("lockout_seconds"), "{}", e.message);
        }
    }

    fn ctx(active: u32, channel: Channel, strict: bool) -> RegistrationContext {
        RegistrationContext {
            active_at_carrier_province: active,
            own_hall_nationwide: false,
            held_at_carrier: active,
            held_total: active,
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
    fn the_refusal_names_what_the_threshold_counted() {
        let p = Policy::default();
        let e = check_registration(&p, &ctx(5, Channel::Agent, false)).unwrap_err();
        // Stored in dedup records and the audit trail: old entries must
        // word it exactly as before rules 2.
        assert_eq!(
            e.message,
            "the identity holds 5 cards at this carrier-province; at 5 or more a new card needs the carrier's own hall with strict verification"
        );
        let mvno = RegistrationContext {
            own_hall_nationwide: true,
            ..ctx(5, Channel::Agent, false)
        };
        let e = check_registration(&p, &mvno).unwrap_err();
        assert!(
            e.message.contains("at this MVNO in all provinces"),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_mvno_counts_nationwide_only_from_rules_2() {
        let v1 = Policy::default();
        assert_eq!(v1.rules, RULES_ORIGINAL);
        let v2 = Policy {
            rules: RULES_MVNO_NATIONWIDE,
            ..v1
        };
        for (policy, carrier, nationwide) in [
            (&v1, "XIAOMI", false),
            (&v1, "CMCC", false),
            (&v2, "XIAOMI", true),
            (&v2, "JD", true),
            (&v2, "CMCC", false),
            (&v2, "CBN", false),
        ] {
            assert_eq!(
                own_hall_nationwide(policy, carrier),
                nationwide,
                "rules {} {carrier}",
                policy.rules
            );
        }
    }

    #[test]
    fn rules_only_move_forward_to_a_known_version() {
        assert!(check_rules_change(RULES_ORIGINAL, RULES_MVNO_NATIONWIDE).is_ok());
        for (current, next, reason) in [
            (RULES_ORIGINAL, RULES_ORIGINAL, Reason::IllegalTransition),
            (
                RULES_MVNO_NATIONWIDE,
                RULES_ORIGINAL,
                Reason::IllegalTransition,
            ),
            (RULES_ORIGINAL, 0, Reason::InvalidArgument),
            (RULES_ORIGINAL, LATEST_RULES + 1, Reason::InvalidArgument),
            (RULES_ORIGINAL, u32::MAX, Reason::InvalidArgument),
        ] {
            assert_eq!(
                check_rules_change(current, next).unwrap_err().reason,
                reason,
                "{current} -> {next}"
            );
        }
    }

    proptest! {
        #[test]
        fn a_rules_change_is_allowed_exactly_when_it_moves_forward_within_the_build(
            current in 0u32..8, next in 0u32..8,
        ) {
            let allowed = check_rules_change(current, next).is_ok();
            prop_assert_eq!(allowed, next > current && (1..=LATEST_RULES).contains(&next));
        }
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
    fn national_limits_bind_every_channel() {
        let p = Policy {
            max_per_carrier: 3,
            max_total: 4,
            ..Policy::default()
        };
        let strict = |c: u32, t: u32| RegistrationContext {
            active_at_carrier_province: 0,
            own_hall_nationwide: false,
            held_at_carrier: c,
            held_total: t,
            channel: Channel::OwnHall,
            strict_verification: true,
            msisdn_active_holder: None,
        };
        assert!(check_registration(&p, &strict(2, 3)).is_ok());
        assert_eq!(
            check_registration(&p, &strict(3, 3)).unwrap_err().reason,
            Reason::LimitExceeded
        );
        assert_eq!(
            check_registration(&p, &strict(0, 4)).unwrap_err().reason,
            Reason::LimitExceeded
        );
        assert!(p.validate().is_ok());
        assert!(Policy {
            max_per_carrier: 5,
            ..p
        }
        .validate()
        .is_err());
        assert!(Policy {
            own_hall_threshold: 0,
            ..p
        }
        .validate()
        .is_err());
    }

    #[test]
    fn iot_cards_need_a_unit_and_a_person() {
        let person = Identity::parse(DocType::ResidentId, "11010519491231002X").unwrap();
        let body = "91350100M000100Y4";
        let code = format!(
            "{body}{}",
            crate::domain::identity::uscc_check(body.as_bytes()).unwrap()
        );
        let unit = Identity::parse(DocType::UnifiedSocialCreditCode, &code).unwrap();
        assert!(check_responsible_unit(CardKind::Personal, &person, None).is_ok());
        assert!(check_responsible_unit(CardKind::Iot, &person, Some(&unit)).is_ok());
        for (kind, holder, u) in [
            (CardKind::Personal, &person, Some(&unit)),
            (CardKind::Iot, &person, None),
            (CardKind::Iot, &person, Some(&person)),
            (CardKind::Iot, &unit, Some(&unit)),
        ] {
            assert_eq!(
                check_responsible_unit(kind, holder, u).unwrap_err().reason,
                Reason::InvalidArgument
            );
        }
    }

    #[test]
    fn lockout_after_max_failures() {
        let p = Policy::default();
        let (f, until, locked) = record_failed_verification(&p, 0, 0, 100);
        assert_eq!((f, until, locked), (1, 0, false));
        let (f, _, locked) = record_failed_verification(&p, f, 0, 101);
        assert!(!locked);
        let (f, until, locked) = record_failed_verification(&p, f, 0, 102);
        assert!(locked);
        assert_eq!((f, until), (0, 102 + DAY_MS));
        // While locked, failures do not extend the lockout.
        assert_eq!(
            record_failed_verification(&p, 0, until, 200),
            (0, until, false)
        );
        assert_eq!(record_failed_verification(&p, 0, until, until).0, 1);
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
