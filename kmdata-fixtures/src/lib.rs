//! Generates realistic synthetic nShield kmdata trees for tests and
//! benchmarks.
//!
//! Names, sizes and modes look like a real Security World `kmdata/local`
//! directory, but every file's content is seeded random bytes and never key
//! material. A tree depends only on its [`TreeSpec`], so the same seed gives
//! the same tree on every run and every host, as long as this crate and its
//! pinned `rand` version stay the same.

#![warn(missing_docs)]

mod plan;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::plan::Kind;

/// Mixed into the seed of [`new_key_file`] so that its key differs from every
/// key that [`generate`] makes from the same seed.
const NEW_KEY_SEED_SALT: u64 = 0x6e65_775f_6b65_7921;

/// Describes a tree to generate.
///
/// Only the file count and the seed shape the tree: the same spec always
/// yields the same names, sizes, modes and content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TreeSpec {
    /// The exact number of files in the tree.
    pub files: usize,
    /// The seed of the random generator that picks names, sizes and content.
    pub seed: u64,
}

impl TreeSpec {
    /// Returns a spec for a tree of `files` files generated from `seed`.
    pub fn new(files: usize, seed: u64) -> Self {
        Self { files, seed }
    }
}

/// One generated file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixtureFile {
    /// The path relative to the tree root, with `/` separators.
    ///
    /// Trees are flat like a real `kmdata/local`, so today this is always a
    /// bare file name.
    pub path: String,
    /// The permission bits, such as `0o644`.
    pub mode: u32,
    /// The file's bytes: random, never key material.
    pub content: Vec<u8>,
}

/// Returns the files of the tree, in a deterministic order (sorted by path).
///
/// The tree holds exactly `spec.files` files; a spec of zero files gives an
/// empty tree. The essentials come first, so small trees keep them: `world`,
/// then `module_<ESN>` files, card sets (`cards_<hash>` and
/// `card_<hash>_<n>`), softcards (`softcard_<hash>`), and then key files
/// (`key_pkcs11_ua<hash>`, `key_simple_<ident>`, `key_jcecsp_<hex>` and
/// `key_hwcrhk_rsa-<ident>`). Sizes range from 300 bytes to 40 KiB.
pub fn generate(spec: &TreeSpec) -> Vec<FixtureFile> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let planned = plan::plan(spec.files, &mut rng);

    let mut files: Vec<FixtureFile> = planned
        .into_iter()
        .map(|entry| fixture_file(entry.name, entry.kind, &mut rng))
        .collect();
    files.sort_unstable_by(|a, b| a.path.cmp(&b.path));

    files
}

/// Writes the tree into `dir` (which must exist; created subdirectories as
/// needed), setting modes. Returns the files written.
///
/// Existing files with the same names are overwritten. Modes are set
/// explicitly, so the process umask does not change them.
///
/// # Errors
///
/// Returns the first I/O error, with the path of the file that failed in its
/// message. Files written before the failure stay in place.
pub fn write_tree(dir: &Path, spec: &TreeSpec) -> io::Result<Vec<FixtureFile>> {
    let files = generate(spec);
    for file in &files {
        write_file(dir, file)?;
    }

    Ok(files)
}

/// Returns a realistic new key file name and content (e.g.
/// "key_pkcs11_ua<40 lowercase hex>") from a seed, for tests that "generate
/// a key" on a host.
///
/// The key never collides with one that [`generate`] makes from the same
/// seed, and its mode is `0o644`.
pub fn new_key_file(seed: u64) -> FixtureFile {
    let mut rng = StdRng::seed_from_u64(seed ^ NEW_KEY_SEED_SALT);
    let path = plan::pkcs11_key_name(&mut rng);
    let size = Kind::Key.size(&mut rng);

    FixtureFile {
        path,
        mode: 0o644,
        content: random_bytes(&mut rng, size),
    }
}

/// Returns a file of the given name and kind with random size and content.
fn fixture_file(path: String, kind: Kind, rng: &mut StdRng) -> FixtureFile {
    let size = kind.size(rng);
    let mode = kind.mode(rng);
    let content = random_bytes(rng, size);

    FixtureFile {
        path,
        mode,
        content,
    }
}

/// Returns `size` random bytes, seeded from `rng`.
///
/// Content is bulk data, so it comes from SplitMix64 rather than from the
/// ChaCha generator behind `StdRng`: unoptimised test builds fill bytes many
/// times faster that way, and the stream is still statistically random and
/// incompressible.
fn random_bytes(rng: &mut StdRng, size: usize) -> Vec<u8> {
    let mut state: u64 = rng.random();
    let mut content = vec![0u8; size];

    let mut chunks = content.chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    let tail = chunks.into_remainder();
    let last = splitmix64(&mut state).to_le_bytes();
    tail.copy_from_slice(&last[..tail.len()]);

    content
}

