//! Grants decide who may read and write: a read-only client cannot commit,
//! a client without a grant cannot update, and a denial names the exact
//! `rfsd client add` command that would allow the request.

use kmdata_fixtures::new_key_file;
use rfs_tests::{Grant, Server, assert_same_tree, assert_tree_holds};

const WRITER: &str = "127.0.0.2";
const READER: &str = "127.0.0.3";
const STRANGER: &str = "127.0.0.4";

/// The exit code of `rfs-sync` for a permission denial.
const PERMISSION_DENIED: i32 = 5;

fn server_with_writer_and_reader(seed: u64) -> Server {
    Server::builder()
        .with_fixture_tree(200, seed)
        .with_grant(Grant::address(WRITER).write_noauth())
        .with_grant(Grant::address(READER).readonly())
        .start()
}

#[test]
fn readonly_client_commit_is_denied_and_changes_nothing() {
    let server = server_with_writer_and_reader(3);
    let reader = server.synced_client(READER);
    let key = new_key_file(3);
    reader.add(&key);

    let commit = reader.commit();

    commit.assert_code(PERMISSION_DENIED);
    assert!(
        commit.stderr.contains("rfsd client add 127.0.0.3"),
        "the denial should name the grant command\n{commit}"
    );
    assert_eq!(server.head_version(), 1);
    assert_eq!(server.read(&key.path), None);
    assert_tree_holds("server", server.local_dir(), server.fixture());
}

#[test]
fn client_without_grant_is_denied_and_told_the_grant_command() {
    let server = server_with_writer_and_reader(4);
    let stranger = server.client(STRANGER);
    stranger.setup().assert_success();

    let update = stranger.update();

    update.assert_code(PERMISSION_DENIED);
    assert!(
        update.stderr.contains("rfsd client add 127.0.0.4"),
        "the denial should name the grant command\n{update}"
    );
    assert_tree_holds("stranger", stranger.local_dir(), &[]);
}

#[test]
fn suggested_grant_command_lets_the_denied_client_update() {
    let server = server_with_writer_and_reader(5);
    let stranger = server.client(STRANGER);
    stranger.setup().assert_success();
    let denied = stranger.update();
    denied.assert_code(PERMISSION_DENIED);
    let suggestion = suggested_command(&denied.stderr)
        .unwrap_or_else(|| panic!("no `rfsd client add` in the denial\n{denied}"));

    let grant = server.admin(&suggestion);
    let update = stranger.update();

    grant.assert_success();
    update.assert_success();
    assert_same_tree(
        "server",
        server.local_dir(),
        "stranger",
        stranger.local_dir(),
    );
}

/// Returns the arguments after `rfsd` of the first `rfsd client add …`
/// command in `message`: the address and any options, without the quotes
/// or punctuation around them.
fn suggested_command(message: &str) -> Option<Vec<&str>> {
    let start = message.find("rfsd client add ")?;
    let mut tokens = message[start..]
        .split_whitespace()
        .skip(1)
        .map(|token| token.trim_matches(|c: char| "`'\".,;:()".contains(c)));

    let mut args: Vec<&str> = tokens.by_ref().take(3).collect();
    while let Some(option) = tokens.next() {
        if !option.starts_with("--") {
            break;
        }
        args.push(option);
        if matches!(option, "--volume" | "--keyhash") {
            args.extend(tokens.next());
        }
    }

    Some(args)
}

#[test]
fn suggested_command_is_read_without_surrounding_quotes_and_prose() {
    let message = "permission denied: allow it with \
                   `rfsd client add 127.0.0.4 --volume local --readonly` on the RFS host";

    let args = suggested_command(message);

    let expected = [
        "client",
        "add",
        "127.0.0.4",
        "--volume",
        "local",
        "--readonly",
    ];
    assert_eq!(args, Some(expected.to_vec()));
}
