//! Errors of the services and the one place they become gRPC statuses.

use prost::Message as _;
use proto::pb;
use tonic::{Code, Status};

use crate::lock::LockError;
use crate::store::StoreError;

/// Why a request failed, in terms of what the client must do about it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed, names a bad path, or is over a limit.
    #[error("{0}")]
    InvalidArgument(String),
    /// The volume or version does not exist.
    #[error("{0}")]
    NotFound(String),
    /// No grant allows the request.
    #[error("{0}")]
    PermissionDenied(String),
    /// Someone else holds the lock.
    #[error("{0}")]
    LockHeld(String),
    /// The request needs something the client must do first (for example
    /// upload an object).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The fencing token is stale.
    #[error("{0}")]
    StaleToken(String),
    /// Paths of the change set changed on the server since its base.
    #[error("{} paths changed on the server since version {base}", paths.len())]
    Conflict {
        /// The base of the refused commit.
        base: u64,
        /// The head at the time.
        head: u64,
        /// The conflicting paths.
        paths: Vec<String>,
    },
    /// The server is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The RFS host's disk is full; nothing was recorded.
    #[error("the RFS host's storage is full; nothing was recorded: free space there and try again")]
    StorageFull,
    /// A bug or an I/O fault; the detail goes to the log only.
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::VolumeNotFound(_) | StoreError::VersionNotFound { .. } => {
                ServiceError::NotFound(err.to_string())
            }
            StoreError::Conflict { base, head, paths } => ServiceError::Conflict {
                base,
                head,
                paths: paths.into_iter().map(|path| path.into_string()).collect(),
            },
            StoreError::Rejected(message) => ServiceError::InvalidArgument(message),
            StoreError::StaleToken { .. } => ServiceError::StaleToken(err.to_string()),
            StoreError::MissingObject { .. } => ServiceError::FailedPrecondition(err.to_string()),
            StoreError::Database(redb::Error::Io(ref io))
                if io.kind() == std::io::ErrorKind::StorageFull =>
            {
                tracing::error!(error = %err, "the state directory's disk is full");
                ServiceError::StorageFull
            }
            StoreError::Corrupt(_) | StoreError::Database(_) => ServiceError::Internal(err.into()),
        }
    }
}

impl From<LockError> for ServiceError {
    fn from(err: LockError) -> Self {
        match err {
            LockError::Held { .. } | LockError::Legacy { .. } => {
                ServiceError::LockHeld(err.to_string())
            }
            LockError::Stale { .. } => ServiceError::StaleToken(err.to_string()),
        }
    }
}

impl From<anyhow::Error> for ServiceError {
    fn from(err: anyhow::Error) -> Self {
        let full = err.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
        });
        if full {
            tracing::error!(error = format!("{err:#}"), "a disk of the RFS host is full");
            return ServiceError::StorageFull;
        }
        match err.downcast::<StoreError>() {
            Ok(store_error) => store_error.into(),
            Err(err) => ServiceError::Internal(err),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Self {
        to_status(err)
    }
}

/// Returns the status a client sees for `err`. Internal errors are logged
/// in full here and reach the client as a short message only.
pub fn to_status(err: ServiceError) -> Status {
    match err {
        ServiceError::InvalidArgument(message) => Status::invalid_argument(message),
        ServiceError::NotFound(message) => Status::not_found(message),
        ServiceError::PermissionDenied(message) => Status::permission_denied(message),
        ServiceError::LockHeld(message) | ServiceError::FailedPrecondition(message) => {
            Status::failed_precondition(message)
        }
        ServiceError::StaleToken(message) => {
            let mut status = Status::aborted(message);
            status.metadata_mut().insert(
                proto::REFUSAL_KEY,
                proto::REFUSAL_STALE_TOKEN
                    .parse()
                    .expect("the refusal value is valid ASCII metadata"),
            );
            status
        }
        ServiceError::Conflict { base, head, paths } => {
            let shown: Vec<&str> = paths.iter().take(10).map(String::as_str).collect();
            let more = if paths.len() > shown.len() {
                format!(" and {} more", paths.len() - shown.len())
            } else {
                String::new()
            };
            let message = format!(
                "conflict: changed on the server since version {base}: {}{more}",
                shown.join(", ")
            );
            let details = pb::CommitConflict {
                base_version: base,
                head_version: head,
                paths,
            }
            .encode_to_vec();
            Status::with_details(Code::Aborted, message, details.into())
        }
        ServiceError::Unavailable(message) => Status::unavailable(message),
        ServiceError::StorageFull => {
            Status::resource_exhausted(ServiceError::StorageFull.to_string())
        }
        ServiceError::Internal(err) => {
            tracing::error!(error = format!("{err:#}"), "request failed");
            Status::internal("internal error; see the rfsd log")
        }
    }
}
