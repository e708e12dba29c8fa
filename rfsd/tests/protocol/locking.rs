//! The lock on the wire: a legacy `.nft-lock` refuses it and shows in
//! `Head`, and a restart voids the token of a lock held when rfsd stopped.

use proto::pb;
use tonic::Code;

use crate::harness::{commit, file_entry, head, lock, server, upload};

const WRITER: &str = "127.0.0.2";

#[tokio::test]
async fn a_legacy_lock_file_refuses_the_lock_and_names_an_unknown_holder() {
    let server = server()
        .with_file("world", b"v1")
        .with_file(".nft-lock", b"locked by the vendor's rfs-sync\n")
        .with_writer(WRITER)
        .start()
        .await;
    let mut client = server.client(WRITER).await;

    let request = pb::AcquireLockRequest {
        volume: "local".into(),
        host_name: "fw1".into(),
        process_id: 1,
    };
    let refused = client.acquire_lock(request).await.unwrap_err();
    let head = client
        .head(pb::HeadRequest {
            volume: "local".into(),
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("unknown legacy holder"),
        "{}",
        refused.message()
    );
    let holder = head.lock.expect("Head shows the legacy lock");
    assert!(holder.legacy);
    assert!(holder.lease_remaining_ms > 0);
    let left = std::fs::read(server.local().join(".nft-lock")).unwrap();
    assert_eq!(left, b"locked by the vendor's rfs-sync\n");
}

#[tokio::test]
async fn a_restart_removes_rfsds_own_lock_file_and_voids_its_token() {
    let server = server().with_writer(WRITER).start().await;
    let mut client = server.client(WRITER).await;
    let token = lock(&mut client).await;
    upload(&mut client, token, b"k").await.unwrap();
    drop(client);

    let server = server
        .restart(|local| assert!(local.join(".nft-lock").exists()))
        .await;
    let mut client = server.client(WRITER).await;
    let stale = commit(
        &mut client,
        token,
        1,
        vec![file_entry("key", b"k")],
        Vec::new(),
    )
    .await;
    let lock_file_after_restart = server.local().join(".nft-lock").exists();
    let next = lock(&mut client).await;

    assert_eq!(stale.unwrap_err().code(), Code::Aborted);
    assert_eq!(head(&mut client).await, 1);
    assert!(
        !lock_file_after_restart,
        "the old lock file survived the restart"
    );
    assert_eq!(
        next,
        token + 2,
        "the restart spends one token to void the old one"
    );
}
