//! Deciding what an update does with each path the server changed, from
//! the base entry, the local state of that path alone, and the server's
//! entry.
//!
//! Only the paths the server reports are looked at locally (one `stat`
//! each, and a read only when the digest cache misses), so an update costs
//! in proportion to what changed, not to the size of the tree.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rfs_core::fsx::{FsError, VolumeDir};
use rfs_core::{Entry, Manifest, Merge, RelPath, StatKey};

use crate::remote::RemoteChanges;
use crate::state::State;

/// What is at a path in the local tree.
#[derive(Debug, Clone)]
pub(crate) enum Local {
    Absent,
    Present {
        entry: Entry,
        /// The `stat` key of a file, for the digest cache.
        key: Option<StatKey>,
    },
    /// Something rfs-sync never touches: a symlink, a device, or a path
    /// under a file. It is always a conflict.
    Unusable(String),
}

impl Local {
    /// Returns the entry when the path holds a file or directory.
    pub(crate) fn entry(&self) -> Option<&Entry> {
        match self {
            Local::Present { entry, .. } => Some(entry),
            Local::Absent | Local::Unusable(_) => None,
        }
    }
}

/// The decision for one path.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) path: RelPath,
    pub(crate) local: Local,
    pub(crate) remote: Option<Entry>,
    pub(crate) decision: Merge,
    /// A conflict that `--force-remote` resolves in the server's favour,
    /// keeping a local file beside it.
    pub(crate) forced: bool,
}

impl Item {
    /// Returns whether the update writes the server's state to this path.
    pub(crate) fn applies(&self) -> bool {
        self.decision == Merge::TakeRemote || self.forced
    }

    /// Returns whether the path stays in conflict.
    pub(crate) fn is_conflict(&self) -> bool {
        self.decision == Merge::Conflict && !self.forced
    }
}

/// Every decision of one update.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) head_version: u64,
    /// The base was version 0 (a fresh client, or the server lost the
    /// client's base): no base entry is trusted.
    pub(crate) from_scratch: bool,
    pub(crate) items: Vec<Item>,
}

/// Returns the decisions for `changes` against the local tree.
///
/// # Errors
///
/// Fails when a local path cannot be examined.
pub(crate) fn build(
    volume: &VolumeDir,
    state: &State,
    changes: RemoteChanges,
    from_scratch: bool,
    force_remote: bool,
) -> Result<Plan> {
    let mut remote: BTreeMap<RelPath, Option<Entry>> = BTreeMap::new();
    for path in changes.deleted {
        remote.insert(path, None);
    }
    for entry in changes.changed {
        remote.insert(entry.path.clone(), Some(entry));
    }

    let mut items = Vec::with_capacity(remote.len());
    for (path, remote) in remote {
        let base = match from_scratch {
            true => None,
            false => state.base.get(&path).cloned(),
        };
        let local = local_state(volume, state, &path)?;
        let decision = decide(&path, base.as_ref(), &local, remote.as_ref(), from_scratch);
        let forced =
            force_remote && decision == Merge::Conflict && !matches!(local, Local::Unusable(_));
        items.push(Item {
            path,
            local,
            remote,
            decision,
            forced,
        });
    }
    Ok(Plan {
        head_version: changes.head_version,
        from_scratch,
        items,
    })
}

fn decide(
    path: &RelPath,
    base: Option<&Entry>,
    local: &Local,
    remote: Option<&Entry>,
    from_scratch: bool,
) -> Merge {
    if let Local::Unusable(why) = local {
        tracing::warn!(path = %path, why = %why, "local path left alone");
        return Merge::Conflict;
    }
    // After an update with conflicts the base entries run ahead of the base
    // version, so the server may list a path whose entry this client already
    // has. Its local state is then a local change for the next commit, not a
    // conflict, and there is nothing to write.
    let already_based = match (base, remote) {
        (Some(base), Some(remote)) => base.same_state(remote),
        (None, None) => !from_scratch,
        _ => false,
    };
    if already_based {
        return Merge::AlreadyEqual;
    }
    Merge::decide(base, local.entry(), remote)
}

fn local_state(volume: &VolumeDir, state: &State, path: &RelPath) -> Result<Local> {
    match volume.entry(path, |path, key| state.cached_digest(path, key)) {
        Ok(Some((entry, key))) => Ok(Local::Present { entry, key }),
        Ok(None) => Ok(Local::Absent),
        Err(FsError::Symlink(_)) => Ok(Local::Unusable("is or passes through a symlink".into())),
        Err(FsError::WrongKind { .. }) => Ok(Local::Unusable("is not a file or directory".into())),
        Err(FsError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOTDIR) => {
            Ok(Local::Unusable("lies under a file".into()))
        }
        Err(err) => Err(err).with_context(|| format!("examining local {path}")),
    }
}

