//! The `RateLimiter` contract: a burst is allowed, then refused until tokens refill; keys are
//! independent.

use dlab_store::RateLimiter;

/// Burst, refusal, independence of keys, and refill.
pub async fn token_bucket(limiter: &dyn RateLimiter) {
    let key = format!("conn-{}", uuid::Uuid::new_v4());
    let other = format!("conn-{}", uuid::Uuid::new_v4());
    // A slow refill (0.5/s) keeps the test independent of how fast the machine is.
    let mut granted = 0;
    for _ in 0..15 {
        if limiter.try_acquire(&key, 0.5, 10).await.unwrap() {
            granted += 1;
        }
    }
    assert_eq!(granted, 10, "exactly the burst is granted");
    assert!(!limiter.try_acquire(&key, 0.5, 10).await.unwrap());
    assert!(
        limiter.try_acquire(&other, 0.5, 10).await.unwrap(),
        "keys are independent"
    );
    // A fast refill (1000/s) gives a token back after a short wait.
    let fast = format!("conn-{}", uuid::Uuid::new_v4());
    for _ in 0..3 {
        limiter.try_acquire(&fast, 1000.0, 3).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        limiter.try_acquire(&fast, 1000.0, 3).await.unwrap(),
        "refilled"
    );
}
