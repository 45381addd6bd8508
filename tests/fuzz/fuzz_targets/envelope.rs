//! Fuzzes a submitted event's JSON through envelope validation, state-change parsing and the
//! projection (see `harness.rs`).
#![no_main]

// Each target calls one entry point of the shared harness.
#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::envelope(data);
});
