//! The history that the vendor tools never had: rollback to an old version,
//! verification of the store and the live tree, and export of a version.

use std::time::Duration;

use rfs_tests::{Grant, Server, assert_same_tree, poll};

const WRITER: &str = "127.0.0.2";

fn server_with_writer() -> Server {
    Server::builder()
        .with_fixture_tree(30, 9)
        .with_grant(Grant::address(WRITER).write_noauth())
        .start()
}

#[test]
fn rollback_to_version_one_restores_the_tree_for_the_server_and_clients() {
    let server = server_with_writer();
    let writer = server.synced_client(WRITER);
    let original = tempfile::tempdir().unwrap();
    server
        .admin(&["export", "1", original.path().join("v1").to_str().unwrap()])
        .assert_success();
    writer.write("key_simple_one", b"one");
    writer.commit().assert_success();
    writer.write("world", b"rewritten world");
    writer.commit().assert_success();
    let before = server.head_version();

    let rollback = server
        .admin(&["rollback", "1", "--json"])
        .assert_success()
        .json();
    writer.update().assert_success();

    assert_eq!(rollback["version"].as_u64(), Some(before + 1), "{rollback}");
    assert_eq!(server.head_version(), before + 1);
    assert_same_tree(
        "version 1",
        &original.path().join("v1"),
        "server",
        server.local_dir(),
    );
    assert_same_tree("server", server.local_dir(), "writer", writer.local_dir());
}

#[test]
fn a_corrupt_object_is_named_with_the_versions_that_use_it() {
    let mut server = server_with_writer();
    let content = b"a key file whose stored bytes will rot: 0123456789abcdef".repeat(64);
    std::fs::write(server.local_dir().join("key_simple_rot"), &content).unwrap();
    let recorded = poll(Duration::from_secs(3), Duration::from_millis(100), || {
        (server.head_version() > 1).then_some(())
    });
    recorded.expect("the new file did not become a version");
    let digest = hex_sha256(&content);

    server.halt();
    flip_byte_of(&server.state_dir().join("rfsd.redb"), &content);
    let verify = server.rfsd(&["verify"]);

    verify.assert_code(1);
    assert!(
        verify.stdout.contains(&digest),
        "verify must name the object\n{verify}"
    );
    assert!(
        verify.stdout.contains("local v2"),
        "verify must name the versions using it\n{verify}"
    );
}

#[test]
fn offline_verify_reports_a_live_file_edited_behind_rfsds_back() {
    let mut server = server_with_writer();
    let clean = server.rfsd(&["verify"]);
    let victim = server.fixture()[3].path.clone();

    server.halt();
    std::fs::write(
        server.local_dir().join(&victim),
        b"edited while rfsd was stopped",
    )
    .unwrap();
    let verify = server.rfsd(&["verify", "--json"]);

    clean.assert_success();
    verify.assert_code(1);
    let report = verify.json();
    let problems = report["problems"].to_string();
    assert!(problems.contains(&victim), "{report}");
}

fn flip_byte_of(file: &std::path::Path, needle: &[u8]) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|window| window == needle)
        .expect("object bytes not found in the database file");
    bytes[at + 10] ^= 0xff;
    std::fs::write(file, bytes).unwrap();
}

fn hex_sha256(content: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(content))
}
