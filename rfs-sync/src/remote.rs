//! The RPCs of service `rfs.v1.Rfs` as rfs-sync uses them: each call logs
//! at debug, carries a deadline when it is unary, and turns a failure into
//! an error with the exit code its status means.
//!
//! Streams (Changes, Download, Upload) carry no deadline: a large transfer
//! may take as long as it takes, and a dead peer ends it with a transport
//! error.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use prost::Message as _;
use proto::pb;
use proto::pb::rfs_client::RfsClient;
use rfs_core::{Digest, Entry, RelPath};
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Code as StatusCode, Status, Streaming};

use crate::config::{Config, Paths};
use crate::connect::{self, Security, Target};
use crate::exit::{Code, Failure, status_failure};
use crate::identity;
use crate::wire;

/// How long a unary call may take before the server counts as unreachable.
const UNARY_DEADLINE: Duration = Duration::from_secs(60);

/// A connection to rfsd, bound to one volume.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    client: RfsClient<Channel>,
    volume: String,
}

/// The answer to Head.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) version: u64,
    pub(crate) lock: Option<pb::LockHolder>,
    /// The server's history; version numbers compare only within one.
    pub(crate) history_id: String,
}

/// What changed on the server between a base version and its head.
#[derive(Debug, Clone, Default)]
pub(crate) struct RemoteChanges {
    pub(crate) head_version: u64,
    /// The server's history the head belongs to.
    pub(crate) history_id: String,
    /// Entries added or changed, as they are in the head.
    pub(crate) changed: Vec<Entry>,
    /// Paths that exist in the base but not in the head.
    pub(crate) deleted: Vec<RelPath>,
}

/// The outcome of asking for the lock.
#[derive(Debug)]
pub(crate) enum LockAnswer {
    Granted {
        token: u64,
        lease: Duration,
    },
    /// Another client holds it; the server's message names the holder.
    Held(String),
}

impl Remote {
    /// Connects to the server recorded in `config`.
    ///
    /// # Errors
    ///
    /// Fails as [`connect::connect`] does, or when the client identity
    /// cannot be loaded.
    pub(crate) async fn open(config: &Config, paths: &Paths) -> Result<Self> {
        let security = if config.insecure_plaintext {
            Security::Plaintext
        } else {
            let identity = match config.authenticate {
                true => Some(Arc::new(identity::load(paths)?)),
                false => None,
            };
            Security::Tls {
                pin: config.rfs_keyhash,
                identity,
            }
        };
        let target = Target {
            host: config.host.clone(),
            port: config.port,
            bind: config.bind,
            security,
        };
        let connection = connect::connect(&target).await?;
        Ok(Self::new(connection, &config.volume))
    }

    /// Wraps an open connection for `volume`.
    pub(crate) fn new(connection: connect::Connection, volume: &str) -> Self {
        let client = RfsClient::new(connection.channel)
            .max_decoding_message_size(proto::MAX_MESSAGE_SIZE)
            .max_encoding_message_size(proto::MAX_MESSAGE_SIZE);
        Self {
            client,
            volume: volume.to_owned(),
        }
    }

    /// Returns the volume this connection works on.
    pub(crate) fn volume(&self) -> &str {
        &self.volume
    }

    /// Asks the server who it is and how it sees this client.
    pub(crate) async fn identify(&mut self) -> Result<pb::IdentifyReply> {
        let call = self.client.identify(pb::IdentifyRequest {});
        unary("Identify", call)
            .await
            .map_err(|s| fail("identify", &s))
    }

    /// Returns the head version and lock holder of the volume.
    pub(crate) async fn head(&mut self) -> Result<Head> {
        let request = pb::HeadRequest {
            volume: self.volume.clone(),
        };
        let reply = unary("Head", self.client.head(request))
            .await
            .map_err(|s| fail(&format!("head of volume {}", self.volume), &s))?;
        tracing::debug!(
            version = reply.version,
            locked = reply.lock.is_some(),
            "head"
        );
        Ok(Head {
            version: reply.version,
            lock: reply.lock,
            history_id: reply.history_id,
        })
    }

    /// Returns what changed since `base` of history `history_id`, or
    /// `None` when the server does not know that version (its history was
    /// lost or rebuilt).
    pub(crate) async fn changes(
        &mut self,
        base: u64,
        history_id: &str,
    ) -> Result<Option<RemoteChanges>> {
        tracing::debug!(rpc = "Changes", base, "calling");
        let request = pb::ChangesRequest {
            volume: self.volume.clone(),
            base_version: base,
            history_id: history_id.to_owned(),
        };
        let what = format!("changes of volume {} since version {base}", self.volume);
        let stream = match self.client.changes(request).await {
            Ok(reply) => reply.into_inner(),
            Err(status) if base != 0 && status.code() == StatusCode::NotFound => return Ok(None),
            Err(status) => return Err(fail(&what, &status)),
        };
        match collect_changes(stream).await {
            Ok(changes) => Ok(Some(changes)),
            Err(status) if base != 0 && status.code() == StatusCode::NotFound => Ok(None),
            Err(status) => Err(fail(&what, &status)),
        }
    }

