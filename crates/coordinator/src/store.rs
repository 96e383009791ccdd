//! Sealed, durable state in one redb file, with a hash-chained audit log and a sealed root.
//!
//! Every change goes through one writer thread, the audit chain's only author. A state change
//! ([`Store::commit`]) is durable before it is acknowledged, together with whatever else has
//! queued (group commit). An event that changes no state ([`Store::record`], e.g. the
//! activation of a workload without an activation limit) is queued without waking the writer
//! more than once per window, and chained and made durable with the next commit, at most
//! [`FLUSH_WINDOW`] later: a crash can lose that window of such records, never a state change.
//! Reads go straight to redb's MVCC snapshots.
//!
//! # What the host can and cannot do to the file
//!
//! Every transaction raises the state's *version*. A record is sealed together with its name
//! and the version that wrote it; an audit entry with its position. The **root**, sealed in the
//! same transaction, commits to the version, the number of records, an XOR of a keyed MAC of
//! every stored record (a set commitment the host can neither compute nor steer, because it
//! lacks the key), and the audit log's length and last hash. [`Store::open`] recomputes all of
//! it, so a record that was modified, moved, deleted, added or replaced by an older copy of
//! itself, and an audit log that was cut short, are refused with an error that says which.
//!
//! What sealing cannot detect is the replacement of the *whole* file by an older copy of itself:
//! an older state is self-consistent. Its version and audit head are older, though, and the
//! coordinator's fresh evidence binds both ([`Store::head`]), so `cloister verify
//! --expect-min-version` catches it where the user remembers what they saw.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use arc_swap::ArcSwap;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _};
use redb::{Table, TableDefinition};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::seal::{SealError, Sealer, StateKey};

const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const ROOT: TableDefinition<&str, &[u8]> = TableDefinition::new("root");
const ROOT_KEY: &str = "root";
/// What sits beside the sealed state: the state key sealed under the platform's key, and the
/// recovery commitments (public: they must be readable when the state key is not).
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const STATE_KEY_ENTRY: &str = "state-key";
const STATE_KEY_AAD: &[u8] = b"cloister state key";
const RECOVERY_ENTRY: &str = "recovery";
/// Changes committed in one transaction at most.
const MAX_BATCH: usize = 1024;
/// How long a recorded event may wait for its durable commit.
pub const FLUSH_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);
/// redb's page cache: the state is small and read at start; the writer appends. redb's default
/// (a gigabyte) would let the cache grow with the audit log.
const CACHE_BYTES: usize = 8 << 20;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened, read or written.
    #[error("state database: {0}")]
    Database(#[from] redb::Error),
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

fn db_error(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Database(e.into())
}

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
    recovery: Option<Vec<u8>>,
    audit: AuditEvent,
}

impl Change {
    /// A change explained by `audit`.
    pub fn new(audit: AuditEvent) -> Self {
        Self {
            puts: Vec::new(),
            raises: Vec::new(),
            recovery: None,
            audit,
        }
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
        change: Change,
        reply: oneshot::Sender<Result<api::AuditEntry, StoreError>>,
    },
    /// Recorded events are waiting: commit them within the flush window.
    Wake,
}

/// An event recorded at a time, not yet chained.
type Recorded = (AuditEvent, OffsetDateTime);

/// A chained entry waiting for its commit.
struct Pending {
    entry: api::AuditEntry,
    puts: Vec<(String, Zeroizing<Vec<u8>>)>,
    raises: Vec<(String, u64)>,
    recovery: Option<Vec<u8>>,
    /// Set for durable changes, which are acknowledged after the commit.
    reply: Option<oneshot::Sender<Result<api::AuditEntry, StoreError>>>,
}

/// What the sealed root commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Root {
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

/// The coordinator's durable state.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Database>,
    sealer: Arc<Sealer>,
    state_key: Arc<StateKey>,
    writer: mpsc::Sender<Job>,
    /// Recorded events go here, without a lock (the queue is lock-free) ...
    recorded: mpsc::Sender<Recorded>,
    /// ... and the first since the writer last took them wakes it.
    armed: Arc<AtomicBool>,
    /// The root as last committed.
    head: Arc<ArcSwap<api::StateHead>>,
}

