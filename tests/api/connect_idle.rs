//! The local run's connect path as on AWS (docs/agent.md, "The connect relay"): the relay
//! as its own process behind an idle cutoff like the load balancer's, here 2 s, with the
//! agents' keepalive at 1 s. A JupyterLab studio kept idle past three cutoffs opens
//! through a new connect link, and a kernel's WebSocket opened before the idle computes
//! again; its agent's tunnel never went down.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use studios_local::local::mint_token;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;

const CUTOFF_SECONDS: u64 = 2;
const SECRET: &str = "connect-idle-test-secret";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The local run; stopped (its whole process group) when dropped.
struct Stack(std::process::Child);

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request on a connection of its own to `addr`, for `host`.
async fn http(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("an answer within 30 s")
        .unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let (mut plain, mut rest) = (Vec::new(), &body[..]);
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                break;
            }
            plain.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 4 + size..];
        }
        body = plain;
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// A connect URL's address, host and path (`http://st-….localhost:1234/a?b` →
/// 127.0.0.1:1234, `st-….localhost:1234`, `/a?b`): a `*.localhost` name is the loopback,
/// as browsers resolve it; the Host header says which studio.
fn split_url(url: &str) -> (SocketAddr, String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let slash = rest.find('/').unwrap();
    let host = &rest[..slash];
    let (name, port) = host.rsplit_once(':').unwrap();
    assert!(name.ends_with(".localhost"), "{url}");
    let addr = SocketAddr::from(([127, 0, 0, 1], port.parse().unwrap()));
    (addr, host.to_string(), rest[slash..].to_string())
}

async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await?;
    let len = match h[1] & 0x7f {
        126 => u64::from(s.read_u16().await?),
        127 => s.read_u64().await?,
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await?;
    Ok((h[0] & 0x0f, payload))
}

/// A final, masked frame, as browsers send (RFC 6455, 5.3).
async fn write_frame<S: AsyncWrite + Unpin>(s: &mut S, opcode: u8, payload: &[u8]) {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend((n as u16).to_be_bytes());
        }
    }
    let mask = [0x5a, 0xa5, 0x3c, 0xc3];
    frame.extend(mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.unwrap();
}

/// A kernel's WebSocket as a browser holds it: pings counted and answered.
struct Kernel {
    write: Arc<tokio::sync::Mutex<WriteHalf<TcpStream>>>,
    messages: tokio::sync::mpsc::UnboundedReceiver<Value>,
    pings: Arc<AtomicU32>,
}

impl Kernel {
    async fn open(connect: SocketAddr, host: &str, path: &str, cookie: &str) -> Kernel {
        let mut s = TcpStream::connect(connect).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nCookie: {cookie}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await.unwrap());
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let (mut read, write) = tokio::io::split(s);
        let write = Arc::new(tokio::sync::Mutex::new(write));
        let (tx, messages) = tokio::sync::mpsc::unbounded_channel();
        let pings = Arc::new(AtomicU32::new(0));
        let (writer, count) = (write.clone(), pings.clone());
        tokio::spawn(async move {
            while let Ok((opcode, payload)) = read_frame(&mut read).await {
                match opcode {
                    9 => {
                        count.fetch_add(1, Ordering::Relaxed);
                        write_frame(&mut *writer.lock().await, 10, &payload).await;
                    }
                    1 => {
                        if let Ok(v) = serde_json::from_slice(&payload) {
                            let _ = tx.send(v);
                        }
                    }
                    _ => {}
                }
            }
        });
        Kernel {
            write,
            messages,
            pings,
        }
    }

    /// Executes `code`; its result's `text/plain`.
    async fn execute(&mut self, code: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let msg = json!({
            "header": {"msg_id": id, "username": "test", "session": "connect-idle", "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false},
        });
        write_frame(&mut *self.write.lock().await, 1, msg.to_string().as_bytes()).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = tokio::time::timeout(left, self.messages.recv())
                .await
                .unwrap_or_else(|_| panic!("no result of {code} within 30 s"))
                .unwrap_or_else(|| panic!("the kernel's WebSocket closed before {code}'s result"));
            if m["msg_type"] == "execute_result" && m["parent_header"]["msg_id"] == id.as_str() {
                return m["content"]["data"]["text/plain"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
            }
        }
    }
}

