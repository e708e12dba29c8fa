//! Grants: which client may do what on which volume (SPEC section 4.3).
//!
//! The table lives in a TOML file that operators may edit by hand or keep in
//! configuration management. Every request looks at the file's identity
//! (inode, size, modification time), which costs one `stat`, and reloads it
//! when it changed, so a grant added or removed applies to the very next
//! request. A file that fails to parse leaves the last good table in force
//! and logs an error once per change.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use rfs_core::{DEFAULT_VOLUME, KeyHash};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A failure to read or write the clients file.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The file could not be read or written.
    #[error("clients file {path}")]
    Io {
        /// The clients file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("clients file {path}: {message}")]
    Invalid {
        /// The clients file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
}

/// Which addresses a grant covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPattern {
    /// Any address; useful with a key hash, for clients behind DHCP or NAT.
    Any,
    /// One address or a CIDR range.
    Net(IpNet),
}

impl AddressPattern {
    /// Returns whether `addr` falls under the pattern.
    pub fn matches(&self, addr: IpAddr) -> bool {
        match self {
            AddressPattern::Any => true,
            AddressPattern::Net(net) => net.contains(&addr.to_canonical()),
        }
    }
}

impl FromStr for AddressPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "*" || text == "any" {
            return Ok(AddressPattern::Any);
        }
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Ok(AddressPattern::Net(IpNet::from(addr.to_canonical())));
        }
        text.parse::<IpNet>()
            .map(|net| AddressPattern::Net(net.trunc()))
            .map_err(|_| format!("{text:?} is not an IP address, a CIDR range or \"*\""))
    }
}

impl fmt::Display for AddressPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressPattern::Any => f.write_str("*"),
            AddressPattern::Net(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(f, "{}", net.addr())
            }
            AddressPattern::Net(net) => write!(f, "{net}"),
        }
    }
}

impl Serialize for AddressPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AddressPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What one client may do on one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The client's address, a CIDR range, or `*`.
    pub address: AddressPattern,
    /// The key the client must present; absent means trust by address.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_key_hash"
    )]
    pub key_hash: Option<KeyHash>,
    /// The volume, `local` by default, or `*` for every volume.
    #[serde(default = "default_volume")]
    pub volume: String,
    /// Forbids writes whatever else the grant says.
    #[serde(default, skip_serializing_if = "is_false")]
    pub readonly: bool,
    /// Lets a client trusted by address only write.
    #[serde(default, skip_serializing_if = "is_false")]
    pub write_noauth: bool,
}

impl Grant {
    /// Returns whether this grant and `other` are for the same client and
    /// volume, so that adding one replaces the other.
    pub fn same_subject(&self, other: &Grant) -> bool {
        self.address == other.address
            && self.key_hash == other.key_hash
            && self.volume == other.volume
    }

    /// Returns the rights this grant gives `peer` on `volume`, if it applies.
    fn rights_for(&self, peer: &Peer, volume: &str) -> Option<Rights> {
        if (self.volume != volume && self.volume != "*") || !self.address.matches(peer.addr) {
            return None;
        }
        let write = match self.key_hash {
            Some(wanted) if peer.key_hash != Some(wanted) => return None,
            Some(_) => !self.readonly,
            None => self.write_noauth && !self.readonly,
        };
        Some(Rights {
            read: true,
            list: true,
            write,
        })
    }
}

/// The rights a client holds on a volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rights {
    /// May download versions and objects.
    pub read: bool,
    /// May list versions and manifests.
    pub list: bool,
    /// May take the lock, upload objects and commit.
    pub write: bool,
}

impl Rights {
    fn union(self, other: Rights) -> Rights {
        Rights {
            read: self.read || other.read,
            list: self.list || other.list,
            write: self.write || other.write,
        }
    }
}

