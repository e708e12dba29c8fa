//! `--update`: brings the local directory to the server's head version
//! without ever destroying a local change that was not committed.
//!
//! When the head equals the base, the update is one Head call and nothing
//! local is examined. Otherwise the server lists what changed since the
//! base, each of those paths is decided against its local state
//! ([`plan`]), and the decisions are written crash-safely ([`apply`]).
//! Conflicts keep the local file and make the run exit 3 after the other
//! changes are applied.

mod apply;
mod plan;

use anyhow::{Context, Result};
use rfs_core::RelPath;
use rfs_core::fsx::ScanLimits;
use serde::Serialize;

use crate::exit::Code;
use crate::output::{Report, plural};
use crate::remote::{Remote, RemoteChanges};
use crate::session::{Session, Workspace};

/// The options of an update.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UpdateOptions {
    pub(crate) dry_run: bool,
    pub(crate) force_remote: bool,
    pub(crate) allow_mass_delete: bool,
    /// The percentage of the local tree an update may delete without
    /// `--allow-mass-delete` (`max_delete_percent` in rfs-sync.toml).
    pub(crate) max_delete_percent: Option<u8>,
}

/// The percentage of the local tree an update may delete without
/// `--allow-mass-delete` when the configuration does not say.
const MASS_DELETE_PERCENT: u8 = 50;

/// What an update did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct UpdateReport {
    /// The base version before the update.
    pub(crate) base_version: u64,
    /// The server's head version that the update brought the tree to.
    pub(crate) version: u64,
    pub(crate) up_to_date: bool,
    pub(crate) added: Vec<RelPath>,
    pub(crate) modified: Vec<RelPath>,
    pub(crate) deleted: Vec<RelPath>,
    pub(crate) conflicts: Vec<RelPath>,
    /// Local files kept aside by `--force-remote`.
    pub(crate) kept_copies: Vec<RelPath>,
    /// The server no longer knew the base version: every local file that
    /// differed from the server was treated as a conflict.
    pub(crate) history_lost: bool,
    pub(crate) dry_run: bool,
}

/// Runs `--update`.
///
/// # Errors
///
/// Fails when the server cannot be asked, a download fails verification,
/// or the local tree cannot be written.
pub(crate) async fn run(session: &mut Session, options: UpdateOptions) -> Result<UpdateReport> {
    let max_delete_percent = session.config.max_delete_percent;
    let options = UpdateOptions {
        max_delete_percent,
        ..options
    };
    let (remote, local) = session.parts().await?;
    let head = remote.head().await?;
    let base = local.state.base_version;
    let same_history =
        local.state.history_id.is_empty() || local.state.history_id == head.history_id;
    if base != 0 && head.version == base && same_history {
        // The performance floor: an unchanged server costs one version check.
        tracing::debug!(version = base, "up to date");
        return Ok(UpdateReport {
            base_version: base,
            version: base,
            up_to_date: true,
            dry_run: options.dry_run,
            ..UpdateReport::default()
        });
    }
    pull(remote, local, options).await
}

/// Applies what changed on the server since the local base, and records
/// the new base. Commit uses this after a successful commit.
///
/// # Errors
///
/// As [`run`].
pub(crate) async fn pull(
    remote: &mut Remote,
    local: &mut Workspace,
    options: UpdateOptions,
) -> Result<UpdateReport> {
    local.state.complete(&local.paths)?;
    let base = local.state.base_version;
    let (changes, history_lost) = fetch_changes(remote, base, &local.state.history_id).await?;
    let history_id = changes.history_id.clone();
    let from_scratch = base == 0 || history_lost;
    let plan = plan::build(
        &local.volume,
        &local.state,
        changes,
        from_scratch,
        options.force_remote,
    )?;
    if !options.allow_mass_delete {
        let percent = options.max_delete_percent.unwrap_or(MASS_DELETE_PERCENT);
        refuse_mass_delete(&plan, local.state.base.len(), percent)?;
    }
    let mut report = report(base, &plan, options.dry_run);
    report.history_lost = history_lost;
    if options.dry_run {
        return Ok(report);
    }

    let applied = apply::run(remote, &local.volume, &plan).await?;
    report.kept_copies = applied.kept_copies;
    if plan.applied().next().is_some() {
        sweep_staging_files(local);
    }
    crate::crash::point("before-state-saved");
    plan.absorb(&mut local.state, &applied.installed);
    local.state.history_id = history_id;
    local.state.save(&local.paths)?;
    Ok(report)
}

/// Fails, before anything is written, when the plan deletes more than
/// `percent` of a tree of `base_entries` entries (and more than one entry):
/// a server that lost or emptied its tree must not empty every client.
fn refuse_mass_delete(plan: &plan::Plan, base_entries: usize, percent: u8) -> Result<()> {
    let deletions = plan.applied().filter(|item| item.remote.is_none()).count();
    if deletions <= 1 || deletions * 100 <= usize::from(percent) * base_entries {
        return Ok(());
    }
    let message = format!(
        "the server's version {} deletes {deletions} of {base_entries} local entries; \
         nothing was changed. If that is intended, run again with --allow-mass-delete",
        plan.head_version
    );
    Err(crate::exit::Failure::new(crate::exit::Code::Error, message).into())
}

