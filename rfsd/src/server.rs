//! Running the daemon: the client service on TCP, the administration
//! service on the Unix socket, and the housekeeping tasks, until shutdown.
//!
//! [`run`] takes listeners that `main` already bound and a shutdown future
//! that `main` built from the signals; it binds nothing and installs no
//! signal handlers itself.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use proto::pb;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::transport::Server;
use tracing::Instrument;

use crate::admin::AdminService;
use crate::conn::accept_all;
use crate::service::RfsService;
use crate::state::ServerState;

/// How often expired lock leases are looked for.
const LOCK_SWEEP: Duration = Duration::from_secs(1);

/// How long running requests may take to finish after a shutdown signal;
/// below systemd's stop timeout of 60 s.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The longest a single request may run before it is cut off.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// The most concurrent streams one client connection may open.
const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// Sockets bound by `main` before the daemon runs.
#[derive(Debug)]
pub struct Listeners {
    /// The client listeners (TCP).
    pub tcp: Vec<TcpListener>,
    /// The administration socket.
    pub admin: UnixListener,
}

/// Serves until `shutdown` completes, then stops accepting, lets running
/// requests finish and returns.
///
/// # Errors
///
/// Fails when a server cannot start or stops with an error.
pub async fn run(
    state: Arc<ServerState>,
    listeners: Listeners,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let sweeper = tokio::spawn(sweep_locks(state.clone(), stop_rx.clone()).in_current_span());
    let watchers = crate::watch::spawn_all(&state, state.watch, &stop_rx);

    let client_server = serve_clients(state.clone(), listeners.tcp, tls, stopped(stop_rx.clone()));
    let admin_server = serve_admin(state.clone(), listeners.admin, stopped(stop_rx));
    let client_task = tokio::spawn(client_server.in_current_span());
    let admin_task = tokio::spawn(admin_server.in_current_span());

    shutdown.await;
    tracing::info!("shutting down: no new connections; running requests may finish");
    let _ = stop_tx.send(true);

    let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let client_result = client_task.await.context("client server task failed")?;
        let admin_result = admin_task.await.context("admin server task failed")?;
        client_result.context("client service")?;
        admin_result.context("administration service")
    });
    let result = match finished.await {
        Ok(result) => result,
        Err(_) => {
            // Aborting is safe: an unfinished store transaction is rolled
            // back, and an unfinished update of the live tree is completed
            // at the next start (the applied marker lags the head).
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still running after the grace period; aborting them");
            Ok(())
        }
    };
    sweeper.abort();
    for watcher in watchers {
        let _ = watcher.await;
    }
    result
}

async fn serve_clients(
    state: Arc<ServerState>,
    listeners: Vec<TcpListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::rfs_server::RfsServer<RfsService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled-in descriptor set is valid");

    let rfs = pb::rfs_server::RfsServer::new(RfsService::new(state))
        .max_decoding_message_size(proto::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(proto::MAX_MESSAGE_SIZE);
    let incoming = ReceiverStream::new(accept_all(listeners, tls));
    Server::builder()
        .timeout(REQUEST_TIMEOUT)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(rfs)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

async fn serve_admin(
    state: Arc<ServerState>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let admin = pb::admin_server::AdminServer::new(AdminService::new(state))
        .max_encoding_message_size(64 * 1024 * 1024);
    Server::builder()
        .add_service(admin)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}

/// Frees locks whose lease ran out, so the lock file disappears and the
/// expiry is logged even when no client asks, and clears legacy lock files
/// once they are too old.
async fn sweep_locks(state: Arc<ServerState>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(LOCK_SWEEP);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let swept = state
            .blocking(|state| {
                state
                    .volumes
                    .values()
                    .for_each(|volume| volume.sweep_lock());
                Ok(())
            })
            .await;
        if let Err(err) = swept {
            tracing::warn!(error = %err, "lock sweep failed");
        }
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}