/// A client as seen on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The TCP peer address.
    pub addr: IpAddr,
    /// The key hash of the verified client certificate, if one was shown.
    pub key_hash: Option<KeyHash>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key_hash {
            Some(key_hash) => write!(f, "{} (key {key_hash})", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// The grant table, reloaded from its file when the file changes.
#[derive(Debug)]
pub struct Grants {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    grants: Arc<Vec<Grant>>,
    stamp: Option<FileStamp>,
}

/// The identity of one state of a file: a change to any field means the
/// content may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    #[serde(default, rename = "grant")]
    grants: Vec<Grant>,
}

impl Grants {
    /// Loads the table from `path`. A missing file is an empty table.
    ///
    /// # Errors
    ///
    /// Fails when the file exists but cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, GrantError> {
        let stamp = stamp_of(path);
        let grants = if stamp.is_some() {
            read_file(path)?
        } else {
            Vec::new()
        };
        let loaded = Loaded {
            grants: Arc::new(grants),
            stamp,
        };
        Ok(Self {
            path: path.to_owned(),
            loaded: Mutex::new(loaded),
        })
    }

    /// Returns the path of the clients file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the current table, reloading the file first if it changed.
    pub fn current(&self) -> Arc<Vec<Grant>> {
        let stamp = stamp_of(&self.path);
        let mut loaded = self
            .loaded
            .lock()
            .expect("grant table lock is never poisoned: no code panics while holding it");
        if stamp == loaded.stamp {
            return loaded.grants.clone();
        }

        loaded.stamp = stamp;
        let result = if stamp.is_some() {
            read_file(&self.path)
        } else {
            Ok(Vec::new())
        };
        match result {
            Ok(grants) => {
                tracing::info!(path = %self.path.display(), grants = grants.len(), "clients file reloaded");
                loaded.grants = Arc::new(grants);
            }
            Err(err) => {
                tracing::error!(error = %err, "clients file rejected; the last good grants stay in force");
            }
        }
        loaded.grants.clone()
    }

    /// Returns the rights of `peer` on `volume`, or `None` when no grant
    /// applies.
    pub fn rights(&self, peer: &Peer, volume: &str) -> Option<Rights> {
        let grants = self.current();
        grants
            .iter()
            .filter_map(|grant| grant.rights_for(peer, volume))
            .reduce(Rights::union)
    }

    /// Adds `grant`, replacing one for the same address, key and volume,
    /// and writes the file atomically. Returns whether one was replaced.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be read, parsed or written.
    pub fn add(&self, grant: Grant) -> Result<bool, GrantError> {
        self.edit(|grants| {
            let before = grants.len();
            grants.retain(|existing| !existing.same_subject(&grant));
            let replaced = grants.len() != before;
            grants.push(grant);
            replaced as u32
        })
        .map(|replaced| replaced > 0)
    }

    /// Removes the grants for `address` (only for `volume`, if given) and
    /// returns how many were removed.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be read, parsed or written.
    pub fn remove(&self, address: AddressPattern, volume: Option<&str>) -> Result<u32, GrantError> {
        self.edit(|grants| {
            let before = grants.len();
            grants.retain(|grant| {
                grant.address != address || volume.is_some_and(|volume| grant.volume != volume)
            });
            (before - grants.len()) as u32
        })
    }

    fn edit(&self, change: impl FnOnce(&mut Vec<Grant>) -> u32) -> Result<u32, GrantError> {
        // The file is re-read so that hand edits made since the last request
        // are kept.
        let mut grants = if self.path.exists() {
            read_file(&self.path)?
        } else {
            Vec::new()
        };
        let result = change(&mut grants);
        write_file(&self.path, &grants)?;
        self.current();
        Ok(result)
    }
}

/// Returns the command that would give `peer` the access it asked for.
pub fn grant_hint(peer: &Peer, volume: &str, wants_write: bool) -> String {
    let mut hint = format!("rfsd client add {}", peer.addr.to_canonical());
    if volume != DEFAULT_VOLUME {
        hint.push_str(&format!(" --volume {volume}"));
    }
    match peer.key_hash {
        Some(key_hash) => hint.push_str(&format!(" --keyhash {key_hash}")),
        None if wants_write => hint.push_str(" --write-noauth"),
        None => {}
    }
    hint
}

fn read_file(path: &Path) -> Result<Vec<Grant>, GrantError> {
    let text = std::fs::read_to_string(path).map_err(|source| GrantError::Io {
        path: path.to_owned(),
        source,
    })?;
    let file: ClientsFile = toml::from_str(&text).map_err(|err| GrantError::Invalid {
        path: path.to_owned(),
        message: err.to_string(),
    })?;
    Ok(file.grants)
}

fn write_file(path: &Path, grants: &[Grant]) -> Result<(), GrantError> {
    let io_err = |source| GrantError::Io {
        path: path.to_owned(),
        source,
    };
    let body = toml::to_string(&ClientsFile {
        grants: grants.to_vec(),
    })
    .map_err(|err| GrantError::Invalid {
        path: path.to_owned(),
        message: err.to_string(),
    })?;
    let text = format!(
        "# Grants of rfsd: see `rfsd client --help`. Rewritten by `rfsd client add/remove`.\n\n{body}"
    );

    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
    temp.write_all(text.as_bytes()).map_err(io_err)?;
    temp.as_file().sync_all().map_err(io_err)?;
    temp.persist(path).map_err(|err| io_err(err.error))?;
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_err)
}

fn stamp_of(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    let nanos = |secs: i64, nsecs: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsecs);
    Some(FileStamp {
        inode: meta.ino(),
        size: meta.len(),
        mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
    })
}

