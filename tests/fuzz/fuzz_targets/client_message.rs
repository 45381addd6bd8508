//! Fuzzes a client text frame through the WebSocket service's parse chain (see `harness.rs`).
#![no_main]

// Each target calls one entry point of the shared harness.
#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::client_message(data);
});
