//! `--status`: the base version, the server's head version and lock holder
//! (or that the server is unreachable), and how many local changes a
//! commit would send.

use anyhow::Result;
use proto::pb;
use rfs_core::ChangeSet;
use serde::Serialize;

use crate::exit::{self, Code};
use crate::output::{Report, plural};
use crate::remote;
use crate::session::{Session, Workspace};

/// What `--status` found.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatusReport {
    pub(crate) server: String,
    pub(crate) reachable: bool,
    pub(crate) base_version: u64,
    /// `None` when the server could not be asked.
    pub(crate) head_version: Option<u64>,
    pub(crate) up_to_date: Option<bool>,
    pub(crate) lock: Option<LockHolder>,
    pub(crate) local_changes: LocalChanges,
    /// Why the server could not be asked, with the exit code it means.
    #[serde(skip)]
    pub(crate) server_error: Option<(Code, String)>,
}

/// The holder of the volume's lock.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LockHolder {
    pub(crate) address: String,
    pub(crate) key_hash: Option<String>,
    pub(crate) host_name: String,
    pub(crate) process_id: u32,
    pub(crate) since_unix: i64,
    pub(crate) lease_remaining_ms: u64,
    #[serde(skip)]
    pub(crate) description: String,
}

/// How many paths differ from the base.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct LocalChanges {
    pub(crate) total: usize,
    pub(crate) added: usize,
    pub(crate) modified: usize,
    pub(crate) deleted: usize,
}

/// Runs `--status`.
///
/// # Errors
///
/// Fails when rfs-sync is not set up or the local tree cannot be scanned;
/// an unreachable server is part of the report (exit code 6).
pub(crate) async fn run(session: &mut Session) -> Result<StatusReport> {
    session.local.state.complete(&session.local.paths)?;
    let local_changes = local_changes(&session.local)?;
    let mut report = StatusReport {
        server: session.config.server_address(),
        reachable: false,
        base_version: session.local.state.base_version,
        head_version: None,
        up_to_date: None,
        lock: None,
        local_changes,
        server_error: None,
    };

    let head = match session.parts().await {
        Ok((remote, _)) => remote.head().await,
        Err(err) => Err(err),
    };
    match head {
        Ok(head) => {
            report.reachable = true;
            report.head_version = Some(head.version);
            report.up_to_date = Some(head.version == report.base_version);
            report.lock = head.lock.as_ref().map(holder);
        }
        Err(err) => {
            let (code, _) = exit::code_of(&err);
            report.reachable = code != Code::Unreachable;
            report.server_error = Some((code, format!("{err:#}")));
        }
    }
    Ok(report)
}

/// Counts what a commit with `--allow-delete` would send.
fn local_changes(local: &Workspace) -> Result<LocalChanges> {
    let scan = local.scan()?;
    let changes = ChangeSet::between(&local.state.base, &scan.manifest);
    Ok(LocalChanges {
        total: changes.len(),
        added: changes.added.len(),
        modified: changes.modified.len(),
        deleted: changes.deleted.len(),
    })
}

fn holder(lock: &pb::LockHolder) -> LockHolder {
    LockHolder {
        address: lock.address.clone(),
        key_hash: Some(lock.key_hash.clone()).filter(|hash| !hash.is_empty()),
        host_name: lock.host_name.clone(),
        process_id: lock.process_id,
        since_unix: lock.since_unix,
        lease_remaining_ms: lock.lease_remaining_ms,
        description: remote::describe_holder(lock),
    }
}

impl Report for StatusReport {
    const ACTION: &'static str = "status";

    fn lines(&self) -> Vec<String> {
        let head = match (self.head_version, self.reachable) {
            (Some(version), _) => version.to_string(),
            (None, false) => "unreachable".to_owned(),
            (None, true) => "unknown".to_owned(),
        };
        let lock = match &self.lock {
            Some(holder) => format!("held by {}", holder.description),
            None if self.head_version.is_some() => "free".to_owned(),
            None => "unknown".to_owned(),
        };
        let changes = &self.local_changes;
        vec![
            format!("server         {}", self.server),
            format!("base version   {}", self.base_version),
            format!("head version   {head}"),
            format!("lock           {lock}"),
            format!(
                "local changes  {} ({} added, {} modified, {} deleted)",
                plural(changes.total, "path"),
                changes.added,
                changes.modified,
                changes.deleted
            ),
        ]
    }

    fn failure(&self) -> Option<(Code, String)> {
        self.server_error.clone()
    }

    fn lines_are_data(&self) -> bool {
        true
    }
}
