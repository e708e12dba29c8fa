//! `AcquireLock`, `RenewLock` and `ReleaseLock`: the write lock of a volume
//! that a commit holds.

use std::sync::Arc;

use proto::pb;
use tokio::time::Instant;
use tonic::Request;

use super::conn_info;
use super::convert::bounded;
use crate::error::ServiceError;
use crate::lock::Holder;
use crate::state::{Need, ServerState};
use crate::volume::Volume;

/// The longest host name a client may report.
const MAX_HOST_NAME: usize = 255;

pub(super) async fn acquire(
    state: &Arc<ServerState>,
    request: Request<pb::AcquireLockRequest>,
) -> Result<pb::LockReply, ServiceError> {
    let conn = conn_info(&request)?;
    let request = request.into_inner();
    bounded("host name", &request.host_name, MAX_HOST_NAME)?;
    let volume = state.volume(&request.volume)?;
    state.authorize(&conn, &request.volume, Need::Write)?;

    // Refuse early, before a token is spent, when someone holds the lock.
    if let Some(held) = volume.lock_holder() {
        let holder = held.describe(Instant::now());
        return Err(crate::lock::LockError::Held {
            volume: volume.name.clone(),
            holder,
        }
        .into());
    }
    let holder = Holder {
        peer: conn.peer(),
        host_name: request.host_name,
        process_id: request.process_id,
    };
    let lease = state.lease;
    let job_volume = volume.clone();
    let held = state
        .blocking(move |state| job_volume.grant_lock(state.store.as_ref(), holder, lease))
        .await?;
    let token = held.token;
    tracing::debug!(volume = %volume.name, token, holder = %held.holder.peer, "lock granted");
    Ok(pb::LockReply {
        token,
        lease_ms: state.lease.as_millis() as u64,
    })
}

pub(super) fn renew(
    state: &Arc<ServerState>,
    request: Request<pb::RenewLockRequest>,
) -> Result<pb::LockReply, ServiceError> {
    let conn = conn_info(&request)?;
    let request = request.into_inner();
    let volume = state.volume(&request.volume)?;
    state.authorize(&conn, &request.volume, Need::Write)?;

    slot(&volume).renew(&volume.name, request.token, state.lease, Instant::now())?;
    Ok(pb::LockReply {
        token: request.token,
        lease_ms: state.lease.as_millis() as u64,
    })
}

pub(super) async fn release(
    state: &Arc<ServerState>,
    request: Request<pb::ReleaseLockRequest>,
) -> Result<pb::ReleaseLockReply, ServiceError> {
    let conn = conn_info(&request)?;
    let request = request.into_inner();
    let volume = state.volume(&request.volume)?;
    state.authorize(&conn, &request.volume, Need::Write)?;

    let token = request.token;
    let job_volume = volume.clone();
    let released = state
        .blocking(move |_| Ok(job_volume.release_lock(token)))
        .await?;
    if released.is_some() {
        tracing::debug!(volume = %volume.name, token, "lock released");
    }
    Ok(pb::ReleaseLockReply {})
}

fn slot(volume: &Volume) -> std::sync::MutexGuard<'_, crate::lock::LockSlot> {
    volume
        .lock
        .lock()
        .expect("lock slot mutex is never poisoned: no code panics while holding it")
}
