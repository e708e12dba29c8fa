//! Finds the `rfsd` and `rfs-sync` executables the tests run, building them
//! first when needed.
//!
//! Cargo builds a package's binaries for that package's own integration
//! tests only, so `cargo test --workspace` alone does not produce `rfsd` or
//! `rfs-sync` for this package. The harness therefore runs
//! `cargo build -p rfsd -p rfs-sync` once per test process, in the profile
//! of the test executable, which also keeps the binaries from going stale
//! while someone edits them. Setting `RFS_BIN_DIR` skips the build and takes
//! both executables from that directory instead.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process;

/// The environment variable that names a directory holding prebuilt `rfsd`
/// and `rfs-sync` executables.
pub const BIN_DIR_VAR: &str = "RFS_BIN_DIR";

/// How long building the binaries may take; a cold build of the workspace
/// on a slow CI runner needs minutes.
const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);

/// The paths of the two executables under test.
#[derive(Debug)]
pub(crate) struct Binaries {
    pub(crate) rfsd: PathBuf,
    pub(crate) rfs_sync: PathBuf,
}

/// Returns the executables, building them on first use.
///
/// Panics with a message saying what to do when they cannot be found or
/// built; every later call in the same process fails the same way without
/// trying again.
pub(crate) fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();

    match BINARIES.get_or_init(locate) {
        Ok(binaries) => binaries,
        Err(message) => panic!("{message}"),
    }
}

/// Finds or builds both executables.
fn locate() -> Result<Binaries, String> {
    let dir = match env::var_os(BIN_DIR_VAR) {
        Some(dir) => PathBuf::from(dir),
        None => build()?,
    };

    let binaries = Binaries {
        rfsd: dir.join("rfsd"),
        rfs_sync: dir.join("rfs-sync"),
    };
    for path in [&binaries.rfsd, &binaries.rfs_sync] {
        if !path.is_file() {
            return Err(format!(
                "{} does not exist; build it with `cargo build --workspace` \
                 or point {BIN_DIR_VAR} at a directory holding rfsd and rfs-sync",
                path.display()
            ));
        }
    }

    Ok(binaries)
}

/// Builds `rfsd` and `rfs-sync` in the profile of the running test
/// executable and returns the directory that holds them.
fn build() -> Result<PathBuf, String> {
    let profile_dir = profile_dir()?;
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| format!("odd build directory {}", profile_dir.display()))?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", "rfsd", "-p", "rfs-sync", "--bins", "--locked"])
        // The test-only crash points; absent from every release build.
        .args(["--features", "rfsd/crash-points,rfs-sync/crash-points"]);
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }

    let result = process::run(command, BUILD_LIMIT);
    if result.code != 0 {
        return Err(format!(
            "building rfsd and rfs-sync failed; fix the build or set \
             {BIN_DIR_VAR}\n{result}"
        ));
    }

    Ok(profile_dir)
}

/// Returns `target/<profile>`, the parent of the `deps` directory holding
/// the running test executable.
fn profile_dir() -> Result<PathBuf, String> {
    let exe = env::current_exe().map_err(|err| format!("current_exe: {err}"))?;
    let deps = exe.parent().filter(|dir| dir.ends_with("deps"));
    let profile_dir = deps.and_then(Path::parent).ok_or_else(|| {
        format!(
            "cannot tell the build directory from {}; set {BIN_DIR_VAR}",
            exe.display()
        )
    })?;

    Ok(profile_dir.to_path_buf())
}
