//! Path rules for everything stored in a volume (SPEC section 7).
//!
//! A [`RelPath`] can only be built by validation, so code that holds one
//! never needs to check again that it is relative, free of `..`, and within
//! the length limits.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest file or directory name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The longest relative path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// The prefix of the temporary files that rfsd and rfs-sync stage next to
/// their targets before renaming them into place.
pub const TEMP_PREFIX: &str = ".rfs-tmp-";

/// The infix of the copies that `--force-remote` keeps of local files.
pub const CONFLICT_INFIX: &str = ".rfs-conflict-";

/// Why a string is not a valid relative path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("path is empty")]
    Empty,
    /// The path starts with `/`.
    #[error("path {0:?} is absolute")]
    Absolute(String),
    /// The path has an empty, `.` or `..` component.
    #[error("path {0:?} has an empty, \".\" or \"..\" component")]
    BadComponent(String),
    /// The path contains a NUL byte or a backslash.
    #[error("path {0:?} contains a NUL byte or a backslash")]
    BadCharacter(String),
    /// One component is longer than [`MAX_NAME_LEN`].
    #[error("a name in path {0:?} is longer than 255 bytes")]
    NameTooLong(String),
    /// The whole path is longer than [`MAX_PATH_LEN`].
    #[error("path of {0} bytes is longer than 4096 bytes")]
    PathTooLong(usize),
    /// The path is not valid UTF-8.
    #[error("path is not valid UTF-8")]
    NotUtf8,
}

/// A validated path relative to a volume's root, using `/` as separator.
///
/// Ordering is byte-wise on the string, which sorts a directory right before
/// its contents only when no sibling name sorts between them; code that needs
/// parents first sorts by [`RelPath::depth`] as well.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

impl RelPath {
    /// Returns the path if it follows the rules of SPEC section 7.
    ///
    /// # Errors
    ///
    /// Returns a [`PathError`] naming the first rule the string breaks.
    pub fn new(path: impl Into<String>) -> Result<Self, PathError> {
        let path = path.into();
        validate(&path)?;
        Ok(Self(path))
    }

    /// Returns the path from raw bytes, which must be valid UTF-8.
    ///
    /// # Errors
    ///
    /// Returns [`PathError::NotUtf8`] or the error of [`RelPath::new`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PathError> {
        let path = std::str::from_utf8(bytes).map_err(|_| PathError::NotUtf8)?;
        Self::new(path)
    }

    /// Returns the path as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the components of the path.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Returns the number of components.
    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// Returns the last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Returns the parent path, or `None` for a top-level name.
    pub fn parent(&self) -> Option<RelPath> {
        let (parent, _) = self.0.rsplit_once('/')?;
        Some(RelPath(parent.to_owned()))
    }

    /// Returns this path with `name` appended as a new last component.
    ///
    /// # Errors
    ///
    /// Returns an error when `name` is not a single valid component or the
    /// result is too long.
    pub fn join(&self, name: &str) -> Result<RelPath, PathError> {
        if name.contains('/') {
            return Err(PathError::BadComponent(name.to_owned()));
        }
        RelPath::new(format!("{}/{}", self.0, name))
    }

    /// Returns whether the path or any of its components is a name that is
    /// never synchronised (see [`is_ignored_name`]).
    pub fn is_ignored(&self) -> bool {
        self.components().any(is_ignored_name)
    }

    /// Returns the string, consuming the path.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for RelPath {
    type Error = PathError;

    fn try_from(path: &str) -> Result<Self, Self::Error> {
        RelPath::new(path)
    }
}

impl Serialize for RelPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let path = String::deserialize(deserializer)?;
        RelPath::new(path).map_err(serde::de::Error::custom)
    }
}

/// Returns whether a file name is never part of a version: the lock file,
/// staging files, and the conflict copies that `--force-remote` leaves.
pub fn is_ignored_name(name: &str) -> bool {
    name == crate::LOCK_FILE_NAME || name.starts_with(TEMP_PREFIX) || name.contains(CONFLICT_INFIX)
}

