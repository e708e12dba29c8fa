//! `.nft-lock`, the on-disk sign of a volume's lock.
//!
//! The vendor's tools, and the operators who know them, look for this file.
//! rfsd writes it while a client holds the lock and removes it on release,
//! expiry and `clear-lock`. Its first line is [`MARKER`], so a restarted rfsd
//! (or `clear-lock` on a stopped one) recognises a file it wrote before as
//! its own; a file without it was written by another program and counts as
//! a legacy lock held by an unknown holder until it is older than
//! `legacy_lock_max_age`. The file is never part of a version: the path
//! rules ignore its name.
//!
//! Everything here is blocking file I/O through [`VolumeDir`], which never
//! follows a symlink.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rfs_core::fsx::{FileKind, FsError, VolumeDir};
use rfs_core::{LOCK_FILE_NAME, RelPath};

use crate::lock::Held;

/// The first line of every lock file rfsd writes.
pub const MARKER: &str = "rfsd lock";

/// The largest lock file rfsd reads to find out whose it is.
const MAX_LOCK_FILE: u64 = 64 * 1024;

/// What `.nft-lock` of a volume says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockFile {
    /// There is none.
    Absent,
    /// rfsd wrote it, in this run or an earlier one.
    Own(OwnLockFile),
    /// Another program wrote it.
    Legacy(LegacyLockFile),
}

/// The content of a lock file rfsd wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnLockFile {
    /// The holder's address.
    pub address: String,
    /// The holder's key hash, empty when it showed none.
    pub key_hash: String,
    /// The host name the holder reported.
    pub host_name: String,
    /// The process id the holder reported.
    pub process_id: u32,
    /// The fencing token of the grant.
    pub token: u64,
    /// When the lock was taken, seconds since the Unix epoch.
    pub since_unix: i64,
}

/// A lock file written by another program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyLockFile {
    /// Its modification time.
    pub modified: SystemTime,
}

impl LegacyLockFile {
    /// Returns how old the file is at `now` (zero for a time in the future).
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.modified).unwrap_or_default()
    }

    /// Returns whether rfsd still honours it at `now`: while it is not
    /// older than `max_age`.
    pub fn is_honoured(&self, now: SystemTime, max_age: Duration) -> bool {
        self.age(now) <= max_age
    }
}

impl OwnLockFile {
    /// Returns how long ago the lock was taken.
    pub fn age(&self, now: SystemTime) -> Duration {
        let since = UNIX_EPOCH + Duration::from_secs(self.since_unix.max(0) as u64);
        now.duration_since(since).unwrap_or_default()
    }
}

/// Returns the content rfsd writes for `held`.
pub fn render(held: &Held) -> String {
    let peer = &held.holder.peer;
    let key_hash = peer.key_hash.map_or("-".to_owned(), |hash| hash.to_hex());
    let since_unix = crate::timefmt::unix_secs(held.since);
    format!(
        "{MARKER}\naddress: {}\nkey_hash: {key_hash}\nhost: {}\npid: {}\ntoken: {}\n\
         since: {}\nsince_unix: {since_unix}\nrfsd_pid: {}\n",
        peer.addr,
        held.holder.host_name,
        held.holder.process_id,
        held.token,
        crate::timefmt::rfc3339(held.since),
        std::process::id(),
    )
}

/// Returns what the volume's lock file says.
///
/// Anything at the path that is not a regular file rfsd wrote (a symlink, a
/// directory, a file of another program) is a legacy lock, aged by its
/// modification time.
///
/// # Errors
///
/// Fails on I/O errors.
pub fn inspect(dir: &VolumeDir) -> Result<LockFile, FsError> {
    let path = path();
    let Some(stat) = dir.stat(&path)? else {
        return Ok(LockFile::Absent);
    };
    let modified = UNIX_EPOCH
        + Duration::from_nanos(u64::try_from(stat.key.mtime_ns.max(0)).unwrap_or(u64::MAX));
    let legacy = LockFile::Legacy(LegacyLockFile { modified });
    if stat.kind != FileKind::File || stat.key.size > MAX_LOCK_FILE {
        return Ok(legacy);
    }

    let content = match dir.read(&path) {
        Ok(content) => content,
        // Removed between the stat and the read.
        Err(err) if err.is_not_found() => return Ok(LockFile::Absent),
        Err(err) => return Err(err),
    };
    Ok(parse(&content).map_or(legacy, LockFile::Own))
}

