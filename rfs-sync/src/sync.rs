//! `--sync`: an update, then a commit, in that order so that the commit is
//! made on top of the newest version the client could take.
//!
//! A conflict in the update stops the run before the commit: the commit of
//! a conflicting path would be refused anyway, and the operator should
//! resolve it first.

use anyhow::Result;
use serde::Serialize;

use crate::commit::{self, CommitOptions, CommitReport};
use crate::exit::Code;
use crate::output::Report;
use crate::session::Session;
use crate::update::{self, UpdateOptions, UpdateReport};

/// What a sync did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SyncReport {
    /// The base version before the run.
    pub(crate) base_version: u64,
    /// The base version after the run.
    pub(crate) version: u64,
    pub(crate) update: UpdateReport,
    /// Absent when conflicts stopped the run after the update.
    pub(crate) commit: Option<CommitReport>,
    pub(crate) conflicts: Vec<String>,
    pub(crate) dry_run: bool,
}

/// Runs `--sync`.
///
/// # Errors
///
/// Fails as the update and the commit do.
pub(crate) async fn run(
    session: &mut Session,
    update_options: UpdateOptions,
    commit_options: CommitOptions,
) -> Result<SyncReport> {
    let update = update::run(session, update_options).await?;
    let mut report = SyncReport {
        base_version: update.base_version,
        version: session.local.state.base_version,
        conflicts: update.conflicts.iter().map(ToString::to_string).collect(),
        update,
        commit: None,
        dry_run: update_options.dry_run,
    };
    if !report.conflicts.is_empty() {
        return Ok(report);
    }

    let commit = commit::run(session, commit_options).await?;
    report.conflicts = commit.conflicts.iter().map(ToString::to_string).collect();
    report.version = match commit.nothing_to_commit || commit.dry_run {
        true => session.local.state.base_version,
        false => commit.version,
    };
    report.commit = Some(commit);
    Ok(report)
}

impl Report for SyncReport {
    const ACTION: &'static str = "sync";

    fn lines(&self) -> Vec<String> {
        let mut lines = self.update.lines();
        if let Some(commit) = &self.commit {
            lines.extend(commit.lines());
        }
        lines
    }

    fn failure(&self) -> Option<(Code, String)> {
        let message = self.update.conflict_message()?;
        Some((Code::Conflict, format!("{message}; nothing was committed")))
    }
}
