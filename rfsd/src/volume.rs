//! Volumes: the live tree on disk and how versions reach it.
//!
//! The files under the kmdata root are what the nShield tools on the RFS
//! host read. rfsd keeps them equal to the head version: a new version is
//! recorded in the store first, then applied to the live tree, then marked
//! as applied. If rfsd stops in between, start-up sees `applied < head` and
//! finishes the job ([`Volume::recover`]), so the live tree always ends up
//! equal to a recorded version.
//!
//! All methods here do blocking I/O; the services call them on tokio's
//! blocking pool while holding [`Volume::writer`].

use std::collections::BTreeSet;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rfs_core::fsx::{ScanLimits, Staged, VolumeDir};
use rfs_core::{ChangeSet, Digest, Entry, LOCK_FILE_NAME, Manifest, RelPath};
use tokio::time::Instant;

use crate::lock::{Held, LockSlot};
use crate::store::{NewVersion, Origin, OriginSource, Store, VersionRecord};
use crate::watch::WatchHealth;

/// How many bytes of objects one store transaction takes during an import.
const IMPORT_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// One served volume.
#[derive(Debug)]
pub struct Volume {
    /// The volume's name, e.g. `local`.
    pub name: String,
    /// The live tree.
    pub dir: VolumeDir,
    /// Held by whoever records a version or writes the live tree, so those
    /// happen one at a time per volume.
    pub writer: tokio::sync::Mutex<()>,
    /// The write lock that clients take for a commit.
    pub lock: Mutex<LockSlot>,
    /// Limits for scans of the live tree.
    pub limits: ScanLimits,
    /// The state of the volume's watcher, for `status`.
    pub watch: WatchHealth,
}

impl Volume {
    /// Returns a volume over an opened live tree.
    pub fn new(name: String, dir: VolumeDir, limits: ScanLimits) -> Self {
        Self {
            name,
            dir,
            writer: tokio::sync::Mutex::new(()),
            lock: Mutex::new(LockSlot::default()),
            limits,
            watch: WatchHealth::default(),
        }
    }

    /// Brings the volume to a consistent state at start-up: imports the tree
    /// as version 1 on first start, finishes an interrupted application, or
    /// records changes made on the host while rfsd was not running.
    ///
    /// # Errors
    ///
    /// Fails on store or file-system errors; the caller refuses to serve.
    pub fn recover(&self, store: &dyn Store) -> Result<()> {
        self.remove_own_lock_file();
        let Some(head) = store.head(&self.name)? else {
            let record = self.record_local(store, OriginSource::Import, &Manifest::new())?;
            tracing::info!(volume = %self.name, entries = record.entries, "imported the live tree as version 1");
            return Ok(());
        };

        let applied = store.applied(&self.name)?;
        if applied < head {
            tracing::warn!(volume = %self.name, applied, head, "finishing an interrupted update of the live tree");
            self.reconcile(store)?;
            store.set_applied(&self.name, head)?;
            return Ok(());
        }

        self.rescan(store)
    }

    /// Scans the whole live tree and records any difference from the head
    /// as one version of origin "local".
    ///
    /// # Errors
    ///
    /// Fails on store or file-system errors.
    pub fn rescan(&self, store: &dyn Store) -> Result<()> {
        let head = store.head(&self.name)?.unwrap_or(0);
        let head_manifest = store.head_manifest(&self.name)?;
        let record = self.record_local(store, OriginSource::Local, &head_manifest)?;
        if record.version > head {
            tracing::info!(volume = %self.name, version = record.version, added = record.added, modified = record.modified, deleted = record.deleted, "recorded changes made on the host");
        }
        Ok(())
    }

    /// Records the live state of `paths`, where it differs from the head, as
    /// a version of origin "local".
    ///
    /// # Errors
    ///
    /// Fails on store or file-system errors.
    pub fn capture_paths(
        &self,
        store: &dyn Store,
        paths: &[RelPath],
    ) -> Result<Option<VersionRecord>> {
        let head = store.head_entries(&self.name, paths)?;
        self.capture_foreign(store, &head, paths)
    }

    /// Records the paths of a change set whose live files no longer match
    /// the head (written by another program on the host) as a version of
    /// origin "local", so that a commit touching them is refused as a
    /// conflict instead of silently overwriting them.
    ///
    /// # Errors
    ///
    /// Fails on store or file-system errors.
    pub fn capture_foreign(
        &self,
        store: &dyn Store,
        head: &[Option<Entry>],
        paths: &[RelPath],
    ) -> Result<Option<VersionRecord>> {
        let mut changed = Vec::new();
        let mut deleted = Vec::new();
        for (path, expected) in paths.iter().zip(head) {
            let live = match self.dir.entry(path, |_, _| None) {
                Ok(found) => found.map(|(entry, _)| entry),
                // A symlink or device put there by hand is not content.
                Err(
                    rfs_core::fsx::FsError::Symlink(_) | rfs_core::fsx::FsError::WrongKind { .. },
                ) => None,
                Err(err) => return Err(err.into()),
            };
            match (&live, expected) {
                (Some(live), Some(expected)) if live.same_state(expected) => {}
                (None, None) => {}
                (Some(live), _) => changed.push(live.clone()),
                (None, Some(_)) => deleted.push(path.clone()),
            }
        }
        if changed.is_empty() && deleted.is_empty() {
            return Ok(None);
        }

        self.store_objects(store, &changed)?;
        let record = store.commit(NewVersion {
            volume: self.name.clone(),
            base: None,
            changed,
            deleted,
            origin: local_origin(OriginSource::Local),
        })?;
        store.set_applied(&self.name, record.version)?;
        tracing::info!(volume = %self.name, version = record.version, "recorded files changed on the host");
        Ok(Some(record))
    }

