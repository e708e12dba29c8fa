//! Writing an update's decisions to the local tree, so that a crash at any
//! moment leaves either the old or the new state of each file and never a
//! half-written file under its real name.
//!
//! The order is: download every object into staging files and verify it;
//! one `syncfs` makes them durable; keep conflict copies aside; remove
//! deleted files, then deleted directories deepest first; create
//! directories parents first; rename the staged files into place; set the
//! directory modes; flush each touched directory. The caller writes the new
//! base only after this returns, so a crash before then makes the next run
//! redo the update, finding what was already done equal to the server.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use rfs_core::fsx::{Staged, VolumeDir};
use rfs_core::path::CONFLICT_INFIX;
use rfs_core::{Digest, Entry, EntryKind, RelPath, StatKey};

use crate::remote::Remote;
use crate::transfer::{self, Wanted};
use crate::update::plan::{Item, Local, Plan};

/// What applying a plan did besides what the plan says.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Local files kept aside under conflict names (`--force-remote`).
    pub(crate) kept_copies: Vec<RelPath>,
    /// Directories the server deleted that stay because they hold files.
    pub(crate) kept_dirs: Vec<RelPath>,
    /// The `stat` key of each installed file, for the digest cache.
    pub(crate) installed: Vec<(RelPath, StatKey)>,
}

/// The work of one update, sorted into the steps that do it.
#[derive(Debug, Default)]
struct Steps<'a> {
    /// Files to write now; their parents are directories or absent.
    files: Vec<&'a Entry>,
    /// Files under a path that turns from a file into a directory: written
    /// once that directory exists.
    later_files: Vec<&'a Entry>,
    copies: Vec<&'a RelPath>,
    remove_files: Vec<&'a RelPath>,
    remove_dirs: Vec<&'a RelPath>,
    dirs: Vec<&'a Entry>,
}

/// Applies every decision of `plan` that writes, returning what was done.
///
/// # Errors
///
/// Fails with exit code 7, having replaced nothing, when downloaded content
/// does not match its digest; fails on I/O errors.
pub(crate) async fn run(remote: &mut Remote, volume: &VolumeDir, plan: &Plan) -> Result<Applied> {
    let steps = Steps::sort(plan);
    let mut staged = transfer::download(remote, volume, &wanted(&steps.files)).await?;
    let result = finish(remote, volume, &steps, &mut staged).await;
    for file in staged {
        volume.discard(file);
    }
    let applied = result?;

    let touched = plan.applied().map(|item| &item.path);
    sync_parents(volume, touched.chain(applied.kept_copies.iter()))?;
    Ok(applied)
}

async fn finish(
    remote: &mut Remote,
    volume: &VolumeDir,
    steps: &Steps<'_>,
    staged: &mut Vec<Staged>,
) -> Result<Applied> {
    let mut applied = Applied::default();
    crate::crash::point("after-staging");
    if !staged.is_empty() {
        volume
            .sync_filesystem()
            .context("flushing downloaded files")?;
    }
    applied.kept_copies = keep_copies(volume, &steps.copies)?;
    remove(volume, steps, &mut applied)?;
    create_dirs(volume, &steps.dirs)?;

    if !steps.later_files.is_empty() {
        let later = transfer::download(remote, volume, &wanted(&steps.later_files)).await?;
        staged.extend(later);
        volume
            .sync_filesystem()
            .context("flushing downloaded files")?;
    }
    // Popping keeps the files not yet installed in `staged`, where the
    // caller discards them if an install fails.
    let half = staged.len() / 2;
    while let Some(file) = staged.pop() {
        if staged.len() == half {
            crate::crash::point("mid-rename");
        }
        let path = file.target().clone();
        volume
            .install(file)
            .with_context(|| format!("installing {path}"))?;
        if let Some(stat) = volume
            .stat(&path)
            .with_context(|| format!("examining {path}"))?
        {
            applied.installed.push((path, stat.key));
        }
    }
    for dir in &steps.dirs {
        volume
            .set_mode(&dir.path, dir.mode)
            .with_context(|| format!("setting the mode of {}", dir.path))?;
    }
    Ok(applied)
}

impl<'a> Steps<'a> {
    fn sort(plan: &'a Plan) -> Self {
        let mut steps = Steps::default();
        let mut becoming_dirs = BTreeSet::new();
        for item in plan.applied() {
            steps.sort_local(item);
            let local_kind = item.local.entry().map(|entry| entry.kind);
            match &item.remote {
                Some(entry) if entry.is_file() => steps.files.push(entry),
                Some(entry) => {
                    if local_kind == Some(EntryKind::File) {
                        becoming_dirs.insert(&item.path);
                    }
                    steps.dirs.push(entry);
                }
                None => {}
            }
        }

        let (later, now) = std::mem::take(&mut steps.files)
            .into_iter()
            .partition(|entry| ancestors(&entry.path).any(|dir| becoming_dirs.contains(&dir)));
        steps.files = now;
        steps.later_files = later;
        steps.dirs.sort_by_key(|entry| entry.path.depth());
        steps
            .remove_dirs
            .sort_by_key(|path| std::cmp::Reverse(path.depth()));
        steps
    }

