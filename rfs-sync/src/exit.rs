//! Exit codes of rfs-sync, the error that carries one through `anyhow`, and
//! the mapping from gRPC statuses to codes.
//!
//! The codes are a stable interface for scripts and systemd units (SPEC
//! section 5), so every failure path decides its code in one of two places:
//! where it creates a [`Failure`], or in [`code_of`] for errors that carry
//! none.

use std::fmt;

use tonic::Code as StatusCode;

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    Done = 0,
    Error = 1,
    Usage = 2,
    Conflict = 3,
    LockHeld = 4,
    PermissionDenied = 5,
    Unreachable = 6,
    IntegrityFailure = 7,
}

impl Code {
    /// Returns the process exit status.
    pub(crate) fn as_u8(self) -> u8 {
        self as u8
    }
}

/// A failure that knows its exit code and, for conflicts, the paths
/// involved. Commands return it inside `anyhow::Error`; `main` finds it in
/// the chain.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: Code,
    pub(crate) message: String,
    pub(crate) conflicts: Vec<String>,
}

impl Failure {
    /// Returns a failure with `code` and a message for people.
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            conflicts: Vec::new(),
        }
    }

    /// Returns a conflict failure that lists `paths`.
    pub(crate) fn conflict(message: impl Into<String>, paths: Vec<String>) -> Self {
        Self {
            code: Code::Conflict,
            message: message.into(),
            conflicts: paths,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Returns the failure for a gRPC status of `rpc`, with the code its
/// documented meaning gives. Calls with a special meaning for a code (a held
/// lock, a refused commit) handle that code before calling this.
pub(crate) fn status_failure(rpc: &str, status: &tonic::Status) -> Failure {
    let code = status_code(status.code());
    let message = match status.code() {
        StatusCode::PermissionDenied => format!("{rpc}: permission denied: {}", status.message()),
        StatusCode::Unavailable | StatusCode::DeadlineExceeded => {
            format!("{rpc}: server unreachable: {}", describe(status))
        }
        _ => format!("{rpc}: {}", describe(status)),
    };
    Failure::new(code, message)
}

/// Returns the exit code that a status code means when nothing more
/// specific applies.
pub(crate) fn status_code(code: StatusCode) -> Code {
    match code {
        StatusCode::PermissionDenied | StatusCode::Unauthenticated => Code::PermissionDenied,
        StatusCode::Unavailable | StatusCode::DeadlineExceeded => Code::Unreachable,
        _ => Code::Error,
    }
}

/// Returns the exit code and conflict paths of an error: those of the first
/// [`Failure`] in its chain, else what a status or transport error in the
/// chain means, else 1.
pub(crate) fn code_of(err: &anyhow::Error) -> (Code, Vec<String>) {
    for cause in err.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return (failure.code, failure.conflicts.clone());
        }
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            return (status_code(status.code()), Vec::new());
        }
        if cause.downcast_ref::<tonic::transport::Error>().is_some() {
            return (Code::Unreachable, Vec::new());
        }
    }
    (Code::Error, Vec::new())
}

/// Returns a status's message, followed by its sources (transport
/// failures hide the cause there).
fn describe(status: &tonic::Status) -> String {
    let text = chain_text(status.message(), std::error::Error::source(status));
    match text.is_empty() {
        true => format!("{:?}", status.code()),
        false => text,
    }
}

/// Returns `first` and the messages of `source` and its sources, joined
/// with ": ". A message already contained in the text so far is left out:
/// I/O errors repeat their inner error's message as their own.
pub(crate) fn chain_text(
    first: &str,
    source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    let mut text = first.to_owned();
    let mut source = source;
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn a_failure_keeps_its_code_under_context() {
        let err = anyhow::Error::new(Failure::conflict("refused", vec!["world".into()]))
            .context("commit of volume local");

        assert_eq!(code_of(&err), (Code::Conflict, vec!["world".to_owned()]));
    }

    #[test]
    fn statuses_map_to_documented_codes() {
        let denied = status_failure("head", &tonic::Status::permission_denied("run rfsd"));
        assert_eq!(denied.code, Code::PermissionDenied);
        assert!(denied.message.contains("run rfsd"));

        assert_eq!(status_code(StatusCode::Unavailable), Code::Unreachable);
        assert_eq!(status_code(StatusCode::NotFound), Code::Error);
        assert_eq!(status_code(StatusCode::Internal), Code::Error);
    }

    #[test]
    fn repeated_causes_are_shown_once() {
        let inner = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let outer = std::io::Error::new(inner.kind(), inner.to_string());
        let err = anyhow::Error::new(outer).context("transport error");

        let text = chain_text("", Some(err.as_ref()));

        assert_eq!(text, "transport error: connection refused");
    }

    #[test]
    fn plain_errors_exit_with_one() {
        let err: anyhow::Result<()> = Err(anyhow::anyhow!("disk full")).context("saving state");
        assert_eq!(code_of(&err.unwrap_err()).0, Code::Error);
    }
}
