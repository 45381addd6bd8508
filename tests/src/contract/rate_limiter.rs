//! The `RateLimiter` contract: a burst is allowed, then refused with the time until a token is
//! back, until tokens refill; keys are independent.

use std::time::Duration;

use dlab_store::{Acquire, RateLimiter};

async fn take(limiter: &dyn RateLimiter, key: &str, per_second: f64, burst: u32) -> Acquire {
    limiter
        .try_acquire(key, per_second, burst)
        .await
        .expect("try_acquire")
}

/// Burst, refusal with a sensible `retry_after`, independence of keys, and refill.
pub async fn token_bucket(limiter: &dyn RateLimiter) {
    let key = format!("conn-{}", uuid::Uuid::new_v4());
    let other = format!("conn-{}", uuid::Uuid::new_v4());
    // A slow refill (0.5/s, one token every 2 s) keeps the test independent of how fast the
    // machine is: 15 calls cannot take 2 s.
    let mut granted = 0;
    let mut refusals = Vec::new();
    for _ in 0..15 {
        match take(limiter, &key, 0.5, 10).await {
            Acquire::Taken => granted += 1,
            Acquire::Limited { retry_after } => refusals.push(retry_after),
        }
    }
    assert_eq!(granted, 10, "exactly the burst is granted");
    assert_eq!(refusals.len(), 5);
    let one_token = Duration::from_secs(2);
    for retry_after in &refusals {
        assert!(
            *retry_after > Duration::ZERO && *retry_after <= one_token,
            "retry_after {retry_after:?} is not within (0, 1/rate = {one_token:?}]"
        );
    }
    // A refused call takes nothing, so the wait never grows while the caller keeps asking.
    assert!(
        refusals.windows(2).all(|w| w[1] <= w[0]),
        "retry_after grew while the bucket was empty: {refusals:?}"
    );
    assert!(matches!(
        take(limiter, &key, 0.5, 10).await,
        Acquire::Limited { .. }
    ));
    assert_eq!(
        take(limiter, &other, 0.5, 10).await,
        Acquire::Taken,
        "keys are independent"
    );
    // A fast refill (1000/s): the wait is at most one token's time (1 ms), and once it has
    // passed the bucket gives a token again (bounded retries, no timing assertion).
    let fast = format!("conn-{}", uuid::Uuid::new_v4());
    for _ in 0..3 {
        take(limiter, &fast, 1000.0, 3).await;
    }
    let mut refilled = false;
    for _ in 0..100 {
        match take(limiter, &fast, 1000.0, 3).await {
            Acquire::Taken => {
                refilled = true;
                break;
            }
            Acquire::Limited { retry_after } => {
                assert!(
                    retry_after > Duration::ZERO && retry_after <= Duration::from_millis(1),
                    "{retry_after:?}"
                );
                tokio::time::sleep(retry_after).await;
            }
        }
    }
    assert!(refilled, "a token came back after waiting retry_after");
}
