//! Crash-safe replacement of rfs-sync's own files (configuration, sync
//! state, client key), which live outside the synced directory.
//!
//! Each file is written to a temporary name in the same directory, flushed,
//! renamed over the old one and the directory flushed, so a crash leaves
//! either the old or the new file, never a torn one.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// Replaces the file at `path` with `content`, readable only as `mode`
/// allows, durably.
///
/// # Errors
///
/// Fails when the directory is missing or any write, flush or rename fails.
pub(crate) fn write_atomically(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));

    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temp)
        .with_context(|| format!("creating {}", temp.display()))?;
    // The mode given to open is reduced by the umask; state it explicitly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", temp.display()))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temp.display()))?;
    drop(file);

    fs::rename(&temp, path)
        .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))?;
    sync_dir(dir)
}

/// Creates `path` and its missing parents, the last one with mode 0700.
///
/// # Errors
///
/// Fails when a directory cannot be created.
pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating directory {}", path.display()))
}

/// Removes the file at `path`; a missing file is not an error. Returns
/// whether something was removed.
///
/// # Errors
///
/// Fails on other I/O errors.
pub(crate) fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).with_context(|| format!("removing {}", path.display())),
    }
}

/// Flushes the directory at `dir`, making renames and removals in it
/// durable.
///
/// # Errors
///
/// Fails when the directory cannot be opened or flushed.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .with_context(|| format!("flushing directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"old").unwrap();

        write_atomically(&path, b"new", 0o600).unwrap();

        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
