//! No plaintext ID number anywhere a node writes: a 3-node cluster
//! registers cards under known ID numbers, refuses a registration, answers
//! counts and builds snapshots; then, with every node stopped, every file
//! under the data directories (raft log, RocksDB SSTs, WAL and MANIFEST,
//! snapshots) and every node log is scanned for the ID numbers and their
//! 17-digit bodies as ASCII bytes. RocksDB compresses SST blocks with lz4,
//! which could hide a leak from a byte scan, so each database is also
//! opened and every key and value of every column family scanned after
//! decompression. Phone numbers must not appear unmasked in the logs.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use oneid::pb;
use oneid_storage::schema::{Tuning, ALL_CFS};
use oneid_storage::Db;

const BODIES: [&str; 6] = [
    "11010519491231002",
    "31010119800101123",
    "44030519900615321",
    "51010719751203456",
    "65010220001229987",
    "82000019850707654",
];
/// A number whose check character is wrong: refused, never stored.
const REFUSED_BODY: &str = "11010119900307803";

fn msisdn(i: usize) -> String {
    format!("1380013{:04}", 8000 + i)
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every (what, needle) an ID number could leak as.
fn id_needles(numbers: &[String]) -> Vec<String> {
    numbers
        .iter()
        .flat_map(|n| [n.clone(), n[..17].to_string()])
        .collect()
}

#[tokio::test]
async fn no_plaintext_id_number_on_disk_or_in_logs() {
    let mut c = Cluster::start(
        3,
        &["--snapshot-logs", "4", "--log-filter", "info,oneid=debug"],
    );
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let ids: Vec<pb::Identity> = BODIES.iter().map(|b| resident_id(b)).collect();
    let mut numbers: Vec<String> = ids.iter().map(|i| i.number.clone()).collect();
    for (i, id) in ids.iter().enumerate() {
        register_retrying(&c, leader, register_req(&format!("np-{i}"), id, &msisdn(i)))
            .await
            .expect("register");
    }

    // Refused registrations: a bad check character, and a number already
    // held under another identity. Their error paths must not log the ID.
    let good = resident_id(REFUSED_BODY).number;
    let wrong_check = if good.ends_with('0') { "1" } else { "0" };
    let refused_number = format!("{REFUSED_BODY}{wrong_check}");
    let refused = pb::Identity {
        doc_type: pb::DocType::ResidentId as i32,
        number: refused_number.clone(),
    };
    let s = c
        .registry(leader)
        .register_card(register_req("np-bad", &refused, &msisdn(90)))
        .await
        .expect_err("bad check character");
    assert_eq!(reason(&s), "INVALID_ID");
    numbers.push(refused_number);
    let s = register_retrying(&c, leader, register_req("np-dup", &ids[1], &msisdn(0)))
        .await
        .expect_err("number held by another identity");
    assert_eq!(reason(&s), "NUMBER_IN_USE", "{s:?}");

    // Queries, answered and refused, leave audit records and log lines.
    let mut registry = c.registry(leader);
    for (i, id) in ids.iter().enumerate() {
        let r = registry
            .count_cards(count_req(id, &msisdn(i)))
            .await
            .expect("count");
        assert_eq!(r.into_inner().total, 1);
    }
    let s = registry
        .count_cards(count_req(&ids[0], &msisdn(1)))
        .await
        .expect_err("verify number of another identity");
    assert_eq!(reason(&s), "VERIFICATION_FAILED", "{s:?}");

    // Enough further writes for every node to build a snapshot (one per
    // 4 entries), then wait until each has one on disk.
    for i in 0..12 {
        let id = resident_id(&format!("110105199001{:02}123", 10 + i));
        numbers.push(id.number.clone());
        register_retrying(
            &c,
            leader,
            register_req(&format!("np-more-{i}"), &id, &msisdn(20 + i)),
        )
        .await
        .expect("register more");
    }
    for node in &c.nodes {
        let dir = node.data_dir.join("snapshots");
        eventually(&c, "a snapshot on every node", || {
            let dir = dir.clone();
            async move {
                let mut files = Vec::new();
                files_under(&dir, &mut files);
                if files.is_empty() {
                    Err(format!("{} is empty", dir.display()))
                } else {
                    Ok(())
                }
            }
        })
        .await;
    }
    for id in 1..=3 {
        c.terminate(id);
    }

    let needles = id_needles(&numbers);
    let phones: Vec<String> = (0..32).map(msisdn).chain([msisdn(90)]).collect();

    // 1. Raw bytes of every file a node wrote.
    let mut files = Vec::new();
    files_under(c.dir.path(), &mut files);
    let mut scanned = 0usize;
    let mut saw_snapshot = false;
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        scanned += bytes.len();
        saw_snapshot |= f.components().any(|c| c.as_os_str() == "snapshots");
        for n in &needles {
            assert!(
                !contains(&bytes, n.as_bytes()),
                "{} holds the plaintext ID {n}",
                f.display()
            );
        }
        if f.file_name().is_some_and(|n| n == "node.log") {
            let text = String::from_utf8_lossy(&bytes);
            for p in &phones {
                assert!(
                    !text.contains(p.as_str()),
                    "{} logs {p} unmasked",
                    f.display()
                );
            }
        }
    }
    assert!(saw_snapshot, "no snapshot file was scanned");
    assert!(scanned > 0);
    let logged: usize = c
        .nodes
        .iter()
        .map(|n| {
            std::fs::metadata(&n.log)
                .map(|m| m.len() as usize)
                .unwrap_or(0)
        })
        .sum();
    assert!(logged > 0, "the nodes logged nothing");

    // 2. Every key and value of every column family, decompressed. The
    //    phone numbers are stored in the clear (the number index needs
    //    them), so finding them proves the scan sees the data.
    for node in &c.nodes {
        let db = Db::open(&node.data_dir.join("db"), Tuning::default()).expect("open db");
        let mut phones_seen = 0;
        let mut entries = 0;
        for name in ALL_CFS {
            let cf = db.cf(name).expect("column family");
            for kv in db.raw().iterator_cf(cf, rocksdb_mode()) {
                let (k, v) = kv.expect("read");
                entries += 1;
                for n in &needles {
                    assert!(
                        !contains(&k, n.as_bytes()) && !contains(&v, n.as_bytes()),
                        "node {} column family {name} holds the plaintext ID {n}",
                        node.id
                    );
                }
                phones_seen += usize::from(
                    phones
                        .iter()
                        .any(|p| contains(&k, p.as_bytes()) || contains(&v, p.as_bytes())),
                );
            }
        }
        assert!(entries > 0, "node {} database is empty", node.id);
        assert!(
            phones_seen > 0,
            "node {}: the scan saw no card data",
            node.id
        );
    }
}

fn rocksdb_mode() -> oneid_storage::rocksdb::IteratorMode<'static> {
    oneid_storage::rocksdb::IteratorMode::Start
}
