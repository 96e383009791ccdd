//! The shared backend: the sealed state in etcd (v3 API), for coordinator replicas.
//!
//! Under the prefix (`/cloister` unless the location names another):
//!
//! | key | value |
//! |---|---|
//! | `state/<name>` | a sealed record, as in the redb file |
//! | `audit/<seq, 20 digits>` | a sealed audit entry |
//! | `root` | the sealed root; every transaction compares its revision |
//! | `keys/genesis` | present once a replica made the state key |
//! | `keys/state-key/<platform id>` | the state key sealed under one platform's key |
//! | `keys/recovery` | the recovery commitments, in the clear |
//! | `replicas/<lease>` | a running replica's URL, alive with its lease |
//!
//! etcd sees nothing but sealed values, names and the commitments. Each replica keeps the
//! records in memory: its writer's copy (what its transactions are computed on) and a cache
//! for readers, which a watch on the root keeps current with other replicas' commits.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp, WatchOptions,
};
use time::OffsetDateTime;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::{Batch, Root, STATE_KEY_AAD, StoreError};
use crate::seal::{Sealer, StateKey};

/// The most bytes and operations one transaction holds: etcd refuses requests over 1.5 MiB
/// and transactions over 128 operations by default.
pub(crate) const TXN_LIMITS: (usize, usize) = (1 << 20, 120);
/// Activation counters: other replicas change them all the time, and nothing in a
/// coordinator's memory depends on them.
const COUNTER_PREFIX: &str = "activations/";
/// Audit entries read per request.
const PAGE: i64 = 1000;
/// How long a replica's registration outlives it.
const REPLICA_TTL: i64 = 10;

