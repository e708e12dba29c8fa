//! A [`RedbStore`] that reopens its database after an I/O failure.
//!
//! After redb fails to write (a full disk, a failing fsync), it refuses
//! every later transaction until the database is closed and opened again.
//! This wrapper does that by itself: the failed call reports the error, the
//! store is dropped, and the next call opens it again, so rfsd keeps
//! serving once space is freed, without a restart. Until the reopen works
//! (calls still running hold the old instance), calls fail cleanly.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rfs_core::{Digest, Entry, Manifest, RelPath};

use super::{Changes, NewVersion, RedbStore, Result, Store, StoreCheck, StoreError, VersionRecord};

/// A store over a redb file that survives I/O failures.
#[derive(Debug)]
pub struct ReopeningStore {
    path: PathBuf,
    history_id: String,
    current: RwLock<Option<Arc<RedbStore>>>,
}

impl ReopeningStore {
    /// Wraps an open store whose file is at `path`.
    pub fn new(path: &Path, store: RedbStore) -> Self {
        let history_id = store.history_id().to_owned();
        Self {
            path: path.to_owned(),
            history_id,
            current: RwLock::new(Some(Arc::new(store))),
        }
    }

    fn call<T>(&self, op: impl FnOnce(&RedbStore) -> Result<T>) -> Result<T> {
        let store = self.current()?;
        let result = op(&store);
        if let Err(StoreError::Database(redb::Error::Io(_) | redb::Error::PreviousIo)) = &result {
            tracing::warn!(path = %self.path.display(), "database I/O failed; it is reopened for the next request");
            if let Ok(mut current) = self.current.write() {
                *current = None;
            }
        }
        result
    }

    fn current(&self) -> Result<Arc<RedbStore>> {
        if let Some(store) = self.current.read().ok().and_then(|current| current.clone()) {
            return Ok(store);
        }
        let mut current = self
            .current
            .write()
            .map_err(|_| StoreError::Corrupt("store lock poisoned".to_owned()))?;
        if let Some(store) = current.as_ref() {
            return Ok(store.clone());
        }
        let store = Arc::new(RedbStore::open(&self.path)?);
        tracing::info!(path = %self.path.display(), "database reopened");
        *current = Some(store.clone());
        Ok(store)
    }
}

impl Store for ReopeningStore {
    fn history_id(&self) -> &str {
        &self.history_id
    }

    fn head(&self, volume: &str) -> Result<Option<u64>> {
        self.call(|store| store.head(volume))
    }

    fn changes_since(&self, volume: &str, base: u64) -> Result<Changes> {
        self.call(|store| store.changes_since(volume, base))
    }

    fn head_manifest(&self, volume: &str) -> Result<Manifest> {
        self.call(|store| store.head_manifest(volume))
    }

    fn head_entries(&self, volume: &str, paths: &[RelPath]) -> Result<Vec<Option<Entry>>> {
        self.call(|store| store.head_entries(volume, paths))
    }

    fn manifest_at(&self, volume: &str, version: u64) -> Result<Manifest> {
        self.call(|store| store.manifest_at(volume, version))
    }

    fn record(&self, volume: &str, version: u64) -> Result<VersionRecord> {
        self.call(|store| store.record(volume, version))
    }

    fn verify(&self) -> Result<StoreCheck> {
        self.call(|store| store.verify())
    }

    fn log(&self, volume: &str, limit: usize) -> Result<Vec<VersionRecord>> {
        self.call(|store| store.log(volume, limit))
    }

    fn missing_objects(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        self.call(|store| store.missing_objects(digests))
    }

    fn put_objects(&self, objects: &[(Digest, Vec<u8>)]) -> Result<()> {
        self.call(|store| store.put_objects(objects))
    }

    fn read_object(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        self.call(|store| store.read_object(digest))
    }

    fn commit(&self, request: NewVersion) -> Result<VersionRecord> {
        self.call(|store| store.commit(request))
    }

    fn applied(&self, volume: &str) -> Result<u64> {
        self.call(|store| store.applied(volume))
    }

    fn set_applied(&self, volume: &str, version: u64) -> Result<()> {
        self.call(|store| store.set_applied(volume, version))
    }

    fn next_fencing_token(&self, volume: &str) -> Result<u64> {
        self.call(|store| store.next_fencing_token(volume))
    }
}
