//! Sealed, durable state with a hash-chained audit log and a sealed root: in one redb file
//! (the embedded default), or in etcd, shared by several coordinator replicas.
//!
//! Every change goes through one writer thread, the audit chain's only author in this process.
//! A state change ([`Store::commit`]) is durable before it is acknowledged, together with
//! whatever else has queued (group commit). An event that changes no state ([`Store::record`],
//! e.g. the activation of a workload without an activation limit) is queued without waking
//! the writer more than once per window, and chained and made durable with the next commit, at
//! most [`FLUSH_WINDOW`] later: a crash can lose that window of such records, never a state
//! change. Reads go to redb's MVCC snapshots, or to the etcd backend's cache of the records.
//!
//! # What the host can and cannot do to the state
//!
//! Every transaction raises the state's *version*. A record is sealed together with its name
//! and the version that wrote it; an audit entry with its position. The **root**, sealed in the
//! same transaction, commits to the version, the number of records, an XOR of a keyed MAC of
//! every stored record (a set commitment the host can neither compute nor steer, because it
//! lacks the key), and the audit log's length and last hash. Opening recomputes all of it, so
//! a record that was modified, moved, deleted, added or replaced by an older copy of itself,
//! and an audit log that was cut short, are refused with an error that says which.
//!
//! What sealing cannot detect is the replacement of the *whole* state by an older copy of
//! itself: an older state is self-consistent. Its version and audit head are older, though, and
//! the coordinator's fresh evidence binds both ([`Store::head`]), so `cloister verify
//! --expect-min-version` catches it where the user remembers what they saw.
//!
//! # Replicas on etcd
//!
//! Every transaction writes the root, and commits only if the root is still the one this
//! replica last saw (etcd compares its revision). Two replicas that commit at once therefore
//! never fork the audit chain: one wins, the other reads what changed, chains its entries after
//! the winner's and tries again. Counters taken with a limit ([`Change::take`]) are decided in
//! that same transaction, so a limit holds across replicas.

#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(not(feature = "etcd"))]
#[path = "etcd_absent.rs"]
pub mod etcd;
mod redb_file;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::seal::{SealError, Sealer, StateKey};

const STATE_KEY_AAD: &[u8] = b"cloister state key";
/// Changes committed in one transaction at most.
const MAX_BATCH: usize = 1024;
/// How long a recorded event may wait for its durable commit.
pub const FLUSH_WINDOW: Duration = Duration::from_millis(50);
/// Recorded events kept for a store that is down, at most; older ones are dropped (logged).
const MAX_BACKLOG: usize = 100_000;
/// How soon a failed flush of recorded events is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened, read or written.
    #[error("state database: {0}")]
    Database(#[from] redb::Error),
    /// etcd could not be reached, or refused a request.
    #[error("the etcd store is unavailable ({0}); the coordinator keeps trying, try again shortly")]
    Unavailable(String),
    /// The store location is not one this coordinator can use.
    #[error("store {location:?}: {reason}")]
    Location {
        /// What was given.
        location: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A counter taken with a limit is at its limit.
    #[error("counter {name} is at its limit of {max}")]
    Exhausted {
        /// The counter record.
        name: String,
        /// The limit.
        max: u64,
    },
    /// A sealed record, audit entry or the root did not open.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The audit log's hash chain is broken at `seq`.
    #[error("the audit log is broken at entry {seq}: {reason}; the state file was modified")]
    AuditChain {
        /// The first bad entry.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The file holds state but no sealed root.
    #[error(
        "the state file holds {records} records and {audit_entries} audit entries but no sealed \
         root: it was cut short or written by an earlier cloister; restore it from a backup"
    )]
    NoRoot {
        /// Records found.
        records: u64,
        /// Audit entries found.
        audit_entries: u64,
    },
    /// A record was written by a later version than the root's.
    #[error(
        "record `{name}` was written at state version {version}, after the sealed root \
         (version {root_version}): the root was replaced by an older copy"
    )]
    RecordAfterRoot {
        /// The record.
        name: String,
        /// The version that wrote it.
        version: u64,
        /// The root's version.
        root_version: u64,
    },
    /// Records were removed or added.
    #[error(
        "the state holds {found} records where its sealed root (version {version}) commits to \
         {committed}: records were removed or added"
    )]
    RecordCount {
        /// Records in the file.
        found: u64,
        /// Records the root commits to.
        committed: u64,
        /// The root's version.
        version: u64,
    },
    /// A record is another copy than the one the root commits to.
    #[error(
        "the records are not the ones the sealed root (version {version}) commits to: a record \
         was replaced by an older or newer copy of itself"
    )]
    RecordReplaced {
        /// The root's version.
        version: u64,
    },
    /// The audit log is not the one the root commits to.
    #[error(
        "the audit log has {found} entries where the sealed root commits to {committed}{}",
        if .found < .committed { ": it was cut short" } else { " (or another last entry)" }
    )]
    AuditHead {
        /// Entries in the file.
        found: u64,
        /// Entries the root commits to.
        committed: u64,
    },
    /// A change names no actor.
    #[error("an audit event must name its actor ({event})")]
    NoActor {
        /// The event.
        event: &'static str,
    },
    /// The state key is sealed for other replicas' platforms only: a running replica must hand
    /// it over (after attesting this one), or recovery key holders rebuild it.
    #[error("the state key is not sealed for this platform: join a running replica, or recover")]
    NotJoined {
        /// The recovery commitments stored beside the state, if recovery keys were set.
        recovery: Option<Vec<u8>>,
    },
    /// The state key is sealed under another platform's key (new hardware, a new coordinator
    /// measurement): only recovery opens the state now.
    #[error(
        "the state key does not open with this platform's sealing key: it was sealed on another \
         platform (other hardware, or another coordinator version); the coordinator starts in \
         recovery mode, and recovery key holders upload their shares with `cloister recover`"
    )]
    Locked {
        /// The recovery commitments stored beside the state, if recovery keys were set.
        recovery: Option<Vec<u8>>,
    },
    /// The file holds state sealed directly under the platform key, as cloister did before
    /// the state key existed.
    #[error(
        "the state file was written by an earlier cloister, before state keys: start that \
         version to read its secrets, or move the data directory away to start afresh"
    )]
    NoStateKey,
    /// The state key handed over for recovery does not open the state.
    #[error("the recovered state key does not open the state: {0}")]
    WrongStateKey(#[source] Box<StoreError>),
    /// The writer thread is gone (the coordinator is shutting down).
    #[error("the state writer has stopped")]
    WriterGone,
}