#[tokio::test]
async fn a_studio_idle_past_three_cutoffs_opens_and_its_kernel_websocket_lives() {
    use std::os::unix::process::CommandExt;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sessions = tempfile::tempdir().unwrap();
    let mut stack = Stack(
        Command::new("infra/run-local.sh")
            .current_dir(root())
            .env("STUDIOS_PORT", port.to_string())
            .env("STUDIOS_LOCAL_JWT_SECRET", SECRET)
            .env("STUDIOS_LOCAL_JOB_DELAY_MS", "200")
            .env(
                "STUDIOS_LOCAL_IDLE_CUTOFF_SECONDS",
                CUTOFF_SECONDS.to_string(),
            )
            .env("STUDIO_RELAY_PING_SECONDS", "1")
            .env("STUDIOS_LOCAL_SESSIONS_DIR", sessions.path())
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("CONNECT_URL_PATTERN")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("infra/run-local.sh starts"),
    );
    let console = Arc::new(Mutex::new(Vec::<String>::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let lines = console.clone();
    let stdout = stack.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("ready") {
                let _ = ready_tx.send(());
            }
            lines.lock().unwrap().push(line);
        }
    });
    tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(300)))
        .await
        .unwrap()
        .unwrap_or_else(|_| panic!("not ready: {:?}", console.lock().unwrap()));
    let printed = console.lock().unwrap().join("\n");
    assert!(
        printed.contains(&format!("behind an idle cutoff of {CUTOFF_SECONDS} s")),
        "{printed}"
    );

    let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let bob = format!("Bearer {}", mint_token(SECRET, "bob", Some("Bob")));
    let call = |method: &'static str, path: String, body: Value| {
        let bob = bob.clone();
        async move {
            let body = if body.is_null() {
                String::new()
            } else {
                body.to_string()
            };
            http(
                api,
                &api.to_string(),
                method,
                &path,
                &[
                    ("Authorization", &bob),
                    ("Content-Type", "application/json"),
                ],
                &body,
            )
            .await
        }
    };
    let workspaces = call("GET", "/workspaces".into(), Value::Null).await.json();
    let ws = workspaces["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "demo")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ce = call("GET", format!("/workspaces/{ws}/compute-envs"), Value::Null)
        .await
        .json()["computeEnvs"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let added = call(
        "POST",
        format!("/workspaces/{ws}/studios?autoStart=true"),
        json!({"name": "Idle kernels", "computeEnvId": ce, "template": {"kind": "jupyter"}}),
    )
    .await;
    assert!(
        added.status < 300,
        "{}",
        String::from_utf8_lossy(&added.body)
    );
    let st = added.json()["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = call("GET", format!("/workspaces/{ws}/studios/{st}"), Value::Null)
            .await
            .json();
        if s["session"]["ready"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "not ready: {s}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let connect_link = || async {
        let link = call(
            "POST",
            format!("/workspaces/{ws}/studios/{st}/connect"),
            Value::Null,
        )
        .await;
        assert_eq!(link.status, 200, "{}", String::from_utf8_lossy(&link.body));
        link.json()["url"].as_str().unwrap().to_string()
    };
    let url = connect_link().await;
    let (connect, host, path) = split_url(&url);
    assert_ne!(
        connect.port(),
        port,
        "connect URLs point at the relay's own port"
    );
    let base = path.split('?').next().unwrap().to_string();
    let opened = http(connect, &host, "GET", &path, &[], "").await;
    assert_eq!(opened.status, 302);
    let cookie = opened
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let kernel = http(
        connect,
        &host,
        "POST",
        &format!("{base}api/kernels"),
        &[("Cookie", &cookie)],
        "{}",
    )
    .await;
    assert_eq!(
        kernel.status,
        201,
        "{}",
        String::from_utf8_lossy(&kernel.body)
    );
    let kernel_id = kernel.json()["id"].as_str().unwrap().to_string();
    let mut channels = Kernel::open(
        connect,
        &host,
        &format!("{base}api/kernels/{kernel_id}/channels"),
        &cookie,
    )
    .await;
    assert_eq!(channels.execute("1+1").await, "2");
    // A connection that says nothing (half a request head): the cutoff is live here.
    let mut quiet = TcpStream::connect(connect).await.unwrap();
    quiet.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();

    let idle = Duration::from_secs(CUTOFF_SECONDS * 3 + 1);
    tokio::time::sleep(idle).await;

    let started = Instant::now();
    let url = connect_link().await;
    let (_, _, path) = split_url(&url);
    let opened = http(connect, &host, "GET", &path, &[], "").await;
    assert_eq!(opened.status, 302, "the link opens after {idle:?} idle");
    let cookie = opened
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let lab = http(
        connect,
        &host,
        "GET",
        &format!("{base}lab"),
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    let open_after_idle = started.elapsed();
    assert_eq!(lab.status, 200);
    assert!(String::from_utf8_lossy(&lab.body).contains("JupyterLab"));
    let started = Instant::now();
    assert_eq!(
        channels.execute("2+2").await,
        "4",
        "the idle kernel WebSocket lives"
    );
    let kernel_after_idle = started.elapsed();
    let pings = channels.pings.load(Ordering::Relaxed);
    assert!(pings >= 3, "{pings} pings in {idle:?}");

    quiet.write_all(b"Host: h\r\n\r\n").await.unwrap();
    let cut = quiet.read_to_end(&mut Vec::new()).await;
    assert!(
        cut.as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the quiet connection was cut: {cut:?}"
    );
    // The agent's tunnel stayed up all along (the agent logs each reconnect).
    let mut logs = String::new();
    for entry in walk(sessions.path()) {
        if entry.file_name().is_some_and(|n| n == "agent.log") {
            logs.push_str(&std::fs::read_to_string(&entry).unwrap_or_default());
        }
    }
    assert!(!logs.is_empty(), "the agent's log is there");
    assert!(!logs.contains("relay tunnel down"), "{logs}");
    println!(
        "after {idle:?} idle ({} cutoffs of {CUTOFF_SECONDS} s): a new link opened and JupyterLab loaded in {open_after_idle:?}; the kernel's WebSocket computed 2+2 in {kernel_after_idle:?} after {pings} pings",
        idle.as_secs() / CUTOFF_SECONDS
    );
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
