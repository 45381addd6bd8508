//! Shared helpers for the end-to-end, contract and reliability suites.
//!
//! # Layout
//! - [`servers`]: where the real test servers listen, and whether a suite must use them.
//!
//! The README's test command (`bash infra/test.sh`) starts Redis, nx-27017 (MongoDB wire) and
//! moto (DynamoDB) on loopback and sets `DLAB_TEST_SERVERS=1`. With it set, a real-server test
//! that cannot reach its server fails; without it, such a test skips and says how to run it.

pub mod servers;
