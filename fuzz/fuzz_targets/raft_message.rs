#![no_main]
//! See `oneid::fuzzing::raft_message` for what this checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oneid::fuzzing::raft_message(data);
});
