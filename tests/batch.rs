//! The `Batch/Calls` stream on a real 3-node cluster: calls made over it
//! answer as the same unary calls do (results, errors and their reasons),
//! many calls in flight on one stream each get their own reply, and input
//! the stream cannot run is refused per call without harming the others.

mod common;

use std::sync::Arc;

use common::*;
use oneid::cli::multiplex::Multiplexer;
use oneid::pb;
use tonic::Code;

const REGISTER: &str = "/oneid.v1.Registry/RegisterCard";
const COUNT: &str = "/oneid.v1.Registry/CountCards";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_calls_answer_as_unary_calls_do() {
    let c = Cluster::start(
        3,
        &[
            "--log-format",
            "json",
            "--log-filter",
            "info,openraft=warn,oneid::api::batch=debug",
        ],
    );
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let batch = Arc::new(Multiplexer::new(c.endpoint(leader), WAIT));

    // Many calls in flight on one stream: each reply reaches its caller.
    let holders: Vec<pb::Identity> = (0..40)
        .map(|i| resident_id(&format!("11010519900101{i:03}")))
        .collect();
    let mut calls = Vec::new();
    for (i, holder) in holders.iter().enumerate() {
        for k in 0..(i % 3 + 1) {
            let batch = batch.clone();
            let req = register_req(&format!("b-{i}-{k}"), holder, &format!("1380{i:04}{k:03}"));
            calls.push(tokio::spawn(async move {
                batch
                    .call::<_, pb::RegisterCardResponse>(REGISTER, &req)
                    .await
            }));
        }
    }
    for call in calls {
        call.await.expect("join").expect("a batched registration");
    }
    let mut counts = Vec::new();
    for (i, holder) in holders.iter().enumerate() {
        let (batch, req) = (batch.clone(), count_req(holder, &format!("1380{i:04}000")));
        counts.push(tokio::spawn(async move {
            batch.call::<_, pb::CountCardsResponse>(COUNT, &req).await
        }));
    }
    for (i, count) in counts.into_iter().enumerate() {
        let total = count.await.expect("join").expect("a batched count").total;
        assert_eq!(total as usize, i % 3 + 1, "holder {i}");
        // The same count over a unary call of its own.
        let unary = c
            .registry(leader)
            .count_cards(count_req(&holders[i], &format!("1380{i:04}000")))
            .await
            .expect("a unary count")
            .into_inner();
        assert_eq!(unary.total, total, "holder {i}");
    }

    // A retried registration replays its first outcome, as over unary.
    let again: pb::RegisterCardResponse = batch
        .call(REGISTER, &register_req("b-0-0", &holders[0], "13800000000"))
        .await
        .expect("a replayed registration");
    assert!(again.replayed, "{again:?}");

    // Refusals carry the code and reason a unary call gets.
    let bad = register_req("b-bad", &resident_id("11010519900101999"), "12");
    let unary = c
        .registry(leader)
        .register_card(bad.clone())
        .await
        .expect_err("an invalid number");
    let batched = batch
        .call::<_, pb::RegisterCardResponse>(REGISTER, &bad)
        .await
        .expect_err("an invalid number");
    assert_eq!(batched.code(), unary.code());
    assert_eq!(reason(&batched), reason(&unary));
    assert!(!reason(&batched).is_empty(), "{batched:?}");
    let taken = register_req("b-taken", &holders[1], "13800000000");
    let batched = batch
        .call::<_, pb::RegisterCardResponse>(REGISTER, &taken)
        .await
        .expect_err("a number held by someone else");
    assert_eq!(batched.code(), Code::AlreadyExists, "{batched:?}");

    // What the stream cannot run is refused per call, and the stream
    // goes on serving.
    let unknown = batch
        .call_raw("/oneid.v1.Registry/NoSuchMethod", Default::default())
        .await
        .expect_err("an unknown method");
    assert_eq!(unknown.code(), Code::Unimplemented, "{unknown:?}");
    let streaming = batch
        .call_raw("/oneid.v1.Admin/SaveSnapshot", Default::default())
        .await
        .expect_err("a method that cannot be batched");
    assert_eq!(streaming.code(), Code::Unimplemented, "{streaming:?}");
    let garbage = batch
        .call_raw(REGISTER, vec![0xff, 0xff, 0xff].into())
        .await
        .expect_err("bytes that are no request");
    assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");
    let oversized = batch
        .call_raw(REGISTER, vec![0u8; 1 << 20].into())
        .await
        .expect_err("a request over the message limit");
    assert_eq!(oversized.code(), Code::OutOfRange, "{oversized:?}");
    let total = batch
        .call::<_, pb::CountCardsResponse>(COUNT, &count_req(&holders[2], "13800002000"))
        .await
        .expect("a count after the refusals")
        .total;
    assert_eq!(total, 3);

    // A batch's writes are raft writes like any other: every replica
    // holds the same data.
    c.assert_replicas_agree(leader, &[1, 2, 3]).await;

    // Each call closes with a line of its own, under the stream's request
    // id; a method the client made up is logged by the metrics' label.
    let log = std::fs::read_to_string(&c.node(leader).log).expect("leader log");
    let done: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "call done")
        .collect();
    let stream_ids: std::collections::HashSet<String> = done
        .iter()
        .map(|l| {
            let stream = &l["spans"][0];
            assert_eq!(stream["name"], "request", "{l}");
            assert_eq!(stream["method"], "/oneid.v1.Batch/Calls", "{l}");
            stream["request_id"]
                .as_str()
                .expect("request id")
                .to_string()
        })
        .collect();
    assert_eq!(stream_ids.len(), 1, "one stream: {stream_ids:?}");
    let calls = |method: &str, code: &str| {
        done.iter()
            .filter(|l| l["span"]["name"] == "call")
            .filter(|l| l["span"]["method"] == method && l["fields"]["code"] == code)
            .count()
    };
    assert_eq!(calls(REGISTER, "OK"), 80, "{}", c.logs());
    assert_eq!(calls(REGISTER, "InvalidArgument"), 2, "{}", c.logs());
    assert_eq!(calls(COUNT, "OK"), 41, "{}", c.logs());
    assert_eq!(calls("unknown", "Unimplemented"), 2, "{}", c.logs());
    assert!(!log.contains("NoSuchMethod"), "{}", c.logs());
}
