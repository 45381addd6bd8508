//! The reliability suite of issue 12 over the local gateway (bodies in
//! `dlab_tests::reliability`): chaos, Redis killed with SIGKILL, Redis wiped, the archive down,
//! and frames that never arrive. Short variants run in `cargo test`; `DLAB_RELIABILITY_LONG=1`
//! runs the long ones. The real-server variants skip when the servers are not reachable and fail
//! when `DLAB_TEST_SERVERS=1` says they must be; the Redis faults need `redis-server`.

use std::time::Duration;

use dlab_tests::e2e::{Backend, Stores};
use dlab_tests::reliability::{self, Fault, Load, long, private_redis, scenario, seed};
use local_gateway::delivery::Delivery;

/// The chaos load. Short: 20 clients × 15 events on memory with in-process delivery, 12 × 15
/// through `@connections` or on the real servers, where every frame or registry call costs a
/// loopback HTTP request (moto answers DynamoDB from one Python process). Long: 100 × 40 on
/// memory, 40 × 30 on the real servers, 20 × 30 through `@connections` (at 40 × 30 its
/// backlog of posts held re-subscribe answers back for over a minute on a 2-core machine).
fn chaos_load(backend: Backend) -> Load {
    match (long(), backend) {
        (false, Backend::MEMORY) => Load::new(20, 15, Duration::from_secs(120)),
        (false, _) => Load::new(12, 15, Duration::from_secs(300)),
        (true, Backend::MEMORY) => Load::new(100, 40, Duration::from_secs(600)),
        (true, b) if b.delivery == Delivery::Apigw => Load::new(20, 30, Duration::from_secs(900)),
        (true, _) => Load::new(40, 30, Duration::from_secs(900)),
    }
}

/// The load of the fault scenarios. Short: 8 clients × 24 events. Long: 30 × 60 on memory
/// stores, 16 × 40 with the real archive.
fn fault_load(backend: Backend) -> Load {
    match (long(), backend.stores) {
        (false, _) => Load::new(8, 24, Duration::from_secs(180)),
        (true, Stores::Memory) => Load::new(30, 60, Duration::from_secs(900)),
        (true, Stores::Real) => Load::new(16, 40, Duration::from_secs(900)),
    }
}

/// Kills or wipes per fault scenario: one, three with the long flag.
fn fault_times() -> usize {
    if long() { 3 } else { 1 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_memory() {
    let backend = Backend::MEMORY;
    scenario(
        backend,
        chaos_load(backend),
        Fault::None,
        seed("chaos_memory"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_memory_apigw() {
    let backend = Backend::MEMORY.via(Delivery::Apigw);
    scenario(
        backend,
        chaos_load(backend),
        Fault::None,
        seed("chaos_memory_apigw"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_real_servers() {
    let backend = Backend::REAL;
    if backend.available() {
        scenario(
            backend,
            chaos_load(backend),
            Fault::None,
            seed("chaos_real_servers"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_sigkill_mid_load() {
    let Some(redis) = private_redis(true) else {
        return;
    };
    scenario(
        Backend::MEMORY,
        fault_load(Backend::MEMORY),
        Fault::RedisKilled {
            redis,
            times: fault_times(),
        },
        seed("redis_sigkill_mid_load"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_sigkill_mid_load_real_archive() {
    let backend = Backend::REAL;
    if !backend.available() {
        return;
    }
    let Some(redis) = private_redis(true) else {
        return;
    };
    scenario(
        backend,
        fault_load(backend),
        Fault::RedisKilled {
            redis,
            times: fault_times(),
        },
        seed("redis_sigkill_mid_load_real_archive"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_wiped_mid_load() {
    let Some(redis) = private_redis(false) else {
        return;
    };
    scenario(
        Backend::MEMORY,
        fault_load(Backend::MEMORY),
        Fault::RedisWiped {
            redis,
            times: fault_times(),
        },
        seed("redis_wiped_mid_load"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_wiped_mid_load_real_archive() {
    let backend = Backend::REAL;
    if !backend.available() {
        return;
    }
    let Some(redis) = private_redis(false) else {
        return;
    };
    scenario(
        backend,
        fault_load(backend),
        Fault::RedisWiped {
            redis,
            times: fault_times(),
        },
        seed("redis_wiped_mid_load_real_archive"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn archive_down_under_load() {
    scenario(
        Backend::MEMORY,
        fault_load(Backend::MEMORY),
        Fault::ArchiveDown { redis: None },
        seed("archive_down_under_load"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn archive_down_under_load_real_servers() {
    let backend = Backend::REAL;
    if !backend.available() {
        return;
    }
    let Some(redis) = private_redis(false) else {
        return;
    };
    scenario(
        backend,
        fault_load(backend),
        Fault::ArchiveDown { redis: Some(redis) },
        seed("archive_down_under_load_real_servers"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_mid_stream_and_a_handler_that_stops_after_commit() {
    reliability::dropped_mid_stream_and_a_handler_that_stops_after_commit(Backend::MEMORY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_mid_stream_and_a_handler_that_stops_after_commit_apigw() {
    reliability::dropped_mid_stream_and_a_handler_that_stops_after_commit(
        Backend::MEMORY.via(Delivery::Apigw),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_mid_stream_and_a_handler_that_stops_after_commit_real_servers() {
    let backend = Backend::REAL;
    if backend.available() {
        reliability::dropped_mid_stream_and_a_handler_that_stops_after_commit(backend).await;
    }
}