    /// Sorts what must happen to the local state of an applied path before
    /// the server's state can take its place.
    fn sort_local(&mut self, item: &'a Item) {
        let Local::Present { entry, .. } = &item.local else {
            return;
        };
        let remote_kind = item.remote.as_ref().map(|remote| remote.kind);
        match entry.kind {
            EntryKind::File if item.forced => self.copies.push(&item.path),
            EntryKind::File if remote_kind != Some(EntryKind::File) => {
                self.remove_files.push(&item.path);
            }
            EntryKind::Directory if remote_kind != Some(EntryKind::Directory) => {
                self.remove_dirs.push(&item.path);
            }
            _ => {}
        }
    }
}

/// Groups file entries by digest, so each object is downloaded once.
fn wanted(files: &[&Entry]) -> Vec<Wanted> {
    let mut by_digest: std::collections::BTreeMap<Digest, Wanted> = Default::default();
    for entry in files {
        let Some(digest) = entry.digest else { continue };
        by_digest
            .entry(digest)
            .or_insert_with(|| Wanted {
                digest,
                size: entry.size,
                targets: Vec::new(),
            })
            .targets
            .push((entry.path.clone(), entry.mode));
    }
    by_digest.into_values().collect()
}

fn ancestors(path: &RelPath) -> impl Iterator<Item = RelPath> {
    std::iter::successors(path.parent(), RelPath::parent)
}

/// Renames local files that `--force-remote` replaces to
/// `NAME.rfs-conflict-<UTC time>`, returning the new paths.
fn keep_copies(volume: &VolumeDir, paths: &[&RelPath]) -> Result<Vec<RelPath>> {
    let stamp = conflict_stamp();
    let mut kept = Vec::with_capacity(paths.len());
    for path in paths {
        let name = free_conflict_name(volume, path, &stamp)?;
        let copy = volume
            .rename_within(path, &name)
            .with_context(|| format!("keeping {path} aside as {name}"))?;
        tracing::info!(path = %path, copy = %copy, "kept local file aside");
        kept.push(copy);
    }
    Ok(kept)
}

fn free_conflict_name(volume: &VolumeDir, path: &RelPath, stamp: &str) -> Result<String> {
    let base = format!("{}{CONFLICT_INFIX}{stamp}", path.file_name());
    for attempt in 0..100u32 {
        let name = match attempt {
            0 => base.clone(),
            n => format!("{base}-{n}"),
        };
        let candidate = match path.parent() {
            Some(parent) => parent.join(&name),
            None => RelPath::new(name.clone()),
        }
        .with_context(|| format!("naming a conflict copy of {path}"))?;
        if volume.stat(&candidate)?.is_none() {
            return Ok(name);
        }
    }
    anyhow::bail!("too many conflict copies of {path}")
}

/// Returns the current UTC time as `YYYYmmddTHHMMSSZ`.
fn conflict_stamp() -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(format)
        .unwrap_or_else(|_| "unknown-time".to_owned())
}

fn remove(volume: &VolumeDir, steps: &Steps<'_>, applied: &mut Applied) -> Result<()> {
    for path in &steps.remove_files {
        volume
            .remove_file(path)
            .with_context(|| format!("removing {path}"))?;
    }
    for path in &steps.remove_dirs {
        let removed = volume
            .remove_dir(path)
            .with_context(|| format!("removing directory {path}"))?;
        if !removed && volume.stat(path)?.is_some() {
            tracing::warn!(path = %path, "directory deleted on the server still holds files, kept");
            applied.kept_dirs.push((*path).clone());
        }
    }
    Ok(())
}

fn create_dirs(volume: &VolumeDir, dirs: &[&Entry]) -> Result<()> {
    for dir in dirs {
        volume
            .create_dir_all(&dir.path, dir.mode)
            .with_context(|| format!("creating directory {}", dir.path))?;
    }
    Ok(())
}

/// Flushes the directory holding each of `paths`, making the renames and
/// removals in it durable. Directories that were removed are skipped.
fn sync_parents<'a>(volume: &VolumeDir, paths: impl Iterator<Item = &'a RelPath>) -> Result<()> {
    let parents: BTreeSet<Option<RelPath>> = paths.map(RelPath::parent).collect();
    for parent in parents {
        if let Some(dir) = &parent
            && volume.stat(dir)?.is_none()
        {
            continue;
        }
        volume.sync_dir(parent.as_ref()).with_context(|| {
            format!(
                "flushing directory {}",
                parent.as_ref().map_or(".", RelPath::as_str)
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_stamps_are_compact_utc() {
        let stamp = conflict_stamp();
        assert_eq!(stamp.len(), 16, "{stamp}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T',
            "{stamp}"
        );
    }

    #[test]
    fn identical_files_share_one_download() {
        let a = Entry::file(RelPath::new("a").unwrap(), 0o644, 1, Digest::of(b"x"));
        let b = Entry::file(RelPath::new("b").unwrap(), 0o600, 1, Digest::of(b"x"));

        let wanted = wanted(&[&a, &b]);

        assert_eq!(wanted.len(), 1);
        assert_eq!(wanted[0].targets.len(), 2);
    }
}
