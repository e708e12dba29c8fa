//! Transport: a client trusts only the server key hash it pinned, and the
//! `--insecure-plaintext` debugging mode still syncs.

use rfs_tests::{Grant, Server, assert_same_tree, assert_tree_holds};

const READER: &str = "127.0.0.3";

/// A well-formed key hash that belongs to no server in these tests.
const WRONG_KEY_HASH: &str = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";

/// The exit code of `rfs-sync` for a usage error.
const USAGE: i32 = 2;

#[test]
fn plaintext_server_and_client_sync_the_tree() {
    let server = Server::builder()
        .with_fixture_tree(50, 91)
        .with_grant(Grant::address(READER).readonly())
        .plaintext()
        .start();
    let reader = server.client(READER);

    let setup = reader.setup();
    let update = reader.update();

    setup.assert_success();
    update.assert_success();
    assert_same_tree("server", server.local_dir(), "reader", reader.local_dir());
}

#[test]
fn client_refuses_a_server_whose_key_hash_differs_from_the_pinned_one() {
    let server = Server::builder()
        .with_fixture_tree(50, 92)
        .with_grant(Grant::address(READER).readonly())
        .start();
    let reader = server.client(READER);
    let port = server.port().to_string();

    let setup = reader.run(&[
        "--setup",
        "127.0.0.1",
        "--no-authenticate",
        "--port",
        &port,
        "--bind",
        READER,
        "--rfs-keyhash",
        WRONG_KEY_HASH,
    ]);
    let update = reader.update();

    assert!(
        setup.code != 0 && setup.code != USAGE,
        "setup must fail on the key hash, not on usage\n{setup}"
    );
    assert_ne!(update.code, 0, "update must not trust the server\n{update}");
    assert_tree_holds("reader", reader.local_dir(), &[]);
}
