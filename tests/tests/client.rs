//! The tokio driver of the client core (`dlab_client::native::LiveSession`) against the local
//! gateway, each case on the memory backend and on the real servers (Redis, MongoDB through
//! nx-27017, DynamoDB on moto). The real-server cases skip when the servers are not reachable
//! and fail when `DLAB_TEST_SERVERS=1` says they must be.

use dlab_tests::client_cases;
use dlab_tests::e2e::Backend;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                client_cases::$name(Backend::MEMORY).await;
            })*
        }
        mod real {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if Backend::REAL.available() {
                    client_cases::$name(Backend::REAL).await;
                }
            })*
        }
    };
}

cases!(
    rejected_event_rolls_back,
    double_attack_rebases_to_two_hp,
    offline_client_catches_up_in_order,
    resume_after_compaction_loads_the_snapshot,
    server_roll_over_the_driver,
    join_refuses_bad_tokens_and_strangers,
    trusted_dice_verified_and_forgeries_flagged,
);
