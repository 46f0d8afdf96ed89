//! Cards whose holder never completed real-name registration, over a real
//! 3-node cluster: the carrier's report suspends the card (still counted,
//! proving nothing), completing registration restores it, and the leader's
//! sweep terminates it when the window ends first — freeing the number.

mod common;

use std::time::Duration;

use common::*;
use oneid::pb;
use oneid::pb::regulator_client::RegulatorClient;
use tonic::Code;

fn missing(rid: &str, msisdn: &str, carrier: &str, secs: u64) -> pb::ReportRealNameMissingRequest {
    pb::ReportRealNameMissingRequest {
        request_id: rid.into(),
        msisdn: msisdn.into(),
        carrier: carrier.into(),
        window_seconds: secs,
    }
}

fn carrier_req(rid: &str, msisdn: &str) -> pb::ReportReverificationRequest {
    pb::ReportReverificationRequest {
        request_id: rid.into(),
        msisdn: msisdn.into(),
        carrier: "CMCC".into(),
    }
}

fn state(r: &pb::CardStatusResponse) -> pb::CardState {
    r.state.clone().unwrap_or_default()
}

/// The card `masked` of `id` at CMCC, as the carrier lists it.
async fn listed(c: &Cluster, node: u64, id: &pb::Identity, masked: &str) -> Option<pb::CardState> {
    c.registry(node)
        .list_carrier_cards(pb::ListCarrierCardsRequest {
            identity: Some(id.clone()),
            carrier: "CMCC".into(),
        })
        .await
        .ok()?
        .into_inner()
        .cards
        .into_iter()
        .find(|x| x.masked_msisdn == masked)
        .and_then(|x| x.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_real_name_suspends_restores_and_terminates() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let node = (1..=3).find(|&n| n != leader).expect("a follower");
    let a = resident_id("11010519491231002");
    let b = resident_id("11010519800101001");
    for (rid, msisdn) in [("r-1", "13800000001"), ("r-2", "13800000002")] {
        register_retrying(&c, node, register_req(rid, &a, msisdn))
            .await
            .expect("register");
    }

    // Before the rules that have real-name reports, they are refused
    // before anything is proposed (an older build could not decode them).
    let s = c
        .registry(node)
        .report_real_name_missing(missing("m-early", "13800000001", "CMCC", 60))
        .await
        .expect_err("rules 1");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(s.message().contains("needs rules version 3"), "{s:?}");
    let mut regulator = RegulatorClient::new(c.endpoint(node));
    regulator
        .set_rules(pb::SetRulesRequest {
            request_id: "rules-3".into(),
            version: 3,
        })
        .await
        .expect("rules 3");
    // The follower answers from its own applied state: wait for the entry.
    let leader_applied = c.status(leader).await.expect("status").last_applied;
    c.wait_applied(node, leader_applied).await;

    // Bad input and other carriers' cards are refused, changing nothing.
    for (req, code, why) in [
        (
            missing("m-00", "13800000001", "CMCC", 0),
            Code::InvalidArgument,
            "no window",
        ),
        (
            missing("m-01", "13800000001", "CMCC", 400_000_000),
            Code::InvalidArgument,
            "over ten years",
        ),
        (
            missing("m-02", "1380000", "CMCC", 60),
            Code::InvalidArgument,
            "bad number",
        ),
        (
            missing("m-03", "13800000001", "CUCC", 60),
            Code::PermissionDenied,
            "another carrier",
        ),
        (
            missing("m-04", "13800000009", "CMCC", 60),
            Code::NotFound,
            "no such card",
        ),
    ] {
        let s = c
            .registry(node)
            .report_real_name_missing(req)
            .await
            .expect_err(why);
        assert_eq!(s.code(), code, "{why}: {s:?}");
        assert!(!reason(&s).is_empty(), "{why}: {s:?}");
    }
    let s = c
        .registry(node)
        .report_real_name_completed(carrier_req("c-0", "13800000001"))
        .await
        .expect_err("an active card");
    assert_eq!(reason(&s), "ILLEGAL_TRANSITION", "{s:?}");

    // Card 1: suspended with a long window, then restored.
    let r = c
        .registry(node)
        .report_real_name_missing(missing("m-1", "13800000001", "CMCC", 3600))
        .await
        .expect("report")
        .into_inner();
    let s = state(&r);
    assert_eq!(s.status, pb::CardStatus::CardSuspended as i32, "{s:?}");
    assert_eq!(s.suspend_reason, "real_name_missing");
    assert!(
        s.terminate_at_ms > 0 && s.reverify_deadline_ms == 0,
        "{s:?}"
    );
    // Still counted, but it proves nothing; the other card does.
    let s = c
        .registry(node)
        .count_cards(count_req(&a, "13800000001"))
        .await
        .expect_err("a suspended card proves nothing");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let count = c
        .registry(node)
        .count_cards(count_req(&a, "13800000002"))
        .await
        .expect("count")
        .into_inner();
    assert_eq!(count.total, 2, "{count:?}");
    let r = c
        .registry(node)
        .report_real_name_completed(carrier_req("c-1", "13800000001"))
        .await
        .expect("completed")
        .into_inner();
    assert_eq!(state(&r).status, pb::CardStatus::CardActive as i32);

    // Card 2: a one-second window runs out; the sweep terminates it.
    c.registry(node)
        .report_real_name_missing(missing("m-2", "13800000002", "CMCC", 1))
        .await
        .expect("report");
    let gone = eventually_within(
        &c,
        "the sweep to terminate the card",
        Duration::from_secs(30),
        || async {
            match listed(&c, node, &a, "138****0002").await {
                Some(s) if s.status == pb::CardStatus::CardCancelled as i32 => Ok(s),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(gone.terminate_at_ms, 0, "{gone:?}");
    let count = c
        .registry(node)
        .count_cards(count_req(&a, "13800000001"))
        .await
        .expect("count")
        .into_inner();
    assert_eq!(count.total, 1, "{count:?}");
    // The number is free for someone else.
    register_retrying(&c, node, register_req("r-3", &b, "13800000002"))
        .await
        .expect("the terminated card's number registers again");
    c.assert_replicas_agree(leader, &[1, 2, 3]).await;

    // The CLI, as the carrier would use it.
    let ep = c.node(node).addr.clone();
    let out = oneid_cli(&[
        "risk",
        "real-name-missing",
        "--endpoints",
        &ep,
        "--msisdn",
        "13800000001",
        "--carrier",
        "CMCC",
        "--within-secs",
        "60",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("suspended (real_name_missing, terminated at"),
        "{}",
        output_text(&out)
    );
    let out = oneid_cli(&[
        "risk",
        "real-name-completed",
        "--endpoints",
        &ep,
        "--msisdn",
        "13800000001",
        "--carrier",
        "CUCC",
    ]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("WRONG_CARRIER"),
        "{}",
        output_text(&out)
    );
}
