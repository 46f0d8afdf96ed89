//! A card's life after registration: suspension, high-risk re-verification
//! (二次实人认证), missing real-name registration (停机, then 销户 at a
//! deadline), disputes (剥离 / 关停 / 销户) and cancellation. Only the
//! transitions listed in [`next_status`] exist; anything else is refused with
//! the card left as it was.

use super::error::{DomainError, Reason};

/// Why a card is out of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuspendReason {
    /// The holder disputed the card and the carrier suspended it (关停).
    Dispute,
    /// A high-risk card was not re-verified before its deadline.
    HighRiskUnverified,
}

impl SuspendReason {
    pub fn code(self) -> u8 {
        match self {
            SuspendReason::Dispute => 1,
            SuspendReason::HighRiskUnverified => 2,
        }
    }

    pub fn from_code(c: u8) -> Option<SuspendReason> {
        match c {
            1 => Some(SuspendReason::Dispute),
            2 => Some(SuspendReason::HighRiskUnverified),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SuspendReason::Dispute => "dispute",
            SuspendReason::HighRiskUnverified => "high_risk_unverified",
        }
    }
}

/// The full status of a card, with what each state needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    Active,
    Suspended(SuspendReason),
    /// Flagged high-risk: must pass in-person re-verification by the deadline
    /// (replicated clock, ms since the Unix epoch) or be suspended.
    PendingReverify {
        deadline_ms: u64,
    },
    /// Suspended because its holder never completed real-name registration
    /// (reported by the carrier): back in service once they do, cancelled
    /// (terminated) at the deadline if they still have not.
    RealNameMissing {
        deadline_ms: u64,
    },
    /// Cancelled (销户) by its carrier: gone for good.
    Cancelled,
    /// Stripped (剥离) from an identity that did not recognise it: the
    /// number left that identity and is free to be registered again.
    Stripped,
}

/// What can happen to a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A regulator flags the card high-risk.
    FlagHighRisk { deadline_ms: u64 },
    /// The carrier reports a passed in-person re-verification.
    Reverified,
    /// The replicated clock reached `now_ms` (the leader's sweep).
    DeadlineCheck { now_ms: u64 },
    /// A dispute resolved as suspended (关停).
    Suspend(SuspendReason),
    /// A dispute resolved as stripped (剥离).
    Strip,
    /// The carrier cancels the card (销户), directly or as a dispute outcome.
    Cancel,
    /// The carrier reports the holder never completed real-name
    /// registration: suspended until `deadline_ms`, then terminated.
    RealNameMissing { deadline_ms: u64 },
    /// The carrier reports the holder completed real-name registration.
    RealNameCompleted,
}

impl Lifecycle {
    /// Still registered under its identity: counted, and subject to limits.
    /// A suspended card counts, so suspension is no way around the limit.
    pub fn is_held(self) -> bool {
        matches!(
            self,
            Lifecycle::Active
                | Lifecycle::Suspended(_)
                | Lifecycle::PendingReverify { .. }
                | Lifecycle::RealNameMissing { .. }
        )
    }

    /// When the leader's sweep must look at the card again: the end of a
    /// re-verification window, or of the time to complete real-name
    /// registration.
    pub fn deadline_ms(self) -> Option<u64> {
        match self {
            Lifecycle::PendingReverify { deadline_ms }
            | Lifecycle::RealNameMissing { deadline_ms } => Some(deadline_ms),
            _ => None,
        }
    }

    /// In service: the only state that proves possession in a verification.
    pub fn is_active(self) -> bool {
        self == Lifecycle::Active
    }

    pub fn name(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::Suspended(_) | Lifecycle::RealNameMissing { .. } => "suspended",
            Lifecycle::PendingReverify { .. } => "pending_reverify",
            Lifecycle::Cancelled => "cancelled",
            Lifecycle::Stripped => "stripped",
        }
    }
}