impl Plan {
    /// Returns the paths that stay in conflict.
    pub(crate) fn conflicts(&self) -> Vec<RelPath> {
        let conflicts = self.items.iter().filter(|item| item.is_conflict());
        conflicts.map(|item| item.path.clone()).collect()
    }

    /// Returns the items the update writes.
    pub(crate) fn applied(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|item| item.applies())
    }

    /// Records the outcome in `state`: paths applied or already equal take
    /// the server's entry as their base. The base version moves to the head
    /// only when nothing is left in conflict, so a conflicting path still
    /// counts as changed on the server for the next update and commit.
    pub(crate) fn absorb(&self, state: &mut State, installed: &[(RelPath, StatKey)]) {
        if self.from_scratch {
            state.base = Manifest::new();
        }
        for item in self.items.iter().filter(|item| !item.is_conflict()) {
            match &item.remote {
                Some(entry) => state.base.insert(entry.clone()),
                None => state.base.remove(&item.path),
            };
            remember_local(state, item);
        }
        for (path, key) in installed {
            let digest = state.base.get(path).and_then(|entry| entry.digest);
            if let Some(digest) = digest {
                state.remember(path.clone(), *key, digest);
            }
        }

        state.base_version = match (self.conflicts().is_empty(), self.from_scratch) {
            (true, _) => self.head_version,
            (false, true) => 0,
            (false, false) => state.base_version,
        };
    }
}

/// Keeps the digest cache in step: a replaced path loses its entry, an
/// already equal file keeps the digest just computed.
fn remember_local(state: &mut State, item: &Item) {
    if item.applies() {
        state.cache.remove(&item.path);
        return;
    }
    if let Local::Present {
        entry,
        key: Some(key),
    } = &item.local
        && let Some(digest) = entry.digest
    {
        state.remember(item.path.clone(), *key, digest);
    }
}

#[cfg(test)]
mod tests {
    use rfs_core::Digest;

    use super::*;

    fn rel(path: &str) -> RelPath {
        RelPath::new(path).unwrap()
    }

    fn file(path: &str, content: &[u8]) -> Entry {
        Entry::file(rel(path), 0o644, content.len() as u64, Digest::of(content))
    }

    fn write(dir: &std::path::Path, path: &str, content: &[u8]) {
        std::fs::write(dir.join(path), content).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o644);
        std::fs::set_permissions(dir.join(path), mode).unwrap();
    }

    #[test]
    fn decisions_follow_the_local_state_of_each_changed_path() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "same", b"base");
        write(dir.path(), "edited", b"mine");
        write(dir.path(), "equal", b"new");
        let volume = VolumeDir::open(dir.path()).unwrap();
        let mut state = State::fresh();
        state.base_version = 1;
        for path in ["same", "edited", "equal"] {
            state.base.insert(file(path, b"base"));
        }
        let changes = RemoteChanges {
            head_version: 2,
            history_id: String::new(),
            changed: vec![
                file("same", b"new"),
                file("edited", b"new"),
                file("equal", b"new"),
            ],
            deleted: vec![],
        };

        let plan = build(&volume, &state, changes, false, false).unwrap();

        let decisions: Vec<_> = plan
            .items
            .iter()
            .map(|i| (i.path.as_str(), i.decision))
            .collect();
        assert_eq!(
            decisions,
            [
                ("edited", Merge::Conflict),
                ("equal", Merge::AlreadyEqual),
                ("same", Merge::TakeRemote)
            ]
        );
    }

    #[test]
    fn a_conflict_keeps_the_base_version_but_records_the_rest() {
        let mut state = State::fresh();
        state.base_version = 1;
        state.base.insert(file("edited", b"base"));
        state.base.insert(file("same", b"base"));
        let item = |path: &str, decision| Item {
            path: rel(path),
            local: Local::Absent,
            remote: Some(file(path, b"new")),
            decision,
            forced: false,
        };
        let plan = Plan {
            head_version: 2,
            from_scratch: false,
            items: vec![
                item("edited", Merge::Conflict),
                item("same", Merge::TakeRemote),
            ],
        };

        plan.absorb(&mut state, &[]);

        assert_eq!(state.base_version, 1);
        assert_eq!(state.base.get(&rel("same")), Some(&file("same", b"new")));
        assert_eq!(
            state.base.get(&rel("edited")),
            Some(&file("edited", b"base"))
        );
    }
}
