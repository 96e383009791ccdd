//! Sealed, durable state in one redb file, with a hash-chained audit log.
//!
//! Every change goes through one writer thread, the audit chain's only author. A state change
//! ([`Store::commit`]) is durable before it is acknowledged, together with whatever else has
//! queued (group commit). An event that changes no state ([`Store::record`], e.g. the
//! activation of a workload without an activation limit) is queued without waking the writer
//! more than once per window, and chained and made durable with the next commit, at most
//! [`FLUSH_WINDOW`] later: a crash can lose that window of such records, never a state change.
//! Reads go straight to redb's MVCC snapshots.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::seal::{SealError, Sealer};

const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Changes committed in one transaction at most.
const MAX_BATCH: usize = 1024;
/// How long a recorded event may wait for its durable commit.
pub const FLUSH_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened, read or written.
    #[error("state database: {0}")]
    Database(#[from] redb::Error),
    /// A sealed record did not open.
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
    /// Who did it.
    pub actor: String,
    /// Details (never secrets).
    pub details: serde_json::Value,
}

/// A set of record writes and the audit event that explains them, committed atomically.
#[derive(Debug)]
pub struct Change {
    /// Records to write (plaintext; sealed by the store).
    pub puts: Vec<(String, Zeroizing<Vec<u8>>)>,
    /// The audit entry for this change.
    pub audit: AuditEvent,
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
    /// Set for durable changes, which are acknowledged after the commit.
    reply: Option<oneshot::Sender<Result<api::AuditEntry, StoreError>>>,
}

/// The coordinator's durable state.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Database>,
    sealer: Arc<Sealer>,
    writer: mpsc::Sender<Job>,
    /// Recorded events go here, without a lock (the queue is lock-free) ...
    recorded: mpsc::Sender<Recorded>,
    /// ... and the first since the writer last took them wakes it.
    armed: Arc<AtomicBool>,
}

