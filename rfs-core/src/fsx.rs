//! File access inside a volume that never follows a symlink.
//!
//! Every read, write, rename and delete under a volume's root, on the server
//! and in the client, goes through [`VolumeDir`]. Paths are resolved relative
//! to an open directory handle with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, or, where the kernel lacks `openat2`, one component
//! at a time with `O_NOFOLLOW`. A symlink planted inside a volume therefore
//! can neither redirect a write outside it nor be served as content. The
//! root itself may be a symlink: that is the operator's choice, not a
//! client's.
//!
//! Writes are staged: content goes to a temporary file next to its target,
//! the caller makes the batch durable (one `syncfs`), renames each file into
//! place and then syncs the directories.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags};

use crate::digest::Digest;
use crate::entry::{Entry, MODE_MASK, StatKey};
use crate::manifest::Manifest;
use crate::path::{PathError, RelPath, TEMP_PREFIX, is_ignored_name};

/// The default largest file a volume may hold: 64 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// The default largest number of entries a volume may hold.
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

/// Set once `openat2` turned out to be missing, so later calls go straight
/// to the component-wise walk.
static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// A failure of file access inside a volume.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// An I/O call failed.
    #[error("{op} {path:?}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The path it was applied to, relative to the volume root.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The path, or a directory on the way to it, is a symlink.
    #[error("{0:?} is or passes through a symlink, which is never followed")]
    Symlink(String),
    /// The path names something that is not of the kind the call needs.
    #[error("{path:?} is not a {expected}")]
    WrongKind {
        /// The path, relative to the volume root.
        path: String,
        /// What the call needed.
        expected: &'static str,
    },
    /// A file is larger than the configured limit.
    #[error("{path:?} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The path, relative to the volume root.
        path: String,
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The tree holds more entries than the configured limit.
    #[error("volume holds more than {0} entries")]
    TooManyEntries(usize),
}

impl FsError {
    fn io(op: &'static str, path: impl ToString, source: impl Into<io::Error>) -> Self {
        let path = path.to_string();
        let source = source.into();
        if source.raw_os_error() == Some(libc_eloop()) {
            return FsError::Symlink(path);
        }
        FsError::Io { op, path, source }
    }

    /// Returns whether the error means that nothing is at the path: it, or
    /// a directory on the way, does not exist, or a component on the way is
    /// not a directory.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory))
    }
}

/// The result type of this module.
pub type Result<T> = std::result::Result<T, FsError>;

/// What `stat` says of one path, without following a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// The kind of the file system object.
    pub kind: FileKind,
    /// Permission bits.
    pub mode: u32,
    /// The key that tells whether cached content is still current.
    pub key: StatKey,
}

/// The kind of a file system object found in a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link: never followed, served or written.
    Symlink,
    /// A device, socket or FIFO: never served or written.
    Special,
}

/// Why a scan left something out of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A symbolic link.
    Symlink,
    /// A device, socket or FIFO.
    Special,
    /// A name that breaks the path rules.
    BadPath(PathError),
    /// A file over the size limit.
    TooLarge(u64),
}

/// Something a scan found and left out, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path relative to the volume root, lossily decoded.
    pub path: String,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// Limits that a scan enforces.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    /// Files larger than this are skipped and reported.
    pub max_file_size: u64,
    /// A tree with more entries than this fails the scan.
    pub max_entries: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        Self {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// The result of walking a volume.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Every file and directory found.
    pub manifest: Manifest,
    /// The stat key of every file, for a digest cache.
    pub stat_keys: Vec<(RelPath, StatKey)>,
    /// What was left out, and why.
    pub skipped: Vec<Skipped>,
    /// Staging files left behind by an interrupted write.
    pub temp_files: Vec<RelPath>,
    /// How many files were read and hashed (the rest came from the cache).
    pub hashed: usize,
}

/// A file written under a temporary name next to its target, waiting to be
/// renamed into place by [`VolumeDir::install`].
#[derive(Debug)]
pub struct Staged {
    target: RelPath,
    temp_name: String,
}

impl Staged {
    /// Returns the path the file will have once installed.
    pub fn target(&self) -> &RelPath {
        &self.target
    }
}