/// Writes the lock file for `held`, unless a file is already there.
/// Returns `false` when one is: rfsd never replaces a lock file another
/// program created.
///
/// # Errors
///
/// Fails on I/O errors.
pub fn create(dir: &VolumeDir, held: &Held) -> Result<bool, FsError> {
    let staged = dir.stage(&path(), render(held).as_bytes(), 0o644)?;
    dir.install_new(staged)
}

/// Removes the lock file, whoever wrote it. Returns `false` when there was
/// none.
///
/// # Errors
///
/// Fails on I/O errors, or when the path is a directory.
pub fn remove(dir: &VolumeDir) -> Result<bool, FsError> {
    dir.remove_file(&path())
}

/// Returns the content of a lock file rfsd wrote, or `None` for any other.
fn parse(content: &[u8]) -> Option<OwnLockFile> {
    let text = std::str::from_utf8(content).ok()?;
    let mut lines = text.lines();
    if lines.next()? != MARKER {
        return None;
    }

    let mut own = OwnLockFile::default();
    for line in lines {
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        match key {
            "address" => own.address = value.to_owned(),
            "key_hash" if value != "-" => own.key_hash = value.to_owned(),
            "host" => own.host_name = value.to_owned(),
            "pid" => own.process_id = value.parse().unwrap_or(0),
            "token" => own.token = value.parse().unwrap_or(0),
            "since_unix" => own.since_unix = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(own)
}

fn path() -> RelPath {
    RelPath::new(LOCK_FILE_NAME).expect("the lock file name is a valid path")
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use tokio::time::Instant;

    use super::*;
    use crate::grants::Peer;
    use crate::lock::Holder;

    fn held(token: u64) -> Held {
        Held {
            holder: Holder {
                peer: Peer {
                    addr: "127.0.0.2".parse().unwrap(),
                    key_hash: None,
                },
                host_name: "fw1".into(),
                process_id: 42,
            },
            token,
            expires: Instant::now(),
            since: SystemTime::now(),
        }
    }

    fn set_age(dir: &std::path::Path, age: Duration) {
        let file = File::options()
            .write(true)
            .open(dir.join(LOCK_FILE_NAME))
            .unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn a_file_rfsd_wrote_is_recognised_as_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let volume = VolumeDir::open(dir.path()).unwrap();

        assert!(create(&volume, &held(7)).unwrap());
        // A restarted rfsd has nothing but the file to go by.
        let reopened = VolumeDir::open(dir.path()).unwrap();
        let found = inspect(&reopened).unwrap();

        let LockFile::Own(own) = found else {
            panic!("expected rfsd's own lock file, got {found:?}")
        };
        assert_eq!(own.token, 7);
        assert_eq!(own.address, "127.0.0.2");
        assert_eq!((own.host_name.as_str(), own.process_id), ("fw1", 42));
        assert!(own.age(SystemTime::now()) < Duration::from_secs(60));
    }

    #[test]
    fn a_file_another_program_wrote_is_a_legacy_lock_aged_by_its_mtime() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE_NAME), b"locked by fw3\n").unwrap();
        set_age(dir.path(), Duration::from_secs(11 * 60));
        let volume = VolumeDir::open(dir.path()).unwrap();

        let found = inspect(&volume).unwrap();

        let LockFile::Legacy(legacy) = found else {
            panic!("expected a legacy lock, got {found:?}")
        };
        let now = SystemTime::now();
        assert!(legacy.age(now) >= Duration::from_secs(11 * 60));
        assert!(!legacy.is_honoured(now, Duration::from_secs(10 * 60)));
        assert!(legacy.is_honoured(now, Duration::from_secs(12 * 60)));
    }

    #[test]
    fn rfsd_never_replaces_a_legacy_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE_NAME), b"").unwrap();
        let volume = VolumeDir::open(dir.path()).unwrap();

        let created = create(&volume, &held(1)).unwrap();

        assert!(!created);
        assert!(matches!(inspect(&volume).unwrap(), LockFile::Legacy(_)));
    }

    #[test]
    fn a_symlink_named_like_the_lock_file_is_a_legacy_lock_and_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, format!("{MARKER}\ntoken: 3\n")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(LOCK_FILE_NAME)).unwrap();
        let volume = VolumeDir::open(dir.path()).unwrap();

        let found = inspect(&volume).unwrap();
        let removed = remove(&volume).unwrap();

        assert!(matches!(found, LockFile::Legacy(_)), "{found:?}");
        assert!(removed);
        assert!(target.exists(), "removing the link removed its target");
    }
}