    /// Starts downloading `digests`; the chunks arrive in request order.
    pub(crate) async fn download(
        &mut self,
        digests: &[Digest],
    ) -> Result<Streaming<pb::ObjectChunk>> {
        tracing::debug!(rpc = "Download", objects = digests.len(), "calling");
        let request = pb::DownloadRequest {
            volume: self.volume.clone(),
            digests: digests.iter().map(|d| d.as_bytes().to_vec()).collect(),
        };
        let reply = self.client.download(request).await;
        reply
            .map(tonic::Response::into_inner)
            .map_err(|s| fail("download", &s))
    }

    /// Returns which of `digests` the server lacks.
    pub(crate) async fn missing_objects(&mut self, digests: &[Digest]) -> Result<BTreeSet<Digest>> {
        let request = pb::MissingObjectsRequest {
            volume: self.volume.clone(),
            digests: digests.iter().map(|d| d.as_bytes().to_vec()).collect(),
        };
        let reply = unary("MissingObjects", self.client.missing_objects(request))
            .await
            .map_err(|s| fail("asking which objects the server lacks", &s))?;
        reply
            .digests
            .iter()
            .map(|bytes| wire::digest_from_wire(bytes))
            .collect()
    }

    /// Sends the objects that `messages` carries.
    pub(crate) async fn upload(
        &mut self,
        messages: impl Stream<Item = pb::UploadRequest> + Send + 'static,
    ) -> Result<pb::UploadReply> {
        tracing::debug!(rpc = "Upload", "calling");
        let reply = self.client.upload(messages).await;
        reply
            .map(tonic::Response::into_inner)
            .map_err(|status| match lost_lock(&status) {
                Some(failure) => failure.into(),
                None => fail("upload", &status),
            })
    }

    /// Asks for the volume's write lock.
    pub(crate) async fn acquire_lock(&mut self, host_name: &str) -> Result<LockAnswer> {
        let request = pb::AcquireLockRequest {
            volume: self.volume.clone(),
            host_name: host_name.to_owned(),
            process_id: std::process::id(),
        };
        match unary("AcquireLock", self.client.acquire_lock(request)).await {
            Ok(reply) => Ok(LockAnswer::Granted {
                token: reply.token,
                lease: Duration::from_millis(reply.lease_ms),
            }),
            Err(status) if status.code() == StatusCode::FailedPrecondition => {
                Ok(LockAnswer::Held(status.message().to_owned()))
            }
            Err(status) => Err(fail("taking the lock", &status)),
        }
    }

    /// Extends the lease of the lock held with `token`; returns the lease.
    pub(crate) async fn renew_lock(&mut self, token: u64) -> Result<Duration> {
        let request = pb::RenewLockRequest {
            volume: self.volume.clone(),
            token,
        };
        let reply = unary("RenewLock", self.client.renew_lock(request))
            .await
            .map_err(|s| fail("renewing the lock", &s))?;
        Ok(Duration::from_millis(reply.lease_ms))
    }

    /// Frees the lock held with `token`.
    pub(crate) async fn release_lock(&mut self, token: u64) -> Result<()> {
        let request = pb::ReleaseLockRequest {
            volume: self.volume.clone(),
            token,
        };
        unary("ReleaseLock", self.client.release_lock(request))
            .await
            .map_err(|s| fail("releasing the lock", &s))?;
        Ok(())
    }

    /// Records `request` as a new version and returns its number.
    ///
    /// # Errors
    ///
    /// A refusal because paths changed on the server since the base is a
    /// conflict (exit 3) that lists them.
    pub(crate) async fn commit(&mut self, request: pb::CommitRequest) -> Result<u64> {
        let base = request.base_version;
        match unary("Commit", self.client.commit(request)).await {
            Ok(reply) => Ok(reply.version),
            Err(status) if status.code() == StatusCode::Aborted => {
                let failure = lost_lock(&status).unwrap_or_else(|| commit_refused(base, &status));
                Err(failure.into())
            }
            Err(status) => Err(fail("commit", &status)),
        }
    }
}

/// Runs one unary call under [`UNARY_DEADLINE`].
async fn unary<T>(
    rpc: &'static str,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    tracing::debug!(rpc, "calling");
    match tokio::time::timeout(UNARY_DEADLINE, call).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "{rpc} got no answer within {} s",
            UNARY_DEADLINE.as_secs()
        ))),
    }
}