fn validate(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::PathTooLong(path.len()));
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute(path.to_owned()));
    }
    if path.contains('\0') || path.contains('\\') {
        return Err(PathError::BadCharacter(path.to_owned()));
    }

    for component in path.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(PathError::BadComponent(path.to_owned()));
        }
        if component.len() > MAX_NAME_LEN {
            return Err(PathError::NameTooLong(path.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ordinary_kmdata_names_are_accepted() {
        for name in ["world", "module_ABCD-1234-EF56", "key_pkcs11_ua00", "a/b/c"] {
            assert_eq!(RelPath::new(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn escaping_and_malformed_paths_are_rejected() {
        let cases = [
            ("", PathError::Empty),
            ("/etc/passwd", PathError::Absolute("/etc/passwd".into())),
            ("../x", PathError::BadComponent("../x".into())),
            ("a/../b", PathError::BadComponent("a/../b".into())),
            ("a/./b", PathError::BadComponent("a/./b".into())),
            ("a//b", PathError::BadComponent("a//b".into())),
            ("a/", PathError::BadComponent("a/".into())),
            ("a\0b", PathError::BadCharacter("a\0b".into())),
        ];
        for (path, expected) in cases {
            assert_eq!(RelPath::new(path), Err(expected), "{path:?}");
        }
    }

    #[test]
    fn length_limits_are_enforced() {
        let long_name = "n".repeat(256);
        assert!(matches!(
            RelPath::new(&*long_name),
            Err(PathError::NameTooLong(_))
        ));
        assert!(RelPath::new("n".repeat(255)).is_ok());

        let long_path = vec!["d".repeat(200); 21].join("/");
        assert!(matches!(
            RelPath::new(long_path),
            Err(PathError::PathTooLong(_))
        ));
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        assert_eq!(RelPath::from_bytes(b"key_\xff"), Err(PathError::NotUtf8));
    }

    #[test]
    fn lock_temp_and_conflict_files_are_ignored() {
        assert!(RelPath::new(".nft-lock").unwrap().is_ignored());
        assert!(RelPath::new("d/.rfs-tmp-123").unwrap().is_ignored());
        assert!(
            RelPath::new("world.rfs-conflict-20261203T101010Z")
                .unwrap()
                .is_ignored()
        );
        assert!(!RelPath::new("world").unwrap().is_ignored());
    }

    #[test]
    fn parent_and_join_are_inverse() {
        let path = RelPath::new("a/b/c").unwrap();
        let parent = path.parent().unwrap();
        assert_eq!(parent.as_str(), "a/b");
        assert_eq!(parent.join(path.file_name()).unwrap(), path);
        assert_eq!(RelPath::new("top").unwrap().parent(), None);
    }

    proptest! {
        #[test]
        fn accepted_paths_never_escape_the_root(path in "[a-z./]{1,40}") {
            if let Ok(rel) = RelPath::new(path.clone()) {
                prop_assert!(!rel.as_str().starts_with('/'));
                for component in rel.components() {
                    prop_assert!(!component.is_empty());
                    prop_assert!(component != "." && component != "..");
                }
            }
        }

        #[test]
        fn joined_valid_names_are_accepted(
            names in proptest::collection::vec("[A-Za-z0-9_-]{1,20}", 1..8)
        ) {
            let path = names.join("/");
            let rel = RelPath::new(path.clone()).unwrap();
            prop_assert_eq!(rel.depth(), names.len());
            prop_assert_eq!(rel.as_str(), path.as_str());
        }

        #[test]
        fn serde_round_trip_revalidates(path in "[a-z]{1,5}(/[a-z]{1,5}){0,3}") {
            let rel = RelPath::new(path).unwrap();
            let json = serde_json::to_string(&rel).unwrap();
            let back: RelPath = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, rel);
        }
    }
}
