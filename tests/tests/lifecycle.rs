//! Session lifecycle cases (`dlab_tests::lifecycle_cases`) on the memory backend.

use std::time::Duration;

use dlab_service::config::Settings;
use dlab_tests::lifecycle_cases::{self as cases, LifeWorld, small_lifecycle};

fn world() -> LifeWorld {
    let mut settings = Settings::default();
    small_lifecycle(&mut settings);
    LifeWorld::memory(settings)
}

#[tokio::test]
async fn compaction_snapshots_trims_and_keeps_replay_contiguous() {
    cases::compaction_snapshots_trims_and_keeps_replay_contiguous(&world()).await;
}

#[tokio::test]
async fn dedup_survives_a_trim() {
    cases::dedup_survives_a_trim(&world()).await;
}

#[tokio::test]
async fn one_run_completes_the_archive_after_an_outage() {
    cases::one_run_completes_the_archive_after_an_outage(world()).await;
}

#[tokio::test]
async fn a_session_whose_archive_cannot_be_completed_is_never_trimmed_further() {
    cases::a_session_whose_archive_cannot_be_completed_is_never_trimmed_further(world()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_make_one_snapshot() {
    cases::two_runs_at_once_make_one_snapshot(world()).await;
}

#[tokio::test]
async fn resume_below_the_hot_window() {
    cases::resume_below_the_hot_window_and_after_retention(&world(), false).await;
}

#[tokio::test]
async fn resume_after_retention_pruned_the_archive() {
    let mut settings = Settings::default();
    small_lifecycle(&mut settings);
    settings.lifecycle.archive_retention = Some(Duration::ZERO);
    let w = LifeWorld::memory(settings);
    cases::resume_below_the_hot_window_and_after_retention(&w, true).await;
}

#[tokio::test]
async fn an_ended_session_is_readable_and_refuses_submits() {
    cases::an_ended_session_is_readable_and_refuses_submits(&world()).await;
}

#[tokio::test]
async fn an_ended_session_without_a_snapshot_is_readable() {
    cases::an_ended_session_without_a_snapshot_is_readable(&world()).await;
}

#[tokio::test]
async fn idle_sessions_are_released_and_come_back() {
    cases::idle_sessions_are_released_and_come_back(&world()).await;
}

#[tokio::test]
async fn a_sweep_releases_quiet_sessions_and_they_come_back() {
    let mut settings = Settings::default();
    small_lifecycle(&mut settings);
    settings.lifecycle.idle_release_after = Duration::from_millis(5);
    let w = LifeWorld::memory(settings);
    cases::a_sweep_releases_quiet_sessions_and_they_come_back(&w).await;
}

#[tokio::test]
async fn state_documents_are_paged_by_instance() {
    cases::state_documents_are_paged_by_instance(&world()).await;
}

#[tokio::test]
async fn compact_is_409_while_another_run_holds_the_lease() {
    cases::compact_is_409_while_another_run_holds_the_lease(&world()).await;
}

#[tokio::test]
async fn the_gm_resolves_a_blind_write_race() {
    cases::the_gm_resolves_a_blind_write_race(&world()).await;
}

#[tokio::test]
async fn a_refused_compare_and_set_is_escalated_and_resolved() {
    cases::a_refused_compare_and_set_is_escalated_and_resolved(&world()).await;
}

#[tokio::test]
async fn increments_and_own_rewrites_are_not_conflicts() {
    cases::increments_and_own_rewrites_are_not_conflicts(&world()).await;
}

#[tokio::test]
async fn a_long_combat_shrinks_the_hot_log_by_ninety_percent() {
    let mut settings = Settings::default();
    settings.rates.submit.burst = 1_000_000;
    cases::combat_session_shrinks_the_hot_log(&LifeWorld::memory(settings), 10_000).await;
}
