//! `kbs-session-id` sessions: the challenge a client was given, then the token it earned, each
//! with an expiry. Sharded so concurrent clients rarely meet on a lock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kbs_types::{Request, TeePubKey};

const SHARDS: usize = 16;

/// Where a session is.
#[derive(Debug, Clone)]
pub enum State {
    /// `/auth` answered: the nonce the evidence must bind.
    Authed {
        /// The client's request.
        request: Request,
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
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions that live `lifetime` from their last change (CoCo: 5 minutes).
    pub fn new(lifetime: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            lifetime,
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
    /// of the same shard.
    pub fn put(&self, id: &str, state: State) {
        let now = Instant::now();
        if let Ok(mut shard) = self.shard(id).lock() {
            shard.retain(|_, e| e.expires > now);
            shard.insert(
                id.to_string(),
                Entry {
                    state,
                    expires: now + self.lifetime,
                },
            );
        }
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
