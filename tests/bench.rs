//! `oneid bench` against a real 3-node cluster: each op completes without
//! errors and prints its result line. Numbers are not checked (the machine
//! is shared); only that work was done and none of it failed.

mod common;

use common::*;

/// Value of `key=` in the bench's result line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Runs `oneid bench` on `endpoints` for 400 ops of `op` (population 50)
/// and checks it did work without an error; returns its output.
fn bench_400(endpoints: &str, op: &str, run: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "bench",
        "--endpoints",
        endpoints,
        "--op",
        op,
        "--clients",
        "8",
        "--duration",
        "30",
        "--ops",
        "400",
        "--population",
        "50",
        "--run",
        run,
    ];
    args.extend_from_slice(extra);
    let out = oneid_cli(&args);
    let text = output_text(&out);
    assert!(out.status.success(), "bench --op {op} {extra:?}: {text}");
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(field(&line, "op"), Some(op), "{text}");
    assert_eq!(field(&line, "errors"), Some("0"), "{text}");
    let ops: u64 = field(&line, "ops")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no ops= in: {text}"));
    assert!(ops > 0, "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_ops_run_without_errors() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let leader_addr = c.node(leader).addr.clone();
    let endpoints = c.endpoints();
    // Link first: its population registers the numbers it links to, so it
    // also exercises the setup phase; a distinct --run per op keeps their
    // request ids and numbers apart.
    for (run, op) in [("1", "link"), ("2", "register")] {
        let text = bench_400(&endpoints, op, run, &[]);
        // Writes skip the follower's forwarding hop.
        let routed = format!("writes went to the leader, {leader_addr}");
        assert!(text.contains(&routed), "{text}");
    }
    let text = bench_400(&endpoints, "register", "3", &["--spread-writes"]);
    assert!(
        text.contains("writes were spread over the endpoints"),
        "{text}"
    );
    // Every client's calls over one batch stream per node.
    for (run, op) in [("4", "link"), ("5", "mixed"), ("6", "linked-count")] {
        bench_400(&endpoints, op, run, &["--batch-stream"]);
    }
    // Verified by the population's ID digits: a wrong last 6 would fail.
    bench_400(&endpoints, "linked-count", "7", &[]);
}
