//! Manifests: the sorted list of entries of a version or of a local tree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::path::RelPath;

/// The entries of one version (or one scanned tree), sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Entry>", into = "Vec<Entry>")]
pub struct Manifest {
    entries: BTreeMap<RelPath, Entry>,
}

impl Manifest {
    /// Returns an empty manifest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the entry at its path, returning the old one.
    pub fn insert(&mut self, entry: Entry) -> Option<Entry> {
        self.entries.insert(entry.path.clone(), entry)
    }

    /// Removes and returns the entry at `path`.
    pub fn remove(&mut self, path: &RelPath) -> Option<Entry> {
        self.entries.remove(path)
    }

    /// Returns the entry at `path`.
    pub fn get(&self, path: &RelPath) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Returns the entries in path order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Returns the number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the number of file entries.
    pub fn file_count(&self) -> usize {
        self.iter().filter(|entry| entry.is_file()).count()
    }

    /// Returns the sum of the sizes of all files.
    pub fn total_size(&self) -> u64 {
        self.iter().map(|entry| entry.size).sum()
    }
}

impl FromIterator<Entry> for Manifest {
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Self {
        let entries = iter
            .into_iter()
            .map(|entry| (entry.path.clone(), entry))
            .collect();
        Self { entries }
    }
}

impl From<Vec<Entry>> for Manifest {
    fn from(entries: Vec<Entry>) -> Self {
        entries.into_iter().collect()
    }
}

impl From<Manifest> for Vec<Entry> {
    fn from(manifest: Manifest) -> Self {
        manifest.entries.into_values().collect()
    }
}

impl IntoIterator for Manifest {
    type Item = Entry;
    type IntoIter = std::collections::btree_map::IntoValues<RelPath, Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_values()
    }
}
