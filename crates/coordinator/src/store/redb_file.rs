//! The embedded backend: one redb file, written by this process's writer thread only.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase as _, ReadableTableMetadata as _};
use redb::{ReadableTable, TableDefinition};
use time::OffsetDateTime;

use super::{Batch, Root, STATE_KEY_AAD, StoreError};
use crate::seal::{Sealer, StateKey};

const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const ROOT: TableDefinition<&str, &[u8]> = TableDefinition::new("root");
const ROOT_KEY: &str = "root";
/// What sits beside the sealed state: the state key sealed under the platform's key, and the
/// recovery commitments (public: they must be readable when the state key is not).
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const STATE_KEY_ENTRY: &str = "state-key";
const RECOVERY_ENTRY: &str = "recovery";
/// redb's page cache: the state is small and read at start; the writer appends. redb's default
/// (a gigabyte) would let the cache grow with the audit log.
const CACHE_BYTES: usize = 8 << 20;

fn db_error(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Database(e.into())
}

/// Open (or create) the file and unseal its state key (or make one for a new file).
pub(super) fn open(path: &Path, kek: &Sealer) -> Result<(Arc<Database>, StateKey), StoreError> {
    let db = create(path)?;
    let txn = db.begin_read().map_err(db_error)?;
    let keys = txn.open_table(KEYS).map_err(db_error)?;
    let sealed = keys.get(STATE_KEY_ENTRY).map_err(db_error)?;
    let state_key = match sealed {
        Some(sealed) => {
            let opened = kek.open("the state key", STATE_KEY_AAD, sealed.value());
            match opened.ok().and_then(|k| StateKey::from_bytes(&k)) {
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
    Ok((db, state_key))
}

/// Open (or create) the database file with all its tables.
pub(super) fn create(path: &Path) -> Result<Arc<Database>, StoreError> {
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
pub(super) fn seal_state_key(
    db: &Database,
    kek: &Sealer,
    key: &StateKey,
) -> Result<(), StoreError> {
    let sealed = kek.seal(STATE_KEY_AAD, key.as_bytes())?;
    let txn = db.begin_write().map_err(db_error)?;
    txn.open_table(KEYS)
        .map_err(db_error)?
        .insert(STATE_KEY_ENTRY, sealed.as_slice())
        .map_err(db_error)?;
    txn.commit().map_err(db_error)
}

/// The recovery commitments beside the state.
pub(super) fn recovery(db: &Database) -> Result<Option<Vec<u8>>, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let keys = txn.open_table(KEYS).map_err(db_error)?;
    let entry = keys.get(RECOVERY_ENTRY).map_err(db_error)?;
    Ok(entry.map(|e| e.value().to_vec()))
}

/// A record's stored (sealed) bytes.
pub(super) fn stored(db: &Database, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let table = txn.open_table(STATE).map_err(db_error)?;
    let value = table.get(name).map_err(db_error)?;
    Ok(value.map(|v| v.value().to_vec()))
}

/// The stored records whose names start with `prefix`.
pub(super) fn list(db: &Database, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let table = txn.open_table(STATE).map_err(db_error)?;
    let mut out = Vec::new();
    for row in table.range(prefix..).map_err(db_error)? {
        let (name, stored) = row.map_err(db_error)?;
        if !name.value().starts_with(prefix) {
            break;
        }
        out.push((name.value().to_string(), stored.value().to_vec()));
    }
    Ok(out)
}

/// Up to `limit` sealed audit entries from `from`, and the log's length.
pub(super) fn audit(
    db: &Database,
    from: u64,
    limit: usize,
) -> Result<super::AuditRows, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let table = txn.open_table(AUDIT).map_err(db_error)?;
    let total = table.len().map_err(db_error)?;
    let mut rows = Vec::new();
    for row in table.range(from..).map_err(db_error)?.take(limit) {
        let (seq, sealed) = row.map_err(db_error)?;
        rows.push((seq.value(), sealed.value().to_vec()));
    }
    Ok((rows, total))
}

/// Write a batch in one durable transaction.
pub(super) fn write(db: &Database, batch: &Batch) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(db_error)?;
    {
        let mut state = txn.open_table(STATE).map_err(db_error)?;
        for (name, stored) in &batch.records {
            state
                .insert(name.as_str(), stored.as_slice())
                .map_err(db_error)?;
        }
        let mut audit = txn.open_table(AUDIT).map_err(db_error)?;
        for (seq, sealed) in &batch.audit {
            audit.insert(*seq, sealed.as_slice()).map_err(db_error)?;
        }
        if let Some(commitments) = &batch.recovery {
            txn.open_table(KEYS)
                .map_err(db_error)?
                .insert(RECOVERY_ENTRY, commitments.as_slice())
                .map_err(db_error)?;
        }
        txn.open_table(ROOT)
            .map_err(db_error)?
            .insert(ROOT_KEY, batch.root.as_slice())
            .map_err(db_error)?;
    }
    txn.commit().map_err(db_error)
}

/// Check the whole file against its sealed root; return the root and the last entry's time.
pub(super) fn check(db: &Database, sealer: &Sealer) -> Result<(Root, OffsetDateTime), StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let state = txn.open_table(STATE).map_err(db_error)?;
    let audit = txn.open_table(AUDIT).map_err(db_error)?;
    let roots = txn.open_table(ROOT).map_err(db_error)?;
    let sealed = roots.get(ROOT_KEY).map_err(db_error)?;
    let held = (
        state.len().map_err(db_error)?,
        audit.len().map_err(db_error)?,
    );
    let root = super::open_root(sealer, sealed.as_ref().map(|s| s.value()), held)?;
    super::check_records(sealer, &root, rows(&state, |k: &str| k.to_string())?)?;
    let chain = super::check_chain(sealer, (0, [0; 32]), rows(&audit, |k: u64| k)?)?;
    let last_time = super::check_head(&root, chain)?;
    Ok((root, last_time))
}

/// A table's rows, owned, one at a time.
fn rows<'t, K, T, Out>(
    table: &'t T,
    key: impl Fn(K::SelfType<'_>) -> Out + 't,
) -> Result<impl Iterator<Item = Result<(Out, Vec<u8>), StoreError>> + 't, StoreError>
where
    K: redb::Key + 'static,
    T: ReadableTable<K, &'static [u8]>,
{
    Ok(table.iter().map_err(db_error)?.map(move |row| {
        let (k, v) = row.map_err(db_error)?;
        Ok((key(k.value()), v.value().to_vec()))
    }))
}
