//! Accepting client connections: TCP, then TLS unless plaintext was asked
//! for, and what the services learn about the peer.
//!
//! Handshakes run in their own tasks so that a slow or hostile client cannot
//! hold up the accept loop; finished connections reach tonic through a
//! channel. Each connection carries a [`ConnInfo`] (peer address and key
//! hash) that tonic puts into every request's extensions.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rfs_core::KeyHash;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use tracing::Instrument;

use crate::grants::Peer;
use crate::tls::key_hash_of_cert;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many finished connections may wait for tonic to pick them up.
const ACCEPT_BACKLOG: usize = 128;

/// What the services know about the other end of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The TCP peer address.
    pub remote: SocketAddr,
    /// The key hash of the client certificate, when one was presented.
    pub key_hash: Option<KeyHash>,
}

impl ConnInfo {
    /// Returns the peer as the grant table sees it.
    pub fn peer(&self) -> Peer {
        Peer {
            addr: self.remote.ip().to_canonical(),
            key_hash: self.key_hash,
        }
    }
}

/// One accepted connection, plain or TLS.
#[derive(Debug)]
pub struct Conn {
    io: ConnIo,
    info: ConnInfo,
}

#[derive(Debug)]
enum ConnIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            ConnIo::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            ConnIo::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(stream) => Pin::new(stream).poll_flush(cx),
            ConnIo::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            ConnIo::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts connections on every listener and hands finished ones to the
/// returned receiver. The accept tasks stop when the receiver is dropped.
pub fn accept_all(
    listeners: Vec<TcpListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> mpsc::Receiver<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
    let acceptor = tls.map(TlsAcceptor::from);
    for listener in listeners {
        let span = tracing::debug_span!("listener", addr = ?listener.local_addr().ok());
        tokio::spawn(accept_loop(listener, acceptor.clone(), tx.clone()).instrument(span));
    }
    rx
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Running out of file descriptors is the usual cause:
                    // back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        // Nagle's algorithm costs tens of milliseconds per request turn.
        let _ = stream.set_nodelay(true);

        let acceptor = acceptor.clone();
        let tx = tx.clone();
        let span = tracing::debug_span!("connection", peer.addr = %remote);
        tokio::spawn(
            async move {
                match handshake(stream, remote, acceptor).await {
                    Ok(conn) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Err(err) => tracing::debug!(error = %err, "handshake failed"),
                }
            }
            .instrument(span),
        );
    }
}

async fn handshake(
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: Option<TlsAcceptor>,
) -> io::Result<Conn> {
    let Some(acceptor) = acceptor else {
        let info = ConnInfo {
            remote,
            key_hash: None,
        };
        return Ok(Conn {
            io: ConnIo::Plain(stream),
            info,
        });
    };

    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let key_hash = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(key_hash_of_cert);
    tracing::debug!(key_hash = ?key_hash.map(|hash| hash.to_hex()), "TLS established");
    Ok(Conn {
        io: ConnIo::Tls(Box::new(tls)),
        info: ConnInfo { remote, key_hash },
    })
}
