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

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rfs_core::fsx::{Scan, ScanLimits, Staged, VolumeDir};
use rfs_core::{ChangeSet, Digest, Entry, Manifest, RelPath, StatKey};
use tokio::time::Instant;

use crate::error::ServiceError;
use crate::lock::{Held, Holder, LockError, LockSlot};
use crate::lock_file::{self, LegacyLockFile, LockFile, OwnLockFile};
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
    /// The write lock that clients take for a commit. Whoever writes or
    /// removes `.nft-lock` holds this mutex meanwhile, so the file always
    /// agrees with the grant.
    pub lock: Mutex<LockSlot>,
    /// Held while a grant is made (on the blocking pool only), so grants
    /// happen one at a time.
    granting: Mutex<()>,
    /// The legacy `.nft-lock` last seen while no grant was held, so that
    /// `status` and `Head` can show it without touching the disk.
    legacy: Mutex<Option<LegacyLockFile>>,
    /// How long a legacy `.nft-lock` is honoured.
    legacy_max_age: Duration,
    /// Limits for scans of the live tree.
    pub limits: ScanLimits,
    /// The state of the volume's watcher, for `status`.
    pub watch: WatchHealth,
    /// The digest of each live file as of its stat key at the last full
    /// scan, so the next full scan reads only files that changed since.
    digests: Mutex<HashMap<RelPath, (StatKey, Digest)>>,
}

/// What the lock of a volume looks like to people.
#[derive(Debug, Clone)]
pub enum LockState {
    /// Nobody holds it.
    Free,
    /// A client holds it.
    Held(Held),
    /// A `.nft-lock` written by another program holds it.
    Legacy(LegacyLockFile),
}

/// What `clear-lock` freed.
#[derive(Debug, Clone)]
pub enum Cleared {
    /// The lock was free and no lock file was there.
    Nothing,
    /// A live grant.
    Grant(Held),
    /// A lock file rfsd wrote that no live grant stood behind.
    StaleFile(OwnLockFile),
    /// A `.nft-lock` written by another program.
    Legacy(LegacyLockFile),
}