/// An open volume root through which all access to the tree goes.
#[derive(Debug)]
pub struct VolumeDir {
    root: PathBuf,
    fd: OwnedFd,
    group: Option<Gid>,
}

impl VolumeDir {
    /// Opens the directory at `root`.
    ///
    /// # Errors
    ///
    /// Fails when `root` does not exist or is not a directory.
    pub fn open(root: &Path) -> Result<Self> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(root, flags, Mode::empty())
            .map_err(|err| FsError::io("open", root.display(), err))?;
        Ok(Self {
            root: root.to_owned(),
            fd,
            group: None,
        })
    }

    /// Creates `root` (and its parents) if needed, then opens it.
    ///
    /// # Errors
    ///
    /// Fails when the directory cannot be created or opened.
    pub fn create(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)
            .map_err(|err| FsError::io("create directory", root.display(), err))?;
        Self::open(root)
    }

    /// Makes every file and directory this handle creates belong to `gid`.
    pub fn with_group(mut self, gid: Option<u32>) -> Self {
        self.group = gid.map(Gid::from_raw);
        self
    }

    /// Returns the path the volume was opened at.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns what is at `path`, or `None` when nothing is.
    ///
    /// # Errors
    ///
    /// Fails on I/O errors other than "not found", and when a directory on
    /// the way is a symlink.
    pub fn stat(&self, path: &RelPath) -> Result<Option<FileStat>> {
        let parent = match self.open_parent(path) {
            Ok(parent) => parent,
            Err(err) if err.is_not_found() => return Ok(None),
            Err(err) => return Err(err),
        };
        match rustix::fs::statat(&parent, path.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(file_stat(&stat))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(err) => Err(FsError::io("stat", path, err)),
        }
    }

    /// Returns the entry at `path` with its stat key, hashing the file only
    /// when `cached` has no digest for its current stat key. Returns `None`
    /// when nothing is there; symlinks and special files are errors.
    ///
    /// # Errors
    ///
    /// Fails on I/O errors and when the path is not a file or directory.
    pub fn entry(
        &self,
        path: &RelPath,
        cached: impl Fn(&RelPath, &StatKey) -> Option<Digest>,
    ) -> Result<Option<(Entry, Option<StatKey>)>> {
        let Some(stat) = self.stat(path)? else {
            return Ok(None);
        };
        match stat.kind {
            FileKind::Directory => Ok(Some((Entry::directory(path.clone(), stat.mode), None))),
            FileKind::File => {
                let digest = match cached(path, &stat.key) {
                    Some(digest) => digest,
                    None => self.hash_file(path)?.0,
                };
                let entry = Entry::file(path.clone(), stat.mode, stat.key.size, digest);
                Ok(Some((entry, Some(stat.key))))
            }
            FileKind::Symlink => Err(FsError::Symlink(path.to_string())),
            FileKind::Special => Err(FsError::WrongKind {
                path: path.to_string(),
                expected: "file or directory",
            }),
        }
    }

    /// Opens the regular file at `path` for reading.
    ///
    /// # Errors
    ///
    /// Fails when the path is missing, is a symlink or is not a regular file.
    pub fn open_file(&self, path: &RelPath) -> Result<File> {
        let parent = self.open_parent(path)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = rustix::fs::openat(&parent, path.file_name(), flags, Mode::empty())
            .map_err(|err| FsError::io("open", path, err))?;
        let stat = rustix::fs::fstat(&fd).map_err(|err| FsError::io("stat", path, err))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(FsError::WrongKind {
                path: path.to_string(),
                expected: "regular file",
            });
        }
        Ok(File::from(fd))
    }

    /// Returns the whole content of the file at `path`.
    ///
    /// # Errors
    ///
    /// Fails as [`VolumeDir::open_file`] does, or on a read error.
    pub fn read(&self, path: &RelPath) -> Result<Vec<u8>> {
        let mut file = self.open_file(path)?;
        let mut content = Vec::new();
        file.read_to_end(&mut content)
            .map_err(|err| FsError::io("read", path, err))?;
        Ok(content)
    }

    /// Returns the digest and size of the file at `path`.
    ///
    /// # Errors
    ///
    /// Fails as [`VolumeDir::open_file`] does, or on a read error.
    pub fn hash_file(&self, path: &RelPath) -> Result<(Digest, u64)> {
        let file = self.open_file(path)?;
        Digest::of_reader(file).map_err(|err| FsError::io("read", path, err))
    }

    /// Walks the whole volume and returns its manifest.
    ///
    /// Files whose stat key `cached` knows are not read again. Symlinks,
    /// special files, bad names and files over the size limit are left out
    /// and listed in [`Scan::skipped`]; ignored names (the lock file,
    /// staging files, conflict copies) are left out silently, except that
    /// staging files are listed in [`Scan::temp_files`].
    ///
    /// # Errors
    ///
    /// Fails on I/O errors and when the tree has too many entries.
    pub fn scan(
        &self,
        limits: ScanLimits,
        cached: impl Fn(&RelPath, &StatKey) -> Option<Digest>,
    ) -> Result<Scan> {
        let mut scan = Scan::default();
        let root = self
            .fd
            .try_clone()
            .map_err(|err| FsError::io("open", ".", err))?;
        self.scan_dir(root, None, limits, &cached, &mut scan)?;
        Ok(scan)
    }

    /// Creates the directory at `path` and any missing parents, with `mode`
    /// for each one created. Existing directories are left as they are.
    ///
    /// # Errors
    ///
    /// Fails when a component exists and is not a directory, or is a symlink.
    pub fn create_dir_all(&self, path: &RelPath, mode: u32) -> Result<()> {
        let mut current = self
            .fd
            .try_clone()
            .map_err(|err| FsError::io("open", ".", err))?;
        let mut so_far = String::new();
        for name in path.components() {
            if !so_far.is_empty() {
                so_far.push('/');
            }
            so_far.push_str(name);
            match rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(mode & MODE_MASK)) {
                Ok(()) => self.fix_new_dir(&current, name, mode, &so_far)?,
                Err(rustix::io::Errno::EXIST) => {}
                Err(err) => return Err(FsError::io("create directory", &so_far, err)),
            }
            current =
                open_dir_at(&current, name).map_err(|err| FsError::io("open", &so_far, err))?;
        }
        Ok(())
    }

    /// Writes `content` to a new temporary file next to `path`, with `mode`.
    /// Missing parent directories are created with mode 0755.
    ///
    /// The file is not yet durable: call [`VolumeDir::sync_filesystem`] for
    /// the batch before [`VolumeDir::install`].
    ///
    /// # Errors
    ///
    /// Fails on I/O errors or a symlink on the way.
    pub fn stage(&self, path: &RelPath, content: &[u8], mode: u32) -> Result<Staged> {
        let (staged, mut file) = self.stage_writer(path, mode)?;
        if let Err(err) = file.write_all(content) {
            self.discard(staged);
            return Err(FsError::io("write", path, err));
        }
        Ok(staged)
    }

    /// Creates a new temporary file next to `path` and returns it open for
    /// writing, so content can be streamed into it.
    ///
    /// # Errors
    ///
    /// Fails on I/O errors or a symlink on the way.
    pub fn stage_writer(&self, path: &RelPath, mode: u32) -> Result<(Staged, File)> {
        if let Some(parent) = path.parent() {
            self.create_dir_all(&parent, 0o755)?;
        }
        let parent = self.open_parent(path)?;
        let temp_name = format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>());
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(
            &parent,
            temp_name.as_str(),
            flags,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|err| FsError::io("create", path, err))?;

        // The mode is set explicitly so the process umask cannot change it.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & MODE_MASK))
            .map_err(|err| FsError::io("chmod", path, err))?;
        if let Some(group) = self.group {
            rustix::fs::fchown(&fd, None, Some(group))
                .map_err(|err| FsError::io("chown", path, err))?;
        }
        Ok((
            Staged {
                target: path.clone(),
                temp_name,
            },
            File::from(fd),
        ))
    }

    /// Renames a staged file into place, replacing what is there (a file or
    /// a symlink, never through it).
    ///
    /// # Errors
    ///
    /// Fails when the target is a directory or on I/O errors.
    pub fn install(&self, staged: Staged) -> Result<()> {
        let parent = self.open_parent(&staged.target)?;
        let name = staged.target.file_name();
        rustix::fs::renameat(&parent, staged.temp_name.as_str(), &parent, name)
            .map_err(|err| FsError::io("rename", &staged.target, err))
    }

    /// Renames a staged file into place only if nothing is there yet
    /// (`RENAME_NOREPLACE`). Returns `false`, and removes the staged file,
    /// when the target exists: whoever created it keeps it.
    ///
    /// # Errors
    ///
    /// Fails on I/O errors other than an existing target.
    pub fn install_new(&self, staged: Staged) -> Result<bool> {
        let parent = self.open_parent(&staged.target)?;
        let name = staged.target.file_name();
        let flags = rustix::fs::RenameFlags::NOREPLACE;
        match rustix::fs::renameat_with(&parent, staged.temp_name.as_str(), &parent, name, flags) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => {
                self.discard(staged);
                Ok(false)
            }
            Err(err) => {
                let target = staged.target.clone();
                self.discard(staged);
                Err(FsError::io("rename", &target, err))
            }
        }
    }

    /// Removes a staged file that will not be installed. Errors are ignored:
    /// a leftover staging file is removed by the next scan's caller.
    pub fn discard(&self, staged: Staged) {
        if let Ok(parent) = self.open_parent(&staged.target) {
            let _ = rustix::fs::unlinkat(&parent, staged.temp_name.as_str(), AtFlags::empty());
        }
    }

    /// Removes the file (or symlink) at `path`. Returns `false` when nothing
    /// was there.
    ///
    /// # Errors
    ///
    /// Fails when the path is a directory or on I/O errors.
    pub fn remove_file(&self, path: &RelPath) -> Result<bool> {
        let parent = match self.open_parent(path) {
            Ok(parent) => parent,
            Err(err) if err.is_not_found() => return Ok(false),
            Err(err) => return Err(err),
        };
        match rustix::fs::unlinkat(&parent, path.file_name(), AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(rustix::io::Errno::ISDIR) => Err(FsError::WrongKind {
                path: path.to_string(),
                expected: "file",
            }),
            Err(err) => Err(FsError::io("remove", path, err)),
        }
    }

    /// Removes the directory at `path` if it is empty. Returns `false` when
    /// it is not empty (it then stays) or not there.
    ///
    /// # Errors
    ///
    /// Fails on other I/O errors.
    pub fn remove_dir(&self, path: &RelPath) -> Result<bool> {
        let parent = match self.open_parent(path) {
            Ok(parent) => parent,
            Err(err) if err.is_not_found() => return Ok(false),
            Err(err) => return Err(err),
        };
        match rustix::fs::unlinkat(&parent, path.file_name(), AtFlags::REMOVEDIR) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTEMPTY) => Ok(false),
            Err(err) => Err(FsError::io("remove directory", path, err)),
        }
    }

    /// Renames the file at `path` to `new_name` in the same directory.
    ///
    /// # Errors
    ///
    /// Fails on I/O errors or a bad new name.
    pub fn rename_within(&self, path: &RelPath, new_name: &str) -> Result<RelPath> {
        let target = match path.parent() {
            Some(parent) => parent.join(new_name),
            None => RelPath::new(new_name),
        }
        .map_err(|err| FsError::io("rename", path, io::Error::other(err)))?;
        let parent = self.open_parent(path)?;
        rustix::fs::renameat(&parent, path.file_name(), &parent, new_name)
            .map_err(|err| FsError::io("rename", path, err))?;
        Ok(target)
    }

    /// Sets the permission bits (and the configured group) of the file or
    /// directory at `path`.
    ///
    /// # Errors
    ///
    /// Fails when the path is a symlink, missing, or on I/O errors.
    pub fn set_mode(&self, path: &RelPath, mode: u32) -> Result<()> {
        let parent = self.open_parent(path)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = rustix::fs::openat(&parent, path.file_name(), flags, Mode::empty())
            .map_err(|err| FsError::io("open", path, err))?;
        self.fix_mode(&fd, mode, path.as_str())
    }

    /// Flushes the directory at `path` (the root for `None`) to stable
    /// storage, making renames and removals in it durable.
    ///
    /// # Errors
    ///
    /// Fails when the directory cannot be opened or flushed.
    pub fn sync_dir(&self, path: Option<&RelPath>) -> Result<()> {
        let name = path.map_or(".", RelPath::as_str);
        let fd = match path {
            None => self
                .fd
                .try_clone()
                .map_err(|err| FsError::io("open", name, err))?,
            Some(path) => self.resolve(path, OFlags::RDONLY | OFlags::DIRECTORY)?,
        };
        rustix::fs::fsync(&fd).map_err(|err| FsError::io("fsync", name, err))
    }

    /// Flushes the whole file system that holds the volume (`syncfs`): one
    /// call makes a whole batch of staged files durable.
    ///
    /// # Errors
    ///
    /// Fails when the flush fails, for example on a full or failing disk.
    pub fn sync_filesystem(&self) -> Result<()> {
        rustix::fs::syncfs(&self.fd).map_err(|err| FsError::io("syncfs", ".", err))
    }

    fn scan_dir(
        &self,
        dir_fd: OwnedFd,
        dir_path: Option<&RelPath>,
        limits: ScanLimits,
        cached: &impl Fn(&RelPath, &StatKey) -> Option<Digest>,
        scan: &mut Scan,
    ) -> Result<()> {
        let shown = dir_path.map_or(".", RelPath::as_str).to_owned();
        let dir = rustix::fs::Dir::read_from(&dir_fd)
            .map_err(|err| FsError::io("read directory", &shown, err))?;
        let mut names = Vec::new();
        for dir_entry in dir {
            let dir_entry = dir_entry.map_err(|err| FsError::io("read directory", &shown, err))?;
            let name = dir_entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        names.sort();

        for name in names {
            self.scan_name(&dir_fd, dir_path, &name, limits, cached, scan)?;
        }
        Ok(())
    }

    fn scan_name(
        &self,
        dir_fd: &OwnedFd,
        dir_path: Option<&RelPath>,
        name: &[u8],
        limits: ScanLimits,
        cached: &impl Fn(&RelPath, &StatKey) -> Option<Digest>,
        scan: &mut Scan,
    ) -> Result<()> {
        let shown = match dir_path {
            Some(dir) => format!("{dir}/{}", String::from_utf8_lossy(name)),
            None => String::from_utf8_lossy(name).into_owned(),
        };
        let path = match std::str::from_utf8(name)
            .map_err(|_| PathError::NotUtf8)
            .and_then(|name| {
                if name.contains('/') {
                    return Err(PathError::BadComponent(name.to_owned()));
                }
                RelPath::new(shown.clone())
            }) {
            Ok(path) => path,
            Err(err) => {
                scan.skipped.push(Skipped {
                    path: shown,
                    reason: SkipReason::BadPath(err),
                });
                return Ok(());
            }
        };
        if is_ignored_name(path.file_name()) {
            if path.file_name().starts_with(TEMP_PREFIX) {
                scan.temp_files.push(path);
            }
            return Ok(());
        }

        let stat =
            match rustix::fs::statat(dir_fd, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => file_stat(&stat),
                // Removed between listing and stat: it is simply not there.
                Err(rustix::io::Errno::NOENT) => return Ok(()),
                Err(err) => return Err(FsError::io("stat", &path, err)),
            };
        if scan.manifest.len() >= limits.max_entries {
            return Err(FsError::TooManyEntries(limits.max_entries));
        }

        match stat.kind {
            FileKind::Symlink => skip(scan, path, SkipReason::Symlink),
            FileKind::Special => skip(scan, path, SkipReason::Special),
            FileKind::File if stat.key.size > limits.max_file_size => {
                skip(scan, path, SkipReason::TooLarge(stat.key.size));
            }
            FileKind::File => {
                let digest = match cached(&path, &stat.key) {
                    Some(digest) => digest,
                    None => {
                        scan.hashed += 1;
                        let file = self.open_file(&path)?;
                        Digest::of_reader(file)
                            .map_err(|err| FsError::io("read", &path, err))?
                            .0
                    }
                };
                scan.stat_keys.push((path.clone(), stat.key));
                scan.manifest
                    .insert(Entry::file(path, stat.mode, stat.key.size, digest));
            }
            FileKind::Directory => {
                let child = open_dir_at(dir_fd, path.file_name())
                    .map_err(|err| FsError::io("open", &path, err))?;
                scan.manifest
                    .insert(Entry::directory(path.clone(), stat.mode));
                self.scan_dir(child, Some(&path), limits, cached, scan)?;
            }
        }
        Ok(())
    }

    /// Opens the directory that holds `path`.
    fn open_parent(&self, path: &RelPath) -> Result<OwnedFd> {
        match path.parent() {
            None => self
                .fd
                .try_clone()
                .map_err(|err| FsError::io("open", ".", err)),
            Some(parent) => self.resolve(&parent, OFlags::RDONLY | OFlags::DIRECTORY),
        }
    }

    /// Opens `path` beneath the root without following any symlink.
    fn resolve(&self, path: &RelPath, flags: OFlags) -> Result<OwnedFd> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if !OPENAT2_MISSING.load(Ordering::Relaxed) {
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.fd, path.as_str(), flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(fd),
                // Kernels before 5.6, and some sandboxes, lack openat2.
                Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
                    OPENAT2_MISSING.store(true, Ordering::Relaxed);
                }
                Err(err) => return Err(FsError::io("open", path, err)),
            }
        }
        self.resolve_by_components(path, flags)
    }

    fn resolve_by_components(&self, path: &RelPath, flags: OFlags) -> Result<OwnedFd> {
        let mut current = self
            .fd
            .try_clone()
            .map_err(|err| FsError::io("open", ".", err))?;
        let components: Vec<&str> = path.components().collect();
        let (last, dirs) = components
            .split_last()
            .expect("a RelPath has at least one component");
        for name in dirs {
            current = open_dir_at(&current, name).map_err(|err| FsError::io("open", path, err))?;
        }
        rustix::fs::openat(&current, *last, flags, Mode::empty())
            .map_err(|err| FsError::io("open", path, err))
    }

    fn fix_new_dir(&self, parent: &OwnedFd, name: &str, mode: u32, shown: &str) -> Result<()> {
        let fd = open_dir_at(parent, name).map_err(|err| FsError::io("open", shown, err))?;
        self.fix_mode(&fd, mode, shown)
    }

    fn fix_mode(&self, fd: &OwnedFd, mode: u32, shown: &str) -> Result<()> {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & MODE_MASK))
            .map_err(|err| FsError::io("chmod", shown, err))?;
        if let Some(group) = self.group {
            rustix::fs::fchown(fd, None, Some(group))
                .map_err(|err| FsError::io("chown", shown, err))?;
        }
        Ok(())
    }
}

