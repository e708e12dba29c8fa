//! Change sets and the three-way decision between a base version, the local
//! tree and the server's head.
//!
//! Every rule that protects an uncommitted local change lives here, in
//! [`Merge::decide`], so that the client's update and the tests of it agree
//! on one definition.

use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::manifest::Manifest;
use crate::path::RelPath;

/// What differs between a base manifest and another manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// Entries present in the other manifest and absent from the base.
    pub added: Vec<Entry>,
    /// Entries present in both whose kind, mode or content differ, as they
    /// are in the other manifest.
    pub modified: Vec<Entry>,
    /// Entries present in the base and absent from the other manifest, as
    /// they were in the base.
    pub deleted: Vec<Entry>,
}

impl ChangeSet {
    /// Returns what changed from `base` to `other`, in path order.
    pub fn between(base: &Manifest, other: &Manifest) -> Self {
        let mut changes = ChangeSet::default();
        for entry in other.iter() {
            match base.get(&entry.path) {
                None => changes.added.push(entry.clone()),
                Some(old) if !old.same_state(entry) => changes.modified.push(entry.clone()),
                Some(_) => {}
            }
        }

        changes.deleted = base
            .iter()
            .filter(|old| other.get(&old.path).is_none())
            .cloned()
            .collect();
        changes
    }

    /// Returns whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.deleted.is_empty()
    }

    /// Returns the number of changed paths.
    pub fn len(&self) -> usize {
        self.added.len() + self.modified.len() + self.deleted.len()
    }

    /// Returns every changed path, in no particular order.
    pub fn paths(&self) -> impl Iterator<Item = &RelPath> {
        let upserts = self.added.iter().chain(&self.modified);
        upserts.chain(&self.deleted).map(|entry| &entry.path)
    }

    /// Returns the change set as the entries to write (added and modified)
    /// and the paths to delete.
    pub fn into_parts(self) -> (Vec<Entry>, Vec<RelPath>) {
        let mut upserts = self.added;
        upserts.extend(self.modified);
        let deleted = self.deleted.into_iter().map(|entry| entry.path).collect();
        (upserts, deleted)
    }

    /// Returns the added and modified entries together.
    pub fn upserts(&self) -> impl Iterator<Item = &Entry> {
        self.added.iter().chain(&self.modified)
    }
}

/// What to do with one path that changed on the server since the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Merge {
    /// The local tree already holds the server's state: nothing to write.
    AlreadyEqual,
    /// The local tree still holds the base state: take the server's.
    TakeRemote,
    /// Both sides changed the path differently: keep the local state and
    /// report the conflict.
    Conflict,
}

impl Merge {
    /// Decides one path from its state in the base, the local tree and the
    /// server's head (`None` means absent).
    ///
    /// The local state is only ever replaced when it equals the base, so an
    /// uncommitted local change is never destroyed.
    pub fn decide(base: Option<&Entry>, local: Option<&Entry>, remote: Option<&Entry>) -> Self {
        if same(local, remote) {
            Merge::AlreadyEqual
        } else if same(local, base) {
            Merge::TakeRemote
        } else {
            Merge::Conflict
        }
    }
}

fn same(a: Option<&Entry>, b: Option<&Entry>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same_state(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::digest::Digest;

    fn file(path: &str, content: &[u8]) -> Entry {
        let path = RelPath::new(path).unwrap();
        Entry::file(path, 0o644, content.len() as u64, Digest::of(content))
    }

    fn manifest(files: &[(&str, &[u8])]) -> Manifest {
        files
            .iter()
            .map(|(path, content)| file(path, content))
            .collect()
    }

    #[test]
    fn between_sorts_changes_into_added_modified_and_deleted() {
        let base = manifest(&[("world", b"w1"), ("key_a", b"a"), ("key_b", b"b")]);
        let other = manifest(&[("world", b"w2"), ("key_a", b"a"), ("key_c", b"c")]);

        let changes = ChangeSet::between(&base, &other);

        assert_eq!(changes.added, vec![file("key_c", b"c")]);
        assert_eq!(changes.modified, vec![file("world", b"w2")]);
        assert_eq!(changes.deleted, vec![file("key_b", b"b")]);
        assert_eq!(changes.len(), 3);
    }

    #[test]
    fn a_mode_change_is_a_modification() {
        let base = manifest(&[("world", b"w")]);
        let mut changed = file("world", b"w");
        changed.mode = 0o600;
        let other: Manifest = vec![changed.clone()].into();

        assert_eq!(ChangeSet::between(&base, &other).modified, vec![changed]);
    }

    #[test]
    fn local_edit_against_remote_edit_is_a_conflict() {
        let base = file("world", b"base");
        let local = file("world", b"local");
        let remote = file("world", b"remote");

        let decision = Merge::decide(Some(&base), Some(&local), Some(&remote));

        assert_eq!(decision, Merge::Conflict);
    }

    #[test]
    fn remote_delete_of_an_unchanged_file_is_taken() {
        let base = file("key_a", b"a");
        assert_eq!(
            Merge::decide(Some(&base), Some(&base), None),
            Merge::TakeRemote
        );
    }

    #[test]
    fn remote_delete_of_a_locally_edited_file_is_a_conflict() {
        let base = file("key_a", b"a");
        let local = file("key_a", b"edited");
        assert_eq!(
            Merge::decide(Some(&base), Some(&local), None),
            Merge::Conflict
        );
    }

    fn arb_state() -> impl Strategy<Value = Option<Entry>> {
        prop_oneof![
            Just(None),
            (0u8..4, prop_oneof![Just(0o644u32), Just(0o600u32)]).prop_map(|(content, mode)| {
                let mut entry = file("p", &[content]);
                entry.mode = mode;
                Some(entry)
            }),
        ]
    }

    fn arb_manifest() -> impl Strategy<Value = Manifest> {
        proptest::collection::btree_map("[a-e]", 0u8..3, 0..5).prop_map(|files| {
            files
                .iter()
                .map(|(path, content)| file(path, &[*content]))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn a_local_change_is_never_overwritten(
            base in arb_state(), local in arb_state(), remote in arb_state()
        ) {
            let decision = Merge::decide(base.as_ref(), local.as_ref(), remote.as_ref());
            if decision == Merge::TakeRemote {
                prop_assert!(same(local.as_ref(), base.as_ref()));
            }
        }

        #[test]
        fn an_unchanged_local_state_never_conflicts(
            base in arb_state(), remote in arb_state()
        ) {
            let decision = Merge::decide(base.as_ref(), base.as_ref(), remote.as_ref());
            prop_assert_ne!(decision, Merge::Conflict);
        }

        #[test]
        fn applying_a_change_set_to_its_base_gives_the_target(
            base in arb_manifest(), other in arb_manifest()
        ) {
            let changes = ChangeSet::between(&base, &other);
            let mut rebuilt = base.clone();
            for entry in changes.upserts() {
                rebuilt.insert(entry.clone());
            }
            for entry in &changes.deleted {
                rebuilt.remove(&entry.path);
            }
            prop_assert_eq!(rebuilt, other.clone());
            prop_assert_eq!(changes.is_empty(), base == other);
        }
    }
}
