//! Crash points for the crash-safety tests: named steps at which a test can
//! make this process abort, as a power cut or SIGKILL would stop it.
//!
//! They exist only with the test-only cargo feature `crash-points`, which
//! release builds never enable; without it [`point`] compiles to nothing.

/// Aborts the process at once when the `crash-points` feature is on and
/// the environment variable `RFSD_CRASH_AT` names this point.
#[inline]
pub(crate) fn point(name: &str) {
    #[cfg(feature = "crash-points")]
    if std::env::var("RFSD_CRASH_AT").is_ok_and(|at| at == name) {
        std::process::abort();
    }
    #[cfg(not(feature = "crash-points"))]
    let _ = name;
}
