//! A full disk, on the RFS host's state directory and separately on a
//! client's kmdata: the operation fails with a clear message, nothing
//! committed is lost, and it succeeds once space is freed, without a
//! restart. The disks are small tmpfs mounts, which needs root.

use std::path::{Path, PathBuf};
use std::process::Command;

use rfs_tests::{Grant, Server, assert_same_tree};

const WRITER: &str = "127.0.0.2";
const READER: &str = "127.0.0.3";

/// A tmpfs mounted over a directory for one test, unmounted when dropped.
struct SmallDisk {
    at: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. "2m") at `at`, which must exist and be
    /// empty; `None` when this process may not mount (not root).
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return None;
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting a tmpfs at {}", at.display());
        Some(SmallDisk { at: at.to_owned() })
    }

    /// Makes the disk `size` large, as freeing space would.
    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.at)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "growing the tmpfs at {}",
            self.at.display()
        );
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy, so a process still holding files there does not keep it.
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_full_state_disk_refuses_a_commit_clearly_and_recovers_without_a_restart() {
    let mut server = Server::builder()
        .with_fixture_tree(10, 12)
        .with_grant(Grant::address(WRITER).write_noauth())
        .start();
    let writer = server.synced_client(WRITER);
    server.halt();
    let state = server.state_dir().to_owned();
    let saved = state.with_extension("saved");
    std::fs::rename(&state, &saved).unwrap();
    std::fs::create_dir(&state).unwrap();
    let Some(disk) = SmallDisk::mount(&state, "3m") else {
        return;
    };
    copy_dir(&saved, &state);
    server.restart();
    writer.write("key_simple_large", &vec![7u8; 4 * 1024 * 1024]);

    let refused = writer.commit();
    let head_after_refusal = server.head_version();
    disk.grow("64m");
    let retried = writer.commit();

    refused.assert_code(1);
    assert!(refused.output().contains("storage is full"), "{refused}");
    assert_eq!(
        head_after_refusal, 1,
        "a refused commit must leave no version"
    );
    retried.assert_success();
    assert_eq!(server.head_version(), 2);
    server.rfsd(&["verify"]).assert_success();
    server.halt();
}

#[test]
fn a_full_client_disk_fails_an_update_cleanly_and_it_succeeds_once_space_is_freed() {
    let server = Server::builder()
        .with_fixture_tree(10, 13)
        .with_grant(Grant::address(WRITER).write_noauth())
        .with_grant(Grant::address(READER).readonly())
        .start();
    let writer = server.synced_client(WRITER);
    let reader = server.client(READER);
    std::fs::create_dir_all(reader.local_dir()).unwrap();
    let Some(disk) = SmallDisk::mount(reader.local_dir(), "1m") else {
        return;
    };
    reader.setup().assert_success();
    reader.update().assert_success();
    writer.write("key_simple_large", &vec![9u8; 2 * 1024 * 1024]);
    writer.commit().assert_success();

    let refused = reader.update();
    let leftovers: Vec<_> = std::fs::read_dir(reader.local_dir())
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(".rfs-tmp-"))
        .collect();
    disk.grow("16m");
    let retried = reader.update();

    assert_ne!(refused.code, 0, "{refused}");
    assert!(
        refused.output().contains("No space left on device"),
        "{refused}"
    );
    assert!(
        leftovers.is_empty(),
        "a failed update must not leave staging files"
    );
    retried.assert_success();
    assert_same_tree("server", server.local_dir(), "reader", reader.local_dir());
}