fn default_volume() -> String {
    DEFAULT_VOLUME.to_owned()
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn optional_key_hash<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<KeyHash>, D::Error> {
    let text = String::deserialize(deserializer)?;
    KeyHash::parse_optional(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str) -> Peer {
        Peer {
            addr: addr.parse().unwrap(),
            key_hash: None,
        }
    }

    fn grants(text: &str) -> Grants {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.keep().join("clients.toml");
        std::fs::write(&path, text).unwrap();
        Grants::load(&path).unwrap()
    }

    #[test]
    fn address_trust_reads_but_writes_only_with_write_noauth() {
        let table = grants(
            "[[grant]]\naddress = \"127.0.0.2\"\nwrite_noauth = true\n\
             [[grant]]\naddress = \"127.0.0.3\"\n",
        );

        let writer = table.rights(&peer("127.0.0.2"), "local").unwrap();
        let reader = table.rights(&peer("127.0.0.3"), "local").unwrap();

        assert!(writer.write && writer.read);
        assert!(reader.read && !reader.write);
        assert_eq!(table.rights(&peer("127.0.0.4"), "local"), None);
    }

    #[test]
    fn readonly_forbids_writes_even_with_the_key() {
        let key = KeyHash::of_spki(b"client");
        let table = grants(&format!(
            "[[grant]]\naddress = \"*\"\nkey_hash = \"{key}\"\nreadonly = true\n"
        ));
        let with_key = Peer {
            addr: "10.1.2.3".parse().unwrap(),
            key_hash: Some(key),
        };

        let rights = table.rights(&with_key, "local").unwrap();

        assert!(rights.read && !rights.write);
    }

    #[test]
    fn a_key_grant_needs_the_key() {
        let key = KeyHash::of_spki(b"client");
        let table = grants(&format!(
            "[[grant]]\naddress = \"127.0.0.0/8\"\nkey_hash = \"{key}\"\n"
        ));
        let with_key = Peer {
            addr: "127.0.0.9".parse().unwrap(),
            key_hash: Some(key),
        };

        assert!(table.rights(&with_key, "local").unwrap().write);
        assert_eq!(table.rights(&peer("127.0.0.9"), "local"), None);
    }

    #[test]
    fn grants_are_per_volume() {
        let table = grants("[[grant]]\naddress = \"127.0.0.2\"\nvolume = \"hsm-1234/config\"\n");
        assert_eq!(table.rights(&peer("127.0.0.2"), "local"), None);
        assert!(
            table
                .rights(&peer("127.0.0.2"), "hsm-1234/config")
                .is_some()
        );
    }

    #[test]
    fn hand_edits_apply_to_the_next_request_and_bad_edits_keep_the_last_table() {
        let table = grants("");
        assert_eq!(table.rights(&peer("127.0.0.2"), "local"), None);

        std::fs::write(table.path(), "[[grant]]\naddress = \"127.0.0.2\"\n").unwrap();
        assert!(table.rights(&peer("127.0.0.2"), "local").is_some());

        std::fs::write(table.path(), "[[grant]\nbroken").unwrap();
        assert!(table.rights(&peer("127.0.0.2"), "local").is_some());
    }

    #[test]
    fn add_replaces_and_remove_deletes() {
        let table = grants("");
        let grant = Grant {
            address: "127.0.0.2".parse().unwrap(),
            key_hash: None,
            volume: "local".into(),
            readonly: true,
            write_noauth: false,
        };

        assert!(!table.add(grant.clone()).unwrap());
        assert!(
            table
                .add(Grant {
                    readonly: false,
                    write_noauth: true,
                    ..grant.clone()
                })
                .unwrap()
        );
        assert!(table.rights(&peer("127.0.0.2"), "local").unwrap().write);
        assert_eq!(table.remove(grant.address, None).unwrap(), 1);
        assert_eq!(table.rights(&peer("127.0.0.2"), "local"), None);
    }

    #[test]
    fn zeros_key_hash_means_no_key() {
        let table = grants(&format!(
            "[[grant]]\naddress = \"127.0.0.2\"\nkey_hash = \"{}\"\n",
            "0".repeat(40)
        ));
        assert!(table.rights(&peer("127.0.0.2"), "local").is_some());
    }

    #[test]
    fn hint_names_the_missing_right() {
        assert_eq!(
            grant_hint(&peer("127.0.0.4"), "local", false),
            "rfsd client add 127.0.0.4"
        );
        assert_eq!(
            grant_hint(&peer("127.0.0.3"), "local", true),
            "rfsd client add 127.0.0.3 --write-noauth"
        );
    }
}
