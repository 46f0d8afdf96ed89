//! Pepper rotation on a live 3-node cluster: the new pepper is appended to
//! the nodes' pepper file (no restart), `oneid rekey start` moves every
//! identity while writers and readers keep going, and afterwards every
//! card, count, restriction and linkage check is as before; a second
//! rotation chains on the first.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use oneid::pb;
use oneid::pb::linkage_client::LinkageClient;
use oneid::pb::regulator_client::RegulatorClient;

/// Identities registered before the rotation: enough for several batches.
const BEFORE: usize = 700;

fn identity(i: usize) -> pb::Identity {
    assert!(i < 1000, "three digits of sequence number");
    resident_id(&format!("11010519800101{i:03}"))
}

fn msisdn(i: usize, card: usize) -> String {
    format!("13{card}{i:08}")
}

fn rekey(c: &Cluster, args: &[&str]) -> (bool, String) {
    let addr = &c.node(1).addr;
    let mut all = vec!["rekey", "--endpoints", addr];
    all.extend_from_slice(args);
    let out = oneid_cli(&all);
    (out.status.success(), output_text(&out))
}

async fn count(c: &Cluster, node: u64, i: usize) -> Result<u32, tonic::Status> {
    c.registry(node)
        .count_cards(count_req(&identity(i), &msisdn(i, 0)))
        .await
        .map(|r| r.into_inner().total)
}

async fn register_all(c: &Arc<Cluster>, range: std::ops::Range<usize>, card: usize) {
    let mut tasks = Vec::new();
    for chunk in range.collect::<Vec<_>>().chunks(50) {
        let (c, chunk) = (c.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for i in chunk {
                let req = register_req(&format!("r{i}-{card}"), &identity(i), &msisdn(i, card));
                register_retrying(&c, 1 + (i % 3) as u64, req)
                    .await
                    .unwrap_or_else(|s| panic!("register {i}/{card}: {s:?}"));
            }
        }));
    }
    for t in tasks {
        t.await.expect("register task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_moves_every_identity_online_without_losing_a_lookup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pepper_file = dir.path().join("pepper");
    std::fs::write(&pepper_file, format!("{PEPPER}\n")).expect("pepper");
    let pepper_arg = pepper_file.display().to_string();
    let c = Arc::new(Cluster::start(3, &["--pepper-file", &pepper_arg]));
    c.wait_leader(&[1, 2, 3]).await;

    register_all(&c, 0..BEFORE, 0).await;
    let mut regulator = RegulatorClient::new(c.endpoint(2));
    regulator
        .restrict(pb::RestrictRequest {
            request_id: "restrict-200".into(),
            identity: Some(identity(200)),
            reason: "card trading".into(),
            duration_hours: 0,
        })
        .await
        .expect("restrict");

    // Without the new pepper on the node there is nothing to rotate to.
    let (ok, text) = rekey(&c, &["start", "2"]);
    assert!(!ok, "rekey without the pepper succeeded: {text}");
    assert!(text.contains("PEPPER_VERSION"), "{text}");

    std::fs::OpenOptions::new()
        .append(true)
        .open(&pepper_file)
        .and_then(|mut f| f.write_all(b"second-pepper-for-the-rotation-test\n"))
        .expect("append pepper");

    // Writers (new identities and second cards of old ones) and readers run
    // through the whole rotation.
    let deadline = Instant::now() + Duration::from_secs(90);
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            register_all(&c, BEFORE..BEFORE + 150, 0).await;
            register_all(&c, 0..150, 1).await;
        })
    };
    let reader = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut checked = 0;
            // Identities 300.. are not written during the rotation: each
            // must count exactly one card on every read.
            for round in 0..2000usize {
                if Instant::now() > deadline {
                    break;
                }
                let i = 300 + (round * 37) % (BEFORE - 300);
                match count(&c, 1 + (round % 3) as u64, i).await {
                    Ok(n) => assert_eq!(n, 1, "identity {i} counted {n} during the rotation"),
                    Err(s) if s.code() == tonic::Code::Unavailable => continue,
                    Err(s) => panic!("count {i} during the rotation: {s:?}"),
                }
                checked += 1;
            }
            checked
        })
    };
    let (ok, text) = rekey(&c, &["start", "2", "--wait-seconds", "80"]);
    assert!(ok, "rekey start 2 failed: {text}");
    assert!(text.contains("done: key_version=2"), "{text}");
    writer.await.expect("writer");
    let reads = reader.await.expect("reader");
    assert!(reads > 0, "no count succeeded during the rotation");
    eprintln!("{reads} counts during the rotation; {text}");

    // Every identity counts what it holds, on every node.
    for i in (0..BEFORE + 150).step_by(7) {
        let want = if i < 150 { 2 } else { 1 };
        for node in 1..=3 {
            let got = eventually(&c, "count after rotation", || async {
                count(&c, node, i).await.map_err(|s| format!("{s:?}"))
            })
            .await;
            assert_eq!(got, want, "identity {i} on node {node}");
        }
    }
    // The restriction moved with its identity.
    let r = regulator
        .get_restriction(pb::GetRestrictionRequest {
            identity: Some(identity(200)),
        })
        .await
        .expect("get restriction")
        .into_inner();
    assert!(r.restricted && r.reason == "card trading", "{r:?}");
    let refused = c
        .registry(1)
        .register_card(register_req("r200-new", &identity(200), &msisdn(200, 2)))
        .await
        .expect_err("a restricted identity registered a card");
    assert_eq!(reason(&refused), "RESTRICTED");
    // Linkage checks use the moved last-six tags.
    let last6 = |i: usize| {
        let n = identity(i).number;
        n[n.len() - 6..].to_string()
    };
    let mut linkage = LinkageClient::new(c.endpoint(3));
    linkage
        .count_linked_accounts(pb::CountLinkedAccountsRequest {
            msisdn: msisdn(400, 0),
            id_last6: last6(400),
        })
        .await
        .expect("linkage with the right last six");
    let wrong = linkage
        .count_linked_accounts(pb::CountLinkedAccountsRequest {
            msisdn: msisdn(400, 0),
            id_last6: last6(401),
        })
        .await
        .expect_err("linkage with wrong last six");
    assert_eq!(reason(&wrong), "VERIFICATION_FAILED");

    // Read all three together each time: a node's digest read once goes
    // stale as soon as any later entry applies.
    eventually(&c, "digests equal", || async {
        let digests: Vec<String> = futures::future::join_all((1..=3).map(|id| c.digest(id))).await;
        if digests.iter().all(|d| d == &digests[0]) {
            Ok(())
        } else {
            Err(format!("digests {digests:?}"))
        }
    })
    .await;

    // A second rotation chains on the first; one out of order is refused.
    let (ok, text) = rekey(&c, &["start", "2"]);
    assert!(!ok && text.contains("ILLEGAL_TRANSITION"), "{text}");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&pepper_file)
        .and_then(|mut f| f.write_all(b"third-pepper-for-the-rotation-test\n"))
        .expect("append pepper");
    let (ok, text) = rekey(&c, &["start", "3", "--wait-seconds", "60"]);
    assert!(ok, "rekey start 3 failed: {text}");
    for i in (0..BEFORE + 150).step_by(11) {
        let want = if i < 150 { 2 } else { 1 };
        assert_eq!(count(&c, 2, i).await.expect("count"), want, "identity {i}");
    }
    let (ok, text) = rekey(&c, &["status"]);
    assert!(
        ok && text.contains("key_version=3 phase=\"idle\""),
        "{text}"
    );
}
