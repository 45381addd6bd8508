//! The reliability suite's bad-input table (issue 12): malformed WebSocket frames and HTTP
//! requests against the local gateway, each checked for its documented answer, no state
//! change, and a connection that stays usable. Rows and checks: `dlab_tests::bad_input`.

use dlab_tests::bad_input::bad_input_table;
use dlab_tests::e2e::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_on_memory() {
    bad_input_table(Backend::MEMORY).await;
}

/// The same table with Redis, MongoDB (nx-27017) and DynamoDB (moto) behind the gateway:
/// skips when they are not reachable, fails when `DLAB_TEST_SERVERS=1` says they must be.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_on_the_real_servers() {
    if Backend::REAL.available() {
        bad_input_table(Backend::REAL).await;
    }
}