    /// Writes a change set to the live tree: stages every file, makes the
    /// batch durable with one `syncfs`, removes deleted entries, renames the
    /// staged files into place and syncs every directory touched.
    ///
    /// # Errors
    ///
    /// Fails on store or file-system errors; staged files are removed.
    pub fn apply(&self, store: &dyn Store, changed: &[Entry], deleted: &[RelPath]) -> Result<()> {
        let staged = self.stage_files(store, changed)?;
        if let Err(err) = self.dir.sync_filesystem() {
            staged
                .into_iter()
                .for_each(|staged| self.dir.discard(staged));
            return Err(err.into());
        }

        let mut touched = BTreeSet::new();
        self.remove_entries(deleted, &mut touched)?;
        let mut directories: Vec<&Entry> =
            changed.iter().filter(|entry| !entry.is_file()).collect();
        directories.sort_by_key(|entry| entry.path.depth());
        for entry in directories {
            self.dir.create_dir_all(&entry.path, entry.mode)?;
            self.dir.set_mode(&entry.path, entry.mode)?;
            touched.insert(entry.path.parent());
        }
        for staged in staged {
            touched.insert(staged.target().parent());
            self.dir.install(staged)?;
        }

        for dir in touched {
            self.dir.sync_dir(dir.as_ref())?;
        }
        Ok(())
    }

    /// Records a new version equal to `version` and writes it to the live
    /// tree. History is never rewritten: the old versions stay.
    ///
    /// # Errors
    ///
    /// Fails when the version does not exist, or on store or file-system
    /// errors.
    pub fn rollback(&self, store: &dyn Store, version: u64) -> Result<VersionRecord> {
        let target = store.manifest_at(&self.name, version)?;
        let head = store.head_manifest(&self.name)?;
        let (changed, deleted) = ChangeSet::between(&head, &target).into_parts();

        let mut origin = local_origin(OriginSource::Local);
        origin.reason = format!("rollback to version {version}");
        let request = NewVersion {
            volume: self.name.clone(),
            base: None,
            changed: changed.clone(),
            deleted: deleted.clone(),
            origin,
        };
        let record = store.commit(request)?;
        self.apply(store, &changed, &deleted)?;
        store.set_applied(&self.name, record.version)?;
        tracing::info!(volume = %self.name, version = record.version, to = version, "rolled back");
        Ok(record)
    }

    /// Writes `.nft-lock` to show who holds the lock.
    pub fn write_lock_file(&self, held: &Held) {
        let content = format!(
            "rfsd lock\nholder: {}\nhost: {}\npid: {}\ntoken: {}\nsince: {}\n",
            held.holder.peer,
            held.holder.host_name,
            held.holder.process_id,
            held.token,
            crate::timefmt::rfc3339(held.since)
        );
        let path = lock_file_path();
        let result = self
            .dir
            .stage(&path, content.as_bytes(), 0o644)
            .and_then(|staged| self.dir.install(staged));
        if let Err(err) = result {
            tracing::warn!(volume = %self.name, error = %err, "could not write the lock file");
        }
    }

    /// Removes `.nft-lock` if rfsd wrote it.
    pub fn remove_own_lock_file(&self) {
        let path = lock_file_path();
        let ours = self
            .dir
            .read(&path)
            .is_ok_and(|content| content.starts_with(b"rfsd lock\n"));
        if ours && let Err(err) = self.dir.remove_file(&path) {
            tracing::warn!(volume = %self.name, error = %err, "could not remove the lock file");
        }
    }

    /// Returns the lock holder after freeing an expired lease, logging and
    /// removing the lock file of an expired one.
    pub fn lock_holder(&self) -> Option<Held> {
        let mut slot = self
            .lock
            .lock()
            .expect("lock slot mutex is never poisoned: no code panics while holding it");
        let (current, expired) = slot.current(Instant::now());
        let current = current.cloned();
        drop(slot);
        if let Some(expired) = expired {
            tracing::warn!(volume = %self.name, holder = %expired.holder.peer, host = %expired.holder.host_name, pid = expired.holder.process_id, token = expired.token, "lock lease ran out; lock freed");
            self.remove_own_lock_file();
        }
        current
    }

    fn reconcile(&self, store: &dyn Store) -> Result<()> {
        let head = store.head_manifest(&self.name)?;
        let scan = self.dir.scan(self.limits, cache_from(&head))?;
        self.remove_temp_files(&scan.temp_files);
        let (changed, deleted) = ChangeSet::between(&scan.manifest, &head).into_parts();
        self.apply(store, &changed, &deleted)
    }

