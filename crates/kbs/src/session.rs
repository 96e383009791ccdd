//! `kbs-session-id` sessions: the challenge a client was given, then the token it earned, each
//! with an expiry. Sharded so concurrent clients rarely meet on a lock, and bounded: a session
//! keeps only what the next step needs, and past the capacity the oldest session goes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kbs_types::{Tee, TeePubKey};

const SHARDS: usize = 16;

/// Where a session is.
#[derive(Debug, Clone)]
pub enum State {
    /// `/auth` answered: the nonce the evidence must bind.
    Authed {
        /// The TEE the client said it is.
        tee: Tee,
        /// The nonce, as sent (base64).
        nonce: String,
    },
    /// `/attest` succeeded.
    Attested {
        /// The token issued.
        token: String,
        /// The TEE key resources are encrypted to.
        tee_pubkey: TeePubKey,
        /// The token's claims (for the resource policy).
        claims: serde_json::Value,
    },
}

struct Entry {
    state: State,
    expires: Instant,
}

/// All live sessions.
pub struct Sessions {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    lifetime: Duration,
    /// Sessions one shard keeps at most.
    per_shard: usize,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions that live `lifetime` from their last change (CoCo: 5 minutes), about
    /// `capacity` of them at most.
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            lifetime,
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// How long a session lives.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn shard(&self, id: &str) -> &Mutex<HashMap<String, Entry>> {
        let index = id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        &self.shards[index % SHARDS]
    }

    /// Store `state` under `id` (a fresh random id from the caller), dropping expired sessions
    /// of the same shard, and its oldest when the shard is full.
    pub fn put(&self, id: &str, state: State) {
        let now = Instant::now();
        if let Ok(mut shard) = self.shard(id).lock() {
            shard.retain(|_, e| e.expires > now);
            if shard.len() >= self.per_shard && !shard.contains_key(id) {
                let oldest = shard
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    shard.remove(&oldest);
                }
            }
            shard.insert(
                id.to_string(),
                Entry {
                    state,
                    expires: now + self.lifetime,
                },
            );
        }
    }

    /// How many sessions are kept (expired ones included until their shard is next written).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| s.len()))
            .sum()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live state of `id`.
    pub fn get(&self, id: &str) -> Option<State> {
        let shard = self.shard(id).lock().ok()?;
        shard
            .get(id)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.state.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authed(n: usize) -> State {
        State::Authed {
            tee: Tee::Sample,
            nonce: n.to_string(),
        }
    }

    #[test]
    fn past_the_capacity_the_oldest_sessions_go() {
        let sessions = Sessions::new(Duration::from_secs(300), 64);
        for n in 0..10_000 {
            sessions.put(&format!("id-{n}"), authed(n));
        }
        assert!(sessions.len() <= 64, "{} sessions kept", sessions.len());
        // The newest is there, the first long gone.
        assert!(sessions.get("id-9999").is_some());
        assert!(sessions.get("id-0").is_none());
    }

    #[test]
    fn a_session_can_move_on_when_its_shard_is_full() {
        // One session per shard: the shard of "id-3" is full with "id-3" itself.
        let sessions = Sessions::new(Duration::from_secs(300), 16);
        sessions.put("id-3", authed(1));
        sessions.put("id-3", authed(99));
        assert_eq!(sessions.len(), 1);
        assert!(matches!(sessions.get("id-3"), Some(State::Authed { nonce, .. }) if nonce == "99"));
    }
}
