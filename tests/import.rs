//! `oneid gen` and `oneid import` against a real 3-node cluster: rows land,
//! bad rows are reported by line, a rerun changes nothing, and abort mode
//! sends nothing when any row is bad.

mod common;

use common::*;
use oneid::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_bad_rows_and_is_idempotent() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cards.csv");
    let gen = oneid_cli(&[
        "gen",
        "--out",
        file.to_str().unwrap(),
        "--cards",
        "3000",
        "--seed",
        "9",
    ]);
    assert!(gen.status.success(), "{}", output_text(&gen));
    // Append a bad row and a good row for an identity we then count.
    let id = resident_id("11010519491231002");
    let mut body = std::fs::read_to_string(&file).unwrap();
    body.push_str("RESIDENT_ID,110105194912310021,13312345679,CMCC,11,personal,agent,false\n");
    body.push_str(&format!(
        "RESIDENT_ID,{},13312345678,CMCC,11,personal,agent,false\n",
        id.number
    ));
    std::fs::write(&file, body).unwrap();
    let bad_line = 3000 + 2; // header + 3000 cards, then the bad row

    let endpoints = c.endpoints();
    let path = file.to_str().unwrap();
    let abort = oneid_cli(&[
        "import",
        path,
        "--on-error",
        "abort",
        "--endpoints",
        &endpoints,
    ]);
    assert!(!abort.status.success(), "{}", output_text(&abort));
    assert!(
        output_text(&abort).contains(&format!("cards.csv:{bad_line}: INVALID_ID")),
        "{}",
        output_text(&abort)
    );
    let count = |verify: &'static str| {
        let id = id.clone();
        let mut client = c.registry(1);
        async move { client.count_cards(count_req(&id, verify)).await }
    };
    assert_eq!(
        reason(&count("13312345678").await.unwrap_err()),
        "VERIFICATION_FAILED"
    );

    let first = oneid_cli(&["import", path, "--batch", "700", "--endpoints", &endpoints]);
    assert!(first.status.success(), "{}", output_text(&first));
    assert!(
        output_text(&first).contains("1 bad rows"),
        "{}",
        output_text(&first)
    );
    let rejects = std::fs::read_to_string(format!("{path}.rejects")).unwrap();
    assert!(
        rejects.contains(&format!("{bad_line}: BAD_ROW: INVALID_ID")),
        "{rejects}"
    );
    let total = count("13312345678")
        .await
        .expect("imported card verifies")
        .into_inner()
        .total;
    assert_eq!(total, 1);
    assert!(!std::path::Path::new(&format!("{path}.checkpoint")).exists());

    // The leader's digest: a write (the imports, and the count's own
    // verification bookkeeping) is acknowledged once the leader has applied
    // it, when a follower may not have yet.
    let digest_before = c.digest(leader).await;
    let again = oneid_cli(&["import", path, "--endpoints", &endpoints]);
    assert!(again.status.success(), "{}", output_text(&again));
    let out = output_text(&again);
    let registered: u64 = out
        .split("import: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {out}"));
    assert!(
        out.contains(&format!("({registered} were already)")),
        "{out}"
    );
    let status = c.status(1).await.unwrap();
    c.wait_applied(2, status.last_applied).await;
    // The digest is "<applied index>:<hash of the data>": replays advance
    // the log but leave the registry's data unchanged.
    assert_eq!(
        data_hash(&c.digest(leader).await),
        data_hash(&digest_before)
    );
}

/// Each identity here has five ordinary cards at one carrier and province,
/// then a sixth strictly verified in the carrier's hall: in file order all
/// six are allowed, but the sixth applied before the fifth makes the fifth
/// a sixth ordinary card, which the limit refuses. The rows are laid out so
/// that, cut into batches of six, every identity's fifth card ends one batch
/// and its strict card starts the next. An import that let two such batches
/// interleave on the leader refused some of those fifth cards in some runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_applies_each_identitys_rows_in_file_order() {
    const HOLDERS: usize = 150;
    let c = Cluster::start(3, &[]);
    c.wait_leader(&[1, 2, 3]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ordered.csv");
    let mut body = String::from("doc_type,number,msisdn,carrier,province,kind,channel,strict\n");
    let row = |id: &pb::Identity, n: usize, channel: &str, strict: bool| {
        format!(
            "RESIDENT_ID,{},139{n:08},CMCC,11,personal,{channel},{strict}\n",
            id.number
        )
    };
    // One row of another identity first, so each batch of six holds the
    // last (strict) row of one identity and five ordinary rows of the next.
    body.push_str(&row(&resident_id("11010519700101999"), 0, "agent", false));
    let holders: Vec<pb::Identity> = (0..HOLDERS)
        .map(|i| resident_id(&format!("11010519800101{i:03}")))
        .collect();
    let mut serial = 1;
    for id in &holders {
        for _ in 0..5 {
            body.push_str(&row(id, serial, "agent", false));
            serial += 1;
        }
        body.push_str(&row(id, serial, "own_hall", true));
        serial += 1;
    }
    std::fs::write(&file, body).unwrap();
    let endpoints = c.endpoints();
    let out = oneid_cli(&[
        "import",
        file.to_str().unwrap(),
        "--batch",
        "6",
        "--concurrency",
        "4",
        "--endpoints",
        &endpoints,
    ]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "{} cards registered (0 were already), 0 refused",
            6 * HOLDERS + 1
        )),
        "{text}\n{}",
        std::fs::read_to_string(format!("{}.rejects", file.display())).unwrap_or_default()
    );
    let mut client = c.registry(1);
    for (i, id) in holders.iter().enumerate().step_by(37) {
        let verify = format!("139{:08}", 6 * i + 1);
        let total = client
            .count_cards(count_req(id, &verify))
            .await
            .expect("count")
            .into_inner()
            .total;
        assert_eq!(total, 6, "holder {i}");
    }
}
