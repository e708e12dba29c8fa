//! Deletions: a deleted key file stays on the server unless the commit
//! says `--allow-delete`, and other clients drop it only if their copy was
//! unchanged.

use rfs_tests::{Grant, Server, assert_same_tree, json_strings, json_version};

const WRITER: &str = "127.0.0.2";
const READER: &str = "127.0.0.3";
const EDITOR: &str = "127.0.0.6";

/// The exit code of `rfs-sync` for a conflict.
const CONFLICT: i32 = 3;

fn deletion_server(seed: u64) -> Server {
    Server::builder()
        .with_fixture_tree(200, seed)
        .with_grant(Grant::address(WRITER).write_noauth())
        .with_grant(Grant::address(READER).readonly())
        .with_grant(Grant::address(EDITOR).readonly())
        .start()
}

#[test]
fn deletion_is_held_back_without_allow_delete() {
    let server = deletion_server(71);
    let key = server.fixture_keys()[0].to_owned();
    let original = server.read(&key);
    let writer = server.synced_client(WRITER);
    writer.remove(&key);

    let commit = writer.commit();
    let commit_json = writer.json(&["--commit"]);

    commit.assert_success();
    assert!(
        commit.output().contains(&key),
        "held-back deletion must be reported\n{commit}"
    );
    assert_eq!(commit_json["ok"], true, "{commit_json}");
    assert_eq!(
        json_strings(&commit_json["deletions_not_sent"]),
        [key.as_str()]
    );
    assert!(
        json_strings(&commit_json["deleted"]).is_empty(),
        "{commit_json}"
    );
    assert_eq!(json_version(&commit_json), 1, "{commit_json}");
    assert_eq!(server.head_version(), 1, "nothing was sent, so no version");
    assert_eq!(server.read(&key), original);
}

#[test]
fn deletion_with_allow_delete_reaches_server_and_unchanged_copies() {
    let server = deletion_server(72);
    let key = server.fixture_keys()[0].to_owned();
    let writer = server.synced_client(WRITER);
    let reader = server.synced_client(READER);
    writer.remove(&key);

    let commit = writer.commit_with(&["--allow-delete"]);
    let update = reader.update();

    commit.assert_success();
    update.assert_success();
    assert_eq!(server.read(&key), None);
    assert_eq!(server.head_version(), 2);
    assert_eq!(server.log_entry(2)["deleted"], 1);
    assert_eq!(reader.read(&key), None);
    assert_same_tree("server", server.local_dir(), "writer", writer.local_dir());
    assert_same_tree("server", server.local_dir(), "reader", reader.local_dir());
}

#[test]
fn deletion_from_server_keeps_a_locally_changed_copy() {
    let server = deletion_server(73);
    let key = server.fixture_keys()[0].to_owned();
    let writer = server.synced_client(WRITER);
    let editor = server.synced_client(EDITOR);
    let local_edit = b"edited on 127.0.0.6 and not committed\n";
    editor.write(&key, local_edit);
    writer.remove(&key);
    writer.commit_with(&["--allow-delete"]).assert_success();

    let update = editor.update();

    update.assert_code(CONFLICT);
    assert!(
        update.stderr.contains(&key),
        "conflict must list the path\n{update}"
    );
    assert_eq!(editor.read(&key).as_deref(), Some(&local_edit[..]));
    assert_eq!(server.read(&key), None);
}

#[test]
fn an_update_that_would_empty_the_tree_changes_nothing_without_allow_mass_delete() {
    let server = Server::builder()
        .with_fixture_tree(20, 6)
        .with_grant(Grant::address(READER).readonly())
        .start();
    let reader = server.synced_client(READER);
    for file in &server.fixture()[..15] {
        std::fs::remove_file(server.local_dir().join(&file.path)).unwrap();
    }
    let recorded = rfs_tests::poll(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_millis(100),
        || (server.head_version() > 1).then_some(()),
    );
    recorded.expect("the deletions on the host did not become a version");

    let refused = reader.update();
    let kept = reader.local_dir().join(&server.fixture()[0].path).exists();
    let allowed = reader.run(&["--update", "--allow-mass-delete"]);

    refused.assert_code(1);
    assert!(
        refused.output().contains("--allow-mass-delete"),
        "{refused}"
    );
    assert!(kept, "a refused update must not delete anything");
    allowed.assert_success();
    assert_same_tree("server", server.local_dir(), "reader", reader.local_dir());
}
