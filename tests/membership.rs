//! Online membership change with real processes: a fourth node joins as a
//! learner, catches up, becomes a voter; a node is removed; the last voter
//! can never be removed.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_catches_up_and_votes() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let id = resident_id("11010519491231002");
    register_retrying(&c, 1, register_req("m-1", &id, "13800000001"))
        .await
        .expect("register");

    // A fourth node, started empty and outside the initial cluster.
    let n4 = c.add_node();
    let addr4 = c.node(n4).addr.clone();

    // Bad input is INVALID_ARGUMENT, before any change is tried.
    let mut cluster = oneid::pb::cluster_client::ClusterClient::new(c.endpoint(leader));
    for (node_id, addr) in [(0, addr4.as_str()), (4, "not an address")] {
        let refused = cluster
            .add_learner(oneid::pb::AddLearnerRequest {
                node_id,
                addr: addr.into(),
            })
            .await
            .expect_err("bad learner");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }
    for voters in [vec![], vec![0, 1]] {
        let refused = cluster
            .change_voters(oneid::pb::ChangeVotersRequest { voters })
            .await
            .expect_err("bad voters");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }

    let ep = c.node(1).addr.clone();
    let add = oneid_cli(&["member", "add", "4", &addr4, "--endpoints", &ep]);
    assert!(add.status.success(), "{}", output_text(&add));
    // Run again (as after it gave up waiting for the catch-up), it waits
    // again and succeeds; with another address it is refused.
    let again = oneid_cli(&["member", "add", "4", &addr4, "--endpoints", &ep]);
    assert!(again.status.success(), "{}", output_text(&again));
    assert!(
        output_text(&again).contains("caught up"),
        "{}",
        output_text(&again)
    );
    let moved = oneid_cli(&["member", "add", "4", "127.0.0.1:1", "--endpoints", &ep]);
    assert!(!moved.status.success());
    assert!(
        output_text(&moved).contains(&format!("already a member at {addr4}")),
        "{}",
        output_text(&moved)
    );

    // Over gRPC, the same add again is answered like the first (a retry);
    // another address for the member is refused, not silently ignored.
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let mut cluster = oneid::pb::cluster_client::ClusterClient::new(c.endpoint(leader));
    cluster
        .add_learner(oneid::pb::AddLearnerRequest {
            node_id: 4,
            addr: addr4.clone(),
        })
        .await
        .expect("the same add, retried");
    let elsewhere = format!("127.0.0.1:{}", free_port());
    let moved = cluster
        .add_learner(oneid::pb::AddLearnerRequest {
            node_id: 4,
            addr: elsewhere.clone(),
        })
        .await
        .expect_err("another address");
    assert_eq!(moved.code(), tonic::Code::FailedPrecondition, "{moved:?}");
    assert_eq!(reason(&moved), "MEMBERSHIP", "{moved:?}");
    assert!(moved.message().contains(&addr4), "{moved:?}");

    let promote = oneid_cli(&["member", "promote", "4", "--endpoints", &ep]);
    assert!(promote.status.success(), "{}", output_text(&promote));
    let list = output_text(&oneid_cli(&["member", "list", "--endpoints", &ep]));
    assert_eq!(list.lines().count(), 4, "{list}");
    assert!(!list.contains("learner"), "{list}");
    let voter = oneid_cli(&["member", "add", "4", &addr4, "--endpoints", &ep]);
    assert!(voter.status.success(), "{}", output_text(&voter));
    assert!(
        output_text(&voter).contains("already a voter"),
        "{}",
        output_text(&voter)
    );

    // The new voter serves a linearizable count of data written before it joined.
    let n = c
        .registry(n4)
        .count_cards(count_req(&id, "13800000001"))
        .await
        .expect("count on the new voter")
        .into_inner()
        .total;
    assert_eq!(n, 1);

    // Remove a follower; the cluster keeps accepting writes.
    let follower = [1u64, 2, 3].into_iter().find(|n| *n != leader).unwrap();
    let remove = oneid_cli(&[
        "member",
        "remove",
        &follower.to_string(),
        "--endpoints",
        &ep,
    ]);
    assert!(remove.status.success(), "{}", output_text(&remove));
    let other = [1u64, 2, 3].into_iter().find(|n| *n != follower).unwrap();
    register_retrying(&c, other, register_req("m-2", &id, "13800000002"))
        .await
        .expect("write after removal");
    let list = output_text(&oneid_cli(&[
        "member",
        "list",
        "--endpoints",
        &c.node(other).addr,
    ]));
    assert_eq!(list.lines().count(), 3, "{list}");
}
