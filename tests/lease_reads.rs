//! Leader lease reads with real processes: a leader holding its lease
//! answers read indexes (its own counts and its followers' ReadIndex
//! requests) without a heartbeat round, none with `--lease-reads false`;
//! and a leader cut off from its followers stops answering from its lease
//! once it has run out, while the majority elects another leader and
//! takes writes it cannot see.

mod common;

use common::proxy::start_partitionable;
use common::*;

/// `oneid_raft_read_indexes_total{how=...}` on node `id`.
async fn read_indexes(c: &Cluster, id: u64, how: &str) -> f64 {
    let metrics = scrape(c, id).await.expect("metrics");
    metrics
        .get(&format!("oneid_raft_read_indexes_total{{how=\"{how}\"}}"))
        .copied()
        .unwrap_or(0.0)
}

/// Registers a card for alice through the leader, then counts her cards
/// 20 times on every node; returns the leader's (lease, round) counts.
async fn count_everywhere(c: &Cluster) -> (f64, f64) {
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let alice = resident_id("11010519800101002");
    register_retrying(c, leader, register_req("lease-1", &alice, "13900000011"))
        .await
        .expect("register");
    for id in [1, 2, 3] {
        for _ in 0..20 {
            let total = c
                .registry(id)
                .count_cards(count_req(&alice, "13900000011"))
                .await
                .unwrap_or_else(|s| panic!("count on node {id}: {s:?}\n{}", c.logs()))
                .into_inner()
                .total;
            assert_eq!(total, 1, "count on node {id}");
        }
    }
    (
        read_indexes(c, leader, "lease").await,
        read_indexes(c, leader, "round").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_answered_from_the_lease_and_with_rounds_when_it_is_off() {
    let c = Cluster::start_with_http(3, &[]);
    let (lease, _round) = count_everywhere(&c).await;
    // 60 counts, 40 of them read indexes asked by followers. A read that
    // finds the lease lapsed (a heartbeat answered late on a busy
    // machine) runs a round instead, so not all of them need to.
    assert!(lease >= 30.0, "read indexes from the lease: {lease}");
    drop(c);

    let off = Cluster::start_with_http(3, &["--lease-reads", "false"]);
    let (lease, round) = count_everywhere(&off).await;
    assert_eq!(lease, 0.0, "lease reads are off");
    assert!(round >= 1.0, "rounds: {round}");
}

/// The leader is cut off from both followers. openraft keeps it leader, so
/// only its lease running out stops it answering reads: once the others
/// have elected a leader and taken a write, a count on the old leader must
/// not come back without that write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_stops_answering_from_its_lease_before_another_takes_writes() {
    let (c, mesh) = start_partitionable(3).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let alice = resident_id("11010519800101002");
    register_retrying(&c, leader, register_req("cut-1", &alice, "13900000011"))
        .await
        .expect("first card");
    let count_on = |id: u64| {
        let mut registry = c.registry(id);
        let req = count_req(&alice, "13900000011");
        async move {
            registry
                .count_cards(req)
                .await
                .map(|r| r.into_inner().total)
        }
    };
    assert_eq!(count_on(leader).await.expect("count before"), 1);
    assert!(read_indexes(&c, leader, "lease").await >= 1.0);

    mesh.isolate(leader);
    let majority: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != leader).collect();
    let new_leader = c.wait_leader(&majority).await;
    register_retrying(&c, new_leader, register_req("cut-2", &alice, "13900000012"))
        .await
        .expect("second card, through the majority");
    assert_eq!(
        c.status(leader).await.expect("status").leader_id,
        leader,
        "the cut-off node still believes it leads (else this tests nothing)"
    );
    match count_on(leader).await {
        Ok(total) => assert_eq!(
            total, 2,
            "a count on the cut-off leader missed a write the majority acknowledged"
        ),
        Err(s) => assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}"),
    }

    mesh.heal(leader);
    eventually(
        &c,
        "the old leader counts both cards after healing",
        || async {
            match count_on(leader).await {
                Ok(2) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}
