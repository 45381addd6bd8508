//! Injected randomness: reconnect jitter and event ids.
//!
//! The core never reads the system's randomness, so it runs unchanged in a browser, a test or
//! a CLI, and a test can replay a run exactly. The driver supplies an [`Entropy`] backed by the
//! platform's secure generator (`getrandom`, `crypto.getRandomValues`).

use dlab_core::ids::EventId;

/// A source of random 64-bit words, supplied by the driver.
///
/// Event ids are the server's idempotency keys (ARCHITECTURE.md invariant 2): two clients that
/// drew the same words would collide, so production sources must be unpredictable and seeded
/// per process, never constant. `Send` so that a driver can own its session client in a task
/// on another thread.
pub trait Entropy: Send {
    /// The next random word.
    fn next_u64(&mut self) -> u64;
}

/// SplitMix64: a tiny deterministic generator for tests and simulations.
///
/// Not a secure source: give each client its own seed (from the platform's generator) if it is
/// ever used outside tests, because equal seeds give equal event ids.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl Entropy for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A fresh random (version 4) UUID in the lower-case hyphenated form the server normalizes ids
/// to, so the id the client keeps is byte-equal to the one the server echoes.
pub fn new_event_id(entropy: &mut dyn Entropy) -> EventId {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&entropy.next_u64().to_be_bytes());
    bytes[8..].copy_from_slice(&entropy.next_u64().to_be_bytes());
    bytes[6] = (bytes[6] & 0x0F) | 0x40;
    bytes[8] = (bytes[8] & 0x3F) | 0x80;
    let mut text = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        text.push(char::from_digit(u32::from(b & 0x0F), 16).unwrap_or('0'));
    }
    EventId::new(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_v4_lowercase_hyphenated_and_distinct() {
        let mut e = SplitMix64::new(7);
        let a = new_event_id(&mut e);
        let b = new_event_id(&mut e);
        assert_ne!(a, b);
        let s = a.as_str();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(s, s.to_lowercase());
        let raw = serde_json::json!({"id": s});
        assert_eq!(dlab_core::event::usable_id(&raw), Some(a));
    }
}
