//! The gate in front of a rules change: every member's build must apply the
//! revision. A member that could not would stop applying the log at the
//! entry (it must never decide it differently from its peers), and stay
//! stopped until upgraded; refusing the change first keeps the cluster whole.

use oneid_raft::capabilities::MemberRules;
use oneid_raft::Replica;

use super::ApiError;
use crate::domain::{DomainError, Reason};

/// Asks every member, then [`judge`]s the answers.
pub async fn every_member_applies(replica: &Replica, version: u32) -> Result<(), ApiError> {
    judge(version, &replica.members_rules().await)
}

/// Refuses `version` unless every member said it applies it: a member whose
/// build is older is a precondition the operator must fix (upgrade it); one
/// that did not answer is a retry.
pub fn judge(version: u32, members: &[MemberRules]) -> Result<(), ApiError> {
    if members.is_empty() {
        return Err(ApiError::Unavailable(
            "this node knows no cluster membership yet".into(),
        ));
    }
    let mut behind = Vec::new();
    let mut silent = Vec::new();
    for m in members {
        match &m.rules {
            Ok(applies) if *applies >= version => {}
            Ok(applies) => behind.push(format!(
                "node {} at {} applies rules up to version {applies}",
                m.id, m.addr
            )),
            Err(e) => silent.push(format!("node {} at {}: {e}", m.id, m.addr)),
        }
    }
    if !behind.is_empty() {
        return Err(ApiError::Domain(DomainError::new(
            Reason::IllegalTransition,
            format!(
                "rules version {version} needs every member to apply it; upgrade first: {}",
                behind.join("; ")
            ),
        )));
    }
    if !silent.is_empty() {
        return Err(ApiError::Unavailable(format!(
            "cannot learn whether every member applies rules version {version}; retry once \
             they answer: {}",
            silent.join("; ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, rules: Result<u32, &str>) -> MemberRules {
        MemberRules {
            id,
            addr: format!("127.0.0.1:700{id}"),
            rules: rules.map_err(str::to_string),
        }
    }

    #[test]
    fn every_member_must_apply_the_version() {
        let all_new = [member(1, Ok(2)), member(2, Ok(3)), member(3, Ok(2))];
        assert!(judge(2, &all_new).is_ok());
        assert!(judge(1, &all_new).is_ok());

        let one_old = [
            member(1, Ok(2)),
            member(2, Ok(1)),
            member(3, Err("timeout")),
        ];
        match judge(2, &one_old) {
            // The build to upgrade is named before anything is retried.
            Err(ApiError::Domain(e)) => {
                assert_eq!(e.reason, Reason::IllegalTransition);
                assert!(
                    e.message
                        .contains("node 2 at 127.0.0.1:7002 applies rules up to version 1"),
                    "{}",
                    e.message
                );
                assert!(!e.message.contains("node 1"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }

        let one_silent = [member(1, Ok(2)), member(3, Err("connection refused"))];
        match judge(2, &one_silent) {
            Err(ApiError::Unavailable(m)) => assert!(m.contains("node 3"), "{m}"),
            other => panic!("{other:?}"),
        }
        // No members known (an uninitialized node) is no agreement.
        assert!(matches!(judge(2, &[]), Err(ApiError::Unavailable(_))));
    }
}