impl Lifecycle {
    /// Stable storage form: (status code, suspend reason code, deadline).
    pub fn to_parts(self) -> (u8, u8, u64) {
        match self {
            Lifecycle::Active => (1, 0, 0),
            Lifecycle::Suspended(r) => (2, r.code(), 0),
            Lifecycle::PendingReverify { deadline_ms } => (3, 0, deadline_ms),
            Lifecycle::Cancelled => (4, 0, 0),
            Lifecycle::Stripped => (5, 0, 0),
            Lifecycle::RealNameMissing { deadline_ms } => (6, 0, deadline_ms),
        }
    }

    /// The inverse of [`Lifecycle::to_parts`]; `None` for codes this version
    /// does not know (the caller reports them as corruption).
    pub fn from_parts(status: u8, reason: u8, deadline_ms: u64) -> Option<Lifecycle> {
        match status {
            1 => Some(Lifecycle::Active),
            2 => SuspendReason::from_code(reason).map(Lifecycle::Suspended),
            3 => Some(Lifecycle::PendingReverify { deadline_ms }),
            4 => Some(Lifecycle::Cancelled),
            5 => Some(Lifecycle::Stripped),
            6 => Some(Lifecycle::RealNameMissing { deadline_ms }),
            _ => None,
        }
    }
}

fn illegal(from: Lifecycle, what: &str) -> DomainError {
    let reason = match from {
        Lifecycle::Cancelled => Reason::AlreadyCancelled,
        _ => Reason::IllegalTransition,
    };
    DomainError::new(reason, format!("a {} card cannot be {what}", from.name()))
}

