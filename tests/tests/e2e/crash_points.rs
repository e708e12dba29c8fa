//! Crashes at named steps of a commit (in rfsd) and of an update (in
//! rfs-sync): afterwards the head is the old or the new version, never a
//! mixture; the live tree equals the head; and a second run brings the
//! client to the server's head.

use rfs_tests::{Grant, Server, assert_same_tree};

const WRITER: &str = "127.0.0.2";
const READER: &str = "127.0.0.3";

/// The steps of a commit at which rfsd can be made to abort.
const SERVER_POINTS: [&str; 4] = [
    "after-objects-stored",
    "after-version-recorded",
    "mid-apply",
    "before-applied-marked",
];

/// The steps of an update at which rfs-sync can be made to abort.
const CLIENT_POINTS: [&str; 3] = ["after-staging", "mid-rename", "before-state-saved"];

fn crash_server() -> Server {
    Server::builder()
        .with_fixture_tree(30, 8)
        .with_grant(Grant::address(WRITER).write_noauth())
        .with_grant(Grant::address(READER).readonly())
        .start()
}

#[test]
fn a_server_crash_at_any_step_of_a_commit_leaves_the_old_or_the_new_version() {
    for point in SERVER_POINTS {
        let mut server = crash_server();
        let writer = server.synced_client(WRITER);
        let first = server.fixture()[0].path.clone();
        writer.write(&first, b"rewritten by the crashing commit");
        for index in 0..4 {
            writer.write(
                &format!("key_simple_crash{index}"),
                format!("new key {index}").as_bytes(),
            );
        }
        server.halt();
        server.restart_crashing_at(Some(point));

        let commit = writer.commit();
        server.kill();
        server.restart_crashing_at(None);

        // Every point lies before the reply, so the client is never told
        // of success; the version may exist all the same.
        let head = server.head_version();
        assert_ne!(
            commit.code, 0,
            "{point}: the crash point was not reached\n{commit}"
        );
        assert!(head == 1 || head == 2, "{point}: head {head}");
        server.rfsd(&["verify"]).assert_success();
        writer.update().assert_success();
        writer.commit().assert_success();
        assert_eq!(
            server.head_version(),
            2,
            "{point}: the retried commit must land exactly once"
        );
        assert_same_tree("server", server.local_dir(), "writer", writer.local_dir());
    }
}

#[test]
fn a_client_crash_at_any_step_of_an_update_is_repaired_by_the_next_update() {
    for point in CLIENT_POINTS {
        let server = crash_server();
        let writer = server.synced_client(WRITER);
        let reader = server.synced_client(READER);
        for (index, file) in server.fixture()[..6].iter().enumerate() {
            writer.write(&file.path, format!("changed {index}").as_bytes());
        }
        writer.write("key_simple_added", b"added");
        writer.commit().assert_success();

        let crashed = reader.run_crashing_at(&["--update"], point);
        let repaired = reader.update();

        assert_ne!(
            crashed.code, 0,
            "{point}: the crash point was not reached\n{crashed}"
        );
        repaired.assert_success();
        assert_same_tree("server", server.local_dir(), "reader", reader.local_dir());
        reader.update().assert_success();
    }
}
