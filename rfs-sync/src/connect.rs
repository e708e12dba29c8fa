//! Opens the gRPC channel to rfsd through a connector of our own: it binds
//! the configured source address, turns Nagle's algorithm off, and wraps
//! the stream in TLS pinned to the server's key hash.
//!
//! tonic's own TLS would check names and certificate authorities, and its
//! connector cannot bind a source address; both matter here (`--bind` is how
//! multi-homed hosts, and the tests, choose the client address rfsd sees).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use rfs_core::KeyHash;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::exit::{Code, Failure};
use crate::identity::Identity;
use crate::tls::{self, Presented};

/// How long establishing a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP/2 receive window of one stream: a few chunks.
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;

/// The HTTP/2 receive window of the whole connection.
const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// The name sent in TLS; rfsd's certificate is checked by key, not name.
const TLS_SERVER_NAME: &str = "rfsd";

/// Where and how to reach rfsd.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) bind: Option<IpAddr>,
    pub(crate) security: Security,
}

/// The protection of the connection.
#[derive(Debug, Clone)]
pub(crate) enum Security {
    /// Plain HTTP/2, only with `--insecure-plaintext` on both sides.
    Plaintext,
    /// TLS 1.3, the server checked against `pin` (any key when `None`,
    /// which only setup uses), presenting `identity` when set.
    Tls {
        pin: Option<KeyHash>,
        identity: Option<Arc<Identity>>,
    },
}

/// An open channel and the key hash the server presented on it.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) channel: Channel,
    /// `None` in plaintext mode.
    pub(crate) server_key: Option<KeyHash>,
}

/// The stream type the connector hands to tonic, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
type BoxedIo = Pin<Box<dyn Io>>;

/// Connects to `target`.
///
/// # Errors
///
/// Fails with exit code 6 when the server cannot be reached, and with 7
/// when it presents a key other than the pinned one.
pub(crate) async fn connect(target: &Target) -> Result<Connection> {
    let presented = Presented::default();
    let tls = match &target.security {
        Security::Plaintext => None,
        Security::Tls { pin, identity } => {
            let identity = identity
                .as_deref()
                .map(|(chain, key)| (chain.clone(), key.clone_key()));
            let config = tls::client_config(*pin, presented.clone(), identity)?;
            Some(TlsConnector::from(Arc::new(config)))
        }
    };

    let dialed = target.clone();
    let connector = tower::service_fn(move |_: Uri| {
        let target = dialed.clone();
        let tls = tls.clone();
        async move { open_stream(&target, tls).await.map(TokioIo::new) }
    });
    // Windows larger than HTTP/2's 64 KiB default keep a download of large
    // objects from waiting on a window update every few chunks.
    let endpoint = Endpoint::from_static("http://rfsd.invalid")
        .connect_timeout(CONNECT_TIMEOUT)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    tracing::debug!(host = %target.host, port = target.port, "connecting");
    let result = endpoint.connect_with_connector(connector).await;

    let server_key = *presented.lock().unwrap_or_else(|err| err.into_inner());
    match result {
        Ok(channel) => Ok(Connection {
            channel,
            server_key,
        }),
        Err(err) => Err(connect_failure(target, server_key, err)),
    }
}

/// Explains a failed connection: a wrong server key is an integrity
/// failure, anything else means the server is unreachable.
fn connect_failure(
    target: &Target,
    server_key: Option<KeyHash>,
    err: tonic::transport::Error,
) -> anyhow::Error {
    let address = show_address(&target.host, target.port);
    if let (Security::Tls { pin: Some(pin), .. }, Some(seen)) = (&target.security, server_key)
        && seen != *pin
    {
        let message = format!(
            "rfsd at {address} presented key hash {seen}, but {pin} is pinned; \
             if the server's key was replaced on purpose, run rfs-sync --setup --force"
        );
        return Failure::new(Code::IntegrityFailure, message).into();
    }
    let cause = crate::exit::chain_text(&err.to_string(), std::error::Error::source(&err));
    Failure::new(
        Code::Unreachable,
        format!("cannot connect to rfsd at {address}: {cause}"),
    )
    .into()
}

/// Opens TCP (and TLS) to the first address of the target that answers.
async fn open_stream(target: &Target, tls: Option<TlsConnector>) -> std::io::Result<BoxedIo> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .collect();
    let mut last_error = None;
    for addr in addrs {
        if target
            .bind
            .is_some_and(|bind| bind.is_ipv4() != addr.is_ipv4())
        {
            continue;
        }
        match dial(addr, target.bind).await {
            Ok(tcp) => return wrap(tcp, tls).await,
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!(
                "{} has no address of the bind address's family",
                target.host
            ),
        )
    }))
}

async fn dial(addr: SocketAddr, bind: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(bind) = bind {
        socket.bind(SocketAddr::new(bind, 0))?;
    }
    let tcp = socket.connect(addr).await?;
    // Nagle's algorithm costs tens of milliseconds per request turn.
    tcp.set_nodelay(true)?;
    tracing::debug!(peer = %addr, local = ?tcp.local_addr().ok(), "tcp connected");
    Ok(tcp)
}

async fn wrap(tcp: TcpStream, tls: Option<TlsConnector>) -> std::io::Result<BoxedIo> {
    let Some(tls) = tls else {
        return Ok(Box::pin(tcp));
    };
    let name = ServerName::try_from(TLS_SERVER_NAME).map_err(std::io::Error::other)?;
    let stream = tls.connect(name, tcp).await?;
    Ok(Box::pin(stream))
}

/// Returns `host:port`, with brackets around an IPv6 address.
pub(crate) fn show_address(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// Returns the host, and the port when one is given, of an address as an
/// operator may write it: `10.0.0.1`, `rfs.example`, `::1`, `[::1]`, or any
/// of those but a bare IPv6 address followed by `:PORT`.
///
/// # Errors
///
/// Fails on an empty address, one with spaces or slashes, or a bad port.
pub(crate) fn parse_address(text: &str) -> Result<(String, Option<u16>)> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip.to_string(), None));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), Some(addr.port())));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port
                .parse::<u16>()
                .with_context(|| format!("bad port in {text:?}"))?;
            (host, Some(port))
        }
        _ => (text, None),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host);
    anyhow::ensure!(
        !host.is_empty() && !host.contains(['/', ' ', '[', ']']),
        "{text:?} is not a host name or IP address"
    );
    // An IP address is stored in its canonical form, a name as given.
    let host = host
        .parse::<IpAddr>()
        .map_or_else(|_| host.to_owned(), |ip| ip.to_string());
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_accepted_in_the_usual_forms() {
        let host = |text: &str| parse_address(text).unwrap();
        assert_eq!(host("10.0.0.1"), ("10.0.0.1".into(), None));
        assert_eq!(host("::1"), ("::1".into(), None));
        assert_eq!(host("[::1]"), ("::1".into(), None));
        assert_eq!(host("[::1]:19005"), ("::1".into(), Some(19005)));
        assert_eq!(host("127.0.0.1:19005"), ("127.0.0.1".into(), Some(19005)));
        assert_eq!(host("rfs.example"), ("rfs.example".into(), None));
        assert_eq!(host("rfs.example:9005"), ("rfs.example".into(), Some(9005)));
        assert!(parse_address("").is_err());
        assert!(parse_address("rfs.example:http").is_err());
        assert_eq!(show_address("::1", 9005), "[::1]:9005");
    }
}