impl Store {
    /// Open (or create) the state file: unseal its state key with the platform's key `kek`
    /// (or make one, for a new file), then check the state whole against its sealed root:
    /// every record, the audit chain, and the audit head. A state key sealed under another
    /// platform's key is [`StoreError::Locked`].
    pub fn open(path: &Path, kek: &Sealer) -> Result<Self, StoreError> {
        let db = create(path)?;
        let txn = db.begin_read().map_err(db_error)?;
        let keys = txn.open_table(KEYS).map_err(db_error)?;
        let sealed = keys.get(STATE_KEY_ENTRY).map_err(db_error)?;
        let state_key = match sealed {
            Some(sealed) => {
                let opened = kek.open("the state key", STATE_KEY_AAD, sealed.value());
                let key = opened.ok().and_then(|k| StateKey::from_bytes(&k));
                match key {
                    Some(key) => key,
                    None => {
                        let recovery = keys.get(RECOVERY_ENTRY).map_err(db_error)?;
                        return Err(StoreError::Locked {
                            recovery: recovery.map(|r| r.value().to_vec()),
                        });
                    }
                }
            }
            None => {
                drop((keys, txn));
                if !is_empty(&db)? {
                    return Err(StoreError::NoStateKey);
                }
                let key = StateKey::generate()?;
                seal_state_key(&db, kek, &key)?;
                key
            }
        };
        Self::start(db, state_key, kek)
    }

    /// Open the state file with a state key recovered from its holders' shares, and seal that
    /// key under this platform's key `kek` from now on.
    pub fn recover(path: &Path, kek: &Sealer, state_key: StateKey) -> Result<Self, StoreError> {
        let db = create(path)?;
        let sealer = state_key.sealer(kek.source())?;
        check_state(&db, &sealer).map_err(|e| StoreError::WrongStateKey(Box::new(e)))?;
        seal_state_key(&db, kek, &state_key)?;
        Self::start(db, state_key, kek)
    }

    /// The public recovery commitments beside the state, if any.
    pub fn recovery_commitments(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let keys = txn.open_table(KEYS).map_err(db_error)?;
        let entry = keys.get(RECOVERY_ENTRY).map_err(db_error)?;
        Ok(entry.map(|e| e.value().to_vec()).filter(|v| !v.is_empty()))
    }

    /// The key the state is sealed under (to split for recovery, or hand to a replica).
    pub fn state_key(&self) -> &StateKey {
        &self.state_key
    }

    /// Check the state under `state_key` and start the writer.
    fn start(db: Arc<Database>, state_key: StateKey, kek: &Sealer) -> Result<Self, StoreError> {
        let sealer = Arc::new(state_key.sealer(kek.source())?);
        let (root, last_time) = check_state(&db, &sealer)?;
        let head = Arc::new(ArcSwap::from_pointee(root.head()));
        let (writer, jobs) = mpsc::channel();
        let (recorded, taken) = mpsc::channel();
        let armed = Arc::new(AtomicBool::new(false));
        let worker = Writer {
            db: Arc::clone(&db),
            sealer: Arc::clone(&sealer),
            recorded: taken,
            armed: Arc::clone(&armed),
            chain: (root.audit_entries, root.audit_head),
            root,
            last_time,
            head: Arc::clone(&head),
        };
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || worker.run(&jobs))
            .map_err(|e| StoreError::Database(redb::Error::Io(e)))?;
        Ok(Self {
            db,
            sealer,
            state_key: Arc::new(state_key),
            writer,
            recorded,
            armed,
            head,
        })
    }

    /// Read and unseal a record.
    pub fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(STATE).map_err(db_error)?;
        let Some(stored) = table.get(name).map_err(db_error)? else {
            return Ok(None);
        };
        Ok(Some(open_record(&self.sealer, name, stored.value())?))
    }

    /// Every record whose name starts with `prefix`, unsealed (empty records are deletions).
    pub fn list(&self, prefix: &str) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(STATE).map_err(db_error)?;
        let mut out = Vec::new();
        for row in table.range(prefix..).map_err(db_error)? {
            let (name, stored) = row.map_err(db_error)?;
            let name = name.value();
            if !name.starts_with(prefix) {
                break;
            }
            let value = open_record(&self.sealer, name, stored.value())?;
            if !value.is_empty() {
                out.push((name.to_string(), value));
            }
        }
        Ok(out)
    }

    /// Commit `change` durably and return its audit entry.
    pub async fn commit(&self, change: Change) -> Result<api::AuditEntry, StoreError> {
        check_actor(&change.audit)?;
        let (reply, done) = oneshot::channel();
        self.writer
            .send(Job::Commit { change, reply })
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

    /// The state's version and audit head as last committed.
    pub fn head(&self) -> api::StateHead {
        (**self.head.load()).clone()
    }

    /// Up to `limit` audit entries from `from` on, oldest first, and how many entries the
    /// log holds.
    pub fn audit(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<api::AuditEntry>, u64), StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(AUDIT).map_err(db_error)?;
        let total = table.len().map_err(db_error)?;
        let mut entries = Vec::new();
        for row in table.range(from..).map_err(db_error)?.take(limit) {
            let (seq, sealed) = row.map_err(db_error)?;
            entries.push(open_entry(&self.sealer, seq.value(), sealed.value())?);
        }
        Ok((entries, total))
    }
}

