#![no_main]
//! See `oneid::fuzzing::stored_record` for what this checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oneid::fuzzing::stored_record(data);
});
