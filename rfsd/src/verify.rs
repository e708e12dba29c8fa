//! `rfsd verify`: checks every stored object against its digest, that every
//! version's objects are stored, and that each live tree equals its head.
//!
//! It runs inside the daemon (through the administration socket) or, when
//! the daemon is stopped, directly on the state directory
//! ([`crate::offline`]).

use std::sync::Arc;

use anyhow::Result;
use rfs_core::{ChangeSet, Digest};

use crate::store::Store;
use crate::volume::Volume;

/// What verification found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Every problem, one line each; empty when all holds.
    pub problems: Vec<String>,
    /// How many objects were re-hashed.
    pub objects_checked: u64,
    /// How many versions were checked for their objects.
    pub versions_checked: u64,
    /// How many live files were compared with their heads.
    pub files_checked: u64,
}

/// Checks the store and the live trees of `volumes`.
///
/// # Errors
///
/// Fails only when the check itself cannot run (the store or a live tree
/// cannot be read); differences are reported, not errors.
pub fn run(store: &dyn Store, volumes: &[Arc<Volume>]) -> Result<VerifyReport> {
    let check = store.verify()?;
    let mut report = VerifyReport {
        objects_checked: check.objects_checked,
        versions_checked: check.versions_checked,
        ..VerifyReport::default()
    };
    for (digest, users) in &check.corrupt {
        report.problems.push(format!(
            "object {digest} does not match its digest; used by {}",
            versions(users)
        ));
    }
    for (digest, users) in &check.missing {
        report.problems.push(format!(
            "object {digest} is missing; used by {}",
            versions(users)
        ));
    }

    for volume in volumes {
        compare_live(store, volume, &mut report)?;
    }
    Ok(report)
}

fn compare_live(store: &dyn Store, volume: &Volume, report: &mut VerifyReport) -> Result<()> {
    let Some(head) = store.head(&volume.name)? else {
        report
            .problems
            .push(format!("volume {}: no versions recorded", volume.name));
        return Ok(());
    };
    let expected = store.head_manifest(&volume.name)?;
    let scan = volume.dir.scan(volume.limits, |_, _| None::<Digest>)?;
    report.files_checked += scan.manifest.file_count() as u64;

    let name = &volume.name;
    let changes = ChangeSet::between(&expected, &scan.manifest);
    for entry in &changes.added {
        report.problems.push(format!(
            "volume {name}: {} is in the live tree but not in version {head}",
            entry.path
        ));
    }
    for entry in &changes.modified {
        report.problems.push(format!(
            "volume {name}: {} differs from version {head}",
            entry.path
        ));
    }
    for entry in &changes.deleted {
        report.problems.push(format!(
            "volume {name}: {} of version {head} is missing from the live tree",
            entry.path
        ));
    }
    for skipped in &scan.skipped {
        report.problems.push(format!(
            "volume {name}: {} is not served ({:?})",
            skipped.path, skipped.reason
        ));
    }
    Ok(())
}

fn versions(users: &[(String, u64)]) -> String {
    let shown: Vec<String> = users
        .iter()
        .take(20)
        .map(|(volume, version)| format!("{volume} v{version}"))
        .collect();
    let more = users.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else if shown.is_empty() {
        "no version".to_owned()
    } else {
        shown.join(", ")
    }
}