/// Sealed audit entries by position, and how many the log holds.
pub(crate) type AuditRows = (Vec<(u64, Vec<u8>)>, u64);

/// A record's name and unsealed value.
pub type Record = (String, Zeroizing<Vec<u8>>);

/// An event for the audit log.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// What happened.
    pub event: &'static str,
    /// Who did it (never empty).
    pub actor: String,
    /// Details (never secrets, nor digests of secrets).
    pub details: serde_json::Value,
}

/// Record writes and the audit event that explains them, committed atomically.
#[derive(Debug)]
pub struct Change {
    puts: Vec<(String, Zeroizing<Vec<u8>>)>,
    raises: Vec<(String, u64)>,
    take: Option<(String, u64)>,
    recovery: Option<Vec<u8>>,
    audit: AuditEvent,
}

impl Change {
    /// A change explained by `audit`.
    pub fn new(audit: AuditEvent) -> Self {
        Self {
            puts: Vec::new(),
            raises: Vec::new(),
            take: None,
            recovery: None,
            audit,
        }
    }

    /// Take one from the counter record `name` if it is below `max`, in the same transaction
    /// as the rest of the change (the change fails with [`StoreError::Exhausted`] otherwise).
    /// The audit event's `activation` detail becomes the count taken.
    #[must_use]
    pub fn take(mut self, name: impl Into<String>, max: u64) -> Self {
        self.take = Some((name.into(), max));
        self
    }

    /// Replace the public recovery commitments beside the state (empty: none).
    #[must_use]
    pub fn recovery(mut self, commitments: Vec<u8>) -> Self {
        self.recovery = Some(commitments);
        self
    }

    /// Write `value` (plaintext; sealed by the store) as record `name`.
    #[must_use]
    pub fn put(mut self, name: impl Into<String>, value: Zeroizing<Vec<u8>>) -> Self {
        self.puts.push((name.into(), value));
        self
    }

    /// Raise the counter record `name` (a little-endian u64) to at least `value`: counters never
    /// go back, whatever order concurrent commits arrive in.
    #[must_use]
    pub fn raise(mut self, name: impl Into<String>, value: u64) -> Self {
        self.raises.push((name.into(), value));
        self
    }
}

/// What the writer thread is told.
enum Job {
    /// Commit a change durably, then acknowledge it.
    Commit {
        change: Box<Change>,
        reply: oneshot::Sender<Result<api::AuditEntry, StoreError>>,
    },
    /// Recorded events are waiting: commit them within the flush window.
    Wake,
}

/// A change or a recorded event waiting for its commit; chained when its batch is written (and
/// again, after the winner's entries, when another replica committed first).
struct Pending {
    event: AuditEvent,
    time: OffsetDateTime,
    puts: Vec<(String, Zeroizing<Vec<u8>>)>,
    raises: Vec<(String, u64)>,
    take: Option<(String, u64)>,
    recovery: Option<Vec<u8>>,
    /// Set for durable changes, which are acknowledged after the commit.
    reply: Option<oneshot::Sender<Result<api::AuditEntry, StoreError>>>,
}

impl Pending {
    fn recorded(event: AuditEvent, time: OffsetDateTime) -> Self {
        Self {
            event,
            time,
            puts: Vec::new(),
            raises: Vec::new(),
            take: None,
            recovery: None,
            reply: None,
        }
    }
}

/// What the sealed root commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Root {
    version: u64,
    records: u64,
    /// XOR of [`record_mac`] over every record.
    commitment: [u8; 32],
    audit_entries: u64,
    audit_head: [u8; 32],
}

const ROOT_FORMAT: u8 = 1;
const ROOT_LEN: usize = 1 + 8 + 8 + 32 + 8 + 32;
const ROOT_AAD: &[u8] = b"cloister state root";

