//! A stand-in for the Network Load Balancer in front of the relay on AWS, for the local
//! run and the tests (docs/agent.md, "The connect relay"): a TCP proxy that forgets a
//! connection after `idle` with no bytes in either direction, as the NLB does (350 s on
//! TLS listeners, fixed). As there, nothing is sent when it is forgotten: both ends
//! think it is open, and the next bytes either end sends are answered with a reset (TCP
//! RST), which ends that end's connection. What would hide a dead tunnel or a cut
//! WebSocket in the local run shows here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Connections accepted on `listener` go to `upstream`, each forgotten after `idle`.
pub struct IdleCutoff {
    upstream: SocketAddr,
    idle: Duration,
    forgotten: AtomicU64,
}

impl IdleCutoff {
    pub fn new(upstream: SocketAddr, idle: Duration) -> Arc<IdleCutoff> {
        Arc::new(IdleCutoff {
            upstream,
            idle,
            forgotten: AtomicU64::new(0),
        })
    }

    /// How many connections it has forgotten so far.
    pub fn forgotten(&self) -> u64 {
        self.forgotten.load(Ordering::Relaxed)
    }

    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move { this.flow(client).await });
        }
    }

    async fn flow(&self, mut client: TcpStream) {
        let mut target = match TcpStream::connect(self.upstream).await {
            Ok(t) => t,
            Err(_) => return reset(client),
        };
        let _ = client.set_nodelay(true);
        let _ = target.set_nodelay(true);
        let (mut cr, mut cw) = client.split();
        let (mut tr, mut tw) = target.split();
        let (mut cbuf, mut tbuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
        let (mut client_open, mut target_open) = (true, true);
        let mut deadline = Instant::now() + self.idle;
        let failed = loop {
            if !client_open && !target_open {
                return;
            }
            tokio::select! {
                read = cr.read(&mut cbuf), if client_open => match read {
                    Ok(0) => {
                        client_open = false;
                        let _ = tw.shutdown().await;
                    }
                    Ok(n) => {
                        if tw.write_all(&cbuf[..n]).await.is_err() {
                            break true;
                        }
                        deadline = Instant::now() + self.idle;
                    }
                    Err(_) => break true,
                },
                read = tr.read(&mut tbuf), if target_open => match read {
                    Ok(0) => {
                        target_open = false;
                        let _ = cw.shutdown().await;
                    }
                    Ok(n) => {
                        if cw.write_all(&tbuf[..n]).await.is_err() {
                            break true;
                        }
                        deadline = Instant::now() + self.idle;
                    }
                    Err(_) => break true,
                },
                _ = tokio::time::sleep_until(deadline) => break false,
            }
        };
        if failed {
            reset(client);
            return reset(target);
        }
        self.forgotten.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(upstream = %self.upstream, "idle connection forgotten");
        // Forgotten: whichever end sends next (data or its close) is reset.
        tokio::join!(reset_when_heard(client), reset_when_heard(target));
    }
}

/// Ends the connection with a reset (RST), not a close (FIN).
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn reset_when_heard(mut stream: TcpStream) {
    let mut byte = [0u8; 1];
    let _ = stream.read(&mut byte).await;
    reset(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn busy_connections_pass_and_idle_ones_are_forgotten_silently() {
        let cutoff = IdleCutoff::new(echo().await, Duration::from_millis(300));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = listener.local_addr().unwrap();
        tokio::spawn(cutoff.clone().serve(listener));

        // Bytes every 100 ms for a second: never idle for 300 ms.
        let mut busy = TcpStream::connect(front).await.unwrap();
        for _ in 0..10 {
            busy.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            busy.read_exact(&mut b).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(cutoff.forgotten(), 0);

        // Idle for longer: no close arrives, and the next bytes sent are reset.
        let mut idle = TcpStream::connect(front).await.unwrap();
        idle.write_all(b"y").await.unwrap();
        let mut b = [0u8; 1];
        idle.read_exact(&mut b).await.unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(600), idle.read(&mut b)).await;
        assert!(quiet.is_err(), "nothing arrives, not even a close");
        assert_eq!(cutoff.forgotten(), 2, "the busy one went idle too");
        idle.write_all(b"z").await.unwrap();
        let after = idle.read(&mut b).await;
        assert!(
            after
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{after:?}"
        );
    }
}
