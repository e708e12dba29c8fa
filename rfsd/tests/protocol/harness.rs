//! A real rfsd in the test process, on a fresh temporary kmdata and state
//! directory, stopped when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use proto::pb;
use proto::pb::rfs_client::RfsClient;
use rfs_core::Digest;
use rfsd::config::{LogFormat, Settings, VolumeSetting};
use rfsd::limits::Limits;
use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

/// A running in-process rfsd.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// What the server starts with.
pub(crate) struct Builder {
    files: Vec<(String, Vec<u8>)>,
    grants: String,
}

pub(crate) fn server() -> Builder {
    Builder {
        files: Vec::new(),
        grants: String::new(),
    }
}

impl Builder {
    pub(crate) fn with_file(mut self, path: &str, content: &[u8]) -> Self {
        self.files.push((path.to_owned(), content.to_vec()));
        self
    }

    pub(crate) fn with_writer(mut self, addr: &str) -> Self {
        self.grants += &format!("[[grant]]\naddress = \"{addr}\"\nwrite_noauth = true\n\n");
        self
    }

    pub(crate) fn with_reader(mut self, addr: &str) -> Self {
        self.grants += &format!("[[grant]]\naddress = \"{addr}\"\n\n");
        self
    }

    pub(crate) async fn start(self) -> TestServer {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("rfsd=debug")
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("kmdata/local");
        std::fs::create_dir_all(&local).unwrap();
        for (path, content) in &self.files {
            let target = local.join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, content).unwrap();
        }
        std::fs::write(dir.path().join("clients.toml"), &self.grants).unwrap();
        launch(dir).await
    }
}

async fn launch(dir: tempfile::TempDir) -> TestServer {
    let settings = settings(dir.path(), dir.path().join("kmdata/local"));
    let prepared = rfsd::daemon::prepare(&settings).await.unwrap();
    let addr = prepared.listeners.tcp[0].local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(async move {
        let _state_lock = prepared.state_lock;
        rfsd::server::run(prepared.state, prepared.listeners, prepared.tls, shutdown).await
    });
    TestServer {
        addr,
        dir,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestServer {
    /// Returns a client whose connections come from `source`.
    pub(crate) async fn client(&self, source: &str) -> RfsClient<Channel> {
        let source: SocketAddr = format!("{source}:0").parse().unwrap();
        let target = self.addr;
        let channel = Endpoint::from_static("http://rfsd.test")
            .connect_with_connector(tower::service_fn(move |_| async move {
                let socket = TcpSocket::new_v4()?;
                socket.bind(source)?;
                let stream = socket.connect(target).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }))
            .await
            .unwrap();
        RfsClient::new(channel)
    }

    pub(crate) fn local(&self) -> PathBuf {
        self.dir.path().join("kmdata/local")
    }

    /// Stops the server, lets `between` change its directories, and starts
    /// it again on them.
    pub(crate) async fn restart(mut self, between: impl FnOnce(&Path)) -> TestServer {
        self.stop.take().map(|stop| stop.send(()));
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        between(&dir.path().join("kmdata/local"));
        launch(dir).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.take().map(|stop| stop.send(()));
    }
}

fn settings(root: &Path, local: PathBuf) -> Settings {
    Settings {
        kmdata: root.join("kmdata"),
        state_dir: root.join("state"),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        clients: root.join("clients.toml"),
        admin_socket: root.join("admin.sock"),
        insecure_plaintext: true,
        log_format: LogFormat::Text,
        volumes: vec![VolumeSetting {
            name: "local".into(),
            path: local,
        }],
        lock_lease: Duration::from_secs(30),
        legacy_lock_max_age: Duration::from_secs(600),
        limits: Limits {
            max_file_size: 1024 * 1024,
            ..Limits::default()
        },
        watch: rfsd::watch::WatchSettings::default(),
    }
}

/// Returns the head version of `local`.
pub(crate) async fn head(client: &mut RfsClient<Channel>) -> u64 {
    client
        .head(pb::HeadRequest {
            volume: "local".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .version
}

/// Takes the lock of `local` and returns the token.
pub(crate) async fn lock(client: &mut RfsClient<Channel>) -> u64 {
    let request = pb::AcquireLockRequest {
        volume: "local".into(),
        host_name: "test".into(),
        process_id: 1,
    };
    client
        .acquire_lock(request)
        .await
        .unwrap()
        .into_inner()
        .token
}

/// Uploads `content` as one object under `token`.
pub(crate) async fn upload(
    client: &mut RfsClient<Channel>,
    token: u64,
    content: &[u8],
) -> Result<pb::UploadReply, tonic::Status> {
    let digest = Digest::of(content).as_bytes().to_vec();
    upload_as(client, token, digest, content).await
}

/// Uploads `content` announced under `digest`.
pub(crate) async fn upload_as(
    client: &mut RfsClient<Channel>,
    token: u64,
    digest: Vec<u8>,
    content: &[u8],
) -> Result<pb::UploadReply, tonic::Status> {
    let chunk = pb::ObjectChunk {
        digest,
        offset: 0,
        data: content.to_vec(),
        last: true,
    };
    let message = pb::UploadRequest {
        volume: "local".into(),
        lock_token: token,
        chunk: Some(chunk),
    };
    client
        .upload(tokio_stream::iter(vec![message]))
        .await
        .map(|reply| reply.into_inner())
}

/// Returns a file entry for `content`.
pub(crate) fn file_entry(path: &str, content: &[u8]) -> pb::Entry {
    pb::Entry {
        path: path.into(),
        kind: pb::EntryKind::File.into(),
        mode: 0o644,
        size: content.len() as u64,
        digest: Digest::of(content).as_bytes().to_vec(),
    }
}

/// Commits `changed` on top of `base` under `token`.
pub(crate) async fn commit(
    client: &mut RfsClient<Channel>,
    token: u64,
    base: u64,
    changed: Vec<pb::Entry>,
    deleted: Vec<String>,
) -> Result<u64, tonic::Status> {
    let request = pb::CommitRequest {
        volume: "local".into(),
        base_version: base,
        lock_token: token,
        changed,
        deleted,
        host_name: "test".into(),
        process_id: 1,
        reason: String::new(),
        history_id: String::new(),
    };
    client
        .commit(request)
        .await
        .map(|reply| reply.into_inner().version)
}

/// Uploads and commits one file in a fresh lock, releasing it after.
pub(crate) async fn commit_file(
    client: &mut RfsClient<Channel>,
    base: u64,
    path: &str,
    content: &[u8],
) -> Result<u64, tonic::Status> {
    let token = lock(client).await;
    upload(client, token, content).await.unwrap();
    let result = commit(
        client,
        token,
        base,
        vec![file_entry(path, content)],
        Vec::new(),
    )
    .await;
    client
        .release_lock(pb::ReleaseLockRequest {
            volume: "local".into(),
            token,
        })
        .await
        .unwrap();
    result
}
