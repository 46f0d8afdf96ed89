//! `/ready` of a node cut off from its peers by a network partition (TCP
//! proxies between the nodes, see `common::proxy`): it turns 503 while the
//! majority stays ready and keeps accepting writes, and after healing it is
//! ready again with the majority's writes applied. Once for a follower, once
//! for the leader, which keeps calling itself leader but loses its quorum
//! acknowledgements.

mod common;

use common::proxy::{start_partitionable, Mesh};
use common::*;
use oneid::pb;

/// The node's /ready status code, or an error saying what came instead.
async fn ready_is(c: &Cluster, id: u64, want: u16) -> Result<String, String> {
    match http_get(c, id, "/ready").await {
        Some((code, body)) if code == want => Ok(body),
        other => Err(format!("{other:?}")),
    }
}

/// Registers `n` cards, each under an identity of its own, through the
/// `through` nodes in turn; returns them and the highest applied index.
async fn write_through(
    c: &Cluster,
    through: &[u64],
    tag: u32,
    n: u32,
) -> (Vec<(pb::Identity, String)>, u64) {
    let mut written = Vec::new();
    let mut last = 0;
    for k in 0..n {
        let node = through[k as usize % through.len()];
        let who = resident_id(&format!("11010519{}0101{k:03}", 60 + tag));
        let msisdn = format!("137{tag:02}{k:06}");
        let req = register_req(&format!("part-{tag}-{k}"), &who, &msisdn);
        let r = register_retrying(c, node, req)
            .await
            .unwrap_or_else(|s| panic!("write {k} through node {node}: {s:?}\n{}", c.logs()));
        last = last.max(r.applied_index);
        written.push((who, msisdn));
    }
    (written, last)
}

/// Cuts `victim` off, checks readiness on both sides and that the majority
/// takes writes, heals, and checks the victim caught up.
/// `why` is what the victim's 503 must come to say.
async fn partition_and_heal(
    c: &Cluster,
    mesh: &Mesh,
    victim: u64,
    tag: u32,
    what: &str,
    why: &str,
) {
    let majority: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != victim).collect();
    for id in [1, 2, 3] {
        eventually(c, &format!("{what}: node {id} ready before"), || {
            ready_is(c, id, 200)
        })
        .await;
    }

    mesh.isolate(victim);
    let body = eventually(
        c,
        &format!("{what}: node {victim} turns 503 ({why})"),
        || async {
            ready_is(c, victim, 503)
                .await
                .and_then(|body| match body.contains(why) {
                    true => Ok(body),
                    false => Err(body),
                })
        },
    )
    .await;
    assert!(body.contains("\"ready\":false"), "{body}");

    c.wait_leader(&majority).await;
    for id in majority.iter().copied() {
        eventually(c, &format!("{what}: majority node {id} ready"), || {
            ready_is(c, id, 200)
        })
        .await;
    }
    let (written, last) = write_through(c, &majority, tag, 6).await;
    // Still cut off: nothing could have made it ready meanwhile.
    let still = ready_is(c, victim, 503).await;
    assert!(
        still.is_ok(),
        "{what}: node {victim} during the partition: {still:?}"
    );

    mesh.heal(victim);
    eventually(
        c,
        &format!("{what}: node {victim} ready after healing"),
        || ready_is(c, victim, 200),
    )
    .await;
    c.wait_applied(victim, last).await;
    let mut r = c.registry(victim);
    for (who, msisdn) in &written {
        let total = r
            .count_cards(count_req(who, msisdn))
            .await
            .unwrap_or_else(|s| panic!("{what}: count on node {victim}: {s:?}"))
            .into_inner()
            .total;
        assert_eq!(total, 1, "{what}: node {victim} misses {msisdn}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_flips_when_a_node_is_partitioned() {
    let (c, mesh) = start_partitionable(3).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = [1, 2, 3].into_iter().find(|n| *n != leader).unwrap();
    // It stops hearing from the leader and campaigns in vain.
    let why = "no known leader";
    partition_and_heal(&c, &mesh, follower, 1, "isolated follower", why).await;

    let leader = c.wait_leader(&[1, 2, 3]).await;
    // openraft keeps it leader; only the missing quorum acks give it away.
    let why = "has not heard from a quorum";
    partition_and_heal(&c, &mesh, leader, 2, "isolated leader", why).await;
}