fn unavailable(e: &etcd_client::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Where the state is in etcd, and how to reach it.
#[derive(Debug, Clone)]
pub struct Location {
    endpoints: Vec<String>,
    prefix: String,
    tls: Option<Tls>,
    text: String,
}

/// TLS to etcd: the CA that signs its certificates, and a client identity if it asks for one.
#[derive(Clone)]
pub struct Tls {
    /// The CA certificate(s), PEM.
    pub ca_pem: Vec<u8>,
    /// The client certificate and key, PEM.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("client_identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl Location {
    /// `etcd://host:port[,host:port…][/prefix]`, over TLS when `tls` is given.
    pub fn parse(text: &str, tls: Option<Tls>) -> Result<Self, StoreError> {
        let bad = |reason: &str| StoreError::Location {
            location: text.to_string(),
            reason: reason.to_string(),
        };
        let rest = text
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("an etcd store is etcd://host:port[,host:port…][/prefix]"))?;
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, "cloister"));
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() || prefix.contains("//") {
            return Err(bad("the prefix must be a non-empty path"));
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{h}"))
            .collect();
        if endpoints.is_empty() || hosts.split(',').any(|h| !h.contains(':')) {
            return Err(bad("name every etcd endpoint as host:port"));
        }
        Ok(Self {
            endpoints,
            prefix: format!("/{prefix}/"),
            tls,
            text: text.to_string(),
        })
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    fn record(&self, name: &str) -> String {
        self.key(&format!("state/{name}"))
    }

    fn audit(&self, seq: u64) -> String {
        self.key(&format!("audit/{seq:020}"))
    }

    /// A client that gives up on a dead endpoint within seconds (the writer retries).
    async fn connect(&self) -> Result<Client, StoreError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        if let Some(tls) = &self.tls {
            let mut config = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(config);
        }
        Client::connect(&self.endpoints, Some(options))
            .await
            .map_err(|e| unavailable(&e))
    }

    /// The URLs of the replicas registered now.
    pub async fn replicas(&self) -> Result<Vec<String>, StoreError> {
        let mut client = self.connect().await?;
        let found = client
            .get(self.key("replicas/"), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(found
            .kvs()
            .iter()
            .filter_map(|kv| kv.value_str().ok().map(str::to_string))
            .collect())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A platform's name for its sealed copy of the state key: a MAC under its key, which says
/// nothing of the key.
fn platform_id(kek: &Sealer) -> String {
    hex::encode(&kek.mac(&[b"cloister platform id"])[..16])
}

/// Connect, and find or make the state key: this platform's sealed copy, or a new key for a
/// new state (one replica wins the race to make it), or `adopt`ed from a running replica or a
/// recovery (sealed for this platform once the state checks out under it).
pub(super) async fn open(
    location: &Location,
    kek: &Sealer,
    adopt: Option<StateKey>,
) -> Result<(Arc<Shared>, Writer, StateKey), StoreError> {
    let mut client = location.connect().await?;
    let own = location.key(&format!("keys/state-key/{}", platform_id(kek)));
    let state_key = match adopt {
        Some(key) => key,
        None => find_or_make_key(&mut client, location, kek, &own).await?,
    };
    let shared = Arc::new(Shared {
        location: location.clone(),
        client: client.clone(),
        handle: Handle::current(),
        cache: RwLock::new(Cache::default()),
        recovery: RwLock::new(None),
        head: ArcSwap::from_pointee(api::StateHead::default()),
        changes: watch::channel(0).0,
    });
    let writer = Writer {
        client,
        handle: Handle::current(),
        location: location.clone(),
        records: HashMap::new(),
        root_rev: 0,
        chain_len: 0,
        conflict: None,
        shared: Arc::clone(&shared),
    };
    Ok((shared, writer, state_key))
}

async fn find_or_make_key(
    client: &mut Client,
    location: &Location,
    kek: &Sealer,
    own: &str,
) -> Result<StateKey, StoreError> {
    let genesis = location.key("keys/genesis");
    loop {
        let found = client.get(own, None).await.map_err(|e| unavailable(&e))?;
        if let Some(kv) = found.kvs().first() {
            let opened = kek.open("the state key", STATE_KEY_AAD, kv.value());
            return opened
                .ok()
                .and_then(|k| StateKey::from_bytes(&k))
                .ok_or(StoreError::Locked {
                    recovery: recovery(client, location).await?,
                });
        }
        let key = StateKey::generate()?;
        let sealed = kek.seal(STATE_KEY_AAD, key.as_bytes())?;
        let made = client
            .txn(
                Txn::new()
                    .when([Compare::version(genesis.as_str(), CompareOp::Equal, 0)])
                    .and_then([
                        TxnOp::put(genesis.as_str(), "1", None),
                        TxnOp::put(own, sealed, None),
                    ]),
            )
            .await
            .map_err(|e| unavailable(&e))?;
        if made.succeeded() {
            return Ok(key);
        }
        // Another replica made the state: if it runs on this platform, its copy is ours.
        let again = client.get(own, None).await.map_err(|e| unavailable(&e))?;
        if again.kvs().is_empty() {
            return Err(StoreError::NotJoined {
                recovery: recovery(client, location).await?,
            });
        }
    }
}

async fn recovery(client: &mut Client, location: &Location) -> Result<Option<Vec<u8>>, StoreError> {
    let found = client
        .get(location.key("keys/recovery"), None)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(found.kvs().first().map(|kv| kv.value().to_vec()))
}

/// The records as readers see them.
#[derive(Default)]
struct Cache {
    records: BTreeMap<String, Vec<u8>>,
    /// The revision of the root these records belong to.
    root_rev: i64,
}

/// What readers and the watch share.
pub struct Shared {
    location: Location,
    client: Client,
    handle: Handle,
    cache: RwLock<Cache>,
    recovery: RwLock<Option<Vec<u8>>>,
    head: ArcSwap<api::StateHead>,
    /// The state version whenever another replica's commit arrives.
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(super) fn stored(&self, name: &str) -> Option<Vec<u8>> {
        self.read().records.get(name).cloned()
    }

    pub(super) fn list(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.read()
            .records
            .range(prefix.to_string()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, stored)| (name.clone(), stored.clone()))
            .collect()
    }

    pub(super) fn recovery(&self) -> Option<Vec<u8>> {
        self.recovery
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn head(&self) -> api::StateHead {
        (**self.head.load()).clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take what a newer root's transaction wrote, unless the cache is as new already; whether
    /// a record other than an activation counter changed (what the coordinator must take up).
    fn update(&self, root_rev: i64, records: BTreeMap<String, Vec<u8>>, root: &Root) -> bool {
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if root_rev <= cache.root_rev {
            return false;
        }
        let counter = |name: &String| name.starts_with(COUNTER_PREFIX);
        let before = cache.records.iter().filter(|(k, _)| !counter(k));
        let changed = !before.eq(records.iter().filter(|(k, _)| !counter(k)));
        *cache = Cache { records, root_rev };
        self.head.store(Arc::new(root.head()));
        changed
    }

    /// Another replica's commits, by state version.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Seal the state key for this platform too (after it opened the state).
    pub(super) async fn seal_state_key(
        &self,
        kek: &Sealer,
        key: &StateKey,
    ) -> Result<(), StoreError> {
        let sealed = kek.seal(STATE_KEY_AAD, key.as_bytes())?;
        let own = self
            .location
            .key(&format!("keys/state-key/{}", platform_id(kek)));
        self.client
            .clone()
            .put(own, sealed, None)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }

    /// Up to `limit` sealed audit entries from `from`, and the log's length.
    pub(super) async fn audit(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<super::AuditRows, StoreError> {
        let total = self.head().audit_entries;
        let to = from.saturating_add(limit as u64).min(total);
        if from >= to {
            return Ok((Vec::new(), total));
        }
        let rows = read_audit(&mut self.client.clone(), &self.location, from, to, None).await?;
        Ok((rows, total))
    }

    /// Keep the cache current with other replicas' commits, for as long as the process runs.
    pub(super) fn watch(self: &Arc<Self>, sealer: Arc<Sealer>) {
        let shared = Arc::clone(self);
        self.handle.spawn(async move {
            loop {
                if let Err(e) = shared.follow(&sealer).await {
                    tracing::warn!(error = %e, "watching etcd failed; watching again in 1 s");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    async fn follow(&self, sealer: &Sealer) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        let from = self.read().root_rev + 1;
        // `root` and every `state/` key, and nothing else: keys sort as `root` < `state/…` <
        // `state0`. Every transaction writes the root with its records, in one revision.
        let mut stream = client
            .watch(
                self.location.key("root"),
                Some(
                    WatchOptions::new()
                        .with_start_revision(from)
                        .with_range(self.location.key("state0")),
                ),
            )
            .await
            .map_err(|e| unavailable(&e))?;
        while let Some(response) = stream.message().await.map_err(|e| unavailable(&e))? {
            let taken = match self.apply(sealer, response.events()) {
                Some(Ok(taken)) => taken,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "a watched commit did not check out; reading the state");
                    let (root, root_rev, records) =
                        read_state(&mut client, &self.location, sealer).await?;
                    self.update(root_rev, records, &root)
                        .then_some(root.version)
                }
                None => None,
            };
            if let Some(version) = taken {
                *self
                    .recovery
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    recovery(&mut client, &self.location).await?;
                self.changes.send_replace(version);
            }
        }
        Ok(())
    }

    /// Apply watched writes newer than the cache: the new root and records, checked against
    /// each other. `None` when there was nothing new; the version when more than counters
    /// changed.
    fn apply(
        &self,
        sealer: &Sealer,
        events: &[etcd_client::Event],
    ) -> Option<Result<Option<u64>, StoreError>> {
        let (mut records, known) = {
            let cache = self.read();
            (cache.records.clone(), cache.root_rev)
        };
        let (root_key, prefix) = (self.location.key("root"), self.location.record(""));
        let mut root = None;
        let mut any = false;
        for kv in events.iter().filter_map(etcd_client::Event::kv) {
            if kv.mod_revision() <= known {
                continue;
            }
            any = true;
            let Ok(key) = kv.key_str() else { continue };
            if key == root_key {
                root = Some((kv.value().to_vec(), kv.mod_revision()));
            } else if let Some(name) = key.strip_prefix(prefix.as_str()) {
                records.insert(name.to_string(), kv.value().to_vec());
            }
        }
        if !any {
            return None;
        }
        let Some((sealed, root_rev)) = root else {
            return Some(Err(StoreError::Unavailable(
                "records changed without a root".into(),
            )));
        };
        let checked =
            super::open_root(sealer, Some(&sealed), (records.len() as u64, 1)).and_then(|root| {
                super::check_records(
                    sealer,
                    &root,
                    records.iter().map(|(k, v)| Ok((k.clone(), v.clone()))),
                )
                .map(|()| root)
            });
        Some(checked.map(|root| {
            self.update(root_rev, records, &root)
                .then_some(root.version)
        }))
    }

    /// Register this replica's URL, alive while the process keeps its lease.
    pub async fn register(self: &Arc<Self>, url: &str) -> Result<(), StoreError> {
        let shared = Arc::clone(self);
        let url = url.to_string();
        let first = shared.lease_and_put(&url).await?;
        self.handle.spawn(async move {
            let mut lease = first;
            loop {
                if let Err(e) = shared.keep_alive(lease).await {
                    tracing::warn!(error = %e, "the replica registration lapsed; registering again");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                match shared.lease_and_put(&url).await {
                    Ok(id) => lease = id,
                    Err(e) => tracing::warn!(error = %e, "registering the replica failed"),
                }
            }
        });
        Ok(())
    }

    async fn lease_and_put(&self, url: &str) -> Result<i64, StoreError> {
        let mut client = self.client.clone();
        let lease = client
            .lease_grant(REPLICA_TTL, None)
            .await
            .map_err(|e| unavailable(&e))?
            .id();
        client
            .put(
                self.location.key(&format!("replicas/{lease:x}")),
                url,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(lease)
    }

    async fn keep_alive(&self, lease: i64) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        let (mut keeper, mut answers) = client
            .lease_keep_alive(lease)
            .await
            .map_err(|e| unavailable(&e))?;
        loop {
            keeper.keep_alive().await.map_err(|e| unavailable(&e))?;
            match answers.message().await.map_err(|e| unavailable(&e))? {
                Some(answer) if answer.ttl() > 0 => {}
                _ => return Err(StoreError::Unavailable("the lease expired".into())),
            }
            tokio::time::sleep(Duration::from_secs((REPLICA_TTL / 3).unsigned_abs())).await;
        }
    }
}

/// A checked root, its revision, and the records of the same revision.
type Checked = (Root, i64, BTreeMap<String, Vec<u8>>);

/// The root, its revision, and the records of the same revision.
async fn read_state(
    client: &mut Client,
    location: &Location,
    sealer: &Sealer,
) -> Result<Checked, StoreError> {
    let found = client
        .get(location.key("root"), None)
        .await
        .map_err(|e| unavailable(&e))?;
    let revision = found
        .header()
        .map_or(0, etcd_client::ResponseHeader::revision);
    let rows = client
        .get(
            location.record(""),
            Some(GetOptions::new().with_prefix().with_revision(revision)),
        )
        .await
        .map_err(|e| unavailable(&e))?;
    check_state(location, sealer, found.kvs().first(), rows.kvs())
}

/// The root (with its revision) and the records of one revision, checked against each other.
fn check_state(
    location: &Location,
    sealer: &Sealer,
    root: Option<&etcd_client::KeyValue>,
    rows: &[etcd_client::KeyValue],
) -> Result<Checked, StoreError> {
    let prefix = location.record("");
    let records: BTreeMap<String, Vec<u8>> = rows
        .iter()
        .filter_map(|kv| {
            let name = kv.key_str().ok()?.strip_prefix(prefix.as_str())?;
            Some((name.to_string(), kv.value().to_vec()))
        })
        .collect();
    let root_rev = root.map_or(0, etcd_client::KeyValue::mod_revision);
    let held = (records.len() as u64, u64::from(root_rev != 0));
    let checked = super::open_root(sealer, root.map(etcd_client::KeyValue::value), held)?;
    super::check_records(
        sealer,
        &checked,
        records.iter().map(|(k, v)| Ok((k.clone(), v.clone()))),
    )?;
    Ok((checked, root_rev, records))
}

/// What a failed transaction's `or_else` read: the root, the records, newer audit entries.
type Won = (
    Option<etcd_client::KeyValue>,
    Vec<etcd_client::KeyValue>,
    Vec<etcd_client::KeyValue>,
);

fn won(response: &etcd_client::TxnResponse) -> Option<Won> {
    let mut gets: Vec<Vec<etcd_client::KeyValue>> = response
        .op_responses()
        .into_iter()
        .filter_map(|r| match r {
            etcd_client::TxnOpResponse::Get(mut get) => Some(get.take_kvs()),
            _ => None,
        })
        .collect();
    let audit = gets.pop()?;
    let records = gets.pop()?;
    let root = gets.pop()?;
    gets.is_empty()
        .then(|| (root.into_iter().next(), records, audit))
}

/// Sealed audit entries `from..to`, at `revision` if given, a page at a time.
async fn read_audit(
    client: &mut Client,
    location: &Location,
    from: u64,
    to: u64,
    revision: Option<i64>,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let mut rows = Vec::new();
    let mut at = from;
    while at < to {
        let mut options = GetOptions::new()
            .with_range(location.audit(to))
            .with_limit(PAGE);
        if let Some(revision) = revision {
            options = options.with_revision(revision);
        }
        let page = client
            .get(location.audit(at), Some(options))
            .await
            .map_err(|e| unavailable(&e))?;
        if page.kvs().is_empty() {
            break;
        }
        for kv in page.kvs() {
            rows.push((at, kv.value().to_vec()));
            at += 1;
        }
    }
    Ok(rows)
}

/// The writer thread's side: its own copy of the records, and the root revision its next
/// transaction expects.
pub(crate) struct Writer {
    client: Client,
    handle: Handle,
    location: Location,
    records: HashMap<String, Vec<u8>>,
    root_rev: i64,
    /// The audit log's length as of `root_rev`.
    chain_len: u64,
    /// What a failed transaction returned: the state that won, read in the same round trip.
    conflict: Option<etcd_client::TxnResponse>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Read the whole state and check it: records, the audit chain and the root.
    pub(super) async fn load(
        &mut self,
        sealer: &Sealer,
    ) -> Result<(Root, OffsetDateTime), StoreError> {
        let (root, root_rev, records) =
            read_state(&mut self.client, &self.location, sealer).await?;
        // The chain a page at a time: a long log is never in memory whole.
        let mut chain = (0, [0; 32], OffsetDateTime::UNIX_EPOCH);
        while chain.0 < root.audit_entries {
            let to = (chain.0 + PAGE.unsigned_abs()).min(root.audit_entries);
            let page = read_audit(&mut self.client, &self.location, chain.0, to, None).await?;
            if page.is_empty() {
                break;
            }
            let next = super::check_chain(sealer, (chain.0, chain.1), page.into_iter().map(Ok))?;
            chain = (next.0, next.1, next.2.max(chain.2));
        }
        let last_time = super::check_head(&root, chain)?;
        *self
            .shared
            .recovery
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            recovery(&mut self.client, &self.location).await?;
        self.records = records.clone().into_iter().collect();
        self.root_rev = root_rev;
        self.chain_len = root.audit_entries;
        self.shared.update(root_rev.max(1), records, &root);
        Ok((root, last_time))
    }

    pub(super) fn stored(&self, name: &str) -> Option<Vec<u8>> {
        self.records.get(name).cloned()
    }

    /// Whether etcd answers a read.
    pub(super) fn reachable(&mut self) -> bool {
        let mut client = self.client.clone();
        let root = self.location.key("root");
        self.handle.block_on(client.get(root, None)).is_ok()
    }

    /// One transaction, if the root is still the one this writer last saw.
    pub(super) fn write(&mut self, batch: &Batch) -> Result<bool, StoreError> {
        let root_key = self.location.key("root");
        let mut ops: Vec<TxnOp> = Vec::with_capacity(batch.records.len() + batch.audit.len() + 2);
        for (name, stored) in &batch.records {
            ops.push(TxnOp::put(self.location.record(name), stored.clone(), None));
        }
        for (seq, sealed) in &batch.audit {
            ops.push(TxnOp::put(self.location.audit(*seq), sealed.clone(), None));
        }
        match &batch.recovery {
            Some(c) if c.is_empty() => {
                ops.push(TxnOp::delete(self.location.key("keys/recovery"), None))
            }
            Some(c) => ops.push(TxnOp::put(
                self.location.key("keys/recovery"),
                c.clone(),
                None,
            )),
            None => {}
        }
        ops.push(TxnOp::put(root_key.as_str(), batch.root.clone(), None));
        // When another replica won, the same round trip brings back what it wrote.
        let since = self.location.audit(self.chain_len);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                root_key.as_str(),
                CompareOp::Equal,
                self.root_rev,
            )])
            .and_then(ops)
            .or_else([
                TxnOp::get(root_key.as_str(), None),
                TxnOp::get(
                    self.location.record(""),
                    Some(GetOptions::new().with_prefix()),
                ),
                TxnOp::get(
                    since,
                    Some(
                        GetOptions::new()
                            .with_range(self.location.audit(u64::MAX / 2))
                            .with_limit(PAGE),
                    ),
                ),
            ]);
        let mut client = self.client.clone();
        let done = self
            .handle
            .block_on(client.txn(txn))
            .map_err(|e| unavailable(&e))?;
        if !done.succeeded() {
            self.conflict = Some(done);
            return Ok(false);
        }
        if let Some((seq, _)) = batch.audit.last() {
            self.chain_len = seq + 1;
        }
        self.root_rev = done
            .header()
            .map_or(self.root_rev + 1, etcd_client::ResponseHeader::revision);
        for (name, stored) in &batch.records {
            self.records.insert(name.clone(), stored.clone());
        }
        if let Some(c) = &batch.recovery {
            *self
                .shared
                .recovery
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(c.clone()).filter(|c| !c.is_empty());
        }
        let mut cache = self
            .shared
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.root_rev > cache.root_rev {
            cache.records = self
                .records
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            cache.root_rev = self.root_rev;
        }
        Ok(true)
    }

    /// Catch up after another replica's commit: its records, and its audit entries checked as
    /// the continuation of the chain this writer knew. A root that went back is refused.
    pub(super) fn refresh(&mut self, sealer: &Sealer, known: &Root) -> Result<Root, StoreError> {
        let handle = self.handle.clone();
        let conflict = self.conflict.take();
        handle.block_on(async {
            let (root, root_rev, records, mut entries) = match conflict.as_ref().and_then(won) {
                Some((root, rows, audit)) => {
                    let (checked, rev, records) =
                        check_state(&self.location, sealer, root.as_ref(), &rows)?;
                    let entries = audit
                        .iter()
                        .enumerate()
                        .map(|(i, kv)| (known.audit_entries + i as u64, kv.value().to_vec()))
                        .filter(|(seq, _)| *seq < checked.audit_entries)
                        .collect::<Vec<_>>();
                    (checked, rev, records, entries)
                }
                None => {
                    let (checked, rev, records) =
                        read_state(&mut self.client, &self.location, sealer).await?;
                    (checked, rev, records, Vec::new())
                }
            };
            if root.version < known.version || root.audit_entries < known.audit_entries {
                return Err(StoreError::AuditHead {
                    found: root.audit_entries,
                    committed: known.audit_entries,
                });
            }
            let have = known.audit_entries + entries.len() as u64;
            if have < root.audit_entries {
                entries.extend(
                    read_audit(
                        &mut self.client,
                        &self.location,
                        have,
                        root.audit_entries,
                        None,
                    )
                    .await?,
                );
            }
            let chain = super::check_chain(
                sealer,
                (known.audit_entries, known.audit_head),
                entries.into_iter().map(Ok),
            )?;
            super::check_head(&root, chain)?;
            self.records = records.clone().into_iter().collect();
            self.root_rev = root_rev;
            self.chain_len = root.audit_entries;
            if self.shared.update(root_rev, records, &root) {
                self.shared.changes.send_replace(root.version);
            }
            Ok(root)
        })
    }
}
