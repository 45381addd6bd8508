//! Shared helpers and contract bodies for the end-to-end, contract and reliability suites.
//!
//! # Layout
//! - [`servers`]: where the real test servers listen, and whether a suite must use them.
//! - [`private`]: private server instances for fault tests (kill, restart, wipe).
//! - [`ws_world`]: a seeded table (campaign, members, session, goblin) and WebSocket clients
//!   driving the Lambda handlers with real API Gateway event JSON.
//! - [`http_cases`]: the HTTP API driven in-process through its router, one function per
//!   case.
//! - [`lifecycle_cases`]: backfill, compaction, idle release, session end, retention and the
//!   GM conflict flow over HTTP and WebSocket on one set of dependencies.
//! - [`e2e`]: the local gateway driven from outside — raw WebSocket clients over TCP whose
//!   session state is `dlab-client`'s `SessionClient` (ordering, gap replay, own events,
//!   rebase), the HTTP API over HTTP — and the end-to-end cases.
//! - [`client_cases`]: the client core's tokio driver (`LiveSession`) against the local
//!   gateway: rollback, rebase, offline catch-up, resume from a snapshot, trusted dice.
//! - [`bad_input`]: the reliability suite's table of malformed WebSocket and HTTP inputs, each
//!   checked for its answer, no state change and a connection still usable.
//! - [`reliability`]: the reliability suite of issue 12 — chaos (duplicates, drops,
//!   reconnects), Redis killed or wiped, the archive down, and frames that never arrive — over
//!   the local gateway, with invariants checked afterwards.
//! - [`srd_cases`]: the SRD 5.1 import checked against any campaign store, and over HTTP.
//! - [`contract`]: one generic contract body per port, run against the memory adapter and the
//!   real one by the files in `tests/tests/`.
//!
//! The README's test command (`bash infra/test.sh`) starts Redis, nx-27017 (MongoDB wire) and
//! moto (DynamoDB) on loopback and sets `DLAB_TEST_SERVERS=1`. With it set, a real-server test
//! that cannot reach its server fails; without it, such a test skips and says how to run it.

pub mod bad_input;
pub mod client_cases;
pub mod contract;
pub mod counting;
pub mod e2e;
pub mod http_cases;
pub mod lifecycle_cases;
pub mod metrics_probe;
pub mod private;
pub mod reliability;
pub mod servers;
pub mod srd_cases;
pub mod ws_cases;
pub mod ws_world;
