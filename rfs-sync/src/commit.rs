//! `--commit`: sends the local changes to the server as a new version on
//! top of the client's base.
//!
//! The change set is computed by content: a full scan whose digest cache
//! spares files whose `stat` key is unchanged. Under the volume's lock the
//! client uploads only the objects the server lacks and asks for the new
//! version; the server refuses it whole when a changed path also changed on
//! the server since the base. Afterwards the update logic brings the local
//! tree to the new head, so it also receives other clients' changes.

mod lock;

pub(crate) use lock::jittered;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use proto::pb;
use rfs_core::fsx::{Scan, SkipReason};
use rfs_core::{ChangeSet, Digest, RelPath};
use serde::Serialize;

use crate::output::{Report, plural};
use crate::remote::Remote;
use crate::session::{Session, Workspace};
use crate::transfer::{self, Outgoing};
use crate::update::{self, UpdateOptions};
use crate::wire;

/// The most digests one MissingObjects request names.
const MISSING_BATCH: usize = 10_000;

/// The options of a commit.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CommitOptions {
    pub(crate) dry_run: bool,
    pub(crate) allow_delete: bool,
    pub(crate) wait_lock: Option<Duration>,
}

/// What a commit sent (or, with `--dry-run`, would send).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CommitReport {
    pub(crate) base_version: u64,
    /// The new version; the unchanged base when nothing was committed.
    pub(crate) version: u64,
    pub(crate) added: Vec<RelPath>,
    pub(crate) modified: Vec<RelPath>,
    pub(crate) deleted: Vec<RelPath>,
    /// Local deletions left out because `--allow-delete` was not given.
    pub(crate) deletions_not_sent: Vec<RelPath>,
    pub(crate) nothing_to_commit: bool,
    /// Paths the update after the commit left in conflict.
    pub(crate) conflicts: Vec<RelPath>,
    /// Local paths the scan left out (symlinks, special files, bad names).
    pub(crate) skipped: Vec<String>,
    pub(crate) dry_run: bool,
}

/// Runs `--commit`.
///
/// # Errors
///
/// Fails with exit code 4 when another client holds the lock, 3 when the
/// server refuses the commit as conflicting, and as the update does.
pub(crate) async fn run(session: &mut Session, options: CommitOptions) -> Result<CommitReport> {
    session.local.state.complete(&session.local.paths)?;
    let scan = scan(&mut session.local, options.dry_run)?;
    let base = session.local.state.base_version;
    let changes = ChangeSet::between(&session.local.state.base, &scan.manifest);
    let (to_send, not_sent) = split_deletions(changes, options.allow_delete);
    let mut report = CommitReport {
        base_version: base,
        version: base,
        added: paths(&to_send.added),
        modified: paths(&to_send.modified),
        deleted: paths(&to_send.deleted),
        deletions_not_sent: not_sent,
        nothing_to_commit: to_send.is_empty(),
        skipped: skipped(&scan),
        dry_run: options.dry_run,
        ..CommitReport::default()
    };
    if options.dry_run {
        return Ok(report);
    }
    if to_send.is_empty() {
        session.local.state.save(&session.local.paths)?;
        return Ok(report);
    }

    let (remote, local) = session.parts().await?;
    let version = push(remote, local, &to_send, options.wait_lock).await?;
    report.version = version;
    let update = update::pull(remote, local, UpdateOptions::default())
        .await
        .with_context(|| {
            format!("committed version {version}, but updating the local directory failed")
        })?;
    report.conflicts = update.conflicts;
    Ok(report)
}

/// Walks the local tree, refreshing the digest cache and, unless `dry_run`,
/// removing staging files an interrupted run left behind.
fn scan(local: &mut Workspace, dry_run: bool) -> Result<Scan> {
    let scan = local.scan()?;
    tracing::debug!(
        entries = scan.manifest.len(),
        hashed = scan.hashed,
        "scanned"
    );
    if !dry_run {
        update::remove_staging_files(&local.volume, &scan.temp_files);
    }
    local.state.remember_scan(&scan);
    Ok(scan)
}

/// Splits local deletions out of the change set unless they may be sent.
fn split_deletions(mut changes: ChangeSet, allow_delete: bool) -> (ChangeSet, Vec<RelPath>) {
    if allow_delete {
        return (changes, Vec::new());
    }
    let not_sent = paths(&std::mem::take(&mut changes.deleted));
    (changes, not_sent)
}

