//! `Identify`: who the server is and how it sees the caller. Needs no grant,
//! so a client can be set up before the operator grants it anything.

use proto::pb;
use rfs_core::DEFAULT_VOLUME;
use tonic::Request;

use super::conn_info;
use crate::error::ServiceError;
use crate::grants::grant_hint;
use crate::state::ServerState;

pub(super) fn identify(
    state: &ServerState,
    request: Request<pb::IdentifyRequest>,
) -> Result<pb::IdentifyReply, ServiceError> {
    let conn = conn_info(&request)?;
    let peer = conn.peer();

    let volumes = state
        .volumes
        .keys()
        .filter_map(|volume| {
            let rights = state.grants.rights(&peer, volume)?;
            let rights = pb::Rights {
                read: rights.read,
                list: rights.list,
                write: rights.write,
            };
            Some(pb::VolumeRights {
                volume: volume.clone(),
                rights: Some(rights),
            })
        })
        .collect();

    Ok(pb::IdentifyReply {
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        server_key_hash: state.key_hash.map(|hash| hash.to_hex()).unwrap_or_default(),
        client_address: peer.addr.to_string(),
        client_key_hash: peer.key_hash.map(|hash| hash.to_hex()).unwrap_or_default(),
        volumes,
        grant_hint: grant_hint(&peer, DEFAULT_VOLUME, peer.key_hash.is_none()),
    })
}