impl AsFd for VolumeDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn open_dir_at(dir: &OwnedFd, name: &str) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, name, flags, Mode::empty())
}

fn skip(scan: &mut Scan, path: RelPath, reason: SkipReason) {
    scan.skipped.push(Skipped {
        path: path.into_string(),
        reason,
    });
}

// The stat field types differ between targets; the casts are no-ops only on some.
#[allow(clippy::unnecessary_cast)]
fn file_stat(stat: &rustix::fs::Stat) -> FileStat {
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => FileKind::File,
        FileType::Directory => FileKind::Directory,
        FileType::Symlink => FileKind::Symlink,
        _ => FileKind::Special,
    };
    let nanos = |secs: i64, nsecs: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsecs);
    let key = StatKey {
        size: u64::try_from(stat.st_size).unwrap_or(0),
        mtime_ns: nanos(stat.st_mtime as i64, stat.st_mtime_nsec as i64),
        ctime_ns: nanos(stat.st_ctime as i64, stat.st_ctime_nsec as i64),
        inode: stat.st_ino as u64,
        device: stat.st_dev as u64,
    };
    FileStat {
        kind,
        mode: stat.st_mode as u32 & MODE_MASK,
        key,
    }
}

fn libc_eloop() -> i32 {
    rustix::io::Errno::LOOP.raw_os_error()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn rel(path: &str) -> RelPath {
        RelPath::new(path).unwrap()
    }

    fn no_cache(_: &RelPath, _: &StatKey) -> Option<Digest> {
        None
    }

    #[test]
    fn staged_files_appear_only_after_install() {
        let dir = tempfile::tempdir().unwrap();
        let volume = VolumeDir::open(dir.path()).unwrap();

        let staged = volume
            .stage(&rel("sub/key_a"), b"secret-ish", 0o640)
            .unwrap();
        assert!(!dir.path().join("sub/key_a").exists());
        volume.sync_filesystem().unwrap();
        volume.install(staged).unwrap();

        let written = dir.path().join("sub/key_a");
        assert_eq!(std::fs::read(&written).unwrap(), b"secret-ish");
        let mode = std::fs::metadata(&written).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn writes_through_a_symlinked_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), dir.path().join("escape")).unwrap();
        let volume = VolumeDir::open(dir.path()).unwrap();

        let result = volume.stage(&rel("escape/key_a"), b"x", 0o644);

        assert!(result.is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn reading_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("target"), b"t").unwrap();
        symlink("target", dir.path().join("link")).unwrap();
        let volume = VolumeDir::open(dir.path()).unwrap();

        assert!(volume.read(&rel("link")).is_err());
        assert_eq!(volume.read(&rel("target")).unwrap(), b"t");
    }

    #[test]
    fn scan_lists_files_and_skips_symlinks_and_ignored_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("world"), b"w").unwrap();
        std::fs::create_dir(dir.path().join("cards")).unwrap();
        std::fs::write(dir.path().join("cards/card_1"), b"c").unwrap();
        std::fs::write(dir.path().join(".nft-lock"), b"held").unwrap();
        std::fs::write(dir.path().join(".rfs-tmp-0001"), b"partial").unwrap();
        symlink("/etc/passwd", dir.path().join("sneaky")).unwrap();
        let volume = VolumeDir::open(dir.path()).unwrap();

        let scan = volume.scan(ScanLimits::default(), no_cache).unwrap();

        let paths: Vec<&str> = scan.manifest.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["cards", "cards/card_1", "world"]);
        assert_eq!(scan.skipped.len(), 1);
        assert_eq!(scan.skipped[0].reason, SkipReason::Symlink);
        assert_eq!(scan.temp_files, vec![rel(".rfs-tmp-0001")]);
        assert_eq!(
            scan.manifest.get(&rel("world")).unwrap().digest,
            Some(Digest::of(b"w"))
        );
    }

    #[test]
    fn cached_digests_spare_the_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("world"), b"w").unwrap();
        let volume = VolumeDir::open(dir.path()).unwrap();
        let first = volume.scan(ScanLimits::default(), no_cache).unwrap();
        let (_, key) = first.stat_keys[0];

        let second = volume
            .scan(ScanLimits::default(), |_, k| {
                (*k == key).then(|| Digest::of(b"w"))
            })
            .unwrap();

        assert_eq!(first.hashed, 1);
        assert_eq!(second.hashed, 0);
        assert_eq!(first.manifest, second.manifest);
    }

    #[test]
    fn oversized_files_are_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![0u8; 100]).unwrap();
        let volume = VolumeDir::open(dir.path()).unwrap();
        let limits = ScanLimits {
            max_file_size: 10,
            ..ScanLimits::default()
        };

        let scan = volume.scan(limits, no_cache).unwrap();

        assert!(scan.manifest.is_empty());
        assert_eq!(scan.skipped[0].reason, SkipReason::TooLarge(100));
    }

    #[test]
    fn non_empty_directories_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"f").unwrap();
        let volume = VolumeDir::open(dir.path()).unwrap();

        assert!(!volume.remove_dir(&rel("d")).unwrap());
        assert!(volume.remove_file(&rel("d/f")).unwrap());
        assert!(volume.remove_dir(&rel("d")).unwrap());
    }

    #[test]
    fn install_new_never_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("held"), b"theirs").unwrap();
        let volume = VolumeDir::open(dir.path()).unwrap();

        let refused = volume.install_new(volume.stage(&rel("held"), b"ours", 0o644).unwrap());
        let created = volume.install_new(volume.stage(&rel("free"), b"ours", 0o644).unwrap());

        assert!(!refused.unwrap());
        assert!(created.unwrap());
        assert_eq!(std::fs::read(dir.path().join("held")).unwrap(), b"theirs");
        assert_eq!(std::fs::read(dir.path().join("free")).unwrap(), b"ours");
        let names = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(names, 2, "the refused staging file was left behind");
    }
}
