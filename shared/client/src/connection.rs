//! The connection policy: when to (re)connect, when to ping, when to cycle a socket.
//!
//! API Gateway closes idle WebSockets after 10 minutes and every WebSocket after 2 hours
//! (ARCHITECTURE.md, "subscribe"), so reconnecting is the normal path, not an accident: the
//! client pings well inside the idle limit, replaces its socket shortly before the hard cut,
//! and after a drop retries with capped exponential backoff and jitter so that a server restart
//! does not bring every client back in the same millisecond.

use crate::entropy::Entropy;

/// Connection status, as the UI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A socket is open (the catch-up may still be running; see `SessionClient::is_live`).
    Connected,
    /// No socket; the next attempt starts at `next_at` (ms), or is running if that has passed.
    Reconnecting {
        /// Consecutive failed attempts since the session was last live (0 for a planned
        /// reconnect before the 2-hour cut).
        attempt: u32,
        /// When the next attempt starts, in the caller's clock (ms).
        next_at: u64,
    },
    /// Not connected and not trying: before `start`, after `stop`, or after the server refused
    /// the subscription for good. Submits still queue.
    Offline {
        /// Events queued and not yet final.
        pending: usize,
    },
}

/// Timings of the policy, all in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// First backoff step.
    pub backoff_base_ms: u64,
    /// Largest backoff.
    pub backoff_cap_ms: u64,
    /// Interval of `ping` on an open socket.
    pub heartbeat_ms: u64,
    /// Age at which an open socket is replaced before the gateway's 2-hour cut.
    pub max_socket_age_ms: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            backoff_base_ms: 250,
            backoff_cap_ms: 30_000,
            // One minute: a tenth of API Gateway's 10-minute idle timeout, and often enough for
            // `pong.heads` to reveal a lost tail quickly.
            heartbeat_ms: 60_000,
            // 1 h 55 min: five minutes before the gateway cuts every socket at 2 h.
            max_socket_age_ms: 115 * 60_000,
        }
    }
}

/// The delay before reconnect attempt `failures` (1 for the first retry): "equal jitter" over a
/// capped exponential, `d = min(cap, base · 2^(failures−1))`, drawn uniformly in `[d/2, d]`.
/// Half of the delay is guaranteed, so retries never bunch at zero; the other half spreads
/// clients apart.
pub fn backoff_delay(failures: u32, base_ms: u64, cap_ms: u64, random: u64) -> u64 {
    let shift = failures.saturating_sub(1).min(32);
    let exp = base_ms.saturating_mul(1u64 << shift).min(cap_ms);
    let half = exp / 2;
    half + random % (exp - half + 1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Stopped,
    Waiting { next_at: u64 },
    Connecting { since: u64 },
    Open { opened_at: u64, last_ping_at: u64 },
}

/// What the policy asks of the session when time passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Open a socket.
    Connect,
    /// Replace the open socket now.
    Cycle,
    /// Send a `ping`.
    Ping,
}

/// The policy's state machine.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    timings: Timings,
    phase: Phase,
    failures: u32,
}

impl Connection {
    pub(crate) fn new(timings: Timings) -> Self {
        Self {
            timings,
            phase: Phase::Stopped,
            failures: 0,
        }
    }

    pub(crate) fn status(&self, pending: usize) -> Status {
        match self.phase {
            Phase::Stopped => Status::Offline { pending },
            Phase::Waiting { next_at } => Status::Reconnecting {
                attempt: self.failures,
                next_at,
            },
            Phase::Connecting { since } => Status::Reconnecting {
                attempt: self.failures,
                next_at: since,
            },
            Phase::Open { .. } => Status::Connected,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open { .. })
    }

    pub(crate) fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    /// Begins connecting (from `Stopped` or a wait); false if already connecting or open.
    pub(crate) fn start(&mut self, now: u64) -> bool {
        match self.phase {
            Phase::Stopped | Phase::Waiting { .. } => {
                self.phase = Phase::Connecting { since: now };
                true
            }
            Phase::Connecting { .. } | Phase::Open { .. } => false,
        }
    }

