//! Trust by key: a client that authenticates with its own key is granted by
//! its key hash, from any address, and may write without `write-noauth`.

use rfs_tests::{Grant, Server, json_version};

const KEYED: &str = "127.0.0.8";

#[test]
fn a_client_granted_by_key_hash_reads_and_writes_and_others_at_its_address_do_not() {
    let server = Server::builder()
        .with_fixture_tree(10, 3)
        .with_grant(Grant::address("127.0.0.2").readonly())
        .start();
    let keyed = server.client(KEYED);
    let setup = keyed.setup_authenticated().assert_success().json();
    let key_hash = setup["client_keyhash"]
        .as_str()
        .expect("setup --json names the client key hash")
        .to_owned();

    let before_grant = keyed.update();
    server
        .admin(&["client", "add", "*", "--keyhash", &key_hash])
        .assert_success();
    let update = keyed.update();
    keyed.write(
        "key_pkcs11_uakeyed0000000000000000000000000000000000",
        b"from a keyed client",
    );
    let commit = keyed.json(&["--commit"]);
    let stranger = server.client(KEYED);
    stranger.setup().assert_success();
    let stranger_update = stranger.update();

    before_grant.assert_code(5);
    assert!(
        before_grant
            .output()
            .contains(&format!("--keyhash {key_hash}")),
        "{before_grant}"
    );
    update.assert_success();
    let version = json_version(&commit);
    assert_eq!(
        server.log_entry(version)["origin"]["key_hash"],
        key_hash.as_str()
    );
    stranger_update.assert_code(5);
}