/// Takes the lock, sends what the server lacks, records the new version,
/// and always releases the lock.
async fn push(
    remote: &mut Remote,
    local: &Workspace,
    changes: &ChangeSet,
    wait_lock: Option<Duration>,
) -> Result<u64> {
    let host_name = host_name();
    let held = lock::acquire(remote, &host_name, wait_lock).await?;
    // A signal must not leave the lock to run out its lease: stop sending,
    // release, then report.
    let result = tokio::select! {
        result = send(remote, local, changes, &host_name, held.token) => result,
        signal = interrupted() => Err(anyhow::anyhow!(
            "interrupted by {signal} before the commit completed; the lock was released"
        )),
    };
    held.release(remote).await;
    result
}

/// Resolves when SIGINT or SIGTERM arrives, naming it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

async fn send(
    remote: &mut Remote,
    local: &Workspace,
    changes: &ChangeSet,
    host_name: &str,
    token: u64,
) -> Result<u64> {
    let objects = objects_of(changes);
    let digests: Vec<Digest> = objects.keys().copied().collect();
    let mut missing = Vec::new();
    for batch in digests.chunks(MISSING_BATCH) {
        let lacking = remote.missing_objects(batch).await?;
        missing.extend(
            lacking
                .into_iter()
                .filter_map(|digest| objects.get(&digest).cloned()),
        );
    }
    tracing::debug!(
        objects = objects.len(),
        missing = missing.len(),
        "objects to upload"
    );
    transfer::upload(remote, local.volume.clone(), token, missing).await?;

    let request = pb::CommitRequest {
        volume: remote.volume().to_owned(),
        base_version: local.state.base_version,
        lock_token: token,
        changed: changes.upserts().map(wire::entry_to_wire).collect(),
        deleted: changes
            .deleted
            .iter()
            .map(|entry| entry.path.to_string())
            .collect(),
        host_name: host_name.to_owned(),
        process_id: std::process::id(),
        reason: String::new(),
        history_id: local.state.history_id.clone(),
    };
    let version = remote.commit(request).await?;
    tracing::info!(version, "committed");
    Ok(version)
}

/// Returns each object of the change set once, with a file that holds it.
fn objects_of(changes: &ChangeSet) -> BTreeMap<Digest, Outgoing> {
    let mut objects = BTreeMap::new();
    for entry in changes.upserts() {
        if let Some(digest) = entry.digest {
            objects.entry(digest).or_insert_with(|| Outgoing {
                digest,
                size: entry.size,
                path: entry.path.clone(),
            });
        }
    }
    objects
}

fn paths(entries: &[rfs_core::Entry]) -> Vec<RelPath> {
    entries.iter().map(|entry| entry.path.clone()).collect()
}

fn skipped(scan: &Scan) -> Vec<String> {
    let skipped = scan.skipped.iter().map(|skip| {
        let why = match &skip.reason {
            SkipReason::Symlink => "a symlink".to_owned(),
            SkipReason::Special => "not a regular file or directory".to_owned(),
            SkipReason::BadPath(err) => err.to_string(),
            SkipReason::TooLarge(size) => format!("{size} bytes, over the size limit"),
        };
        format!("{} ({why})", skip.path)
    });
    skipped.collect()
}

/// Returns this machine's name, as shown to other clients and operators.
pub(crate) fn host_name() -> String {
    hostname::get()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

impl CommitReport {
    /// Returns the summary line for people.
    pub(crate) fn summary(&self) -> String {
        let counts = format!(
            "{} added, {} modified, {} deleted",
            self.added.len(),
            self.modified.len(),
            self.deleted.len()
        );
        match (self.nothing_to_commit, self.dry_run) {
            (true, _) => format!(
                "nothing to commit (local equals version {})",
                self.base_version
            ),
            (false, true) => format!(
                "would commit on top of version {}: {counts}",
                self.base_version
            ),
            (false, false) => format!("committed version {}: {counts}", self.version),
        }
    }
}

impl Report for CommitReport {
    const ACTION: &'static str = "commit";

    fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .skipped
            .iter()
            .map(|s| format!("skipped: {s}"))
            .collect();
        if self.dry_run {
            lines.extend(self.added.iter().map(|path| format!("  + {path}")));
            lines.extend(self.modified.iter().map(|path| format!("  ~ {path}")));
            lines.extend(self.deleted.iter().map(|path| format!("  - {path}")));
        }
        let not_sent = &self.deletions_not_sent;
        lines.extend(
            not_sent
                .iter()
                .map(|path| format!("deleted locally, not sent (use --allow-delete): {path}")),
        );
        lines.extend(
            self.conflicts
                .iter()
                .map(|path| format!("conflict: {path}")),
        );
        if !self.conflicts.is_empty() {
            lines.push(format!(
                "the update after the commit kept {} local",
                plural(self.conflicts.len(), "conflicting path")
            ));
        }
        lines.push(self.summary());
        lines
    }
}
