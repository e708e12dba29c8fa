//! Compares directory trees by path, kind, mode bits and content.
//!
//! Nothing is ignored: a stray lock file, staging file or state file in a
//! synced directory is a difference like any other.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kmdata_fixtures::FixtureFile;

/// How many differences an assertion message lists before summarising.
const SHOWN_DIFFERENCES: usize = 20;

/// Panics with a readable list of differences unless the trees under `left`
/// and `right` hold the same paths, kinds, modes and bytes.
///
/// The labels name the two sides in the message, such as `"server"` and
/// `"client 127.0.0.2"`. The roots themselves are not compared, only what
/// lies below them.
pub fn assert_same_tree(left_label: &str, left: &Path, right_label: &str, right: &Path) {
    let differences = tree_diff(left, right);
    if differences.is_empty() {
        return;
    }

    panic!(
        "trees differ ({} difference(s)); left = {left_label} ({}), \
         right = {right_label} ({}):\n  {}",
        differences.len(),
        left.display(),
        right.display(),
        first_lines(&differences)
    );
}

/// Panics with a readable list of differences unless the tree under `dir`
/// holds exactly `files`: the same paths, bytes and modes, and nothing else.
pub fn assert_tree_holds(label: &str, dir: &Path, files: &[FixtureFile]) {
    let expected: BTreeMap<String, Node> = files
        .iter()
        .map(|file| {
            let node = Node {
                kind: "file",
                mode: file.mode,
                content: file.content.clone(),
            };
            (file.path.clone(), node)
        })
        .collect();
    let differences = diff_nodes(&expected, &scan(dir));
    if differences.is_empty() {
        return;
    }

    panic!(
        "{label} ({}) does not hold the expected {} file(s); {} difference(s), \
         left = expected, right = actual:\n  {}",
        dir.display(),
        files.len(),
        differences.len(),
        first_lines(&differences)
    );
}

/// Returns one line per difference between the trees under `left` and
/// `right`, sorted by path; empty when they are equal.
pub fn tree_diff(left: &Path, right: &Path) -> Vec<String> {
    diff_nodes(&scan(left), &scan(right))
}

/// What the comparison knows about one path.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    content: Vec<u8>,
}

/// Returns one line per difference between two scanned trees.
fn diff_nodes(left: &BTreeMap<String, Node>, right: &BTreeMap<String, Node>) -> Vec<String> {
    let mut paths: Vec<&String> = left.keys().chain(right.keys()).collect();
    paths.sort();
    paths.dedup();

    paths
        .into_iter()
        .filter_map(|path| compare(path, left.get(path), right.get(path)))
        .collect()
}

/// Returns the first differences, one per line, and how many were left out.
fn first_lines(differences: &[String]) -> String {
    let mut lines: Vec<&str> = differences
        .iter()
        .take(SHOWN_DIFFERENCES)
        .map(String::as_str)
        .collect();
    let omitted = differences.len().saturating_sub(SHOWN_DIFFERENCES);
    let summary = format!("… and {omitted} more");
    if omitted > 0 {
        lines.push(&summary);
    }

    lines.join("\n  ")
}

/// Returns every path below `root` (relative, `/`-separated) and its node.
fn scan(root: &Path) -> BTreeMap<String, Node> {
    let mut nodes = BTreeMap::new();
    scan_into(root, "", &mut nodes);
    nodes
}

fn scan_into(dir: &Path, prefix: &str, nodes: &mut BTreeMap<String, Node>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()));

    for entry in entries {
        let entry = entry.unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()));
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let relative = format!("{prefix}{name}");
        let metadata = fs::symlink_metadata(&path)
            .unwrap_or_else(|err| panic!("stat {}: {err}", path.display()));

        let file_type = metadata.file_type();
        let kind = if file_type.is_file() {
            "file"
        } else if file_type.is_dir() {
            "directory"
        } else if file_type.is_symlink() {
            "symlink"
        } else {
            "special file"
        };
        let content = if file_type.is_file() {
            fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
        } else {
            Vec::new()
        };
        let mode = metadata.permissions().mode() & 0o7777;
        nodes.insert(
            relative.clone(),
            Node {
                kind,
                mode,
                content,
            },
        );

        if file_type.is_dir() {
            scan_into(&path, &format!("{relative}/"), nodes);
        }
    }
}

/// Describes how one path differs between the sides, if it does.
fn compare(path: &str, left: Option<&Node>, right: Option<&Node>) -> Option<String> {
    let (left, right) = match (left, right) {
        (Some(left), Some(right)) => (left, right),
        (Some(left), None) => return Some(format!("{path}: {} only on the left", left.kind)),
        (None, Some(right)) => return Some(format!("{path}: {} only on the right", right.kind)),
        (None, None) => return None,
    };

    if left.kind != right.kind {
        Some(format!(
            "{path}: {} on the left, {} on the right",
            left.kind, right.kind
        ))
    } else if left.mode != right.mode {
        Some(format!(
            "{path}: mode {:04o} on the left, {:04o} on the right",
            left.mode, right.mode
        ))
    } else if left.content != right.content {
        Some(format!(
            "{path}: content differs ({} bytes on the left, {} on the right)",
            left.content.len(),
            right.content.len()
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn equal_trees_have_no_differences() {
        let left = tempfile::tempdir().unwrap();
        let right = tempfile::tempdir().unwrap();
        for dir in [left.path(), right.path()] {
            fs::create_dir(dir.join("sub")).unwrap();
            fs::write(dir.join("sub/a"), b"same").unwrap();
        }

        let differences = tree_diff(left.path(), right.path());

        assert!(differences.is_empty(), "{differences:?}");
    }

    #[test]
    fn differences_name_missing_files_modes_and_content() {
        let left = tempfile::tempdir().unwrap();
        let right = tempfile::tempdir().unwrap();
        fs::write(left.path().join("only_left"), b"x").unwrap();
        fs::write(left.path().join("content"), b"one").unwrap();
        fs::write(right.path().join("content"), b"two!").unwrap();
        for dir in [left.path(), right.path()] {
            fs::write(dir.join("mode"), b"same").unwrap();
        }
        let restricted = fs::Permissions::from_mode(0o640);
        fs::set_permissions(right.path().join("mode"), restricted).unwrap();

        let differences = tree_diff(left.path(), right.path());

        assert_eq!(differences.len(), 3, "{differences:?}");
        assert!(differences[0].starts_with("content: content differs"));
        assert!(differences[1].starts_with("mode: mode"));
        assert!(differences[1].ends_with("0640 on the right"));
        assert_eq!(differences[2], "only_left: file only on the left");
    }
}
