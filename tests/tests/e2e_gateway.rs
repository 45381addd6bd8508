//! The end-to-end suite of issue 6 against the local gateway on the memory backend: real
//! WebSocket clients over TCP and the HTTP API over HTTP, on a loopback port.

use dlab_tests::e2e::{self, Backend};
use local_gateway::delivery::Delivery;

/// Each case twice: with in-process delivery (the gateway's default) and through
/// `@connections` with the AWS SDK (`--delivery apigw`), which must behave the same.
macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            use super::*;
            const BACKEND: Backend = Backend::MEMORY;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                e2e::$name(BACKEND).await;
            })*
        }
        mod apigw {
            use super::*;
            const BACKEND: Backend = Backend::MEMORY.via(Delivery::Apigw);
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                e2e::$name(BACKEND).await;
            })*
        }
    };
}

cases!(
    multi_client_synchronization,
    conflict_flow_over_the_wire,
    concurrent_attacks_rebase,
    load_100_clients_100_goblins,
    reconnect_with_since,
    duplicate_submit,
    vanished_client_is_removed,
    presence_ping_and_request_ids,
    tokens_at_connect,
    error_codes_over_the_wire,
    oversized_message_closes_1009,
    fragmented_message_within_limits,
    removed_member_stops_receiving,
    idle_timeout_closes_1001,
    graceful_shutdown_closes_and_disconnects,
    binary_frame_closes_1003,
    max_connection_closes_1001,
    slow_reader_is_dropped,
    outage_and_corrupt_data_over_the_wire,
);
