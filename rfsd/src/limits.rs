//! Limits on what one request may ask for (SPEC section 7).

use rfs_core::fsx::{DEFAULT_MAX_ENTRIES, DEFAULT_MAX_FILE_SIZE, ScanLimits};

/// The limits the server enforces before it acts on a request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest file, in bytes.
    pub max_file_size: u64,
    /// The most entries a volume may hold.
    pub max_entries: usize,
    /// The most objects (and paths) one commit or upload may carry.
    pub max_objects_per_commit: usize,
    /// The most digests one download or missing-objects request may name.
    pub max_digests_per_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_objects_per_commit: 100_000,
            max_digests_per_request: 100_000,
        }
    }
}

impl Limits {
    /// Returns the limits that scans of the live tree apply.
    pub fn scan(&self) -> ScanLimits {
        ScanLimits {
            max_file_size: self.max_file_size,
            max_entries: self.max_entries,
        }
    }
}
