//! Decides which files a synthetic kmdata tree holds: their kinds, names,
//! sizes and modes.
//!
//! The shape follows a real nShield `kmdata/local` directory: one `world`
//! file, a few `module_<ESN>` files, card sets, softcards, and then many key
//! files. Small trees keep the essentials and drop keys first, so even a
//! three-file tree looks like a Security World.

use rand::Rng;
use rand::rngs::StdRng;

/// Smallest size of any generated file, in bytes.
pub(crate) const MIN_SIZE: usize = 300;

/// Largest size of any generated file, in bytes.
pub(crate) const MAX_SIZE: usize = 40 * 1024;

/// Plain words that make up the idents of `simple` and `hwcrhk` keys.
const IDENT_WORDS: &[&str] = &[
    "tls",
    "web",
    "signing",
    "codesign",
    "backup",
    "payments",
    "tde",
    "vault",
    "ca-root",
    "ca-issuing",
    "ssh-host",
    "timestamp",
    "ocsp",
    "dnssec",
    "kms",
    "token",
];

/// The kind of a file in kmdata/local, which sets its size band and mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    World,
    Module,
    CardSet,
    Card,
    Softcard,
    Key,
}

impl Kind {
    /// Returns a random size in bytes that fits this kind of file.
    pub(crate) fn size(self, rng: &mut StdRng) -> usize {
        match self {
            Kind::World => rng.random_range(10 * 1024..=MAX_SIZE),
            Kind::Module => rng.random_range(1536..=6 * 1024),
            Kind::CardSet => rng.random_range(MIN_SIZE..=1024),
            Kind::Card => rng.random_range(400..=1536),
            Kind::Softcard => rng.random_range(600..=2048),
            Kind::Key => key_size(rng),
        }
    }

    /// Returns a random permission mode that fits this kind of file.
    pub(crate) fn mode(self, rng: &mut StdRng) -> u32 {
        // Hosts that create keys under a umask of 027 leave some key files
        // unreadable to others; everything else is the usual 0644.
        if self == Kind::Key && rng.random_ratio(1, 20) {
            0o640
        } else {
            0o644
        }
    }
}

/// One file the tree will hold, before its content exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) name: String,
    pub(crate) kind: Kind,
}

impl Planned {
    fn new(name: String, kind: Kind) -> Self {
        Self { name, kind }
    }
}

/// Returns exactly `files` planned files, essentials first, then keys.
///
/// Names are unique: hashes are 128 or 160 random bits, module ESNs are
/// deduplicated, and word-based key idents carry the key's index.
pub(crate) fn plan(files: usize, rng: &mut StdRng) -> Vec<Planned> {
    let mut planned = vec![Planned::new("world".to_owned(), Kind::World)];
    push_modules(&mut planned, module_count(files), rng);

    for _ in 0..card_set_count(files) {
        push_card_set(&mut planned, rng);
    }
    for _ in 0..softcard_count(files) {
        let name = format!("softcard_{}", random_hex(rng, 20));
        planned.push(Planned::new(name, Kind::Softcard));
    }
    planned.truncate(files);

    let mut key_index = 1;
    while planned.len() < files {
        planned.push(Planned::new(key_name(rng, key_index), Kind::Key));
        key_index += 1;
    }

    planned
}

/// Returns the name of a new PKCS #11 key file with a random hash.
pub(crate) fn pkcs11_key_name(rng: &mut StdRng) -> String {
    format!("key_pkcs11_ua{}", random_hex(rng, 20))
}

/// Returns how many modules a tree of `files` files belongs to.
fn module_count(files: usize) -> usize {
    (2 + files / 5000).min(8)
}

/// Returns how many card sets a tree of `files` files holds.
fn card_set_count(files: usize) -> usize {
    (1 + files / 250).min(40)
}

/// Returns how many softcards a tree of `files` files holds.
fn softcard_count(files: usize) -> usize {
    (1 + files / 400).min(25)
}

/// Adds `count` module files with distinct electronic serial numbers.
fn push_modules(planned: &mut Vec<Planned>, count: usize, rng: &mut StdRng) {
    let mut esns: Vec<String> = Vec::with_capacity(count);
    while esns.len() < count {
        let esn = random_esn(rng);
        if !esns.contains(&esn) {
            esns.push(esn);
        }
    }

    for esn in esns {
        planned.push(Planned::new(format!("module_{esn}"), Kind::Module));
    }
}

/// Adds one card set: its `cards_` file, then one `card_` file per card.
fn push_card_set(planned: &mut Vec<Planned>, rng: &mut StdRng) {
    let hash = random_hex(rng, 20);
    let cards = rng.random_range(1..=3);

    planned.push(Planned::new(format!("cards_{hash}"), Kind::CardSet));
    for card in 1..=cards {
        let name = format!("card_{hash}_{card}");
        planned.push(Planned::new(name, Kind::Card));
    }
}

/// Returns a key file name for one of the common nShield applications.
fn key_name(rng: &mut StdRng, index: usize) -> String {
    let word = IDENT_WORDS[rng.random_range(0..IDENT_WORDS.len())];
    match rng.random_range(0..100) {
        0..60 => pkcs11_key_name(rng),
        60..80 => format!("key_simple_{word}-{index}"),
        80..92 => format!("key_jcecsp_{}", random_hex(rng, 16)),
        _ => format!("key_hwcrhk_rsa-{word}{index}"),
    }
}

/// Returns a key file size: mostly a few KiB, a few much larger.
fn key_size(rng: &mut StdRng) -> usize {
    // Most blobs hold one key and a short ACL; some carry long ACLs or
    // certificate chains and grow towards the upper bound.
    match rng.random_range(0..100) {
        0..70 => rng.random_range(MIN_SIZE..=3 * 1024),
        70..95 => rng.random_range(3 * 1024..=8 * 1024),
        _ => rng.random_range(8 * 1024..=MAX_SIZE),
    }
}

/// Returns an ESN in the `ABCD-1234-EF56` form of nShield modules.
fn random_esn(rng: &mut StdRng) -> String {
    let digits = hex::encode_upper(rng.random::<[u8; 6]>());
    format!("{}-{}-{}", &digits[0..4], &digits[4..8], &digits[8..12])
}

/// Returns `bytes` random bytes as lowercase hex.
fn random_hex(rng: &mut StdRng, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rng.fill(buf.as_mut_slice());
    hex::encode(buf)
}
