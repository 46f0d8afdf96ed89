//! `oneid demo` as a newcomer runs it: three nodes with sample data, a
//! printed count, and serving until told to stop — when its nodes stop with
//! it, however it is told (Ctrl-C, or the TERM of `timeout` or `kill`).

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::free_port;

/// Three consecutive free ports: the demo takes `--base-port` and the two
/// after it.
fn three_ports() -> u16 {
    for _ in 0..100 {
        let first = free_port();
        if free_port() == first + 1 && free_port() == first + 2 {
            return first;
        }
    }
    panic!("no three consecutive free ports");
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Kills the demo if the test fails before it does.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_serves_then_stops_its_nodes_on_sigterm() {
    let base = three_ports();
    let gateway = free_port();
    let mut demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_oneid"))
            .args(["demo", "--identities", "20", "--base-port"])
            .arg(base.to_string())
            .arg("--gateway-port")
            .arg(gateway.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo"),
    );
    let stdout = demo.0.stdout.take().expect("demo stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.starts_with("serving")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => panic!("the demo never served; it printed {printed:#?}"),
        }
    }
    assert!(
        printed.iter().any(|l| l.contains("card(s) registered")),
        "no count printed: {printed:#?}"
    );
    for port in (base..base + 3).chain([gateway]) {
        assert!(listening(port), "node on {port} not listening");
    }
    assert!(
        printed
            .iter()
            .any(|l| l.contains(&format!("https://localhost:{gateway}/v1/cards:count"))),
        "no gateway example printed: {printed:#?}"
    );

    // The shell's own kill: no procps needed on a fresh machine.
    let term = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", demo.0.id())])
        .status()
        .expect("run kill");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = demo.0.try_wait().expect("wait for the demo") {
            break s;
        }
        assert!(Instant::now() < deadline, "the demo ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the demo exited with {status}");
    // It waited for its nodes before exiting: nothing listens any more.
    for port in (base..base + 3).chain([gateway]) {
        assert!(!listening(port), "node on {port} outlived the demo");
    }
}