impl Root {
    const EMPTY: Self = Self {
        version: 0,
        records: 0,
        commitment: [0; 32],
        audit_entries: 0,
        audit_head: [0; 32],
    };

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ROOT_LEN);
        out.push(ROOT_FORMAT);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.records.to_le_bytes());
        out.extend_from_slice(&self.commitment);
        out.extend_from_slice(&self.audit_entries.to_le_bytes());
        out.extend_from_slice(&self.audit_head);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (&format, rest) = bytes.split_first()?;
        if format != ROOT_FORMAT || rest.len() != ROOT_LEN - 1 {
            return None;
        }
        let u64_at = |at: usize| {
            rest.get(at..at + 8)?
                .try_into()
                .ok()
                .map(u64::from_le_bytes)
        };
        let hash_at = |at: usize| rest.get(at..at + 32)?.try_into().ok();
        Some(Self {
            version: u64_at(0)?,
            records: u64_at(8)?,
            commitment: hash_at(16)?,
            audit_entries: u64_at(48)?,
            audit_head: hash_at(56)?,
        })
    }

    fn head(&self) -> api::StateHead {
        api::StateHead {
            version: self.version,
            audit_entries: self.audit_entries,
            audit_head: hex::encode(self.audit_head),
        }
    }
}

/// A stored record: the version that wrote it, then the sealed value.
fn record_aad(name: &str, version: u64) -> Vec<u8> {
    let mut aad = b"cloister state record\0".to_vec();
    aad.extend_from_slice(&version.to_le_bytes());
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn audit_aad(seq: u64) -> Vec<u8> {
    let mut aad = b"cloister audit entry\0".to_vec();
    aad.extend_from_slice(&seq.to_le_bytes());
    aad
}

fn seal_record(
    sealer: &Sealer,
    name: &str,
    version: u64,
    value: &[u8],
) -> Result<Vec<u8>, SealError> {
    let mut stored = version.to_le_bytes().to_vec();
    stored.extend_from_slice(&sealer.seal(&record_aad(name, version), value)?);
    Ok(stored)
}

/// The version that wrote a stored record, and its sealed value.
fn split_record<'a>(name: &str, stored: &'a [u8]) -> Result<(u64, &'a [u8]), SealError> {
    let (version, sealed) = stored.split_at_checked(8).ok_or_else(|| SealError::Open {
        name: format!("record {name}"),
    })?;
    let version = u64::from_le_bytes(version.try_into().unwrap_or_default());
    Ok((version, sealed))
}

fn open_record(
    sealer: &Sealer,
    name: &str,
    stored: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let (version, sealed) = split_record(name, stored)?;
    sealer.open(
        &format!("record {name}"),
        &record_aad(name, version),
        sealed,
    )
}

fn record_mac(sealer: &Sealer, name: &str, stored: &[u8]) -> [u8; 32] {
    sealer.mac(&[name.as_bytes(), stored])
}

fn xor_into(into: &mut [u8; 32], value: &[u8; 32]) {
    into.iter_mut().zip(value).for_each(|(a, b)| *a ^= b);
}

/// Where reads go: the redb file, or the etcd backend's cache.
#[derive(Clone)]
enum Source {
    File(Arc<redb::Database>),
    Etcd(Arc<etcd::Shared>),
}

/// Where the writer writes.
pub(crate) enum Sink {
    File(Arc<redb::Database>),
    Etcd(Box<etcd::Writer>),
}

/// One transaction's writes: sealed records, audit entries and the new sealed root.
#[derive(Default)]
pub(crate) struct Batch {
    records: Vec<(String, Vec<u8>)>,
    audit: Vec<(u64, Vec<u8>)>,
    root: Vec<u8>,
    recovery: Option<Vec<u8>>,
}

impl Batch {
    /// Bytes and operations so far, for backends that bound a transaction.
    fn size(&self) -> (usize, usize) {
        let bytes = self
            .records
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            + self.audit.iter().map(|(_, v)| v.len() + 24).sum::<usize>();
        (bytes, self.records.len() + self.audit.len() + 2)
    }
}

impl Sink {
    /// The stored bytes of record `name` as the writer last saw them.
    fn stored(&mut self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::File(db) => redb_file::stored(db, name),
            Self::Etcd(w) => Ok(w.stored(name)),
        }
    }

    /// Write `batch` atomically; `Ok(false)` when another replica committed first.
    fn write(&mut self, batch: &Batch) -> Result<bool, StoreError> {
        match self {
            Self::File(db) => redb_file::write(db, batch).map(|()| true),
            Self::Etcd(w) => w.write(batch),
        }
    }

    /// Catch up with what other replicas committed: the root now in force, checked.
    fn refresh(&mut self, sealer: &Sealer, root: &Root) -> Result<Root, StoreError> {
        match self {
            Self::File(_) => Ok(root.clone()),
            Self::Etcd(w) => w.refresh(sealer, root),
        }
    }

    /// Whether the store answers (a redb file always does).
    fn reachable(&mut self) -> bool {
        match self {
            Self::File(_) => true,
            Self::Etcd(w) => w.reachable(),
        }
    }

    /// The most bytes and operations one transaction may hold.
    fn limits(&self) -> (usize, usize) {
        match self {
            Self::File(_) => (usize::MAX, MAX_BATCH * 64),
            Self::Etcd(_) => etcd::TXN_LIMITS,
        }
    }
}

