//! `oneid serve --config FILE`: a real node started from a TOML file with
//! JSON logs, request ids echoed and logged, and `oneid config check`
//! refusing bad files with the offending key.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tonic::metadata::MetadataValue;

const REQUEST_ID: &str = "x-request-id";

/// A single-node cluster's config file; the pepper comes from a file so no
/// secret is in the node's environment.
fn write_config(dir: &Path, addr: &str, extra: &str) -> std::path::PathBuf {
    let pepper = dir.join("pepper");
    std::fs::write(&pepper, format!("{PEPPER}\n")).expect("pepper file");
    let text = format!(
        r#"
[node]
id = 1
addr = "{addr}"
data_dir = "{data}"
initial_cluster = "1={addr}"
pepper_file = "{pepper}"

[raft]
heartbeat_ms = 50
election_timeout_min_ms = 200
election_timeout_max_ms = 400

[log]
format = "human"
filter = "info,openraft=warn,oneid::observe::grpc=debug"

[tls]
insecure = true
{extra}"#,
        data = dir.join("data").display(),
        pepper = pepper.display(),
    );
    let path = dir.join("oneid.toml");
    std::fs::write(&path, text).expect("config file");
    path
}

/// `oneid` with `args`, no `ONEID_*` settings but those in `env`.
fn oneid_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oneid"));
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ONEID_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied()).output().expect("run oneid")
}

fn json_lines(log: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The log line closing the request with this id, once the node wrote it.
async fn wait_request_line(log: &Path, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = json_lines(log)
            .into_iter()
            .find(|l| l["span"]["request_id"] == id && l["fields"]["message"] == "request done");
        if let Some(line) = found {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no log line for request {id}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn response_id(meta: &tonic::metadata::MetadataMap) -> String {
    meta.get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_from_a_config_file_with_json_logs_and_request_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), &addr, "");
    let config_arg = config.to_str().expect("utf-8 path");

    // What the node will run with: the flag beats the file's log format.
    let out = oneid_env(
        &["config", "check", config_arg, "--log-format", "json"],
        &[],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let effective: toml::Table = toml::from_str(&stdout).expect("effective config is TOML");
    assert_eq!(
        effective["log"]["format"].as_str(),
        Some("json"),
        "{stdout}"
    );
    assert_eq!(effective["raft"]["heartbeat_ms"].as_integer(), Some(50));
    assert_eq!(
        effective["raft"]["snapshot_logs"].as_integer(),
        Some(20_000)
    );
    assert!(stdout.contains("# pepper: file "), "{stdout}");
    assert!(!stdout.contains(PEPPER), "the pepper was printed: {stdout}");

    let log = dir.path().join("node.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_oneid"))
        .args(["serve", "--config", config_arg, "--log-format", "json"])
        .env_remove("ONEID_PEPPER")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawn oneid");
    let c = Cluster {
        tls: None,
        spec: format!("1={addr}"),
        nodes: vec![Node {
            id: 1,
            addr,
            data_dir: dir.path().join("data"),
            log: log.clone(),
            child: Some(child),
            http_addr: None,
            gateway_addr: None,
            founding: true,
        }],
        views: Vec::new(),
        extra: Vec::new(),
        dir,
    };
    c.wait_leader(&[1]).await;

    let alice = resident_id("11010519491231002");
    register_retrying(&c, 1, register_req("cfg-1", &alice, "13800000001"))
        .await
        .expect("register");

    // The caller's id is echoed and labels the request's log lines.
    let mut req = tonic::Request::new(count_req(&alice, "13800000001"));
    req.metadata_mut()
        .insert(REQUEST_ID, MetadataValue::from_static("abc-123"));
    let resp = c.registry(1).count_cards(req).await.expect("count");
    assert_eq!(response_id(resp.metadata()), "abc-123");
    assert_eq!(resp.get_ref().total, 1);
    let line = wait_request_line(&log, "abc-123").await;
    assert_eq!(line["fields"]["code"], "OK", "{line}");
    assert_eq!(line["span"]["method"], "/oneid.v1.Registry/CountCards");

    // A refused request carries its id too, in the error's metadata.
    let mut req = tonic::Request::new(count_req(&alice, "13800000009"));
    req.metadata_mut()
        .insert(REQUEST_ID, MetadataValue::from_static("refused-7"));
    let status = c
        .registry(1)
        .count_cards(req)
        .await
        .expect_err("unverified count");
    assert_eq!(reason(&status), "VERIFICATION_FAILED");
    assert_eq!(response_id(status.metadata()), "refused-7");
    let line = wait_request_line(&log, "refused-7").await;
    assert_eq!(line["fields"]["code"], "PermissionDenied", "{line}");

    // No id, or one unfit for a log line: the node makes one up.
    let mut req = tonic::Request::new(count_req(&alice, "13800000001"));
    req.metadata_mut()
        .insert(REQUEST_ID, MetadataValue::from_static("two words"));
    let resp = c.registry(1).count_cards(req).await.expect("count");
    let made_up = response_id(resp.metadata());
    assert!(!made_up.is_empty() && made_up != "two words", "{made_up:?}");
    wait_request_line(&log, &made_up).await;
    let resp = c
        .registry(1)
        .count_cards(count_req(&alice, "13800000001"))
        .await
        .expect("count");
    let other = response_id(resp.metadata());
    assert!(!other.is_empty() && other != made_up, "{other:?}");

    // Every line the node wrote is JSON, and none holds the pepper.
    let lines = json_lines(&log);
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "serving"),
        "no startup line"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(PEPPER), "the pepper was logged");
}

#[test]
fn config_check_refuses_bad_files_with_the_offending_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = "127.0.0.1:7001";
    let check = |config: &Path, env: &[(&str, &str)]| {
        let out = oneid_env(
            &["config", "check", config.to_str().expect("utf-8 path")],
            env,
        );
        assert!(
            !out.status.success(),
            "accepted a bad config: {}",
            output_text(&out)
        );
        assert!(out.stdout.is_empty(), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stderr).to_string()
    };

    let unknown = write_config(dir.path(), addr, "colour = \"blue\"\n");
    let err = check(&unknown, &[]);
    assert!(err.contains("unknown field `colour`"), "{err}");

    let bad_value = write_config(dir.path(), addr, "[runtime]\nworker_threads = -2\n");
    let err = check(&bad_value, &[]);
    assert!(err.contains("worker_threads"), "{err}");

    let bad_timing = write_config(dir.path(), addr, "[runtime]\nworker_threads = 1\n");
    let err = check(&bad_timing, &[("ONEID_ELECTION_TIMEOUT_MAX_MS", "150")]);
    assert!(
        err.contains("raft.election_timeout_min_ms (200) must be less than"),
        "{err}"
    );
    let err = check(&bad_timing, &[("ONEID_HEARTBEAT_MS", "soon")]);
    assert!(err.contains("ONEID_HEARTBEAT_MS"), "{err}");

    let err = check(&dir.path().join("missing.toml"), &[]);
    assert!(
        err.contains("reading config file") && err.contains("missing.toml"),
        "{err}"
    );

    // The same file is fine once the environment stops breaking it, and a
    // flag beats the environment.
    let out = oneid_env(
        &[
            "config",
            "check",
            bad_timing.to_str().expect("utf-8 path"),
            "--heartbeat-ms",
            "20",
        ],
        &[("ONEID_HEARTBEAT_MS", "90")],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("heartbeat_ms = 20"),
        "{}",
        output_text(&out)
    );
}
