use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(f.path(), text).expect("write config");
    f
}

const MINIMAL: &str = r#"
[node]
id = 1
addr = "127.0.0.1:7001"
data_dir = "/var/lib/oneid"

[tls]
insecure = true
"#;

fn invalid(cfg: &Config) -> String {
    match cfg.validate() {
        Err(ConfigError::Invalid(errs)) => errs.join("\n"),
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn the_example_file_parses_and_validates() {
    let text = include_str!("../../oneid.example.toml");
    let cfg = Config::parse(text).expect("oneid.example.toml parses");
    let checked = cfg.validate().expect("oneid.example.toml validates");
    assert_eq!(checked.node_id, 1);
    assert_eq!(checked.initial_cluster.len(), 3);
    // Every setting is spelled out in the example, so it cannot drift from
    // the defaults unnoticed: printing it back gives every key.
    let printed = toml::to_string(&cfg).expect("print");
    let reparsed: toml::Table = toml::from_str(&printed).expect("reparse");
    let example: toml::Table = toml::from_str(text).expect("example as table");
    assert_eq!(reparsed, example);
}

#[test]
fn defaults_then_file_then_env_then_flags() {
    let file = write(&format!(
        "{MINIMAL}\n[raft]\nheartbeat_ms = 50\nelection_timeout_min_ms = 200\n\
         request_timeout_ms = 1000\n[log]\nformat = \"json\"\n"
    ));
    let vars = env(&[
        ("ONEID_HEARTBEAT_MS", "60"),
        ("ONEID_ADDR", "127.0.0.1:7100"),
        ("ONEID_LOG", "debug"),
    ]);
    let flags = Overrides {
        addr: Some("127.0.0.1:7200".into()),
        log_format: Some(LogFormat::Human),
        ..Overrides::default()
    };
    let cfg = Config::resolve(Some(file.path()), vars, &flags).expect("resolve");
    // default (not in file, env or flags)
    assert_eq!(cfg.raft.election_timeout_max_ms, 300);
    assert_eq!(cfg.raft.snapshot_logs, 20_000);
    // file over default
    assert_eq!(cfg.raft.election_timeout_min_ms, 200);
    assert_eq!(cfg.raft.request_timeout_ms, 1_000);
    assert_eq!(cfg.node.id, Some(1));
    // env over file
    assert_eq!(cfg.raft.heartbeat_ms, 60);
    assert_eq!(cfg.log.filter, "debug");
    // flag over env and file
    assert_eq!(cfg.node.addr.as_deref(), Some("127.0.0.1:7200"));
    assert_eq!(cfg.log.format, LogFormat::Human);

    let node = cfg
        .validate()
        .expect("valid")
        .node_config(crate::idkey::IdHasher::new(&[7; 32]).expect("hasher"));
    assert_eq!(node.heartbeat_ms, 60);
    assert_eq!(node.election_timeout_ms, (200, 300));
    assert_eq!(node.request_timeout, std::time::Duration::from_secs(1));
    assert_eq!(node.listen.port(), 7200);
}

#[test]
fn flags_alone_are_enough() {
    let flags = Overrides {
        node_id: Some(2),
        addr: Some("127.0.0.1:7002".into()),
        data_dir: Some("/tmp/n2".into()),
        initial_cluster: Some("1=127.0.0.1:7001,2=127.0.0.1:7002".into()),
        insecure: true,
        ..Overrides::default()
    };
    let cfg = Config::resolve(None, env(&[]), &flags).expect("resolve");
    assert_eq!(cfg.validate().expect("valid").initial_cluster.len(), 2);
}

#[test]
fn unknown_keys_and_bad_values_are_refused_with_the_key() {
    let err = Config::parse("[raft]\nheartbeat_msec = 5\n").expect_err("unknown key");
    assert!(err.to_string().contains("heartbeat_msec"), "{err}");
    let err = Config::parse("colour = \"blue\"\n").expect_err("unknown section key");
    assert!(err.to_string().contains("colour"), "{err}");
    let err = Config::parse("[log]\nformat = \"xml\"\n").expect_err("bad format");
    assert!(err.to_string().contains("xml"), "{err}");
    let err = Config::parse("[node]\nid = -1\n").expect_err("negative id");
    assert!(err.to_string().contains("id"), "{err}");

    let missing = Path::new("/nonexistent/oneid.toml");
    match Config::from_file(missing) {
        Err(e @ ConfigError::Read { .. }) => {
            assert!(e.to_string().contains("/nonexistent/oneid.toml"), "{e}")
        }
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn env_values_that_do_not_parse_name_the_variable() {
    let err = Config::resolve(
        None,
        env(&[("ONEID_NODE_ID", "one")]),
        &Overrides::default(),
    )
    .expect_err("bad env");
    let msg = err.to_string();
    assert!(
        msg.contains("ONEID_NODE_ID") && msg.contains("one"),
        "{msg}"
    );
    let err = Config::for_client(env(&[("ONEID_LOG_FORMAT", "xml")])).expect_err("bad format");
    assert!(err.to_string().contains("ONEID_LOG_FORMAT"), "{err}");
    let err = Config::for_client(env(&[("ONEID_LOG", "oneid=loud")])).expect_err("bad filter");
    assert!(err.to_string().contains("log.filter"), "{err}");
    let cfg = Config::for_client(env(&[("ONEID_WORKER_THREADS", "2")])).expect("client");
    assert_eq!(cfg.runtime.worker_threads, 2);
}

#[test]
fn validation_reports_every_problem() {
    let msg = invalid(&Config::default());
    for key in ["node.id", "node.addr", "node.data_dir"] {
        assert!(msg.contains(&format!("{key} is required")), "{msg}");
    }

    let mut cfg = Config::parse(MINIMAL).expect("parse");
    cfg.node.id = Some(0);
    cfg.node.addr = Some("localhost".into());
    cfg.node.http_addr = Some("nowhere:x".into());
    cfg.raft.election_timeout_min_ms = 300;
    cfg.raft.heartbeat_ms = 900;
    cfg.raft.snapshot_logs = 0;
    cfg.raft.request_timeout_ms = 0;
    cfg.runtime.worker_threads = 100_000;
    let msg = invalid(&cfg);
    for needle in [
        "node.id must be a positive integer",
        "node.addr \"localhost\" is not IP:PORT",
        "node.http_addr \"nowhere:x\"",
        "election_timeout_min_ms (300) must be less than raft.election_timeout_max_ms (300)",
        "raft.heartbeat_ms (900) must be less than raft.election_timeout_min_ms (300)",
        "raft.snapshot_logs must be positive",
        "raft.request_timeout_ms must be positive",
        "runtime.worker_threads",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
}

#[test]
fn the_initial_cluster_must_parse_and_contain_the_node() {
    let mut cfg = Config::parse(MINIMAL).expect("parse");
    cfg.node.initial_cluster = "2=127.0.0.1:7002,3=127.0.0.1:7003".into();
    assert!(invalid(&cfg).contains("does not contain this node (node.id = 1)"));
    cfg.node.initial_cluster = "1=127.0.0.1:7001,x".into();
    assert!(invalid(&cfg).contains("node.initial_cluster"));
    cfg.node.initial_cluster = String::new();
    assert!(cfg.validate().is_ok(), "an empty cluster joins later");
}

#[test]
fn the_printed_config_never_holds_the_pepper() {
    let pepper = "a-secret-pepper-of-enough-bytes";
    let cfg = Config::resolve(
        None,
        env(&[("ONEID_PEPPER", pepper), ("ONEID_NODE_ID", "3")]),
        &Overrides::default(),
    )
    .expect("resolve");
    let vars = env(&[("ONEID_PEPPER", pepper)]);
    assert!(cfg.hasher(&vars).is_ok());
    let text = cfg.to_toml(true).expect("print");
    assert!(!text.contains(pepper), "{text}");
    assert!(text.contains("# pepper: from env (ONEID_PEPPER)"), "{text}");
    let back = Config::parse(&text).expect("printed config parses back");
    assert_eq!(back, cfg);

    let mut with_file = cfg.clone();
    with_file.node.pepper_file = Some("/etc/oneid/pepper".into());
    let text = with_file.to_toml(true).expect("print");
    assert!(text.contains("# pepper: file /etc/oneid/pepper"), "{text}");
}

#[test]
fn limits_are_checked_and_overridable() {
    let mut cfg = Config::parse(MINIMAL).expect("parse");
    cfg.limits.queries_per_second = f64::NAN;
    cfg.limits.query_burst = 0;
    cfg.limits.max_concurrent_requests = 0;
    cfg.limits.max_import_batch = 20_000;
    let msg = invalid(&cfg);
    for needle in [
        "limits.queries_per_second = NaN must be a positive number",
        "limits.query_burst must be positive",
        "limits.max_concurrent_requests must be positive",
        "limits.max_import_batch = 20000 is more than 10000",
    ] {
        assert!(msg.contains(needle), "{needle} not in {msg}");
    }

    let file = write(&format!(
        "{MINIMAL}\n[limits]\nqueries_per_second = 0.5\nunlimited_callers = []\n"
    ));
    let vars = env(&[
        ("ONEID_QUERY_BURST", "7"),
        ("ONEID_UNLIMITED_CALLERS", "10.0.0.9, 10.0.0.10"),
    ]);
    let flags = Overrides {
        max_import_batch: Some(50),
        ..Overrides::default()
    };
    let cfg = Config::resolve(Some(file.path()), vars, &flags).expect("resolve");
    assert_eq!(cfg.limits.queries_per_second, 0.5);
    assert_eq!(cfg.limits.query_burst, 7);
    assert_eq!(cfg.limits.max_import_batch, 50);
    assert_eq!(cfg.limits.unlimited_callers, ["10.0.0.9", "10.0.0.10"]);
    let flags = Overrides {
        unlimited_callers: Some(String::new()),
        ..Overrides::default()
    };
    let cfg = Config::resolve(None, env(&[]), &flags).expect("resolve");
    assert!(cfg.limits.unlimited_callers.is_empty());
    assert_eq!(cfg.limits.max_tracked_callers, 100_000);
}

#[test]
fn tls_needs_all_three_files_or_an_explicit_insecure() {
    let mut cfg = Config::parse(MINIMAL).expect("parse");
    assert_eq!(cfg.validate().expect("insecure is valid").tls, None);

    cfg.tls.insecure = false;
    assert!(invalid(&cfg).contains("TLS needs tls.ca, tls.cert and tls.key"));
    cfg.tls.ca = Some("/tls/ca.pem".into());
    cfg.tls.cert = Some("/tls/node-1.pem".into());
    assert!(invalid(&cfg).contains("TLS needs"), "a key is missing");
    cfg.tls.key = Some("/tls/node-1.key".into());
    let files = cfg.validate().expect("all three files").tls.expect("tls");
    assert_eq!(files.key, Path::new("/tls/node-1.key"));

    cfg.tls.insecure = true;
    assert!(invalid(&cfg).contains("choose one"));

    let flags = Overrides {
        ca: Some("/other/ca.pem".into()),
        ..Overrides::default()
    };
    let vars = env(&[("ONEID_INSECURE", "true"), ("ONEID_CERT", "/env/cert.pem")]);
    let resolved = Config::resolve(None, vars, &flags).expect("resolve");
    assert!(resolved.tls.insecure);
    assert_eq!(
        resolved.tls.cert.as_deref(),
        Some(Path::new("/env/cert.pem"))
    );
    assert_eq!(resolved.tls.ca.as_deref(), Some(Path::new("/other/ca.pem")));
}

#[test]
fn a_revocation_list_needs_tls() {
    let mut cfg = Config::parse(MINIMAL).expect("parse");
    cfg.tls.crl = Some("/tls/crl.pem".into());
    assert!(invalid(&cfg).contains("tls.crl needs TLS"));

    cfg.tls.insecure = false;
    cfg.tls.ca = Some("/tls/ca.pem".into());
    cfg.tls.cert = Some("/tls/node-1.pem".into());
    cfg.tls.key = Some("/tls/node-1.key".into());
    let files = cfg.validate().expect("TLS with a list").tls.expect("tls");
    assert_eq!(files.crl.as_deref(), Some(Path::new("/tls/crl.pem")));

    let vars = env(&[("ONEID_CRL", "/env/crl.pem")]);
    let resolved = Config::resolve(None, vars, &Overrides::default()).expect("resolve");
    assert_eq!(resolved.tls.crl.as_deref(), Some(Path::new("/env/crl.pem")));
}