/// Open (or create) the database file with all its tables.
fn create(path: &Path) -> Result<Arc<Database>, StoreError> {
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(db_error)?;
    let txn = db.begin_write().map_err(db_error)?;
    txn.open_table(STATE).map_err(db_error)?;
    txn.open_table(AUDIT).map_err(db_error)?;
    txn.open_table(ROOT).map_err(db_error)?;
    txn.open_table(KEYS).map_err(db_error)?;
    txn.commit().map_err(db_error)?;
    Ok(Arc::new(db))
}

/// Whether the file holds no state at all.
fn is_empty(db: &Database) -> Result<bool, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    Ok(txn
        .open_table(STATE)
        .map_err(db_error)?
        .is_empty()
        .map_err(db_error)?
        && txn
            .open_table(AUDIT)
            .map_err(db_error)?
            .is_empty()
            .map_err(db_error)?
        && txn
            .open_table(ROOT)
            .map_err(db_error)?
            .is_empty()
            .map_err(db_error)?)
}

/// Seal `key` under the platform's key and store it, durably.
fn seal_state_key(db: &Database, kek: &Sealer, key: &StateKey) -> Result<(), StoreError> {
    let sealed = kek.seal(STATE_KEY_AAD, key.as_bytes())?;
    let txn = db.begin_write().map_err(db_error)?;
    txn.open_table(KEYS)
        .map_err(db_error)?
        .insert(STATE_KEY_ENTRY, sealed.as_slice())
        .map_err(db_error)?;
    txn.commit().map_err(db_error)
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

/// Check the whole file against its sealed root; return the root and the last entry's time.
fn check_state(db: &Database, sealer: &Sealer) -> Result<(Root, OffsetDateTime), StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let state = txn.open_table(STATE).map_err(db_error)?;
    let audit = txn.open_table(AUDIT).map_err(db_error)?;
    let roots = txn.open_table(ROOT).map_err(db_error)?;
    let root = match roots.get(ROOT_KEY).map_err(db_error)? {
        Some(sealed) => {
            let plain = sealer.open("the state root", ROOT_AAD, sealed.value())?;
            Root::decode(&plain).ok_or_else(|| SealError::Open {
                name: "the state root".into(),
            })?
        }
        None => {
            let (records, audit_entries) = (
                state.len().map_err(db_error)?,
                audit.len().map_err(db_error)?,
            );
            if records > 0 || audit_entries > 0 {
                return Err(StoreError::NoRoot {
                    records,
                    audit_entries,
                });
            }
            Root::EMPTY
        }
    };
    let mut found = Root {
        version: root.version,
        ..Root::EMPTY
    };
    for row in state.iter().map_err(db_error)? {
        let (name, stored) = row.map_err(db_error)?;
        let (name, stored) = (name.value(), stored.value());
        let (version, _) = split_record(name, stored)?;
        if version > root.version {
            return Err(StoreError::RecordAfterRoot {
                name: name.to_string(),
                version,
                root_version: root.version,
            });
        }
        open_record(sealer, name, stored)?;
        xor_into(&mut found.commitment, &record_mac(sealer, name, stored));
        found.records += 1;
    }
    if found.records != root.records {
        return Err(StoreError::RecordCount {
            found: found.records,
            committed: root.records,
            version: root.version,
        });
    }
    if found.commitment != root.commitment {
        return Err(StoreError::RecordReplaced {
            version: root.version,
        });
    }
    let (entries, head, last_time) = check_chain(&audit, sealer)?;
    if entries != root.audit_entries || head != root.audit_head {
        return Err(StoreError::AuditHead {
            found: entries,
            committed: root.audit_entries,
        });
    }
    Ok((root, last_time))
}