/// The coordinator's durable state.
#[derive(Clone)]
pub struct Store {
    source: Source,
    sealer: Arc<Sealer>,
    state_key: Arc<StateKey>,
    writer: mpsc::Sender<Job>,
    /// Recorded events go here, without a lock (the queue is lock-free) ...
    recorded: mpsc::Sender<(AuditEvent, OffsetDateTime)>,
    /// ... and the first since the writer last took them wakes it.
    armed: Arc<AtomicBool>,
    /// The root as last committed.
    head: Arc<ArcSwap<api::StateHead>>,
    /// Whether the last write reached the store.
    available: Arc<AtomicBool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("head", &self.head())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open (or create) the state file: unseal its state key with the platform's key `kek`
    /// (or make one, for a new file), then check the state whole against its sealed root:
    /// every record, the audit chain, and the audit head. A state key sealed under another
    /// platform's key is [`StoreError::Locked`].
    pub fn open(path: &Path, kek: &Sealer) -> Result<Self, StoreError> {
        let (db, state_key) = redb_file::open(path, kek)?;
        let sealer = state_key.sealer(kek.source())?;
        let checked = redb_file::check(&db, &sealer)?;
        Self::start(
            Source::File(Arc::clone(&db)),
            Sink::File(db),
            state_key,
            sealer,
            checked,
        )
    }

    /// Open the state file with a state key recovered from its holders' shares, and seal that
    /// key under this platform's key `kek` from now on.
    pub fn recover(path: &Path, kek: &Sealer, state_key: StateKey) -> Result<Self, StoreError> {
        let db = redb_file::create(path)?;
        let sealer = state_key.sealer(kek.source())?;
        let checked =
            redb_file::check(&db, &sealer).map_err(|e| StoreError::WrongStateKey(Box::new(e)))?;
        redb_file::seal_state_key(&db, kek, &state_key)?;
        Self::start(
            Source::File(Arc::clone(&db)),
            Sink::File(db),
            state_key,
            sealer,
            checked,
        )
    }

    /// Open the shared state in etcd (creating it when there is none): like [`Self::open`],
    /// or [`StoreError::NotJoined`] when only other replicas' platforms hold the state key.
    pub async fn open_etcd(location: &etcd::Location, kek: &Sealer) -> Result<Self, StoreError> {
        Self::start_etcd(location, kek, None).await
    }

    /// Open the shared state in etcd with a state key a running replica handed over, or
    /// that recovery rebuilt, and seal it for this platform too.
    pub async fn adopt_etcd(
        location: &etcd::Location,
        kek: &Sealer,
        state_key: StateKey,
    ) -> Result<Self, StoreError> {
        Self::start_etcd(location, kek, Some(state_key)).await
    }

    async fn start_etcd(
        location: &etcd::Location,
        kek: &Sealer,
        adopt: Option<StateKey>,
    ) -> Result<Self, StoreError> {
        let adopted = adopt.is_some();
        let (shared, mut writer, state_key) = etcd::open(location, kek, adopt).await?;
        let sealer = state_key.sealer(kek.source())?;
        let checked = writer.load(&sealer).await;
        let checked = if adopted {
            let checked = checked.map_err(|e| StoreError::WrongStateKey(Box::new(e)))?;
            shared.seal_state_key(kek, &state_key).await?;
            checked
        } else {
            checked?
        };
        Self::start(
            Source::Etcd(shared),
            Sink::Etcd(Box::new(writer)),
            state_key,
            sealer,
            checked,
        )
    }

    /// The public recovery commitments beside the state, if any.
    pub fn recovery_commitments(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let found = match &self.source {
            Source::File(db) => redb_file::recovery(db)?,
            Source::Etcd(shared) => shared.recovery(),
        };
        Ok(found.filter(|v| !v.is_empty()))
    }

    /// The key the state is sealed under (to split for recovery, or hand to a replica).
    pub fn state_key(&self) -> &StateKey {
        &self.state_key
    }

    /// The etcd backend, when the state is in etcd.
    pub fn etcd(&self) -> Option<&Arc<etcd::Shared>> {
        match &self.source {
            Source::Etcd(shared) => Some(shared),
            Source::File(_) => None,
        }
    }

