//! `--remove`: forgets the setup and the sync state. The synced directory
//! and its files stay as they are.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::config::{self, Config, Paths};
use crate::durable;
use crate::exit::{Code, Failure};
use crate::output::Report;
use crate::state::RunLock;

/// What `--remove` removed.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RemoveReport {
    pub(crate) removed: Vec<PathBuf>,
    /// The synced directory, left in place.
    pub(crate) local: PathBuf,
}

/// Runs `--remove`.
///
/// # Errors
///
/// Fails when rfs-sync is not set up or a file cannot be removed.
pub(crate) async fn run(paths: &Paths) -> Result<RemoveReport> {
    if !Config::exists(paths) {
        return Err(Failure::new(Code::Error, config::NOT_SET_UP).into());
    }
    let run_lock = RunLock::acquire(paths, None).await?;

    let mut removed = Vec::new();
    let files = [
        paths.config_file.clone(),
        paths.state_file(),
        paths.base_file(),
        paths.client_key(),
        paths.client_cert(),
    ];
    for file in files {
        if durable::remove_if_present(&file)? {
            removed.push(file);
        }
    }
    drop(run_lock);
    durable::remove_if_present(&paths.run_lock_file())?;
    // The directory goes only when nothing else was put there.
    let _ = std::fs::remove_dir(&paths.state_dir);

    Ok(RemoveReport {
        removed,
        local: paths.local.clone(),
    })
}

impl Report for RemoveReport {
    const ACTION: &'static str = "remove";

    fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .removed
            .iter()
            .map(|path| format!("removed {}", path.display()))
            .collect();
        lines.push(format!(
            "setup forgotten; local files in {} stay",
            self.local.display()
        ));
        lines
    }
}
