//! Who hears a session's events, without a registry query for every event.
//!
//! A broadcast needs the session's live connections. Reading them from the registry for every
//! event is a DynamoDB `Query` per event, the largest share of a submit's round trips. Instead
//! each process caches the list per session under the session's *audience token*: a random
//! value that every change of the session's subscriptions replaces
//! ([`EventLog::set_audience`](dlab_store::EventLog::set_audience)), and that every commit
//! returns, read in the same atomic step as the sequence. A commit whose token equals the
//! cached one may use the cached list.
//!
//! Why nobody misses an event:
//! - A subscriber registers, *then* replaces the token, *then* reads the head and catches up.
//!   A commit that returned the old token was ordered before the replacement, so its sequence
//!   is at most the head the subscriber reads: the catch-up delivers it. A commit that
//!   returned the new token finds no cached list for it and reads the registry, after the
//!   registration.
//! - A list is cached under the token of the commit that read it, and was read after that
//!   commit, so it holds every subscription registered before that token was set.
//!
//! What staleness costs, and its bound:
//! - A connection that left but is in a cached list gets posts that answer 410 (it is removed
//!   again) until the token changes; removals replace the token, so this lasts one event.
//! - If replacing the token fails after a removal (the hot store is down at that moment), an
//!   unsubscribed but still open connection could keep hearing the session. Entries expire
//!   after [`MAX_AGE`], so that lasts at most that long; the failure is logged as an error.
//! - A store that lost the token (wiped, expired) makes commits return none: every broadcast
//!   reads the registry until the next change sets a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dlab_core::ids::SessionId;
use dlab_store::model::{Subscription, now_ms};
use tracing::{error, warn};

use crate::deps::Deps;
use crate::error::ServiceError;

/// How long a cached list may be used at most, whatever the token says (see the module docs).
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Sessions one process remembers; beyond it, entries older than [`MAX_AGE`] are dropped, and
/// if that is not enough, all of them.
const MAX_SESSIONS: usize = 10_000;

/// Attempts at replacing the token after a removal before giving up with an error log.
const REMOVAL_ATTEMPTS: usize = 3;

#[derive(Debug)]
struct Entry {
    token: u64,
    read_at: Instant,
    connections: Arc<Vec<Subscription>>,
}

/// Each session's connections, as last read from the registry, under the audience token the
/// read is valid for. One per process ([`Deps::audiences`]).
#[derive(Debug, Default)]
pub struct AudienceCache {
    entries: Mutex<HashMap<SessionId, Entry>>,
}

impl AudienceCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The list cached for `session` under `token`, if it is young enough.
    fn get(&self, session: &SessionId, token: u64) -> Option<Arc<Vec<Subscription>>> {
        self.lock()
            .get(session)
            .filter(|e| e.token == token && e.read_at.elapsed() < MAX_AGE)
            .map(|e| e.connections.clone())
    }

    fn put(&self, session: &SessionId, token: u64, read_at: Instant, list: Arc<Vec<Subscription>>) {
        let mut entries = self.lock();
        if entries.len() >= MAX_SESSIONS && !entries.contains_key(session) {
            entries.retain(|_, e| e.read_at.elapsed() < MAX_AGE);
            if entries.len() >= MAX_SESSIONS {
                entries.clear();
            }
        }
        entries.insert(
            session.clone(),
            Entry {
                token,
                read_at,
                connections: list,
            },
        );
    }

    /// Forgets a session's list (this process changed its subscriptions).
    fn forget(&self, session: &SessionId) {
        self.lock().remove(session);
    }

    /// Sessions with a cached list (tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The live connections of `session` for a broadcast of an event committed under `token`:
/// the cached list when it was read under that token, else a registry read (cached when there
/// is a token). Expired subscriptions are left out either way.
pub async fn connections(
    deps: &Deps,
    session: &SessionId,
    token: Option<u64>,
) -> Result<Arc<Vec<Subscription>>, ServiceError> {
    let list = match token.and_then(|t| deps.audiences.get(session, t)) {
        Some(list) => list,
        None => {
            let read_at = Instant::now();
            let list = Arc::new(deps.registry.session_connections(session).await?);
            if let Some(t) = token {
                deps.audiences.put(session, t, read_at, list.clone());
            }
            list
        }
    };
    let now = now_ms();
    if list.iter().all(|s| s.expires_at > now) {
        Ok(list)
    } else {
        Ok(Arc::new(
            list.iter()
                .filter(|s| s.expires_at > now)
                .cloned()
                .collect(),
        ))
    }
}

fn fresh_token() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// A subscription to `session` was added: replace its audience token. Must succeed before the
/// subscriber reads the head (see the module docs), so a failure is the subscribe's failure.
pub async fn joined(deps: &Deps, session: &SessionId) -> Result<(), ServiceError> {
    deps.audiences.forget(session);
    deps.log.set_audience(session, fresh_token()).await?;
    Ok(())
}

/// Subscriptions to `session` were removed: replace its audience token, retrying a little; a
/// failure is logged, and bounded by [`MAX_AGE`] (see the module docs).
pub async fn left(deps: &Deps, session: &SessionId) {
    deps.audiences.forget(session);
    for attempt in 1..=REMOVAL_ATTEMPTS {
        match deps.log.set_audience(session, fresh_token()).await {
            Ok(()) => return,
            Err(e) if attempt < REMOVAL_ATTEMPTS => {
                warn!(session = %session, attempt, error = %dlab_store::Chain(&e),
                      "could not replace the audience token; retrying");
                tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
            }
            Err(e) => {
                error!(session = %session, error = %dlab_store::Chain(&e),
                       max_age_secs = MAX_AGE.as_secs(),
                       "could not replace the audience token after a removal; cached lists may include the removed connections until they expire");
            }
        }
    }
}