    pub(crate) fn stop(&mut self) {
        self.phase = Phase::Stopped;
        self.failures = 0;
    }

    pub(crate) fn opened(&mut self, now: u64) {
        self.phase = Phase::Open {
            opened_at: now,
            last_ping_at: now,
        };
    }

    /// The session caught up: the connection is healthy, the next drop starts from attempt 1.
    pub(crate) fn healthy(&mut self) {
        self.failures = 0;
    }

    /// The socket closed or an attempt failed: schedules the next attempt. Returns false when
    /// stopped (nothing to do).
    pub(crate) fn closed(&mut self, now: u64, entropy: &mut dyn Entropy) -> bool {
        match self.phase {
            Phase::Stopped => false,
            // A second report of the same drop: the attempt is already scheduled.
            Phase::Waiting { .. } => true,
            Phase::Connecting { .. } | Phase::Open { .. } => {
                self.failures = self.failures.saturating_add(1);
                let delay = backoff_delay(
                    self.failures,
                    self.timings.backoff_base_ms,
                    self.timings.backoff_cap_ms,
                    entropy.next_u64(),
                );
                self.phase = Phase::Waiting {
                    next_at: now.saturating_add(delay),
                };
                true
            }
        }
    }

    /// What is due at `now`, updating the phase as if it is done.
    pub(crate) fn due(&mut self, now: u64) -> Option<Due> {
        match self.phase {
            Phase::Waiting { next_at } if now >= next_at => {
                self.phase = Phase::Connecting { since: now };
                Some(Due::Connect)
            }
            Phase::Open { opened_at, .. }
                if now.saturating_sub(opened_at) >= self.timings.max_socket_age_ms =>
            {
                self.phase = Phase::Connecting { since: now };
                Some(Due::Cycle)
            }
            Phase::Open {
                opened_at,
                last_ping_at,
            } if now.saturating_sub(last_ping_at) >= self.timings.heartbeat_ms => {
                self.phase = Phase::Open {
                    opened_at,
                    last_ping_at: now,
                };
                Some(Due::Ping)
            }
            _ => None,
        }
    }

    /// The next instant something is due, if any.
    pub(crate) fn next_due(&self) -> Option<u64> {
        match self.phase {
            Phase::Waiting { next_at } => Some(next_at),
            Phase::Open {
                opened_at,
                last_ping_at,
            } => Some(
                opened_at
                    .saturating_add(self.timings.max_socket_age_ms)
                    .min(last_ping_at.saturating_add(self.timings.heartbeat_ms)),
            ),
            Phase::Stopped | Phase::Connecting { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SplitMix64;

    #[test]
    fn first_retry_is_between_125_and_250_ms_and_the_cap_holds() {
        for r in [0, 1, 124, 125, 126, u64::MAX] {
            let d = backoff_delay(1, 250, 30_000, r);
            assert!((125..=250).contains(&d), "{d}");
            let d = backoff_delay(40, 250, 30_000, r);
            assert!((15_000..=30_000).contains(&d), "{d}");
        }
    }

    #[test]
    fn heartbeat_and_cycle_come_due() {
        let mut c = Connection::new(Timings::default());
        let mut e = SplitMix64::new(1);
        assert!(c.start(0));
        c.opened(0);
        assert_eq!(c.due(59_999), None);
        assert_eq!(c.due(60_000), Some(Due::Ping));
        assert_eq!(c.due(60_001), None);
        assert_eq!(c.due(115 * 60_000), Some(Due::Cycle));
        assert!(c.closed(115 * 60_000 + 5, &mut e));
        assert!(matches!(
            c.status(0),
            Status::Reconnecting { attempt: 1, .. }
        ));
    }
}