/// Advances a SplitMix64 state and returns its next output.
///
/// The constants are those of Steele, Lea and Flood, "Fast Splittable
/// Pseudorandom Number Generators" (OOPSLA 2014).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes one file below `dir` and sets its mode.
fn write_file(dir: &Path, file: &FixtureFile) -> io::Result<()> {
    let path = dir.join(&file.path);
    let with_path = |err: io::Error| {
        let message = format!("writing {}: {err}", path.display());
        io::Error::new(err.kind(), message)
    };

    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(with_path)?;
    }
    fs::write(&path, &file.content).map_err(with_path)?;
    let permissions = fs::Permissions::from_mode(file.mode);
    fs::set_permissions(&path, permissions).map_err(with_path)?;

    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;
    use crate::plan::{MAX_SIZE, MIN_SIZE};

    fn names(files: &[FixtureFile]) -> Vec<&str> {
        files.iter().map(|file| file.path.as_str()).collect()
    }

    /// Checks the part of a file name that follows its kind's prefix.
    type NameCheck = fn(&str) -> bool;

    /// The prefix of each kind of file and the check for the rest of its name.
    const NAME_PATTERNS: [(&str, NameCheck); 8] = [
        ("module_", is_esn),
        ("cards_", |rest| is_hex(rest, 40)),
        ("card_", is_card_name),
        ("softcard_", |rest| is_hex(rest, 40)),
        ("key_pkcs11_ua", |rest| is_hex(rest, 40)),
        ("key_simple_", is_ident),
        ("key_jcecsp_", |rest| is_hex(rest, 32)),
        ("key_hwcrhk_rsa-", is_ident),
    ];

    fn is_lower_hex_digit(byte: u8) -> bool {
        byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)
    }

    fn is_upper_hex_digit(byte: u8) -> bool {
        byte.is_ascii_digit() || (b'A'..=b'F').contains(&byte)
    }

    fn is_hex(text: &str, len: usize) -> bool {
        text.len() == len && text.bytes().all(is_lower_hex_digit)
    }

    fn is_esn(text: &str) -> bool {
        let groups: Vec<&str> = text.split('-').collect();
        groups.len() == 3 && groups.iter().all(|group| is_esn_group(group))
    }

    fn is_esn_group(group: &str) -> bool {
        group.len() == 4 && group.bytes().all(is_upper_hex_digit)
    }

    fn is_ident(text: &str) -> bool {
        !text.is_empty() && text.bytes().all(is_ident_byte)
    }

    fn is_ident_byte(byte: u8) -> bool {
        byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'
    }

    fn is_card_name(rest: &str) -> bool {
        let Some((hash, number)) = rest.split_once('_') else {
            return false;
        };
        is_hex(hash, 40) && number.parse::<u32>().is_ok_and(|n| n >= 1)
    }

    fn is_kmdata_name(name: &str) -> bool {
        name == "world"
            || NAME_PATTERNS
                .iter()
                .any(|(prefix, check)| matches_pattern(name, prefix, *check))
    }

    fn matches_pattern(name: &str, prefix: &str, check: NameCheck) -> bool {
        name.strip_prefix(prefix).is_some_and(check)
    }

    fn sample_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sample/local")
    }

    #[test]
    fn same_seed_gives_same_tree() {
        let spec = TreeSpec::new(300, 7);

        let first = generate(&spec);
        let second = generate(&spec);

        assert_eq!(first, second);
    }

    #[test]
    fn different_seeds_give_different_trees() {
        let first = generate(&TreeSpec::new(50, 1));
        let second = generate(&TreeSpec::new(50, 2));

        assert_ne!(names(&first), names(&second));
    }

    #[test]
    fn tree_holds_exactly_the_requested_count() {
        for count in [0, 1, 2, 3, 5, 8, 24, 251, 1000] {
            let files = generate(&TreeSpec::new(count, 3));

            assert_eq!(files.len(), count, "count {count}");
        }
    }

    #[test]
    fn small_trees_keep_the_essentials_first() {
        let one = generate(&TreeSpec::new(1, 9));
        let three = generate(&TreeSpec::new(3, 9));
        let six = generate(&TreeSpec::new(6, 9));

        assert_eq!(names(&one), ["world"]);
        let three_names = names(&three);
        assert!(three_names.contains(&"world"));
        assert!(
            three_names
                .iter()
                .all(|name| *name == "world" || name.starts_with("module_"))
        );
        let six_names = names(&six);
        assert!(six_names.iter().any(|name| name.starts_with("cards_")));
        assert!(!six_names.iter().any(|name| name.starts_with("key_")));
    }

    #[test]
    fn large_trees_are_mostly_keys_of_every_kind() {
        let files = generate(&TreeSpec::new(2000, 5));
        let names = names(&files);

        let keys = names.iter().filter(|n| n.starts_with("key_")).count();
        assert!(keys > 1800, "only {keys} keys");
        for prefix in [
            "module_",
            "cards_",
            "card_",
            "softcard_",
            "key_pkcs11_ua",
            "key_simple_",
            "key_jcecsp_",
            "key_hwcrhk_",
        ] {
            assert!(
                names.iter().any(|name| name.starts_with(prefix)),
                "no {prefix} file"
            );
        }
    }

    #[test]
    fn names_match_kmdata_patterns() {
        let files = generate(&TreeSpec::new(3000, 11));

        for name in names(&files) {
            assert!(is_kmdata_name(name), "unexpected name {name}");
            assert!(!name.contains('/'), "tree is not flat: {name}");
        }
    }

    #[test]
    fn names_are_unique_and_sorted() {
        let files = generate(&TreeSpec::new(5000, 13));
        let names = names(&files);

        let unique: HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len());
        assert!(names.is_sorted());
    }

    #[test]
    fn hundred_thousand_file_tree_has_unique_names() {
        let files = generate(&TreeSpec::new(100_000, 29));

        let unique: HashSet<&str> = names(&files).into_iter().collect();
        assert_eq!(unique.len(), 100_000);
    }

    #[test]
    fn sizes_stay_within_bounds() {
        let files = generate(&TreeSpec::new(3000, 17));

        for file in &files {
            let size = file.content.len();
            assert!((MIN_SIZE..=MAX_SIZE).contains(&size), "{}", file.path);
        }
        let world = files.iter().find(|file| file.path == "world").unwrap();
        assert!(world.content.len() >= 10 * 1024);
    }

    #[test]
    fn modes_are_realistic() {
        let files = generate(&TreeSpec::new(1000, 19));

        assert!(files.iter().all(|f| f.mode == 0o644 || f.mode == 0o640));
        assert!(files.iter().any(|f| f.mode == 0o640));
        let world = files.iter().find(|file| file.path == "world").unwrap();
        assert_eq!(world.mode, 0o644);
    }

    #[test]
    fn write_tree_writes_content_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let spec = TreeSpec::new(200, 23);

        let files = write_tree(dir.path(), &spec).unwrap();

        assert_eq!(files, generate(&spec));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), files.len());
        for file in &files {
            let path = dir.path().join(&file.path);
            let metadata = fs::symlink_metadata(&path).unwrap();
            assert!(metadata.is_file(), "{}", file.path);
            assert_eq!(metadata.permissions().mode() & 0o777, file.mode);
            assert_eq!(fs::read(&path).unwrap(), file.content);
        }
    }

    #[test]
    fn write_tree_error_names_the_failing_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        fs::write(&blocker, b"a file, not a directory").unwrap();

        let err = write_tree(&blocker, &TreeSpec::new(2, 1)).unwrap_err();

        assert!(err.to_string().contains("blocker"), "{err}");
    }

    #[test]
    fn new_key_file_is_deterministic_pkcs11_key() {
        let first = new_key_file(42);
        let again = new_key_file(42);
        let other = new_key_file(43);

        assert_eq!(first, again);
        assert_ne!(first.path, other.path);
        let hash = first.path.strip_prefix("key_pkcs11_ua").unwrap();
        assert!(is_hex(hash, 40), "{}", first.path);
        assert_eq!(first.mode, 0o644);
        assert!((MIN_SIZE..=MAX_SIZE).contains(&first.content.len()));
    }

    #[test]
    fn new_key_file_differs_from_generated_keys() {
        let files = generate(&TreeSpec::new(500, 42));

        let key = new_key_file(42);

        assert!(files.iter().all(|file| file.path != key.path));
    }

    #[test]
    fn checked_in_sample_matches_generator() {
        let expected = generate(&TreeSpec::new(24, 1));

        let mut actual: Vec<(String, Vec<u8>)> = fs::read_dir(sample_dir())
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let name = entry.file_name().into_string().unwrap();
                (name, fs::read(entry.path()).unwrap())
            })
            .collect();
        actual.sort();

        let expected: Vec<(String, Vec<u8>)> = expected
            .into_iter()
            .map(|file| (file.path, file.content))
            .collect();
        assert_eq!(actual, expected);
    }
}