    /// Whether the last write reached the store (a replica that lost etcd refuses work).
    pub fn available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Check the state under `state_key` and start the writer.
    fn start(
        source: Source,
        sink: Sink,
        state_key: StateKey,
        sealer: Sealer,
        (root, last_time): (Root, OffsetDateTime),
    ) -> Result<Self, StoreError> {
        let sealer = Arc::new(sealer);
        if let Source::Etcd(shared) = &source {
            shared.watch(Arc::clone(&sealer));
        }
        let head = Arc::new(ArcSwap::from_pointee(root.head()));
        let (writer, jobs) = mpsc::channel();
        let (recorded, taken) = mpsc::channel();
        let armed = Arc::new(AtomicBool::new(false));
        let available = Arc::new(AtomicBool::new(true));
        let worker = Writer {
            sink,
            sealer: Arc::clone(&sealer),
            recorded: taken,
            armed: Arc::clone(&armed),
            root,
            last_time,
            head: Arc::clone(&head),
            available: Arc::clone(&available),
        };
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || worker.run(&jobs))
            .map_err(|e| StoreError::Database(redb::Error::Io(e)))?;
        Ok(Self {
            source,
            sealer,
            state_key: Arc::new(state_key),
            writer,
            recorded,
            armed,
            head,
            available,
        })
    }

    /// Read and unseal a record.
    pub fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let stored = match &self.source {
            Source::File(db) => redb_file::stored(db, name)?,
            Source::Etcd(shared) => shared.stored(name),
        };
        stored
            .map(|stored| open_record(&self.sealer, name, &stored).map_err(StoreError::from))
            .transpose()
    }

    /// Every record whose name starts with `prefix`, unsealed (empty records are deletions).
    pub fn list(&self, prefix: &str) -> Result<Vec<Record>, StoreError> {
        let rows = match &self.source {
            Source::File(db) => redb_file::list(db, prefix)?,
            Source::Etcd(shared) => shared.list(prefix),
        };
        let mut out = Vec::new();
        for (name, stored) in rows {
            let value = open_record(&self.sealer, &name, &stored)?;
            if !value.is_empty() {
                out.push((name, value));
            }
        }
        Ok(out)
    }

    /// Commit `change` durably and return its audit entry.
    pub async fn commit(&self, change: Change) -> Result<api::AuditEntry, StoreError> {
        check_actor(&change.audit)?;
        let (reply, done) = oneshot::channel();
        self.writer
            .send(Job::Commit {
                change: Box::new(change),
                reply,
            })
            .map_err(|_| StoreError::WriterGone)?;
        done.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Record an event that changes no state, as of now; it is chained and durable within
    /// [`FLUSH_WINDOW`]. Only the first record of a window wakes the writer.
    pub fn record(&self, audit: AuditEvent) -> Result<(), StoreError> {
        check_actor(&audit)?;
        self.recorded
            .send((audit, OffsetDateTime::now_utc()))
            .map_err(|_| StoreError::WriterGone)?;
        // After the send: a writer that disarmed before taking the events either took this one
        // or will be woken for it.
        if !self.armed.swap(true, Ordering::SeqCst) {
            self.writer
                .send(Job::Wake)
                .map_err(|_| StoreError::WriterGone)?;
        }
        Ok(())
    }

    /// The state's version and audit head as last committed (by this replica, or seen from
    /// another).
    pub fn head(&self) -> api::StateHead {
        match &self.source {
            Source::Etcd(shared) => {
                let own = (**self.head.load()).clone();
                let seen = shared.head();
                if seen.version > own.version {
                    seen
                } else {
                    own
                }
            }
            Source::File(_) => (**self.head.load()).clone(),
        }
    }

    /// Up to `limit` audit entries from `from` on, oldest first, and how many entries the
    /// log holds.
    pub async fn audit(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<api::AuditEntry>, u64), StoreError> {
        let (rows, total) = match &self.source {
            Source::File(db) => redb_file::audit(db, from, limit)?,
            Source::Etcd(shared) => shared.audit(from, limit).await?,
        };
        let entries = rows
            .iter()
            .map(|(seq, sealed)| open_entry(&self.sealer, *seq, sealed))
            .collect::<Result<_, _>>()?;
        Ok((entries, total))
    }
}

fn check_actor(audit: &AuditEvent) -> Result<(), StoreError> {
    if audit.actor.trim().is_empty() {
        return Err(StoreError::NoActor { event: audit.event });
    }
    Ok(())
}

fn open_entry(sealer: &Sealer, seq: u64, sealed: &[u8]) -> Result<api::AuditEntry, StoreError> {
    let plain = sealer.open(&format!("audit entry {seq}"), &audit_aad(seq), sealed)?;
    serde_json::from_slice(&plain).map_err(|e| StoreError::AuditChain {
        seq,
        reason: e.to_string(),
    })
}

/// Open the sealed root; none is an empty state, which must then hold nothing.
fn open_root(sealer: &Sealer, sealed: Option<&[u8]>, held: (u64, u64)) -> Result<Root, StoreError> {
    match sealed {
        Some(sealed) => {
            let plain = sealer.open("the state root", ROOT_AAD, sealed)?;
            Root::decode(&plain).ok_or_else(|| {
                StoreError::Seal(SealError::Open {
                    name: "the state root".into(),
                })
            })
        }
        None if held == (0, 0) => Ok(Root::EMPTY),
        None => Err(StoreError::NoRoot {
            records: held.0,
            audit_entries: held.1,
        }),
    }
}

/// Check every record against `root`: each opens, none was written after it, and together
/// they are the set it commits to.
fn check_records(
    sealer: &Sealer,
    root: &Root,
    records: impl Iterator<Item = Result<(String, Vec<u8>), StoreError>>,
) -> Result<(), StoreError> {
    let mut commitment = [0u8; 32];
    let mut count = 0u64;
    for row in records {
        let (name, stored) = row?;
        let (version, _) = split_record(&name, &stored)?;
        if version > root.version {
            return Err(StoreError::RecordAfterRoot {
                name,
                version,
                root_version: root.version,
            });
        }
        open_record(sealer, &name, &stored)?;
        xor_into(&mut commitment, &record_mac(sealer, &name, &stored));
        count += 1;
    }
    if count != root.records {
        return Err(StoreError::RecordCount {
            found: count,
            committed: root.records,
            version: root.version,
        });
    }
    if commitment != root.commitment {
        return Err(StoreError::RecordReplaced {
            version: root.version,
        });
    }
    Ok(())
}