impl Store {
    /// Open (or create) the state file and check its audit chain.
    pub fn open(path: &Path, sealer: Arc<Sealer>) -> Result<Self, StoreError> {
        let db = Arc::new(Database::create(path).map_err(db_error)?);
        let txn = db.begin_write().map_err(db_error)?;
        txn.open_table(STATE).map_err(db_error)?;
        txn.open_table(AUDIT).map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        let entries = read_audit(&db, &sealer)?;
        let head = check_chain(&entries)?;
        let (writer, jobs) = mpsc::channel();
        let (recorded, taken) = mpsc::channel();
        let armed = Arc::new(AtomicBool::new(false));
        let worker = Writer {
            db: Arc::clone(&db),
            sealer: Arc::clone(&sealer),
            recorded: taken,
            armed: Arc::clone(&armed),
            next_seq: entries.len() as u64,
            prev_hash: head,
            last_time: entries
                .last()
                .and_then(|e| OffsetDateTime::parse(&e.time, &Rfc3339).ok())
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        };
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || worker.run(&jobs))
            .map_err(|e| StoreError::Database(redb::Error::Io(e)))?;
        Ok(Self {
            db,
            sealer,
            writer,
            recorded,
            armed,
        })
    }

    /// Read and unseal a record.
    pub fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(STATE).map_err(db_error)?;
        let Some(sealed) = table.get(name).map_err(db_error)? else {
            return Ok(None);
        };
        Ok(Some(self.sealer.open(name, sealed.value())?))
    }

    /// Every record whose name starts with `prefix`, unsealed (empty records are deletions).
    pub fn list(&self, prefix: &str) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(STATE).map_err(db_error)?;
        let mut out = Vec::new();
        for row in table.range(prefix..).map_err(db_error)? {
            let (name, sealed) = row.map_err(db_error)?;
            let name = name.value();
            if !name.starts_with(prefix) {
                break;
            }
            let value = self.sealer.open(name, sealed.value())?;
            if !value.is_empty() {
                out.push((name.to_string(), value));
            }
        }
        Ok(out)
    }

    /// Commit `change` durably and return its audit entry.
    pub async fn commit(&self, change: Change) -> Result<api::AuditEntry, StoreError> {
        let (reply, done) = oneshot::channel();
        self.writer
            .send(Job::Commit { change, reply })
            .map_err(|_| StoreError::WriterGone)?;
        done.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Record an event that changes no state, as of now; it is chained and durable within
    /// [`FLUSH_WINDOW`]. Only the first record of a window wakes the writer.
    pub fn record(&self, audit: AuditEvent) -> Result<(), StoreError> {
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

    /// The whole audit log, oldest first.
    pub fn audit(&self) -> Result<Vec<api::AuditEntry>, StoreError> {
        read_audit(&self.db, &self.sealer)
    }
}

fn audit_name(seq: u64) -> String {
    format!("audit/{seq}")
}

fn read_audit(db: &Database, sealer: &Sealer) -> Result<Vec<api::AuditEntry>, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let table = txn.open_table(AUDIT).map_err(db_error)?;
    let mut entries = Vec::new();
    for row in table.iter().map_err(db_error)? {
        let (seq, sealed) = row.map_err(db_error)?;
        let plain = sealer.open(&audit_name(seq.value()), sealed.value())?;
        let entry = serde_json::from_slice(&plain).map_err(|e| StoreError::AuditChain {
            seq: seq.value(),
            reason: e.to_string(),
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// The hash of an entry: SHA-256 over its fields and its predecessor's hash.
fn entry_hash(
    seq: u64,
    time: &str,
    event: &str,
    actor: &str,
    details: &serde_json::Value,
    prev: &str,
) -> String {
    // A tuple serializes as the compact JSON array `[seq, time, event, actor, details, prev]`,
    // without building (and cloning `details` into) a `Value` first. It cannot fail: integers,
    // strings and a `Value` always serialize.
    let canonical =
        serde_json::to_vec(&(seq, time, event, actor, details, prev)).unwrap_or_default();
    hex::encode(attest::crypto::sha256(&canonical))
}

/// Check every link; return the last hash (zeros for an empty log).
fn check_chain(entries: &[api::AuditEntry]) -> Result<String, StoreError> {
    let mut prev = hex::encode([0u8; 32]);
    for (i, e) in entries.iter().enumerate() {
        let broken = |reason: &str| StoreError::AuditChain {
            seq: i as u64,
            reason: reason.to_string(),
        };
        if e.seq != i as u64 {
            return Err(broken("entries are missing or out of order"));
        }
        if e.prev_hash != prev {
            return Err(broken("it does not link to the previous entry"));
        }
        if e.hash != entry_hash(e.seq, &e.time, &e.event, &e.actor, &e.details, &e.prev_hash) {
            return Err(broken("its hash does not match its contents"));
        }
        prev = e.hash.clone();
    }
    Ok(prev)
}

struct Writer {
    db: Arc<Database>,
    sealer: Arc<Sealer>,
    recorded: mpsc::Receiver<Recorded>,
    armed: Arc<AtomicBool>,
    next_seq: u64,
    prev_hash: String,
    /// The time of the last chained entry: entries never go back in time.
    last_time: OffsetDateTime,
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
        if let Err(e) = &result {
            // Nothing was committed: the chain continues from the last committed entry, and
            // the recorded events of this batch are lost (they were acknowledged already).
            tracing::error!(error = %e, entries = pending.len(), "state commit failed");
            if let Ok(entries) = read_audit(&self.db, &self.sealer) {
                self.next_seq = entries.len() as u64;
                self.prev_hash = entries
                    .last()
                    .map_or_else(|| hex::encode([0u8; 32]), |e| e.hash.clone());
            }
        }
        for p in pending.drain(..) {
            if let Some(reply) = p.reply {
                let _ = reply.send(match &result {
                    Ok(()) => Ok(p.entry),
                    Err(e) => Err(StoreError::AuditChain {
                        seq: p.entry.seq,
                        reason: format!("commit failed: {e}"),
                    }),
                });
            }
        }
    }

    fn commit(&self, pending: &[Pending]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut state = txn.open_table(STATE).map_err(db_error)?;
            let mut audit = txn.open_table(AUDIT).map_err(db_error)?;
            for p in pending {
                for (name, value) in &p.puts {
                    let sealed = self.sealer.seal(name, value)?;
                    state
                        .insert(name.as_str(), sealed.as_slice())
                        .map_err(db_error)?;
                }
                let plain = serde_json::to_vec(&p.entry).map_err(|e| StoreError::AuditChain {
                    seq: p.entry.seq,
                    reason: e.to_string(),
                })?;
                let sealed = self.sealer.seal(&audit_name(p.entry.seq), &plain)?;
                audit
                    .insert(p.entry.seq, sealed.as_slice())
                    .map_err(db_error)?;
            }
        }
        txn.commit().map_err(db_error)
    }

    fn next_entry(&mut self, event: AuditEvent, at: OffsetDateTime) -> api::AuditEntry {
        // Two records can reach the queue in another order than they were stamped.
        self.last_time = self.last_time.max(at);
        let time = attest::x509::rfc3339(self.last_time);
        let seq = self.next_seq;
        let hash = entry_hash(
            seq,
            &time,
            event.event,
            &event.actor,
            &event.details,
            &self.prev_hash,
        );
        let entry = api::AuditEntry {
            seq,
            time,
            event: event.event.to_string(),
            actor: event.actor,
            details: event.details,
            prev_hash: std::mem::replace(&mut self.prev_hash, hash.clone()),
            hash,
        };
        self.next_seq += 1;
        entry
    }
}

#[cfg(test)]
mod tests {
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
            entry_hash(
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
}