impl Volume {
    /// Returns a volume over an opened live tree.
    pub fn new(name: String, dir: VolumeDir, limits: ScanLimits, legacy_max_age: Duration) -> Self {
        Self {
            name,
            dir,
            writer: tokio::sync::Mutex::new(()),
            lock: Mutex::new(LockSlot::default()),
            granting: Mutex::new(()),
            legacy: Mutex::new(None),
            legacy_max_age,
            limits,
            watch: WatchHealth::default(),
            digests: Mutex::default(),
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
        self.recover_lock_file(store)?;
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
            fencing_token: None,
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
        let half = staged.len() / 2;
        for (index, staged) in staged.into_iter().enumerate() {
            if index == half {
                crate::crash::point("mid-apply");
            }
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
            fencing_token: None,
        };
        let record = store.commit(request)?;
        self.apply(store, &changed, &deleted)?;
        store.set_applied(&self.name, record.version)?;
        tracing::info!(volume = %self.name, version = record.version, to = version, "rolled back");
        Ok(record)
    }

    /// Grants the lock to `holder` with a new fencing token and writes
    /// `.nft-lock`.
    ///
    /// Grants are made one at a time, and a token is only spent while the
    /// lock is free: so every token spent is granted, and a holder's token
    /// stays the last one the store knows until the lock is freed. That is
    /// what lets the store refuse a stale token in the transaction that
    /// records a version.
    ///
    /// # Errors
    ///
    /// Returns [`LockError::Held`] when a client holds the lock and
    /// [`LockError::Legacy`] when a legacy `.nft-lock` does, including one
    /// that another program created while this grant was being written;
    /// store errors as they come.
    pub fn grant_lock(
        &self,
        store: &dyn Store,
        holder: Holder,
        lease: Duration,
    ) -> Result<Held, ServiceError> {
        let _granting = self
            .granting
            .lock()
            .expect("grant mutex is never poisoned: no code panics while holding it");
        if let Some(held) = self.lock_holder() {
            return Err(LockError::Held {
                volume: self.name.clone(),
                holder: held.describe(Instant::now()),
            }
            .into());
        }
        self.check_lock_file()?;
        let token = store.next_fencing_token(&self.name)?;

        let mut slot = self.slot();
        let held = slot.acquire(&self.name, holder, token, lease, Instant::now())?;
        if let Err(err) = self.settle_lock_file() {
            slot.release(token);
            return Err(err.into());
        }
        match lock_file::create(&self.dir, &held) {
            Ok(true) => {}
            Ok(false) => {
                slot.release(token);
                return Err(LockError::Legacy {
                    volume: self.name.clone(),
                    age: Duration::ZERO,
                    max_age: self.legacy_max_age,
                }
                .into());
            }
            Err(err) => {
                tracing::warn!(volume = %self.name, error = %err, "could not write the lock file")
            }
        }
        Ok(held)
    }

    /// Frees the lock if `token` holds it, removing its `.nft-lock`.
    pub fn release_lock(&self, token: u64) -> Option<Held> {
        let mut slot = self.slot();
        let released = slot.release(token)?;
        // A file another program wrote over rfsd's meanwhile stays.
        if let Ok(LockFile::Own(_)) = lock_file::inspect(&self.dir) {
            self.remove_lock_file();
        }
        Some(released)
    }

    /// Frees the lock now, whoever holds it, and removes `.nft-lock`
    /// whoever wrote it (the operator's `clear-lock`). A freed grant's token
    /// is voided in the store too, so not even a commit already past the
    /// lease check can record a version with it.
    ///
    /// # Errors
    ///
    /// Fails on store or file-system errors.
    pub fn clear_lock(&self, store: &dyn Store) -> Result<Cleared> {
        let mut slot = self.slot();
        *self.legacy_cache() = None;
        if let Some(held) = slot.clear() {
            self.remove_lock_file();
            store.next_fencing_token(&self.name)?;
            return Ok(Cleared::Grant(held));
        }

        let cleared = match lock_file::inspect(&self.dir)? {
            LockFile::Absent => return Ok(Cleared::Nothing),
            LockFile::Own(own) => {
                store.next_fencing_token(&self.name)?;
                Cleared::StaleFile(own)
            }
            LockFile::Legacy(legacy) => Cleared::Legacy(legacy),
        };
        lock_file::remove(&self.dir)?;
        Ok(cleared)
    }

    /// Frees a lock whose lease ran out, logging its holder, and settles
    /// `.nft-lock` while no grant is held: a leftover of rfsd's own is
    /// removed, a legacy one is remembered for `status` while it is
    /// honoured and removed with a warning once it is too old.
    pub fn sweep_lock(&self) {
        self.lock_holder();
        let slot = self.slot();
        if slot.is_held() {
            return;
        }
        // An honoured legacy lock is no failure here; `status` shows it.
        let _ = self.settle_lock_file();
    }

    /// Checks `.nft-lock` before a token is spent on a grant that a legacy
    /// lock would refuse.
    fn check_lock_file(&self) -> Result<(), LockError> {
        let slot = self.slot();
        if slot.is_held() {
            return Ok(());
        }
        self.settle_lock_file()
    }

    /// Returns the lock holder after freeing an expired lease, which is
    /// logged at warn with its holder. The sweeper removes its lock file.
    pub fn lock_holder(&self) -> Option<Held> {
        let mut slot = self.slot();
        let (current, expired) = slot.current(Instant::now());
        let current = current.cloned();
        drop(slot);
        if let Some(expired) = expired {
            tracing::warn!(volume = %self.name, holder = %expired.holder.peer, host = %expired.holder.host_name, pid = expired.holder.process_id, token = expired.token, "lock lease ran out; lock freed");
        }
        current
    }

    /// Returns who holds the lock, without touching the disk.
    pub fn lock_state(&self) -> LockState {
        if let Some(held) = self.lock_holder() {
            return LockState::Held(held);
        }
        match *self.legacy_cache() {
            Some(legacy) => LockState::Legacy(legacy),
            None => LockState::Free,
        }
    }

    /// Returns how long a legacy `.nft-lock` is honoured.
    pub fn legacy_max_age(&self) -> Duration {
        self.legacy_max_age
    }

    /// With the slot mutex held and no live grant: removes rfsd's own stale
    /// lock file or a legacy one past its age, and refuses while a legacy
    /// one is honoured.
    fn settle_lock_file(&self) -> Result<(), LockError> {
        let found = match lock_file::inspect(&self.dir) {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(volume = %self.name, error = %err, "could not read the lock file");
                return Ok(());
            }
        };
        let now = SystemTime::now();
        let mut cache = self.legacy_cache();
        *cache = None;
        match found {
            LockFile::Absent => {}
            LockFile::Own(own) => {
                tracing::debug!(volume = %self.name, token = own.token, "removing a lock file no grant holds");
                self.remove_lock_file();
            }
            LockFile::Legacy(legacy) if legacy.is_honoured(now, self.legacy_max_age) => {
                *cache = Some(legacy);
                return Err(LockError::Legacy {
                    volume: self.name.clone(),
                    age: legacy.age(now),
                    max_age: self.legacy_max_age,
                });
            }
            LockFile::Legacy(legacy) => {
                let age_s = legacy.age(now).as_secs();
                tracing::warn!(volume = %self.name, age_s, max_age_s = self.legacy_max_age.as_secs(), "removing a legacy .nft-lock older than the limit");
                self.remove_lock_file();
            }
        }
        Ok(())
    }