/// The status after `event`, or why the event does not apply. Pure and total:
/// the state machine stores the result only when this returns `Ok`.
pub fn next_status(from: Lifecycle, event: Event) -> Result<Lifecycle, DomainError> {
    use Lifecycle::*;
    match (from, event) {
        (Active, Event::FlagHighRisk { deadline_ms }) => Ok(PendingReverify { deadline_ms }),
        (_, Event::FlagHighRisk { .. }) => Err(illegal(from, "flagged high-risk")),

        (PendingReverify { .. } | Suspended(_), Event::Reverified) => Ok(Active),
        (_, Event::Reverified) => Err(illegal(from, "re-verified")),

        (PendingReverify { deadline_ms }, Event::DeadlineCheck { now_ms }) => {
            if now_ms >= deadline_ms {
                Ok(Suspended(SuspendReason::HighRiskUnverified))
            } else {
                Ok(from)
            }
        }
        // Suspended, then terminated if they still do not register.
        (RealNameMissing { deadline_ms }, Event::DeadlineCheck { now_ms }) => {
            if now_ms >= deadline_ms {
                Ok(Cancelled)
            } else {
                Ok(from)
            }
        }
        (_, Event::DeadlineCheck { .. }) => Ok(from),

        (Active | PendingReverify { .. }, Event::Suspend(r)) => Ok(Suspended(r)),
        (_, Event::Suspend(_)) => Err(illegal(from, "suspended")),

        (Active | PendingReverify { .. }, Event::RealNameMissing { deadline_ms }) => {
            Ok(RealNameMissing { deadline_ms })
        }
        (_, Event::RealNameMissing { .. }) => Err(illegal(
            from,
            "suspended for missing real-name registration",
        )),

        (RealNameMissing { .. }, Event::RealNameCompleted) => Ok(Active),
        (_, Event::RealNameCompleted) => Err(illegal(
            from,
            "restored by real-name registration (it was not suspended for lacking one)",
        )),

        (Active | Suspended(_) | PendingReverify { .. } | RealNameMissing { .. }, Event::Strip) => {
            Ok(Stripped)
        }
        (_, Event::Strip) => Err(illegal(from, "stripped")),

        (
            Active | Suspended(_) | PendingReverify { .. } | RealNameMissing { .. },
            Event::Cancel,
        ) => Ok(Cancelled),
        (_, Event::Cancel) => Err(illegal(from, "cancelled")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_status() -> impl Strategy<Value = Lifecycle> {
        prop_oneof![
            Just(Lifecycle::Active),
            Just(Lifecycle::Suspended(SuspendReason::Dispute)),
            Just(Lifecycle::Suspended(SuspendReason::HighRiskUnverified)),
            (0u64..1000).prop_map(|d| Lifecycle::PendingReverify { deadline_ms: d }),
            Just(Lifecycle::Cancelled),
            Just(Lifecycle::Stripped),
            (0u64..1000).prop_map(|d| Lifecycle::RealNameMissing { deadline_ms: d }),
        ]
    }

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u64..1000).prop_map(|d| Event::FlagHighRisk { deadline_ms: d }),
            Just(Event::Reverified),
            (0u64..1000).prop_map(|n| Event::DeadlineCheck { now_ms: n }),
            Just(Event::Suspend(SuspendReason::Dispute)),
            Just(Event::Strip),
            Just(Event::Cancel),
            (0u64..1000).prop_map(|d| Event::RealNameMissing { deadline_ms: d }),
            Just(Event::RealNameCompleted),
        ]
    }

    #[test]
    fn missing_real_name_suspends_then_terminates_unless_completed() {
        for from in [
            Lifecycle::Active,
            Lifecycle::PendingReverify { deadline_ms: 50 },
        ] {
            let s = next_status(from, Event::RealNameMissing { deadline_ms: 100 }).unwrap();
            assert_eq!(s, Lifecycle::RealNameMissing { deadline_ms: 100 });
            assert!(s.is_held() && !s.is_active(), "counted, out of service");
            assert_eq!((s.name(), s.deadline_ms()), ("suspended", Some(100)));
            assert_eq!(
                next_status(s, Event::DeadlineCheck { now_ms: 99 }).unwrap(),
                s
            );
            assert_eq!(
                next_status(s, Event::DeadlineCheck { now_ms: 100 }).unwrap(),
                Lifecycle::Cancelled
            );
            assert_eq!(
                next_status(s, Event::RealNameCompleted).unwrap(),
                Lifecycle::Active
            );
            // Re-verification is not real-name registration, and a card
            // out of service cannot be flagged or suspended again.
            for ev in [
                Event::Reverified,
                Event::FlagHighRisk { deadline_ms: 1 },
                Event::Suspend(SuspendReason::Dispute),
                Event::RealNameMissing { deadline_ms: 200 },
            ] {
                assert_eq!(
                    next_status(s, ev).unwrap_err().reason,
                    Reason::IllegalTransition,
                    "{ev:?}"
                );
            }
            assert_eq!(next_status(s, Event::Strip).unwrap(), Lifecycle::Stripped);
            assert_eq!(next_status(s, Event::Cancel).unwrap(), Lifecycle::Cancelled);
        }
        for from in [
            Lifecycle::Active,
            Lifecycle::Suspended(SuspendReason::Dispute),
            Lifecycle::PendingReverify { deadline_ms: 5 },
        ] {
            assert_eq!(
                next_status(from, Event::RealNameCompleted)
                    .unwrap_err()
                    .reason,
                Reason::IllegalTransition,
                "{from:?}"
            );
        }
        assert!(next_status(
            Lifecycle::Suspended(SuspendReason::HighRiskUnverified),
            Event::RealNameMissing { deadline_ms: 1 }
        )
        .is_err());
    }

    #[test]
    fn high_risk_round_trip() {
        let s = next_status(Lifecycle::Active, Event::FlagHighRisk { deadline_ms: 100 }).unwrap();
        assert_eq!(s, Lifecycle::PendingReverify { deadline_ms: 100 });
        assert_eq!(
            next_status(s, Event::DeadlineCheck { now_ms: 99 }).unwrap(),
            s
        );
        let late = next_status(s, Event::DeadlineCheck { now_ms: 100 }).unwrap();
        assert_eq!(
            late,
            Lifecycle::Suspended(SuspendReason::HighRiskUnverified)
        );
        assert_eq!(
            next_status(late, Event::Reverified).unwrap(),
            Lifecycle::Active
        );
        assert_eq!(
            next_status(s, Event::Reverified).unwrap(),
            Lifecycle::Active
        );
    }

    #[test]
    fn terminal_states_refuse_everything_that_changes_them() {
        for from in [Lifecycle::Cancelled, Lifecycle::Stripped] {
            for ev in [
                Event::FlagHighRisk { deadline_ms: 1 },
                Event::Reverified,
                Event::Suspend(SuspendReason::Dispute),
                Event::Strip,
                Event::Cancel,
                Event::RealNameMissing { deadline_ms: 1 },
                Event::RealNameCompleted,
            ] {
                assert!(next_status(from, ev).is_err(), "{from:?} {ev:?}");
            }
        }
        assert_eq!(
            next_status(Lifecycle::Cancelled, Event::Cancel)
                .unwrap_err()
                .reason,
            Reason::AlreadyCancelled
        );
        assert_eq!(
            next_status(Lifecycle::Stripped, Event::Cancel)
                .unwrap_err()
                .reason,
            Reason::IllegalTransition
        );
    }

    #[test]
    fn double_flag_and_reverify_of_active_are_refused() {
        let pending = Lifecycle::PendingReverify { deadline_ms: 5 };
        assert_eq!(
            next_status(pending, Event::FlagHighRisk { deadline_ms: 9 })
                .unwrap_err()
                .reason,
            Reason::IllegalTransition
        );
        assert!(next_status(Lifecycle::Active, Event::Reverified).is_err());
    }

    proptest! {
        #[test]
        fn parts_round_trip(s in any_status()) {
            let (a, b, c) = s.to_parts();
            prop_assert_eq!(Lifecycle::from_parts(a, b, c), Some(s));
        }
    }

    #[test]
    fn codes_round_trip() {
        assert_eq!(Lifecycle::from_parts(0, 0, 0), None);
        assert_eq!(Lifecycle::from_parts(2, 0, 0), None);
        for r in [SuspendReason::Dispute, SuspendReason::HighRiskUnverified] {
            assert_eq!(SuspendReason::from_code(r.code()), Some(r));
        }
        assert_eq!(SuspendReason::from_code(0), None);
    }

    proptest! {
        /// Nothing leaves a terminal state, and nothing but a registration
        /// (which is not an event) re-enters the held states from one.
        #[test]
        fn terminal_is_terminal(from in any_status(), events in prop::collection::vec(any_event(), 0..20)) {
            let mut s = from;
            let mut was_terminal = !s.is_held();
            for ev in events {
                if let Ok(next) = next_status(s, ev) {
                    if was_terminal {
                        prop_assert_eq!(next, s);
                    }
                    s = next;
                }
                was_terminal |= !s.is_held();
            }
        }

        /// A refused event leaves no trace, and an active card is only
        /// reached from active, by re-verification or completed real-name
        /// registration, or by standing still.
        #[test]
        fn active_only_by_reverification(from in any_status(), ev in any_event()) {
            if let Ok(next) = next_status(from, ev) {
                if next == Lifecycle::Active && from != Lifecycle::Active {
                    prop_assert!(
                        matches!(ev, Event::Reverified | Event::RealNameCompleted),
                        "{:?} -> active by {:?}", from, ev
                    );
                }
                if let Event::DeadlineCheck { now_ms } = ev {
                    match from.deadline_ms() {
                        Some(deadline_ms) => {
                            prop_assert_eq!(next.is_active(), false);
                            prop_assert_eq!(next == from, now_ms < deadline_ms);
                        }
                        None => prop_assert_eq!(next, from),
                    }
                }
                // Only a deadline passing terminates a card on its own.
                if next == Lifecycle::Cancelled && from != Lifecycle::Cancelled {
                    prop_assert!(
                        matches!(ev, Event::Cancel)
                            || matches!((from, ev), (Lifecycle::RealNameMissing { .. }, Event::DeadlineCheck { .. })),
                        "{:?} -> cancelled by {:?}", from, ev
                    );
                }
            }
        }
    }
}
