//! WebSocket handlers driven by API Gateway event JSON, against the memory backend.
//! (The same cases run against the real servers in `ws_handlers_real.rs`.)

use dlab_tests::ws_cases;
use dlab_tests::ws_world::memory_world;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            ws_cases::$name(&memory_world()).await;
        })*
    };
}

cases!(
    attack_is_confirmed_and_broadcast,
    concurrent_attacks_rebase_to_two,
    reconnect_with_since_gets_exactly_the_missing_events,
    duplicate_submit_is_confirmed_and_rebroadcast,
    ping_unsubscribe_and_request_ids,
    ephemeral_is_relayed_not_stored,
    snapshot_required_when_since_is_ahead,
    bad_input_is_refused_and_changes_nothing,
    conflict_carries_current,
    flood_is_rate_limited,
    bad_tokens_are_refused_at_connect,
    connection_limit_is_enforced_at_connect,
    one_submit_makes_five_store_calls_and_one_registry_read,
    a_subscriber_of_another_process_hears_the_next_event,
    dice_roll_is_rolled_by_the_server_and_broadcast,
    resent_dice_roll_is_a_duplicate_with_the_original_result,
    dice_roll_checksum_covers_the_submission_without_result,
    bad_dice_rolls_are_refused_and_store_nothing,
    session_settings_are_written_by_the_gm_only,
);

#[tokio::test]
async fn gone_connections_are_removed() {
    let world = memory_world();
    ws_cases::gone_connections_are_removed(&world, async |c| {
        // Close the channel behind the server's back: the next post answers Gone.
        c.drop_link();
    })
    .await;
}
