//! Where the agent's proxy reaches the IDE: a loopback TCP port, or a unix socket in a
//! directory only the IDE's user (and root, the agent) can enter (docs/agent.md, "The
//! IDE"). A loopback port is reachable by every process on the host — with host
//! networking, every container's too — so the IDEs that can serve on a unix socket
//! (code-server, Xpra) do, and the proxy dials it here.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Upstream {
    /// Opens a connection (TCP with no delay: the IDEs' traffic is interactive).
    pub async fn connect(&self) -> io::Result<Stream> {
        match self {
            Upstream::Tcp(addr) => {
                let s = TcpStream::connect(addr).await?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            Upstream::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
        }
    }

    /// The `Host` header for a request that has none (a unix socket has no address).
    pub fn host(&self) -> String {
        match self {
            Upstream::Tcp(addr) => addr.to_string(),
            Upstream::Unix(_) => "localhost".into(),
        }
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Tcp(addr) => write!(f, "{addr}"),
            Upstream::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A connection to the IDE, either kind.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_once<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
    }

    async fn round_trip(upstream: &Upstream) -> [u8; 4] {
        let mut s = upstream.connect().await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).await.unwrap();
        back
    }

    #[tokio::test]
    async fn both_kinds_carry_bytes_both_ways() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        tokio::spawn(async move { echo_once(tcp.accept().await.unwrap().0).await });
        assert_eq!(&round_trip(&Upstream::Tcp(addr)).await, b"ping");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ide.sock");
        let unix = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move { echo_once(unix.accept().await.unwrap().0).await });
        let upstream = Upstream::Unix(path.clone());
        assert_eq!(&round_trip(&upstream).await, b"ping");
        assert_eq!(upstream.host(), "localhost");
        assert_eq!(upstream.to_string(), format!("unix:{}", path.display()));

        // Nothing listening: the error surfaces (the proxy answers 502).
        drop(dir);
        assert!(upstream.connect().await.is_err());
    }
}
