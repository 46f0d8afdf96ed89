//! Rules revisions over a real 3-node cluster: a revision moves forward only,
//! waits for every member to answer, applies on every replica from its entry
//! on, and survives a restart; the CLI reports refusals with exit code ≠ 0.

mod common;

use common::*;
use oneid::pb;
use oneid::pb::regulator_client::RegulatorClient;
use tonic::Code;

fn set_rules(version: u32, request_id: &str) -> pb::SetRulesRequest {
    pb::SetRulesRequest {
        request_id: request_id.into(),
        version,
    }
}

/// Card `msisdn` of `id` at the MVNO XIAOMI in `province`, by an agent.
fn mvno_card(
    rid: &str,
    id: &pb::Identity,
    msisdn: &str,
    province: &str,
) -> pb::RegisterCardRequest {
    pb::RegisterCardRequest {
        carrier: "XIAOMI".into(),
        province: province.into(),
        ..register_req(rid, id, msisdn)
    }
}

async fn rules_on_every_node(c: &Cluster, want: u32) {
    for id in 1..=3 {
        eventually(c, "every node to apply the rules change", || async move {
            match c.status(id).await {
                Some(s) if s.rules_version == want => Ok(()),
                other => Err(format!("node {id}: {other:?}")),
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_move_forward_on_every_replica_once_every_member_answers() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = (1..=3).find(|&n| n != leader).expect("a follower");
    let mut regulator = RegulatorClient::new(c.endpoint(follower));
    let s = c.status(follower).await.expect("status");
    assert_eq!((s.rules_version, s.rules_supported), (1, 3), "{s:?}");

    regulator
        .set_policy(pb::SetPolicyRequest {
            request_id: "p-1".into(),
            policy: Some(pb::Policy {
                own_hall_threshold: 2,
                reverify_window_seconds: 86_400,
                max_cards_per_carrier: 0,
                max_cards_total: 0,
                max_failed_verifications: 3,
                lockout_seconds: 86_400,
            }),
        })
        .await
        .expect("set policy");
    // Under the first rules an MVNO's cards count per province.
    let a = resident_id("11010519491231002");
    for (n, province) in ["11", "31", "44"].iter().enumerate() {
        let msisdn = format!("1700000000{n}");
        register_retrying(
            &c,
            follower,
            mvno_card(&format!("m-{n}"), &a, &msisdn, province),
        )
        .await
        .unwrap_or_else(|s| panic!("XIAOMI/{province} under rules 1: {s:?}"));
    }

    // A member that does not answer holds the change back: nothing is
    // proposed.
    let silent = (1..=3)
        .find(|&n| n != leader && n != follower)
        .expect("a third node");
    c.kill(silent);
    let s = regulator
        .set_rules(set_rules(2, "r-1"))
        .await
        .expect_err("a member is down");
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(s.message().contains(&format!("node {silent}")), "{s:?}");
    assert_eq!(c.status(follower).await.expect("status").rules_version, 1);
    c.spawn(silent);

    // Bad versions are refused before anything is asked or proposed.
    for (version, code) in [(0, Code::InvalidArgument), (4, Code::InvalidArgument)] {
        let s = regulator
            .set_rules(set_rules(version, "r-bad"))
            .await
            .expect_err("a bad version");
        assert_eq!(s.code(), code, "version {version}: {s:?}");
    }

    // Once every member answers, the change goes through (retried, as a
    // client would, while the restarted node comes back).
    let index = eventually(&c, "the rules change", || {
        let mut regulator = regulator.clone();
        async move {
            match regulator.set_rules(set_rules(2, "r-2")).await {
                Ok(r) => Ok(r.into_inner().applied_index),
                Err(s) if s.code() == Code::Unavailable => Err(format!("{s:?}")),
                Err(s) => panic!("rules 2: {s:?}"),
            }
        }
    })
    .await;
    assert!(index > 0);
    rules_on_every_node(&c, 2).await;
    // The same request id replays; a step back is refused as such.
    let again = regulator
        .set_rules(set_rules(2, "r-2"))
        .await
        .expect("replay")
        .into_inner();
    assert!(again.replayed, "{again:?}");
    let s = regulator
        .set_rules(set_rules(1, "r-3"))
        .await
        .expect_err("backwards");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert_eq!(reason(&s), "ILLEGAL_TRANSITION", "{s:?}");

    // Now the MVNO's three cards count wherever they are.
    let s = register_retrying(&c, follower, mvno_card("m-9", &a, "17000000009", "50"))
        .await
        .expect_err("over the own-hall threshold nationwide");
    assert_eq!(reason(&s), "LIMIT_EXCEEDED", "{s:?}");
    let mut by_hall = mvno_card("m-10", &a, "17000000010", "50");
    by_hall.channel = pb::Channel::OwnHall as i32;
    by_hall.strict_verification = true;
    register_retrying(&c, follower, by_hall)
        .await
        .expect("the own hall with strict verification");

    // A node joins only if its build applies the rules in force: one that
    // cannot be asked is not added.
    let nobody = format!("127.0.0.1:{}", free_port());
    let s = c
        .cluster(follower)
        .add_learner(pb::AddLearnerRequest {
            node_id: 9,
            addr: nobody.clone(),
        })
        .await
        .expect_err("nobody answers there");
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(
        s.message().contains(&format!("node 9 at {nobody}")),
        "{s:?}"
    );
    let s = c.status(follower).await.expect("status");
    assert!(s.members.iter().all(|m| m.node_id != 9), "{s:?}");

    // A restarted node comes back under the rules it applied.
    c.kill(leader);
    c.spawn(leader);
    let new_leader = c.wait_leader(&[1, 2, 3]).await;
    rules_on_every_node(&c, 2).await;
    c.assert_replicas_agree(new_leader, &[1, 2, 3]).await;

    // The CLI: refusals are errors with a reason, exit code ≠ 0.
    let ep = c.node(follower).addr.clone();
    let out = oneid_cli(&["policy", "--endpoints", &ep, "rules", "1"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("only moves forward"),
        "{}",
        output_text(&out)
    );
    let out = oneid_cli(&["policy", "--endpoints", &ep, "rules", "7"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("unknown"),
        "{}",
        output_text(&out)
    );
    let out = oneid_cli(&["status", "--endpoints", &ep]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains(" 2/3"), "{}", output_text(&out));
}
