//! Replays the committed fuzz corpus and crash reproducers (fuzz/corpus,
//! fuzz/regressions) through the fuzz target bodies on stable, so CI checks
//! every input the nightly fuzzer kept without running it.

use std::path::{Path, PathBuf};

use oneid::fuzzing;

/// A target body: true when the input was accepted.
type Target = fn(&[u8]) -> bool;

const TARGETS: [(&str, Target); 3] = [
    ("request_to_command", fuzzing::request_to_command),
    ("stored_record", fuzzing::stored_record),
    ("raft_message", fuzzing::raft_message),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn target(name: &str) -> Target {
    match TARGETS.iter().find(|(n, _)| *n == name) {
        Some((_, f)) => *f,
        None => panic!("no fuzz target {name}"),
    }
}

/// Every file directly under `dir`; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Each seed reaches the accepting end of its branch: a seed that stops
/// being accepted means the fuzzer would start from shallow ground. With
/// ONEID_WRITE_FUZZ_SEEDS set, also writes them into fuzz/corpus/.
#[test]
fn seeds_are_accepted() {
    let write = std::env::var_os("ONEID_WRITE_FUZZ_SEEDS").is_some();
    let seeds = fuzzing::seeds();
    assert!(seeds.len() > 40, "{} seeds", seeds.len());
    for (name, file, bytes) in seeds {
        assert!(target(name)(&bytes), "{name} seed {file} was refused");
        if write {
            let dir = fuzz_dir().join("corpus").join(name);
            std::fs::create_dir_all(&dir).expect("create corpus dir");
            std::fs::write(dir.join(&file), &bytes).expect("write seed");
        }
    }
}

#[test]
fn committed_corpus_and_regressions_replay_without_panics() {
    for (name, run) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        assert!(
            corpus.len() >= 10,
            "fuzz/corpus/{name} holds {} files; the corpus is committed",
            corpus.len()
        );
        let regressions = files(&fuzz_dir().join("regressions").join(name));
        for path in corpus.iter().chain(&regressions) {
            let bytes = std::fs::read(path).expect("read corpus file");
            let result = std::panic::catch_unwind(|| run(&bytes));
            assert!(result.is_ok(), "{} panicked", path.display());
        }
    }
}