    /// Settles `.nft-lock` at start-up, before any grant: a file of an
    /// earlier run is removed and its token voided in the store.
    fn recover_lock_file(&self, store: &dyn Store) -> Result<()> {
        if let LockFile::Own(own) = lock_file::inspect(&self.dir)? {
            store.next_fencing_token(&self.name)?;
            tracing::info!(volume = %self.name, holder = %own.address, token = own.token, "removed the lock file of an earlier run; its token no longer counts");
            lock_file::remove(&self.dir)?;
            return Ok(());
        }
        if let Err(err) = self.settle_lock_file() {
            tracing::warn!(volume = %self.name, error = %err, "honouring a legacy .nft-lock");
        }
        Ok(())
    }

    fn remove_lock_file(&self) {
        if let Err(err) = lock_file::remove(&self.dir) {
            tracing::warn!(volume = %self.name, error = %err, "could not remove the lock file");
        }
    }

    fn slot(&self) -> MutexGuard<'_, LockSlot> {
        self.lock
            .lock()
            .expect("lock slot mutex is never poisoned: no code panics while holding it")
    }

    fn legacy_cache(&self) -> MutexGuard<'_, Option<LegacyLockFile>> {
        self.legacy
            .lock()
            .expect("legacy lock mutex is never poisoned: no code panics while holding it")
    }

    /// Brings the live tree to the head if an earlier application of a
    /// version failed (a full disk), so a new commit starts from a live
    /// tree equal to the head.
    ///
    /// # Errors
    ///
    /// Fails on store or file-system errors.
    pub fn finish_interrupted(&self, store: &dyn Store) -> Result<()> {
        let head = store.head(&self.name)?.unwrap_or(0);
        if store.applied(&self.name)? >= head {
            return Ok(());
        }
        tracing::warn!(volume = %self.name, head, "finishing an earlier failed update of the live tree");
        self.reconcile(store)?;
        store.set_applied(&self.name, head)?;
        Ok(())
    }

    fn reconcile(&self, store: &dyn Store) -> Result<()> {
        let head = store.head_manifest(&self.name)?;
        let scan = self.scan_cached()?;
        self.remove_temp_files(&scan.temp_files);
        let (changed, deleted) = ChangeSet::between(&scan.manifest, &head).into_parts();
        self.apply(store, &changed, &deleted)
    }

    /// Scans the whole live tree, reading only files whose stat key changed
    /// since the last full scan, and remembers the digests for the next one.
    fn scan_cached(&self) -> Result<Scan> {
        let mut digests = self
            .digests
            .lock()
            .expect("digest cache mutex is never poisoned: no code panics while holding it");
        let scan = self.dir.scan(self.limits, |path, key| {
            digests
                .get(path)
                .filter(|(cached, _)| cached == key)
                .map(|(_, digest)| *digest)
        })?;

        digests.clear();
        for (path, key) in &scan.stat_keys {
            if let Some(digest) = scan.manifest.get(path).and_then(|entry| entry.digest) {
                digests.insert(path.clone(), (*key, digest));
            }
        }
        Ok(scan)
    }

    /// Scans the live tree and records its difference from `base` as one
    /// version (always, for an import, even of an empty tree).
    fn record_local(
        &self,
        store: &dyn Store,
        source: OriginSource,
        base: &Manifest,
    ) -> Result<VersionRecord> {
        let scan = self.scan_cached()?;
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
            fencing_token: None,
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

#[cfg(test)]
mod tests {
    use rfs_core::fsx::ScanLimits;

    use super::*;
    use crate::grants::Peer;
    use crate::store::RedbStore;

    const LEASE: Duration = Duration::from_secs(30);
    const LEGACY_MAX_AGE: Duration = Duration::from_secs(600);

    fn holder(addr: &str) -> Holder {
        Holder {
            peer: Peer {
                addr: addr.parse().unwrap(),
                key_hash: None,
            },
            host_name: "fw1".into(),
            process_id: 42,
        }
    }

    fn volume_and_store(dir: &std::path::Path) -> (Volume, RedbStore) {
        let live = VolumeDir::create(&dir.join("local")).unwrap();
        let volume = Volume::new("local".into(), live, ScanLimits::default(), LEGACY_MAX_AGE);
        let store = RedbStore::open(&dir.join("rfsd.redb")).unwrap();
        (volume, store)
    }

    #[test]
    fn a_full_scan_reads_only_files_changed_since_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let (volume, _store) = volume_and_store(dir.path());
        let local = dir.path().join("local");
        std::fs::write(local.join("world"), b"w").unwrap();
        std::fs::write(local.join("key_a"), b"a").unwrap();

        let first = volume.scan_cached().unwrap();
        let unchanged = volume.scan_cached().unwrap();
        std::fs::write(local.join("key_a"), b"changed").unwrap();
        let after_edit = volume.scan_cached().unwrap();

        assert_eq!(
            (first.hashed, unchanged.hashed, after_edit.hashed),
            (2, 0, 1)
        );
        assert_eq!(first.manifest, unchanged.manifest);
        assert_ne!(unchanged.manifest, after_edit.manifest);
    }

    #[tokio::test]
    async fn a_refused_grant_spends_no_token_so_the_holder_stays_current() {
        let dir = tempfile::tempdir().unwrap();
        let (volume, store) = volume_and_store(dir.path());
        let held = volume
            .grant_lock(&store, holder("127.0.0.2"), LEASE)
            .unwrap();

        let refused = volume.grant_lock(&store, holder("127.0.0.5"), LEASE);

        assert!(matches!(refused, Err(ServiceError::LockHeld(_))));
        assert_eq!(store.next_fencing_token("local").unwrap(), held.token + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_lets_the_next_client_in_and_the_sweep_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (volume, store) = volume_and_store(dir.path());
        let first = volume
            .grant_lock(&store, holder("127.0.0.2"), LEASE)
            .unwrap();
        let lock_file = dir.path().join("local/.nft-lock");
        assert!(lock_file.exists());

        tokio::time::advance(LEASE + Duration::from_secs(1)).await;
        volume.sweep_lock();
        let file_after_expiry = lock_file.exists();
        let second = volume
            .grant_lock(&store, holder("127.0.0.5"), LEASE)
            .unwrap();

        assert!(!file_after_expiry, "the sweep left the expired lock's file");
        assert_eq!(second.token, first.token + 1);
        assert!(volume.release_lock(first.token).is_none());
        assert!(matches!(volume.lock_state(), LockState::Held(held) if held.token == second.token));
    }

    #[tokio::test]
    async fn a_legacy_lock_is_honoured_until_too_old_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (volume, store) = volume_and_store(dir.path());
        let lock_file = dir.path().join("local/.nft-lock");
        std::fs::write(&lock_file, b"held by the vendor's tool\n").unwrap();

        let refused = volume.grant_lock(&store, holder("127.0.0.2"), LEASE);
        let shown = volume.lock_state();
        let aged = SystemTime::now() - LEGACY_MAX_AGE - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&lock_file)
            .unwrap()
            .set_modified(aged)
            .unwrap();
        volume.sweep_lock();
        let granted = volume.grant_lock(&store, holder("127.0.0.2"), LEASE);

        let Err(ServiceError::LockHeld(message)) = refused else {
            panic!("expected a held lock, got {refused:?}")
        };
        assert!(message.contains("unknown legacy holder"), "{message}");
        assert!(matches!(shown, LockState::Legacy(_)));
        assert_eq!(granted.unwrap().token, 1, "the refusal spent a token");
        let content = std::fs::read_to_string(&lock_file).unwrap();
        assert!(content.starts_with("rfsd lock\n"), "{content}");
    }

    #[tokio::test]
    async fn clearing_a_grant_voids_its_token_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (volume, store) = volume_and_store(dir.path());
        let held = volume
            .grant_lock(&store, holder("127.0.0.2"), LEASE)
            .unwrap();

        let cleared = volume.clear_lock(&store).unwrap();
        let nothing = volume.clear_lock(&store).unwrap();

        assert!(matches!(cleared, Cleared::Grant(freed) if freed.token == held.token));
        assert!(matches!(nothing, Cleared::Nothing));
        assert!(!dir.path().join("local/.nft-lock").exists());
        assert_eq!(store.next_fencing_token("local").unwrap(), held.token + 2);
    }
}