fn fail(what: &str, status: &Status) -> anyhow::Error {
    tracing::debug!(code = ?status.code(), message = status.message(), "rpc failed");
    status_failure(what, status).into()
}

async fn collect_changes(mut stream: Streaming<pb::ChangesReply>) -> Result<RemoteChanges, Status> {
    let mut changes = RemoteChanges::default();
    let mut pages = 0usize;
    while let Some(page) = stream.message().await? {
        if pages > 0 && page.head_version != changes.head_version {
            return Err(Status::internal(
                "pages of one Changes reply name different heads",
            ));
        }
        changes.head_version = page.head_version;
        changes.history_id = page.history_id;
        pages += 1;
        for entry in page.changed {
            let entry = wire::entry_from_wire(entry).map_err(invalid_reply)?;
            changes.changed.push(entry);
        }
        for path in page.deleted {
            changes
                .deleted
                .push(wire::path_from_wire(path).map_err(invalid_reply)?);
        }
    }
    tracing::debug!(
        head = changes.head_version,
        changed = changes.changed.len(),
        deleted = changes.deleted.len(),
        "changes"
    );
    Ok(changes)
}

fn invalid_reply(err: anyhow::Error) -> Status {
    Status::internal(format!("invalid reply: {err:#}"))
}

/// Returns the lock-held failure (exit 4) of a write refused because its
/// fencing token is no longer the live grant, or `None` for any other
/// status.
fn lost_lock(status: &Status) -> Option<Failure> {
    let refusal = status.metadata().get(proto::REFUSAL_KEY)?;
    if refusal.to_str().ok()? != proto::REFUSAL_STALE_TOKEN {
        return None;
    }
    let message = format!(
        "the lock was lost before the commit completed (its lease ran out while this \
         process was stopped or cut off, or an operator cleared it), and nothing was \
         committed: {}",
        status.message()
    );
    Some(Failure::new(Code::LockHeld, message))
}

/// Returns the conflict failure of an ABORTED commit, listing the paths the
/// server names in its `CommitConflict` details.
fn commit_refused(base: u64, status: &Status) -> Failure {
    let Ok(conflict) = pb::CommitConflict::decode(status.details()) else {
        return Failure::conflict(format!("commit refused: {}", status.message()), Vec::new());
    };
    if conflict.paths.is_empty() {
        return Failure::conflict(format!("commit refused: {}", status.message()), Vec::new());
    }
    let message = format!(
        "commit refused: {} path(s) changed on the server since version {base} (head is {}): {}; \
         run rfs-sync --update, resolve, and commit again",
        conflict.paths.len(),
        conflict.head_version,
        conflict.paths.join(", ")
    );
    Failure::conflict(message, conflict.paths)
}

/// Returns the description of a lock holder for people.
pub(crate) fn describe_holder(holder: &pb::LockHolder) -> String {
    if holder.legacy {
        return format!(
            "{} (a .nft-lock written by another program), cleared by the server in {:.0} s",
            holder.host_name,
            Duration::from_millis(holder.lease_remaining_ms).as_secs_f64()
        );
    }
    let mut text = format!(
        "{} ({} pid {})",
        holder.address, holder.host_name, holder.process_id
    );
    if !holder.key_hash.is_empty() {
        text.push_str(&format!(" key {}", holder.key_hash));
    }
    text.push_str(&format!(
        ", lease ends in {:.1} s",
        Duration::from_millis(holder.lease_remaining_ms).as_secs_f64()
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_commit_lists_the_conflicting_paths() {
        let details = pb::CommitConflict {
            base_version: 3,
            head_version: 5,
            paths: vec!["world".into(), "key_a".into()],
        }
        .encode_to_vec();
        let status = Status::with_details(StatusCode::Aborted, "conflict", details.into());

        let failure = commit_refused(3, &status);

        assert_eq!(failure.code, Code::Conflict);
        assert_eq!(failure.conflicts, ["world", "key_a"]);
        assert!(
            failure.message.contains("since version 3"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn a_write_with_a_stale_token_means_the_lock_was_lost() {
        let mut status = Status::aborted("lock token 3 of volume \"local\" is no longer valid");
        let value = proto::REFUSAL_STALE_TOKEN.parse().unwrap();
        status.metadata_mut().insert(proto::REFUSAL_KEY, value);

        let failure = lost_lock(&status).unwrap();

        assert_eq!(failure.code, Code::LockHeld);
        assert!(failure.message.contains("token 3"), "{}", failure.message);
        assert!(lost_lock(&Status::aborted("conflict")).is_none());
    }

    #[test]
    fn a_refusal_without_details_is_still_a_conflict() {
        let status = Status::aborted("stale base");
        assert_eq!(commit_refused(1, &status).code, Code::Conflict);
    }
}
