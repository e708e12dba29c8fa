//! The administration service `rfs.v1.Admin`, served only on the local Unix
//! socket, whose file permissions (root only) are its access control.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use proto::pb;
use rfs_core::{ChangeSet, DEFAULT_VOLUME, KeyHash};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::error::ServiceError;
use crate::grants::{AddressPattern, Grant};
use crate::service::convert::{
    digest_from_pb, entry_to_pb, holder_to_pb, legacy_to_pb, lock_state_to_pb, record_to_pb,
};
use crate::state::ServerState;
use crate::timefmt::unix_secs;
use crate::volume::{Cleared, Volume};

/// The implementation of `rfs.v1.Admin`.
#[derive(Debug, Clone)]
pub struct AdminService {
    state: Arc<ServerState>,
}

impl AdminService {
    /// Returns the service over the shared state.
    pub fn new(state: Arc<ServerState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    type ReadObjectsStream = Pin<Box<dyn Stream<Item = Result<pb::ObjectChunk, Status>> + Send>>;

    async fn show(
        &self,
        request: Request<pb::ShowRequest>,
    ) -> Result<Response<pb::ShowReply>, Status> {
        let request = request.into_inner();
        let volume = volume_name(&request.volume);
        self.state.volume(&volume)?;

        let version = request.version;
        let (record, manifest) = self
            .state
            .blocking(move |state| {
                Ok((
                    state.store.record(&volume, version)?,
                    state.store.manifest_at(&volume, version)?,
                ))
            })
            .await?;
        let entries = manifest.iter().map(entry_to_pb).collect();
        Ok(Response::new(pb::ShowReply {
            record: Some(record_to_pb(&record)),
            entries,
        }))
    }

    async fn diff(
        &self,
        request: Request<pb::DiffRequest>,
    ) -> Result<Response<pb::DiffReply>, Status> {
        let request = request.into_inner();
        let volume = volume_name(&request.volume);
        self.state.volume(&volume)?;

        let (from, to) = (request.from_version, request.to_version);
        let (old, new) = self
            .state
            .blocking(move |state| {
                Ok((
                    state.store.manifest_at(&volume, from)?,
                    state.store.manifest_at(&volume, to)?,
                ))
            })
            .await?;
        let changes = ChangeSet::between(&old, &new);
        Ok(Response::new(pb::DiffReply {
            added: changes.added.iter().map(entry_to_pb).collect(),
            modified: changes.modified.iter().map(entry_to_pb).collect(),
            deleted: changes.deleted.iter().map(entry_to_pb).collect(),
        }))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackReply>, Status> {
        let request = request.into_inner();
        let volume = self.state.volume(&volume_name(&request.volume))?;

        let _writer = volume.writer.lock().await;
        let job_volume = volume.clone();
        let version = request.version;
        let record = self
            .state
            .blocking(move |state| Ok(job_volume.rollback(state.store.as_ref(), version)?))
            .await?;
        Ok(Response::new(pb::RollbackReply {
            version: record.version,
            record: Some(record_to_pb(&record)),
        }))
    }

    async fn verify(
        &self,
        _request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyReply>, Status> {
        let volumes: Vec<Arc<Volume>> = self.state.volumes.values().cloned().collect();
        let report = self
            .state
            .blocking(move |state| Ok(crate::verify::run(state.store.as_ref(), &volumes)?))
            .await?;
        Ok(Response::new(verify_to_pb(report)))
    }

    async fn read_objects(
        &self,
        request: Request<pb::DownloadRequest>,
    ) -> Result<Response<Self::ReadObjectsStream>, Status> {
        let request = request.into_inner();
        let digests = request
            .digests
            .iter()
            .map(|bytes| digest_from_pb(bytes))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(crate::service::objects::stream_objects(
            self.state.clone(),
            digests,
        )))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let state = &self.state;
        let mut volumes = Vec::new();
        for volume in state.volumes.values() {
            let name = volume.name.clone();
            let records = state
                .blocking(move |state| Ok(state.store.log(&name, 1)?))
                .await?;
            let head = records.first();
            volumes.push(pb::VolumeStatus {
                volume: volume.name.clone(),
                path: volume.dir.root().display().to_string(),
                head_version: head.map_or(0, |record| record.version),
                entries: head.map_or(0, |record| record.entries),
                lock: lock_state_to_pb(&volume.lock_state(), volume.legacy_max_age()),
                watching: volume.watch.running.load(Ordering::Relaxed),
                last_full_scan_unix: volume.watch.last_full_scan().map_or(0, unix_secs),
                lost_events: volume.watch.lost_events.load(Ordering::Relaxed),
            });
        }

        Ok(Response::new(pb::StatusReply {
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            server_key_hash: state.key_hash.map(|hash| hash.to_hex()).unwrap_or_default(),
            listen: state
                .listen
                .lock()
                .map(|listen| listen.clone())
                .unwrap_or_default(),
            volumes,
            clients_seen: self.seen(),
            clients_file: state.grants.path().display().to_string(),
            state_dir: state.state_dir.display().to_string(),
            started_unix: unix_secs(state.started),
        }))
    }

    async fn list_clients(
        &self,
        _request: Request<pb::ListClientsRequest>,
    ) -> Result<Response<pb::ListClientsReply>, Status> {
        let seen = self.seen();
        let clients = self
            .state
            .grants
            .current()
            .iter()
            .map(|grant| {
                let last = seen
                    .iter()
                    .filter(|client| {
                        let addr_ok = client
                            .address
                            .parse()
                            .is_ok_and(|addr| grant.address.matches(addr));
                        let key_ok = grant
                            .key_hash
                            .is_none_or(|key| key.to_hex() == client.key_hash);
                        addr_ok && key_ok
                    })
                    .max_by_key(|client| client.last_seen_unix);
                pb::ClientListing {
                    grant: Some(grant_to_pb(grant)),
                    last_seen_unix: last.map_or(0, |client| client.last_seen_unix),
                    last_seen_address: last
                        .map(|client| client.address.clone())
                        .unwrap_or_default(),
                }
            })
            .collect();
        Ok(Response::new(pb::ListClientsReply { clients }))
    }

    async fn add_client(
        &self,
        request: Request<pb::AddClientRequest>,
    ) -> Result<Response<pb::AddClientReply>, Status> {
        let grant = request
            .into_inner()
            .grant
            .ok_or_else(|| Status::invalid_argument("no grant given"))?;
        let grant = grant_from_pb(&grant)?;
        if grant.volume != "*" && !self.state.volumes.contains_key(&grant.volume) {
            tracing::warn!(volume = %grant.volume, "grant added for a volume that is not served");
        }

        let summary = format!("{grant:?}");
        let replaced = self
            .state
            .grants
            .add(grant)
            .map_err(|err| ServiceError::Internal(err.into()))?;
        tracing::info!(grant = %summary, replaced, "grant added");
        Ok(Response::new(pb::AddClientReply { replaced }))
    }

    async fn remove_client(
        &self,
        request: Request<pb::RemoveClientRequest>,
    ) -> Result<Response<pb::RemoveClientReply>, Status> {
        let request = request.into_inner();
        let address: AddressPattern = request.address.parse().map_err(Status::invalid_argument)?;
        let volume = Some(request.volume.as_str()).filter(|volume| !volume.is_empty());

        let removed = self
            .state
            .grants
            .remove(address, volume)
            .map_err(|err| ServiceError::Internal(err.into()))?;
        tracing::info!(%address, removed, "grants removed");
        Ok(Response::new(pb::RemoveClientReply { removed }))
    }

    async fn log(
        &self,
        request: Request<pb::LogRequest>,
    ) -> Result<Response<pb::LogReply>, Status> {
        let request = request.into_inner();
        let volume = if request.volume.is_empty() {
            DEFAULT_VOLUME.to_owned()
        } else {
            request.volume
        };
        self.state.volume(&volume)?;

        let limit = request.limit as usize;
        let records = self
            .state
            .blocking(move |state| Ok(state.store.log(&volume, limit)?))
            .await?;
        Ok(Response::new(pb::LogReply {
            versions: records.iter().map(record_to_pb).collect(),
        }))
    }

    async fn clear_lock(
        &self,
        request: Request<pb::ClearLockRequest>,
    ) -> Result<Response<pb::ClearLockReply>, Status> {
        let name = match request.into_inner().volume {
            name if name.is_empty() => DEFAULT_VOLUME.to_owned(),
            name => name,
        };
        let volume = self.state.volume(&name)?;

        let job_volume = volume.clone();
        let cleared = self
            .state
            .blocking(move |state| Ok(job_volume.clear_lock(state.store.as_ref())?))
            .await?;
        let reply = cleared_to_pb(&cleared, volume.legacy_max_age());
        match &reply.freed {
            Some(freed) => {
                tracing::warn!(volume = %name, holder = %freed.address, host = %freed.host_name, pid = freed.process_id, token = freed.token, legacy = freed.legacy, "lock cleared by the operator")
            }
            None => tracing::info!(volume = %name, "clear-lock: the lock was free"),
        }
        Ok(Response::new(reply))
    }
}

/// Returns the reply that says what `clear-lock` freed.
pub(crate) fn cleared_to_pb(cleared: &Cleared, max_age: Duration) -> pb::ClearLockReply {
    let now = SystemTime::now();
    match cleared {
        Cleared::Nothing => pb::ClearLockReply::default(),
        Cleared::Grant(held) => pb::ClearLockReply {
            freed: Some(holder_to_pb(held)),
            age_ms: now
                .duration_since(held.since)
                .unwrap_or_default()
                .as_millis() as u64,
            stale_file: false,
        },
        Cleared::StaleFile(own) => pb::ClearLockReply {
            freed: Some(pb::LockHolder {
                address: own.address.clone(),
                key_hash: own.key_hash.clone(),
                host_name: own.host_name.clone(),
                process_id: own.process_id,
                since_unix: own.since_unix,
                token: own.token,
                ..pb::LockHolder::default()
            }),
            age_ms: own.age(now).as_millis() as u64,
            stale_file: true,
        },
        Cleared::Legacy(legacy) => pb::ClearLockReply {
            freed: Some(legacy_to_pb(legacy, max_age)),
            age_ms: legacy.age(now).as_millis() as u64,
            stale_file: false,
        },
    }
}

impl AdminService {
    fn seen(&self) -> Vec<pb::ClientSeen> {
        let Ok(seen) = self.state.seen.lock() else {
            return Vec::new();
        };
        let mut clients: Vec<pb::ClientSeen> = seen
            .iter()
            .map(|(peer, when)| pb::ClientSeen {
                address: peer.addr.to_string(),
                key_hash: peer.key_hash.map(|hash| hash.to_hex()).unwrap_or_default(),
                last_seen_unix: unix_secs(*when),
            })
            .collect();
        clients.sort_by(|a, b| a.address.cmp(&b.address));
        clients
    }
}

/// Returns the protocol form of a verification report.
pub(crate) fn verify_to_pb(report: crate::verify::VerifyReport) -> pb::VerifyReply {
    pb::VerifyReply {
        problems: report.problems,
        objects_checked: report.objects_checked,
        versions_checked: report.versions_checked,
        files_checked: report.files_checked,
    }
}

fn volume_name(volume: &str) -> String {
    if volume.is_empty() {
        DEFAULT_VOLUME.to_owned()
    } else {
        volume.to_owned()
    }
}

/// Returns the protocol form of a grant.
pub(crate) fn grant_to_pb(grant: &Grant) -> pb::Grant {
    pb::Grant {
        address: grant.address.to_string(),
        key_hash: grant.key_hash.map(|hash| hash.to_hex()).unwrap_or_default(),
        volume: grant.volume.clone(),
        readonly: grant.readonly,
        write_noauth: grant.write_noauth,
    }
}

/// Returns the grant an administrator asked for, validated.
pub(crate) fn grant_from_pb(grant: &pb::Grant) -> Result<Grant, Status> {
    let address = grant.address.parse().map_err(Status::invalid_argument)?;
    let key_hash = match grant.key_hash.as_str() {
        "" => None,
        text => KeyHash::parse_optional(text)
            .map_err(|err| Status::invalid_argument(err.to_string()))?,
    };
    let volume = if grant.volume.is_empty() {
        DEFAULT_VOLUME.to_owned()
    } else {
        grant.volume.clone()
    };
    Ok(Grant {
        address,
        key_hash,
        volume,
        readonly: grant.readonly,
        write_noauth: grant.write_noauth,
    })
}