/// Check the links of `entries`, which continue a chain of `start.0` entries whose last hash
/// is `start.1`; return the new length, the last hash and the last entry's time.
fn check_chain(
    sealer: &Sealer,
    start: (u64, [u8; 32]),
    entries: impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>>,
) -> Result<(u64, [u8; 32], OffsetDateTime), StoreError> {
    let mut prev = hex::encode(start.1);
    let mut last_time = OffsetDateTime::UNIX_EPOCH;
    let mut count = start.0;
    for row in entries {
        let (seq, sealed) = row?;
        let e = open_entry(sealer, seq, &sealed)?;
        let broken = |reason: &str| StoreError::AuditChain {
            seq: count,
            reason: reason.to_string(),
        };
        if e.seq != count || seq != count {
            return Err(broken("entries are missing or out of order"));
        }
        if e.prev_hash != prev {
            return Err(broken("it does not link to the previous entry"));
        }
        if e.hash != e.computed_hash() {
            return Err(broken("its hash does not match its contents"));
        }
        last_time = OffsetDateTime::parse(&e.time, &Rfc3339).unwrap_or(last_time);
        prev = e.hash;
        count += 1;
    }
    let mut head = [0u8; 32];
    hex::decode_to_slice(&prev, &mut head).map_err(|_| StoreError::AuditChain {
        seq: count.saturating_sub(1),
        reason: "its hash is not 32 bytes of hex".into(),
    })?;
    Ok((count, head, last_time))
}

/// Check a chain and the root's commitment to it.
fn check_head(
    root: &Root,
    chain: (u64, [u8; 32], OffsetDateTime),
) -> Result<OffsetDateTime, StoreError> {
    let (entries, head, last_time) = chain;
    if entries != root.audit_entries || head != root.audit_head {
        return Err(StoreError::AuditHead {
            found: entries,
            committed: root.audit_entries,
        });
    }
    Ok(last_time)
}

struct Writer {
    sink: Sink,
    sealer: Arc<Sealer>,
    recorded: mpsc::Receiver<(AuditEvent, OffsetDateTime)>,
    armed: Arc<AtomicBool>,
    /// The root as last committed (or seen from another replica).
    root: Root,
    /// The time of the last chained entry: entries never go back in time.
    last_time: OffsetDateTime,
    head: Arc<ArcSwap<api::StateHead>>,
    available: Arc<AtomicBool>,
}

/// What a batch's changes came to: each one's audit entry, or why it was refused.
type Outcomes = Vec<Result<api::AuditEntry, StoreError>>;