/// Returns the server's changes since `base`, starting over from version 0
/// when the server no longer knows `base`; the flag says whether it did.
async fn fetch_changes(
    remote: &mut Remote,
    base: u64,
    history_id: &str,
) -> Result<(RemoteChanges, bool)> {
    if let Some(changes) = remote.changes(base, history_id).await? {
        return Ok((changes, false));
    }
    tracing::info!(
        base,
        "server no longer knows the base version, comparing everything"
    );
    let changes = remote
        .changes(0, "")
        .await?
        .context("server refused the full list of changes")?;
    Ok((changes, true))
}

fn report(base: u64, plan: &plan::Plan, dry_run: bool) -> UpdateReport {
    let mut report = UpdateReport {
        base_version: base,
        version: plan.head_version,
        conflicts: plan.conflicts(),
        dry_run,
        ..UpdateReport::default()
    };
    for item in plan.applied() {
        let list = match (&item.remote, item.local.entry()) {
            (None, _) => &mut report.deleted,
            (Some(_), None) => &mut report.added,
            (Some(_), Some(_)) => &mut report.modified,
        };
        list.push(item.path.clone());
    }
    report
}

/// Removes staging files that an interrupted run left behind. A stat-only
/// walk: no file is read, the digests it would return are not used.
fn sweep_staging_files(local: &Workspace) {
    let never_hash = |_: &RelPath, _: &rfs_core::StatKey| Some(rfs_core::Digest::of(b""));
    let scan = match local.volume.scan(ScanLimits::default(), never_hash) {
        Ok(scan) => scan,
        Err(err) => {
            tracing::warn!(error = %err, "could not look for leftover staging files");
            return;
        }
    };
    remove_staging_files(&local.volume, &scan.temp_files);
}

/// Removes the staging files `paths` found by a scan.
pub(crate) fn remove_staging_files(volume: &rfs_core::fsx::VolumeDir, paths: &[RelPath]) {
    for path in paths {
        match volume.remove_file(path) {
            Ok(_) => tracing::info!(path = %path, "removed leftover staging file"),
            Err(err) => tracing::warn!(path = %path, error = %err, "could not remove staging file"),
        }
    }
}

impl UpdateReport {
    /// Returns the summary line for people.
    pub(crate) fn summary(&self) -> String {
        let counts = format!(
            "{} added, {} modified, {} deleted",
            self.added.len(),
            self.modified.len(),
            self.deleted.len()
        );
        match (self.up_to_date, self.dry_run, self.conflicts.is_empty()) {
            (true, _, _) => format!("local is up to date at version {}", self.version),
            (false, true, _) => format!("would update local to version {}: {counts}", self.version),
            (false, false, true) => format!("updated local to version {}: {counts}", self.version),
            (false, false, false) => format!(
                "updated local towards version {}: {counts}; {} kept",
                self.version,
                plural(self.conflicts.len(), "conflict")
            ),
        }
    }

    /// Returns the lines for people: the changes when dry, the conflicts,
    /// the kept copies, then the summary.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.history_lost {
            lines.push("server no longer knows the base version: compared every file".to_owned());
        }
        if self.dry_run {
            lines.extend(self.added.iter().map(|path| format!("  + {path}")));
            lines.extend(self.modified.iter().map(|path| format!("  ~ {path}")));
            lines.extend(self.deleted.iter().map(|path| format!("  - {path}")));
        }
        lines.extend(
            self.conflicts
                .iter()
                .map(|path| format!("conflict: {path}")),
        );
        lines.extend(
            self.kept_copies
                .iter()
                .map(|path| format!("kept local copy: {path}")),
        );
        lines.push(self.summary());
        lines
    }

    /// Returns the failure message when conflicts remain.
    pub(crate) fn conflict_message(&self) -> Option<String> {
        if self.conflicts.is_empty() {
            return None;
        }
        Some(format!(
            "{} with local changes, local files kept: {}; commit them, or run \
             rfs-sync --update --force-remote to take the server's",
            plural(self.conflicts.len(), "conflict"),
            join_paths(&self.conflicts)
        ))
    }
}

impl Report for UpdateReport {
    const ACTION: &'static str = "update";

    fn lines(&self) -> Vec<String> {
        UpdateReport::lines(self)
    }

    fn failure(&self) -> Option<(Code, String)> {
        self.conflict_message()
            .map(|message| (Code::Conflict, message))
    }
}

/// Returns paths joined for a message.
pub(crate) fn join_paths(paths: &[RelPath]) -> String {
    let shown: Vec<&str> = paths.iter().map(RelPath::as_str).collect();
    shown.join(", ")
}
