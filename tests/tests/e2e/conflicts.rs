//! Concurrent work: two writers committing on the same base, and local
//! changes that an update must not destroy.

use kmdata_fixtures::new_key_file;
use rfs_tests::{Grant, Server, assert_same_tree, json_strings};

const WRITER_A: &str = "127.0.0.2";
const WRITER_D: &str = "127.0.0.5";

/// The exit code of `rfs-sync` for a conflict.
const CONFLICT: i32 = 3;

fn two_writer_server(seed: u64) -> Server {
    Server::builder()
        .with_fixture_tree(200, seed)
        .with_grant(Grant::address(WRITER_A).write_noauth())
        .with_grant(Grant::address(WRITER_D).write_noauth())
        .start()
}

#[test]
fn first_commit_to_a_file_wins_and_the_second_is_refused() {
    let server = two_writer_server(51);
    let a = server.synced_client(WRITER_A);
    let d = server.synced_client(WRITER_D);
    let world_from_a = b"world as rewritten on 127.0.0.2\n";
    let world_from_d = b"world as rewritten on 127.0.0.5\n";
    a.write("world", world_from_a);
    d.write("world", world_from_d);

    let first = a.commit();
    let head_after_first = server.head_version();
    let second = d.commit();
    let second_json = d.json(&["--commit"]);

    first.assert_success();
    assert_eq!(head_after_first, 2);
    second.assert_code(CONFLICT);
    assert!(
        second.stderr.contains("world"),
        "conflict must list the path\n{second}"
    );
    assert_eq!(second_json["ok"], false, "{second_json}");
    assert_eq!(second_json["exit_code"], CONFLICT, "{second_json}");
    assert_eq!(json_strings(&second_json["conflicts"]), ["world"]);
    assert_eq!(
        server.head_version(),
        head_after_first,
        "refused commit made a version"
    );
    assert_eq!(server.read("world").as_deref(), Some(&world_from_a[..]));
    assert_same_tree("server", server.local_dir(), "a", a.local_dir());
    assert_eq!(d.read("world").as_deref(), Some(&world_from_d[..]));
}

#[test]
fn commits_to_different_files_on_the_same_base_both_land() {
    let server = two_writer_server(52);
    let keys = server.fixture_keys();
    let a = server.synced_client(WRITER_A);
    let d = server.synced_client(WRITER_D);
    let from_a = b"key rewritten on 127.0.0.2\n";
    let from_d = b"key rewritten on 127.0.0.5\n";
    let new_key = new_key_file(52);
    a.write(keys[0], from_a);
    d.write(keys[1], from_d);
    d.add(&new_key);

    let first = a.commit();
    let second = d.commit();
    let a_update = a.update();

    first.assert_success();
    second.assert_success();
    a_update.assert_success();
    assert_eq!(server.head_version(), 3, "two commits on top of version 1");
    assert_eq!(server.read(keys[0]).as_deref(), Some(&from_a[..]));
    assert_eq!(server.read(keys[1]).as_deref(), Some(&from_d[..]));
    assert_eq!(server.read(&new_key.path), Some(new_key.content.clone()));
    assert_same_tree("server", server.local_dir(), "d", d.local_dir());
    assert_same_tree("server", server.local_dir(), "a", a.local_dir());
}

#[test]
fn local_change_survives_an_update_that_brings_other_changes() {
    let server = two_writer_server(61);
    let keys = server.fixture_keys();
    let a = server.synced_client(WRITER_A);
    let d = server.synced_client(WRITER_D);
    let local_edit = b"uncommitted edit on 127.0.0.2\n";
    a.write(keys[0], local_edit);
    let new_key = new_key_file(61);
    d.add(&new_key);
    d.commit().assert_success();

    let update = a.update();

    update.assert_success();
    assert_eq!(a.read(&new_key.path), Some(new_key.content.clone()));
    assert_eq!(a.read(keys[0]).as_deref(), Some(&local_edit[..]));
    assert_ne!(server.read(keys[0]).as_deref(), Some(&local_edit[..]));
}

#[test]
fn local_change_kept_through_an_update_can_still_be_committed() {
    let server = two_writer_server(62);
    let keys = server.fixture_keys();
    let a = server.synced_client(WRITER_A);
    let d = server.synced_client(WRITER_D);
    let local_edit = b"edit on 127.0.0.2, committed after an update\n";
    a.write(keys[0], local_edit);
    d.add(&new_key_file(62));
    d.commit().assert_success();
    a.update().assert_success();

    let commit = a.commit();

    commit.assert_success();
    assert_eq!(server.head_version(), 3);
    assert_eq!(server.read(keys[0]).as_deref(), Some(&local_edit[..]));
    assert_same_tree("server", server.local_dir(), "a", a.local_dir());
}

#[test]
fn update_reports_a_conflict_and_keeps_the_local_file() {
    let server = two_writer_server(63);
    let keys = server.fixture_keys();
    let a = server.synced_client(WRITER_A);
    let d = server.synced_client(WRITER_D);
    let from_a = b"uncommitted edit on 127.0.0.2\n";
    let from_d = b"committed edit from 127.0.0.5\n";
    a.write(keys[0], from_a);
    d.write(keys[0], from_d);
    d.commit().assert_success();

    let update = a.update();
    let update_json = a.json(&["--update"]);

    update.assert_code(CONFLICT);
    assert!(
        update.stderr.contains(keys[0]),
        "conflict must list the path\n{update}"
    );
    let conflicts = json_strings(&update_json["conflicts"]);
    assert_eq!(
        conflicts,
        [keys[0]],
        "a repeated update must still report the unresolved conflict: \
         {update_json}"
    );
    assert_eq!(a.read(keys[0]).as_deref(), Some(&from_a[..]));
    assert_eq!(server.read(keys[0]).as_deref(), Some(&from_d[..]));
}