/// Check every link, one entry in memory at a time; return the number of entries, the last
/// hash (zeros for an empty log) and the last entry's time.
fn check_chain(
    audit: &redb::ReadOnlyTable<u64, &[u8]>,
    sealer: &Sealer,
) -> Result<(u64, [u8; 32], OffsetDateTime), StoreError> {
    let mut prev = hex::encode([0u8; 32]);
    let mut last_time = OffsetDateTime::UNIX_EPOCH;
    let mut count = 0u64;
    for row in audit.iter().map_err(db_error)? {
        let (seq, sealed) = row.map_err(db_error)?;
        let e = open_entry(sealer, seq.value(), sealed.value())?;
        let broken = |reason: &str| StoreError::AuditChain {
            seq: count,
            reason: reason.to_string(),
        };
        if e.seq != count || seq.value() != count {
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

struct Writer {
    db: Arc<Database>,
    sealer: Arc<Sealer>,
    recorded: mpsc::Receiver<Recorded>,
    armed: Arc<AtomicBool>,
    /// The root as last committed.
    root: Root,
    /// Where the chain continues: the next entry's position and the last chained hash
    /// (ahead of the root while a batch is pending).
    chain: (u64, [u8; 32]),
    /// The time of the last chained entry: entries never go back in time.
    last_time: OffsetDateTime,
    head: Arc<ArcSwap<api::StateHead>>,
}

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
                        self.flush(&mut pending);
                        deadline = None;
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
                deadline = None;
            } else if deadline.is_none() {
                deadline = Some(Instant::now() + FLUSH_WINDOW);
            }
        }
    }

    /// Take a job: a change is chained at once and acknowledged after its commit (`true`);
    /// a wake-up only starts the flush window.
    fn accept(&mut self, job: Job, pending: &mut Vec<Pending>) -> bool {
        let Job::Commit { change, reply } = job else {
            return false;
        };
        // Events recorded before this change come before it in the chain.
        self.take_deferred(pending);
        let entry = self.next_entry(change.audit, OffsetDateTime::now_utc());
        pending.push(Pending {
            entry,
            puts: change.puts,
            raises: change.raises,
            recovery: change.recovery,
            reply: Some(reply),
        });
        true
    }

    /// Chain the recorded events, in the order they were recorded.
    fn take_deferred(&mut self, pending: &mut Vec<Pending>) {
        // Disarm before taking, so that an event recorded after the take wakes the writer.
        self.armed.store(false, Ordering::SeqCst);
        while let Ok((event, time)) = self.recorded.try_recv() {
            let entry = self.next_entry(event, time);
            pending.push(Pending {
                entry,
                puts: Vec::new(),
                raises: Vec::new(),
                recovery: None,
                reply: None,
            });
        }
    }

    /// Commit everything pending in one durable transaction and acknowledge it.
    fn flush(&mut self, pending: &mut Vec<Pending>) {
        self.take_deferred(pending);
        if pending.is_empty() {
            return;
        }
        let result = self.commit(pending);
        match &result {
            Ok(root) => {
                self.root = root.clone();
                self.head.store(Arc::new(root.head()));
            }
            Err(e) => {
                // Nothing was committed: the chain continues from the last committed entry,
                // and the recorded events of this batch are lost (they were acknowledged).
                tracing::error!(error = %e, entries = pending.len(), "state commit failed");
                self.chain = (self.root.audit_entries, self.root.audit_head);
            }
        }
        for p in pending.drain(..) {
            if let Some(reply) = p.reply {
                let _ = reply.send(match &result {
                    Ok(_) => Ok(p.entry),
                    Err(e) => Err(StoreError::AuditChain {
                        seq: p.entry.seq,
                        reason: format!("commit failed: {e}"),
                    }),
                });
            }
        }
    }

    /// Write the batch and the new root in one transaction; return the new root.
    fn commit(&self, pending: &[Pending]) -> Result<Root, StoreError> {
        let mut root = Root {
            version: self.root.version + 1,
            ..self.root.clone()
        };
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut state = txn.open_table(STATE).map_err(db_error)?;
            let mut audit = txn.open_table(AUDIT).map_err(db_error)?;
            for p in pending {
                for (name, value) in &p.puts {
                    self.write_record(&mut state, &mut root, name, value)?;
                }
                for (name, at_least) in &p.raises {
                    let current = match state.get(name.as_str()).map_err(db_error)? {
                        Some(stored) => {
                            counter_value(&open_record(&self.sealer, name, stored.value())?)
                        }
                        None => 0,
                    };
                    if *at_least > current {
                        let value = Zeroizing::new(at_least.to_le_bytes().to_vec());
                        self.write_record(&mut state, &mut root, name, &value)?;
                    }
                }
                let plain = serde_json::to_vec(&p.entry).map_err(|e| StoreError::AuditChain {
                    seq: p.entry.seq,
                    reason: e.to_string(),
                })?;
                let sealed = self.sealer.seal(&audit_aad(p.entry.seq), &plain)?;
                audit
                    .insert(p.entry.seq, sealed.as_slice())
                    .map_err(db_error)?;
                root.audit_entries = p.entry.seq + 1;
                hex::decode_to_slice(&p.entry.hash, &mut root.audit_head).map_err(|_| {
                    StoreError::AuditChain {
                        seq: p.entry.seq,
                        reason: "its hash is not 32 bytes of hex".into(),
                    }
                })?;
            }
            if let Some(commitments) = pending.iter().rev().find_map(|p| p.recovery.as_ref()) {
                txn.open_table(KEYS)
                    .map_err(db_error)?
                    .insert(RECOVERY_ENTRY, commitments.as_slice())
                    .map_err(db_error)?;
            }
            let sealed_root = self.sealer.seal(ROOT_AAD, &root.encode())?;
            txn.open_table(ROOT)
                .map_err(db_error)?
                .insert(ROOT_KEY, sealed_root.as_slice())
                .map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok(root)
    }

    /// Seal `value` as `name` at the root's version, keeping the commitment in step.
    fn write_record(
        &self,
        state: &mut Table<&str, &[u8]>,
        root: &mut Root,
        name: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let stored = seal_record(&self.sealer, name, root.version, value)?;
        match state.insert(name, stored.as_slice()).map_err(db_error)? {
            Some(old) => xor_into(
                &mut root.commitment,
                &record_mac(&self.sealer, name, old.value()),
            ),
            None => root.records += 1,
        }
        xor_into(
            &mut root.commitment,
            &record_mac(&self.sealer, name, &stored),
        );
        Ok(())
    }

    fn next_entry(&mut self, event: AuditEvent, at: OffsetDateTime) -> api::AuditEntry {
        // Two records can reach the queue in another order than they were stamped.
        self.last_time = self.last_time.max(at);
        let time = attest::x509::rfc3339(self.last_time);
        let (seq, prev) = (self.chain.0, hex::encode(self.chain.1));
        let hash =
            api::audit_entry_hash(seq, &time, event.event, &event.actor, &event.details, &prev);
        let _ = hex::decode_to_slice(&hash, &mut self.chain.1);
        self.chain.0 += 1;
        api::AuditEntry {
            seq,
            time,
            event: event.event.to_string(),
            actor: event.actor,
            details: event.details,
            prev_hash: prev,
            hash,
        }
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
            match Database::open(&path) {
                Ok(db) => break db,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        let txn = db.begin_write().unwrap();
        {
            let mut audit = txn.open_table(AUDIT).unwrap();
            let sealed = audit.get(1).unwrap().unwrap().value().to_vec();
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