impl Writer {
    fn run(mut self, jobs: &mpsc::Receiver<Job>) {
        let mut pending: Vec<Pending> = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            let job = match deadline {
                None => jobs.recv().ok(),
                Some(at) => match jobs.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(job) => Some(job),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if pending.is_empty() && !self.available.load(Ordering::Relaxed) {
                            self.probe();
                        }
                        self.flush(&mut pending);
                        deadline = self.retry(&pending);
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => None,
                },
            };
            let Some(job) = job else {
                self.flush(&mut pending);
                return;
            };
            let mut durable = self.accept(job, &mut pending);
            while pending.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => durable |= self.accept(job, &mut pending),
                    Err(_) => break,
                }
            }
            if durable || pending.len() >= MAX_BATCH {
                self.flush(&mut pending);
                deadline = self.retry(&pending);
            } else if deadline.is_none() {
                deadline = Some(Instant::now() + FLUSH_WINDOW);
            }
        }
    }

    /// When to try again: while events wait, or the store is down (to notice it is back).
    fn retry(&self, pending: &[Pending]) -> Option<Instant> {
        let down = !self.available.load(Ordering::Relaxed);
        (down || !pending.is_empty()).then(|| Instant::now() + RETRY)
    }

    /// With nothing to write, ask the store whether it is back.
    fn probe(&mut self) {
        if self.sink.reachable() {
            tracing::info!("the state store is reachable again");
            self.available.store(true, Ordering::Relaxed);
        }
    }

    /// Take a job: a change is committed with its batch and acknowledged after (`true`); a
    /// wake-up only starts the flush window.
    fn accept(&mut self, job: Job, pending: &mut Vec<Pending>) -> bool {
        let Job::Commit { change, reply } = job else {
            return false;
        };
        // Events recorded before this change come before it in the chain.
        self.take_deferred(pending);
        pending.push(Pending {
            event: change.audit,
            time: OffsetDateTime::now_utc(),
            puts: change.puts,
            raises: change.raises,
            take: change.take,
            recovery: change.recovery,
            reply: Some(reply),
        });
        true
    }

    /// Queue the recorded events, in the order they were recorded.
    fn take_deferred(&mut self, pending: &mut Vec<Pending>) {
        // Disarm before taking, so that an event recorded after the take wakes the writer.
        self.armed.store(false, Ordering::SeqCst);
        while let Ok((event, time)) = self.recorded.try_recv() {
            pending.push(Pending::recorded(event, time));
        }
    }

    /// Commit everything pending, in as few transactions as the backend allows, and
    /// acknowledge it. When the store fails, durable changes are refused and recorded events
    /// are kept (up to [`MAX_BACKLOG`]) for the next try.
    fn flush(&mut self, pending: &mut Vec<Pending>) {
        self.take_deferred(pending);
        while !pending.is_empty() {
            match self.commit_front(pending) {
                Ok((taken, outcomes)) => {
                    self.available.store(true, Ordering::Relaxed);
                    for (p, outcome) in pending.drain(..taken).zip(outcomes) {
                        if let Some(reply) = p.reply {
                            let _ = reply.send(outcome);
                        }
                    }
                }
                Err(e) => {
                    self.available.store(false, Ordering::Relaxed);
                    tracing::error!(error = %e, entries = pending.len(), "state commit failed");
                    self.refuse_durable(pending, &e);
                    return;
                }
            }
        }
    }

    /// After a failure: refuse the durable changes, keep the recorded events (the oldest go
    /// when there are too many).
    fn refuse_durable(&mut self, pending: &mut Vec<Pending>, e: &StoreError) {
        let mut kept = Vec::new();
        for p in pending.drain(..) {
            match p.reply {
                Some(reply) => {
                    let _ = reply.send(Err(match e {
                        StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
                        other => StoreError::AuditChain {
                            seq: self.root.audit_entries,
                            reason: format!("commit failed: {other}"),
                        },
                    }));
                }
                None => kept.push(p),
            }
        }
        if kept.len() > MAX_BACKLOG {
            let dropped = kept.len() - MAX_BACKLOG;
            tracing::error!(
                dropped,
                "the store is down: the oldest recorded events are lost"
            );
            kept.drain(..dropped);
        }
        *pending = kept;
    }

    /// Commit as many changes from the front of `pending` as one transaction holds, trying
    /// again after another replica's commit; return how many and what came of each.
    fn commit_front(&mut self, pending: &[Pending]) -> Result<(usize, Outcomes), StoreError> {
        loop {
            let (taken, outcomes, batch, root, last_time) = self.build(pending)?;
            if self.sink.write(&batch)? {
                self.root = root;
                self.last_time = last_time;
                self.head.store(Arc::new(self.root.head()));
                return Ok((taken, outcomes));
            }
            self.root = self.sink.refresh(&self.sealer, &self.root)?;
        }
    }

    /// The transaction for the front of `pending`: the changes, chained after the root.
    fn build(
        &mut self,
        pending: &[Pending],
    ) -> Result<(usize, Outcomes, Batch, Root, OffsetDateTime), StoreError> {
        let (max_bytes, max_ops) = self.sink.limits();
        let mut root = Root {
            version: self.root.version + 1,
            ..self.root.clone()
        };
        let mut batch = Batch::default();
        let mut staged: HashMap<String, (usize, Zeroizing<Vec<u8>>)> = HashMap::new();
        let mut outcomes = Vec::new();
        let mut last_time = self.last_time;
        for p in pending {
            let (bytes, ops) = batch.size();
            if !outcomes.is_empty() && (bytes >= max_bytes / 2 || ops + p.puts.len() + 4 > max_ops)
            {
                break;
            }
            let mut details = p.event.details.clone();
            if let Some((name, max)) = &p.take {
                let current = self.counter(name, &staged)?;
                if current >= *max {
                    outcomes.push(Err(StoreError::Exhausted {
                        name: name.clone(),
                        max: *max,
                    }));
                    continue;
                }
                let value = Zeroizing::new((current + 1).to_le_bytes().to_vec());
                self.write_record(name, value, &mut root, &mut batch, &mut staged)?;
                if let Some(map) = details.as_object_mut() {
                    map.insert("activation".into(), (current + 1).into());
                }
            }
            for (name, value) in &p.puts {
                self.write_record(name, value.clone(), &mut root, &mut batch, &mut staged)?;
            }
            for (name, at_least) in &p.raises {
                if *at_least > self.counter(name, &staged)? {
                    let value = Zeroizing::new(at_least.to_le_bytes().to_vec());
                    self.write_record(name, value, &mut root, &mut batch, &mut staged)?;
                }
            }
            if p.recovery.is_some() {
                batch.recovery.clone_from(&p.recovery);
            }
            // Two records can reach the queue in another order than they were stamped.
            last_time = last_time.max(p.time);
            let entry = self.chain(&mut root, &mut batch, &p.event, details, last_time)?;
            outcomes.push(Ok(entry));
        }
        batch.root = self.sealer.seal(ROOT_AAD, &root.encode())?;
        Ok((outcomes.len(), outcomes, batch, root, last_time))
    }

    /// Append the audit entry for `event` to the chain the root commits to.
    fn chain(
        &self,
        root: &mut Root,
        batch: &mut Batch,
        event: &AuditEvent,
        details: serde_json::Value,
        at: OffsetDateTime,
    ) -> Result<api::AuditEntry, StoreError> {
        let time = attest::x509::rfc3339(at);
        let (seq, prev) = (root.audit_entries, hex::encode(root.audit_head));
        let hash = api::audit_entry_hash(seq, &time, event.event, &event.actor, &details, &prev);
        let entry = api::AuditEntry {
            seq,
            time,
            event: event.event.to_string(),
            actor: event.actor.clone(),
            details,
            prev_hash: prev,
            hash,
        };
        let plain = serde_json::to_vec(&entry).map_err(|e| StoreError::AuditChain {
            seq,
            reason: e.to_string(),
        })?;
        batch
            .audit
            .push((seq, self.sealer.seal(&audit_aad(seq), &plain)?));
        hex::decode_to_slice(&entry.hash, &mut root.audit_head).map_err(|_| {
            StoreError::AuditChain {
                seq,
                reason: "its hash is not 32 bytes of hex".into(),
            }
        })?;
        root.audit_entries = seq + 1;
        Ok(entry)
    }

    /// A counter's value: as staged in this batch, or as stored (0 when absent or malformed).
    fn counter(
        &mut self,
        name: &str,
        staged: &HashMap<String, (usize, Zeroizing<Vec<u8>>)>,
    ) -> Result<u64, StoreError> {
        if let Some((_, plain)) = staged.get(name) {
            return Ok(counter_value(plain));
        }
        Ok(match self.sink.stored(name)? {
            Some(stored) => counter_value(&open_record(&self.sealer, name, &stored)?),
            None => 0,
        })
    }

    /// Seal `value` as `name` at the root's version, keeping the commitment in step.
    fn write_record(
        &mut self,
        name: &str,
        value: Zeroizing<Vec<u8>>,
        root: &mut Root,
        batch: &mut Batch,
        staged: &mut HashMap<String, (usize, Zeroizing<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let stored = seal_record(&self.sealer, name, root.version, &value)?;
        let old = match staged.get(name) {
            Some((at, _)) => batch.records.get(*at).map(|(_, v)| v.clone()),
            None => self.sink.stored(name)?,
        };
        match old {
            Some(old) => xor_into(&mut root.commitment, &record_mac(&self.sealer, name, &old)),
            None => root.records += 1,
        }
        xor_into(
            &mut root.commitment,
            &record_mac(&self.sealer, name, &stored),
        );
        match staged.get_mut(name) {
            Some((at, plain)) => {
                if let Some(slot) = batch.records.get_mut(*at) {
                    slot.1 = stored;
                }
                *plain = value;
            }
            None => {
                staged.insert(name.to_string(), (batch.records.len(), value));
                batch.records.push((name.to_string(), stored));
            }
        }
        Ok(())
    }
}

