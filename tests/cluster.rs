//! A real 3-node cluster: replication, linearizable counts from every node,
//! leader failover, restart and catch-up, idempotent retries.

mod common;

use common::*;
use oneid::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_count_failover_restart_and_retry() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let alice = resident_id("11010519491231002");

    // Register through a follower: it forwards to the leader.
    let follower = if leader == 1 { 2 } else { 1 };
    let first = register_retrying(&c, follower, register_req("r-1", &alice, "13800000001"))
        .await
        .expect("register");
    assert_eq!(first.active_at_carrier_province, 1);
    assert!(!first.replayed);
    register_retrying(&c, leader, register_req("r-2", &alice, "13800000002"))
        .await
        .expect("register");

    // A count through every node sees both registrations (linearizable reads).
    for id in 1..=3 {
        let r = c
            .registry(id)
            .count_cards(count_req(&alice, "13800000001"))
            .await
            .unwrap_or_else(|e| panic!("count via node {id}: {e}"))
            .into_inner();
        assert_eq!(r.total, 2, "node {id}");
        assert_eq!(
            r.by_carrier,
            vec![pb::CarrierCount {
                carrier: "CMCC".into(),
                count: 2
            }]
        );
    }

    // Retrying a request id returns the first outcome and changes nothing.
    let again = register_retrying(&c, leader, register_req("r-1", &alice, "13800000001"))
        .await
        .expect("retry");
    assert!(again.replayed);
    assert_eq!(
        again.active_at_carrier_province,
        first.active_at_carrier_province
    );

    // kill -9 the leader: the others elect a new one and writes go on.
    c.kill(leader);
    let rest: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    let new_leader = c.wait_leader(&rest).await;
    assert_ne!(new_leader, leader);
    let mut acked = vec!["13800000001".to_string(), "13800000002".to_string()];
    for i in 3..=5 {
        let m = format!("1380000000{i}");
        register_retrying(&c, rest[0], register_req(&format!("r-{i}"), &alice, &m))
            .await
            .expect("register after failover");
        acked.push(m);
    }
    let r = c
        .registry(rest[1])
        .count_cards(count_req(&alice, &acked[4]))
        .await
        .expect("count")
        .into_inner();
    assert_eq!(
        r.total as usize,
        acked.len(),
        "every acknowledged write is there"
    );

    // The limit: the sixth card at this carrier-province through an agent is refused.
    let err = register_retrying(&c, rest[0], register_req("r-6", &alice, "13800000006"))
        .await
        .expect_err("limit");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&err), "LIMIT_EXCEEDED");

    // The killed node restarts from its data dir and catches up.
    c.spawn(leader);
    let target = c.status(new_leader).await.expect("status").last_applied;
    c.wait_applied(leader, target).await;
    let r = c
        .registry(leader)
        .count_cards(count_req(&alice, "13800000003"))
        .await
        .expect("count via restarted node")
        .into_inner();
    assert_eq!(r.total, 5);

    // Cancel, then the count drops everywhere; a second cancel is refused.
    c.registry(leader)
        .cancel_card(pb::CancelCardRequest {
            request_id: "c-1".into(),
            msisdn: "13800000005".into(),
            carrier: "CMCC".into(),
        })
        .await
        .expect("cancel");
    let err = c
        .registry(rest[0])
        .cancel_card(pb::CancelCardRequest {
            request_id: "c-2".into(),
            msisdn: "13800000005".into(),
            carrier: "CMCC".into(),
        })
        .await
        .expect_err("second cancel");
    assert_eq!(reason(&err), "ALREADY_CANCELLED");
    for id in 1..=3 {
        let r = c
            .registry(id)
            .count_cards(count_req(&alice, "13800000001"))
            .await
            .expect("count")
            .into_inner();
        assert_eq!(r.total, 4, "node {id}");
    }
    // A cancelled number no longer verifies.
    let err = c
        .registry(1)
        .count_cards(count_req(&alice, "13800000005"))
        .await
        .expect_err("verification");
    assert_eq!(reason(&err), "VERIFICATION_FAILED");

    // Replicas converge to identical state.
    c.assert_replicas_agree(new_leader, &[1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_catches_up_by_snapshot() {
    let mut c = Cluster::start(3, &["--snapshot-logs", "20"]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let lagging = if leader == 3 { 2 } else { 3 };
    c.kill(lagging);

    // Sequential writes: one entry each, so the log passes several snapshots.
    let up: Vec<u64> = (1..=3).filter(|i| *i != lagging).collect();
    for i in 0..120u32 {
        let id = resident_id(&format!("110105199001{:05}", 10000 + i));
        register_retrying(
            &c,
            up[0],
            register_req(&format!("s-{i}"), &id, &format!("139{:08}", i)),
        )
        .await
        .expect("register");
    }
    let st = c.status(leader).await.expect("status");
    assert!(st.snapshot_index > 0, "leader built a snapshot: {st:?}");

    c.spawn(lagging);
    c.wait_applied(lagging, st.last_applied).await;
    let s = c.status(lagging).await.expect("status");
    assert!(s.snapshot_index > 0, "caught up through a snapshot: {s:?}");
    assert_eq!(
        c.digest(lagging).await.split(':').nth(1),
        c.digest(leader).await.split(':').nth(1)
    );
    let id = resident_id(&format!("110105199001{:05}", 10000 + 7));
    let r = c
        .registry(lagging)
        .count_cards(count_req(&id, &format!("139{:08}", 7)))
        .await
        .expect("count on caught-up node")
        .into_inner();
    assert_eq!(r.total, 1);
}
