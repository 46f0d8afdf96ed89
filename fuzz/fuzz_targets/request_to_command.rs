#![no_main]
//! See `oneid::fuzzing::request_to_command` for what this checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oneid::fuzzing::request_to_command(data);
});