/// A counter record's value (0 when malformed: raising it rewrites it).
fn counter_value(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_entry_hash_covers_the_json_array_of_the_entry() {
        // The chain format: SHA-256 over `[seq, time, event, actor, details, prev]` as compact
        // JSON. Logs written by earlier versions must keep verifying.
        let details = serde_json::json!({"b": [1, "ü\n\"x\""], "a": {"nested": null}});
        let array = serde_json::json!([
            7,
            "2026-12-02T00:00:00Z",
            "activation",
            "w/1",
            details,
            "00"
        ]);
        assert_eq!(
            api::audit_entry_hash(
                7,
                "2026-12-02T00:00:00Z",
                "activation",
                "w/1",
                &details,
                "00"
            ),
            hex::encode(attest::crypto::sha256(array.to_string().as_bytes()))
        );
    }

    #[tokio::test]
    async fn an_audit_entry_rewritten_with_the_key_breaks_the_chain() {
        let dir = std::env::temp_dir().join(format!("cloister-chain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.redb");
        let kek = Sealer::derive(&[1; 32], crate::seal::SealSource::Simulation).unwrap();
        let store = Store::open(&path, &kek).unwrap();
        let sealer = store
            .state_key()
            .sealer(crate::seal::SealSource::Simulation)
            .unwrap();
        for n in 0..3 {
            let audit = AuditEvent {
                event: "test",
                actor: format!("actor-{n}"),
                details: serde_json::json!({ "n": n }),
            };
            store.commit(Change::new(audit)).await.unwrap();
        }
        drop(store);
        // Someone holding the sealing key rewrites entry 1's details but not its hash.
        let db = loop {
            match redb::Database::open(&path) {
                Ok(db) => break db,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let txn = db.begin_write().unwrap();
        {
            let mut audit = txn.open_table(redb_file::AUDIT).unwrap();
            let sealed = redb::ReadableTable::get(&audit, 1)
                .unwrap()
                .unwrap()
                .value()
                .to_vec();
            let mut entry = open_entry(&sealer, 1, &sealed).unwrap();
            entry.details = serde_json::json!({ "n": 99 });
            let plain = serde_json::to_vec(&entry).unwrap();
            let resealed = sealer.seal(&audit_aad(1), &plain).unwrap();
            audit.insert(1, resealed.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        drop(db);
        match Store::open(&path, &kek) {
            Err(StoreError::AuditChain { seq: 1, .. }) => {}
            other => panic!("tampering not detected: {other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_root_round_trips_and_refuses_other_lengths() {
        let root = Root {
            version: 7,
            records: 3,
            commitment: [1; 32],
            audit_entries: 9,
            audit_head: [2; 32],
        };
        let bytes = root.encode();
        assert_eq!(bytes.len(), ROOT_LEN);
        assert_eq!(Root::decode(&bytes), Some(root));
        assert_eq!(Root::decode(&bytes[..ROOT_LEN - 1]), None);
        let mut other_format = bytes.clone();
        other_format[0] = 2;
        assert_eq!(Root::decode(&other_format), None);
    }
}