    /// Scans the live tree and records its difference from `base` as one
    /// version (always, for an import, even of an empty tree).
    fn record_local(
        &self,
        store: &dyn Store,
        source: OriginSource,
        base: &Manifest,
    ) -> Result<VersionRecord> {
        let scan = self.dir.scan(self.limits, cache_from(base))?;
        self.watch.scanned_now();
        self.remove_temp_files(&scan.temp_files);
        for skipped in &scan.skipped {
            tracing::warn!(volume = %self.name, path = %skipped.path, reason = ?skipped.reason, "not served");
        }

        let (changed, deleted) = ChangeSet::between(base, &scan.manifest).into_parts();
        self.store_objects(store, &changed)?;
        let request = NewVersion {
            volume: self.name.clone(),
            base: None,
            changed,
            deleted,
            origin: local_origin(source),
        };
        let record = store.commit(request)?;
        store.set_applied(&self.name, record.version)?;
        Ok(record)
    }

    fn store_objects(&self, store: &dyn Store, entries: &[Entry]) -> Result<()> {
        let digests: Vec<Digest> = entries.iter().filter_map(|entry| entry.digest).collect();
        let missing: BTreeSet<Digest> = store.missing_objects(&digests)?.into_iter().collect();
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for entry in entries {
            let Some(digest) = entry.digest.filter(|digest| missing.contains(digest)) else {
                continue;
            };
            let content = self.dir.read(&entry.path)?;
            // The file may have changed since the scan hashed it; storing it
            // under the wrong digest would corrupt every later download.
            if Digest::of(&content) != digest {
                anyhow::bail!(
                    "{:?} changed while it was being recorded; it is picked up by the next scan",
                    entry.path.as_str()
                );
            }
            batch_bytes += content.len();
            batch.push((digest, content));
            if batch_bytes >= IMPORT_BATCH_BYTES {
                store.put_objects(&batch)?;
                batch.clear();
                batch_bytes = 0;
            }
        }
        store.put_objects(&batch)?;
        Ok(())
    }

    fn stage_files(&self, store: &dyn Store, changed: &[Entry]) -> Result<Vec<Staged>> {
        let mut staged = Vec::new();
        for entry in changed.iter().filter(|entry| entry.is_file()) {
            let result = self.stage_one(store, entry);
            match result {
                Ok(one) => staged.push(one),
                Err(err) => {
                    staged
                        .into_iter()
                        .for_each(|staged| self.dir.discard(staged));
                    return Err(err);
                }
            }
        }
        Ok(staged)
    }

    fn stage_one(&self, store: &dyn Store, entry: &Entry) -> Result<Staged> {
        let digest = entry.digest.context("a file entry always has a digest")?;
        let content = store.read_object(&digest)?.with_context(|| {
            format!(
                "object {digest} of {:?} is missing from the store",
                entry.path.as_str()
            )
        })?;
        Ok(self.dir.stage(&entry.path, &content, entry.mode)?)
    }

    fn remove_entries(
        &self,
        deleted: &[RelPath],
        touched: &mut BTreeSet<Option<RelPath>>,
    ) -> Result<()> {
        let mut deepest_first: Vec<&RelPath> = deleted.iter().collect();
        deepest_first.sort_by_key(|path| std::cmp::Reverse(path.depth()));
        for path in deepest_first {
            let removed = match self.dir.stat(path)? {
                Some(stat) if stat.kind == rfs_core::fsx::FileKind::Directory => {
                    self.dir.remove_dir(path)?
                }
                Some(_) => self.dir.remove_file(path)?,
                None => false,
            };
            if removed {
                touched.insert(path.parent());
            }
        }
        Ok(())
    }

    fn remove_temp_files(&self, temp_files: &[RelPath]) {
        for path in temp_files {
            match self.dir.remove_file(path) {
                Ok(_) => {
                    tracing::info!(volume = %self.name, path = %path, "removed a leftover staging file")
                }
                Err(err) => {
                    tracing::warn!(volume = %self.name, path = %path, error = %err, "could not remove a staging file")
                }
            }
        }
    }
}

fn lock_file_path() -> RelPath {
    RelPath::new(LOCK_FILE_NAME).expect("the lock file name is a valid path")
}

/// Returns a digest cache for scans: none, since the live tree keeps no stat
/// keys yet.
///
/// TODO: keep stat keys of the live tree in the store, so a start-up scan of
/// a large volume does not read every file (100,000 files cost seconds).
fn cache_from(_manifest: &Manifest) -> impl Fn(&RelPath, &rfs_core::StatKey) -> Option<Digest> {
    |_, _| None
}

fn local_origin(source: OriginSource) -> Origin {
    let host_name = hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_default();
    Origin {
        source,
        address: String::new(),
        key_hash: None,
        host_name,
        process_id: std::process::id(),
        time_unix: crate::timefmt::now_unix(),
        reason: String::new(),
    }
}
