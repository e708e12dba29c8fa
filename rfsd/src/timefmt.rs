//! Times for people and JSON: RFC 3339 in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Returns `time` as an RFC 3339 UTC string with whole seconds.
pub fn rfc3339(time: SystemTime) -> String {
    unix_rfc3339(unix_secs(time))
}

/// Returns `time` in whole seconds since the Unix epoch (0 before it).
pub fn unix_secs(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

/// Returns seconds since the Unix epoch as an RFC 3339 UTC string.
pub fn unix_rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// Returns the current time in seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    unix_secs(SystemTime::now())
}
