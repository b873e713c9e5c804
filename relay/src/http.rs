//! The relay's own HTTP/1.1 framing (docs/security.md, "The relay"): it reads every
//! browser request head itself (httparse, at most [`MAX_HEAD`] bytes), routes it by its
//! `Host` (one studio id label, then the connect domain), forwards exactly one request
//! per data connection and exactly one response back, delimited by `Content-Length` or
//! chunked transfer-encoding (RFC 9112, 6 and 7), so a tunnel end never decides what
//! the browser's next request is or where it goes. Only a `101 Switching Protocols`
//! answer to an upgrade request turns the connection into bytes both ways.

use studios_protocol::ids;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest request or response head read.
pub const MAX_HEAD: usize = 32 * 1024;
/// The most header fields in one head.
pub const MAX_HEADERS: usize = 100;
/// The longest chunk-size or trailer line of a chunked body.
const MAX_CHUNK_LINE: usize = 4096;

/// How a message's body ends (RFC 9112, 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
    /// A response delimited by the end of its connection.
    UntilClose,
}

/// A browser's request as the relay forwards it.
#[derive(Debug, PartialEq)]
pub struct Request {
    /// The studio its `Host` names.
    pub studio: String,
    /// The head sent to the session: as read for an upgrade, else with
    /// `Connection: close` instead of any `Connection` or `Keep-Alive` header.
    pub forward: Vec<u8>,
    pub body: Body,
    pub upgrade: bool,
    /// Whether the browser may send another request on this connection afterwards.
    pub keep_alive: bool,
    /// A `HEAD` request (its response has no body whatever its headers say).
    pub head: bool,
}

/// A refused request: the status and why.
pub type Refusal = (u16, &'static str);

/// The studio a `Host` value names: exactly `<studio id>.<domain>`, optionally with a
/// port; anything else (another label count, an ill-formed id, another domain, upper
/// case in the id) is none.
pub fn studio_of_host(host: &str, domain: &str) -> Option<String> {
    let name = match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            name
        }
        Some(_) => return None,
        None => host,
    };
    let (label, rest) = name.split_once('.')?;
    (!domain.is_empty() && rest.eq_ignore_ascii_case(domain) && ids::is_id(ids::STUDIO, label))
        .then(|| label.to_string())
}

/// Reads one head (through its empty line) into `buf`, which it clears first.
/// `Ok(false)`: the stream ended before its first byte; `Err(400)`: it ended inside the
/// head; `Err(431)`: the head is longer than [`MAX_HEAD`]. Linear in the head's length.
pub async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Result<bool, u16> {
    buf.clear();
    loop {
        let start = buf.len();
        let room = (MAX_HEAD + 1 - start) as u64;
        let n = (&mut *r)
            .take(room)
            .read_until(b'\n', buf)
            .await
            .map_err(|_| 400u16)?;
        if buf.len() > MAX_HEAD {
            return Err(431);
        }
        if n == 0 {
            return if buf.is_empty() { Ok(false) } else { Err(400) };
        }
        let line = &buf[start..];
        if line == b"\r\n" || line == b"\n" {
            if start == 0 {
                // Empty lines before a request line are ignored (RFC 9112, 2.2).
                buf.clear();
                continue;
            }
            return Ok(true);
        }
    }
}

/// The values of the comma-separated header `name`, trimmed and lower-cased.
fn tokens(headers: &[httparse::Header], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The body a head's `Transfer-Encoding` and `Content-Length` announce (`None`: neither),
/// refusing the ambiguous: both at once, differing lengths, an encoding other than
/// chunked alone.
fn framing(headers: &[httparse::Header]) -> Result<Option<Body>, Refusal> {
    let encodings = tokens(headers, "transfer-encoding");
    let lengths: Vec<&[u8]> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(|v| v.trim_ascii())
        .collect();
    if !encodings.is_empty() {
        if !lengths.is_empty() {
            return Err((400, "both Transfer-Encoding and Content-Length"));
        }
        if encodings != ["chunked"] {
            return Err((501, "a transfer-encoding other than chunked"));
        }
        return Ok(Some(Body::Chunked));
    }
    let mut length = None;
    for v in lengths {
        let n = std::str::from_utf8(v)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or((400, "an unreadable Content-Length"))?;
        if length.is_some_and(|l| l != n) {
            return Err((400, "differing Content-Length values"));
        }
        length = Some(n);
    }
    Ok(length.map(Body::Length))
}

/// The browser's request whose whole head is `buf` (as [`read_head`] read it), routed by
/// its `Host` within `domain`.
pub fn parse_request(buf: &[u8], domain: &str) -> Result<Request, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len == buf.len() => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Err((431, "the request has too many header fields"))
        }
        _ => return Err((400, "the request is not HTTP/1.1")),
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err((400, "the request is not HTTP/1.1"));
    };
    if !path.starts_with('/') {
        return Err((400, "the request target is not a path"));
    }
    let hosts: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value)
        .collect();
    let [host] = hosts.as_slice() else {
        return Err((400, "the request needs exactly one Host"));
    };
    let studio = std::str::from_utf8(host)
        .ok()
        .and_then(|h| studio_of_host(h, domain))
        .ok_or((404, "no studio has this address"))?;
    let body = framing(req.headers)?.unwrap_or(Body::None);
    if version == 0 && body == Body::Chunked {
        return Err((400, "chunked transfer-encoding in HTTP/1.0"));
    }
    let connection = tokens(req.headers, "connection");
    let upgrade =
        !tokens(req.headers, "upgrade").is_empty() && connection.iter().any(|t| t == "upgrade");
    let keep_alive = version == 1 && !connection.iter().any(|t| t == "close");
    let forward = if upgrade {
        buf.to_vec()
    } else {
        let mut out = format!("{method} {path} HTTP/1.{version}\r\n").into_bytes();
        for h in req.headers.iter() {
            if ["connection", "keep-alive", "proxy-connection"]
                .iter()
                .any(|n| h.name.eq_ignore_ascii_case(n))
            {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out
    };
    Ok(Request {
        studio,
        forward,
        body,
        upgrade,
        keep_alive,
        head: method == "HEAD",
    })
}

/// A session's response head as the relay passes it on.
#[derive(Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    /// The head sent to the browser: without `Connection`, `Keep-Alive` and
    /// `Service-Worker-Allowed` (a studio's pages never widen a Service Worker's scope),
    /// with `Connection: close` when the browser's connection ends after it. A `101`'s
    /// head is passed as read, less `Service-Worker-Allowed`.
    pub forward: Vec<u8>,
    pub body: Body,
}

/// The response whose whole head is `buf`, to a request that was a `HEAD` (`head`);
/// `keep` is whether the browser's connection stays open after it (a body delimited by
/// the close never does). `Err`: not a response the relay passes on.
pub fn parse_response(buf: &[u8], head: bool, keep: bool) -> Result<Response, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len == buf.len() => {}
        _ => return Err("the session's answer is not HTTP/1.1"),
    }
    let (Some(status), Some(version)) = (res.code, res.version) else {
        return Err("the session's answer is not HTTP/1.1");
    };
    let reason = res.reason.unwrap_or_default();
    let body = if head || (100..200).contains(&status) || status == 204 || status == 304 {
        Body::None
    } else {
        match framing(res.headers) {
            Ok(Some(body)) => body,
            Ok(None) => Body::UntilClose,
            Err(_) => return Err("the session's answer has an ambiguous length"),
        }
    };
    let keep = keep && body != Body::UntilClose;
    let mut out = format!("HTTP/1.{version} {status} {reason}\r\n").into_bytes();
    let dropped: &[&str] = if status == 101 {
        &["service-worker-allowed"]
    } else {
        &[
            "connection",
            "keep-alive",
            "proxy-connection",
            "service-worker-allowed",
        ]
    };
    for h in res.headers.iter() {
        if dropped.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if status != 101 && !(100..200).contains(&status) && !keep {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Response {
        status,
        forward: out,
        body,
    })
}

/// Copies one body delimited as `body` from `r` to `w`, and no byte more (but for
/// [`Body::UntilClose`]). A chunked body is passed as sent, its chunk sizes read to
/// find its end.
pub async fn copy_body<R, W>(r: &mut R, w: &mut W, body: Body) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let short = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the body ended early");
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "a malformed chunked body");
    match body {
        Body::None => {}
        Body::Length(n) => {
            if tokio::io::copy(&mut (&mut *r).take(n), w).await? != n {
                return Err(short());
            }
        }
        Body::UntilClose => {
            tokio::io::copy(r, w).await?;
        }
        Body::Chunked => {
            let mut line = Vec::new();
            loop {
                read_chunk_line(r, &mut line).await?;
                let size = match httparse::parse_chunk_size(&line) {
                    Ok(httparse::Status::Complete((_, size))) => size,
                    _ => return Err(bad()),
                };
                w.write_all(&line).await?;
                if size == 0 {
                    // Trailer fields, then the empty line.
                    loop {
                        read_chunk_line(r, &mut line).await?;
                        w.write_all(&line).await?;
                        if line == b"\r\n" || line == b"\n" {
                            break;
                        }
                    }
                    break;
                }
                if tokio::io::copy(&mut (&mut *r).take(size), w).await? != size {
                    return Err(short());
                }
                read_chunk_line(r, &mut line).await?;
                if line != b"\r\n" && line != b"\n" {
                    return Err(bad());
                }
                w.write_all(&line).await?;
            }
        }
    }
    w.flush().await
}

/// One line of a chunked body's framing, at most [`MAX_CHUNK_LINE`] bytes.
async fn read_chunk_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<()> {
    line.clear();
    (&mut *r)
        .take(MAX_CHUNK_LINE as u64)
        .read_until(b'\n', line)
        .await?;
    if !line.ends_with(b"\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "an unterminated or overlong chunk line",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ST: &str = "st-019ac4b0f1e37d21a6b3c0d9e8f7a655";
    const DOMAIN: &str = "connect.example.org";

    fn request(raw: &str) -> Result<Request, Refusal> {
        parse_request(raw.as_bytes(), DOMAIN)
    }

    #[test]
    fn hosts_name_exactly_one_studio_of_the_domain() {
        let host = format!("{ST}.{DOMAIN}");
        assert_eq!(studio_of_host(&host, DOMAIN).as_deref(), Some(ST));
        assert_eq!(
            studio_of_host(&format!("{host}:443"), DOMAIN).as_deref(),
            Some(ST)
        );
        assert_eq!(
            studio_of_host(&format!("{ST}.CONNECT.example.org"), DOMAIN).as_deref(),
            Some(ST)
        );
        assert_eq!(
            studio_of_host(&format!("{ST}.localhost:8080"), "localhost").as_deref(),
            Some(ST)
        );
        for bad in [
            DOMAIN.to_string(),
            format!("x.{host}"),
            format!("{}.{DOMAIN}", ST.to_uppercase()),
            format!("st-1.{DOMAIN}"),
            format!("{ST}.{DOMAIN}.evil.example"),
            format!("{ST}.evil.example"),
            format!("{host}:"),
            format!("{host}:x"),
            format!("{host}:123456"),
            format!("{host}."),
            ST.to_string(),
            String::new(),
        ] {
            assert_eq!(studio_of_host(&bad, DOMAIN), None, "{bad}");
        }
        assert_eq!(studio_of_host(&format!("{ST}."), ""), None);
    }

    #[test]
    fn requests_are_routed_by_host_and_forwarded_one_per_connection() {
        let r = request(&format!(
            "GET /lab?x=1 HTTP/1.1\r\nHost: {ST}.{DOMAIN}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n"
        ))
        .unwrap();
        assert_eq!(r.studio, ST);
        assert_eq!(
            String::from_utf8(r.forward).unwrap(),
            format!("GET /lab?x=1 HTTP/1.1\r\nHost: {ST}.{DOMAIN}\r\nConnection: close\r\n\r\n")
        );
        assert_eq!(
            (r.body, r.upgrade, r.keep_alive, r.head),
            (Body::None, false, true, false)
        );
        let r = request(&format!(
            "POST / HTTP/1.1\r\nhost: {ST}.{DOMAIN}\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"
        ))
        .unwrap();
        assert_eq!((r.body, r.keep_alive), (Body::Length(5), false));
        let r = request(&format!(
            "PUT / HTTP/1.1\r\nHost: {ST}.{DOMAIN}\r\nTransfer-Encoding: Chunked\r\n\r\n"
        ))
        .unwrap();
        assert_eq!(r.body, Body::Chunked);
        let r = request(&format!("HEAD / HTTP/1.0\r\nHost: {ST}.{DOMAIN}\r\n\r\n")).unwrap();
        assert_eq!((r.head, r.keep_alive), (true, false));
        let raw = format!("GET /ws HTTP/1.1\r\nhost: {ST}.{DOMAIN}\r\nupgrade: websocket\r\nconnection: keep-alive, Upgrade\r\n\r\n");
        let r = request(&raw).unwrap();
        assert!(r.upgrade);
        assert_eq!(String::from_utf8(r.forward).unwrap(), raw);
    }

    #[test]
    fn ambiguous_or_misdirected_requests_are_refused() {
        let host = format!("Host: {ST}.{DOMAIN}\r\n");
        for (raw, status) in [
            // The old path form routes nowhere: the Host decides.
            (format!("GET /connect/{ST}/ HTTP/1.1\r\nHost: relay.example.org\r\n\r\n"), 404),
            ("GET / HTTP/1.1\r\n\r\n".to_string(), 400),
            (format!("GET / HTTP/1.1\r\n{host}{host}\r\n"), 400),
            (format!("GET http://{ST}.{DOMAIN}/ HTTP/1.1\r\n{host}\r\n"), 400),
            (format!("GET / HTTP/1.1\r\nHo st: x\r\n{host}\r\n"), 400),
            (format!("POST / HTTP/1.1\r\n{host}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), 400),
            (format!("POST / HTTP/1.1\r\n{host}Content-Length: 3\r\nContent-Length: 4\r\n\r\n"), 400),
            (format!("POST / HTTP/1.1\r\n{host}Content-Length: 3, 4\r\n\r\n"), 400),
            (format!("POST / HTTP/1.1\r\n{host}Content-Length: +3\r\n\r\n"), 400),
            (format!("POST / HTTP/1.1\r\n{host}Transfer-Encoding: gzip, chunked\r\n\r\n"), 501),
            (format!("POST / HTTP/1.0\r\n{host}Transfer-Encoding: chunked\r\n\r\n"), 400),
            (format!("GET / HTTP/1.1\r\n{host}{}\r\n", "a: b\r\n".repeat(MAX_HEADERS)), 431),
        ] {
            assert_eq!(request(&raw).map(|_| ()).map_err(|e| e.0), Err(status), "{raw}");
        }
        let same = request(&format!(
            "POST / HTTP/1.1\r\n{host}Content-Length: 3\r\ncontent-length: 3\r\n\r\n"
        ));
        assert_eq!(same.unwrap().body, Body::Length(3));
    }

    #[tokio::test]
    async fn heads_are_read_whole_and_bounded() {
        let mut buf = Vec::new();
        let mut r: &[u8] = b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\nrest";
        assert_eq!(read_head(&mut r, &mut buf).await, Ok(true));
        assert_eq!(buf, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r, b"rest");
        let mut r: &[u8] = b"";
        assert_eq!(read_head(&mut r, &mut buf).await, Ok(false));
        let mut r: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\n";
        assert_eq!(read_head(&mut r, &mut buf).await, Err(400));
        let long = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let mut r = long.as_bytes();
        assert_eq!(read_head(&mut r, &mut buf).await, Err(431));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "a: b\r\n".repeat(MAX_HEAD / 6 + 1)
        );
        let mut r = many.as_bytes();
        assert_eq!(read_head(&mut r, &mut buf).await, Err(431));
    }

    #[test]
    fn responses_are_framed_by_the_relay() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: keep-alive\r\nService-Worker-Allowed: /\r\n\r\n",
            false,
            true,
        )
        .unwrap();
        assert_eq!((r.status, r.body), (200, Body::Length(3)));
        assert_eq!(r.forward, b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n");
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n", true, false).unwrap();
        assert_eq!(r.body, Body::None);
        assert_eq!(
            r.forward,
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nConnection: close\r\n\r\n"
        );
        let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", false, true).unwrap();
        assert_eq!(r.body, Body::UntilClose);
        assert!(r.forward.ends_with(b"Connection: close\r\n\r\n"));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            true,
        )
        .unwrap();
        assert_eq!(r.body, Body::Chunked);
        for status in ["204 No Content", "304 Not Modified", "100 Continue"] {
            let raw = format!("HTTP/1.1 {status}\r\ncontent-length: 9\r\n\r\n");
            assert_eq!(
                parse_response(raw.as_bytes(), false, true).unwrap().body,
                Body::None
            );
        }
        let up = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";
        let r = parse_response(up, false, true).unwrap();
        assert_eq!((r.status, r.forward.as_slice()), (101, up.as_slice()));
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            false,
            true
        )
        .is_err());
        assert!(parse_response(b"SSH-2.0-x\r\n\r\n", false, true).is_err());
    }

    #[tokio::test]
    async fn bodies_end_where_their_framing_says() {
        let mut out = Vec::new();
        let mut r: &[u8] = b"helloGET /next";
        copy_body(&mut r, &mut out, Body::Length(5)).await.unwrap();
        assert_eq!(
            (out.as_slice(), r),
            (b"hello".as_slice(), b"GET /next".as_slice())
        );
        let chunked = b"5;ext=1\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\n";
        let mut input = chunked.to_vec();
        input.extend_from_slice(b"GET /next");
        let (mut out, mut r) = (Vec::new(), input.as_slice());
        copy_body(&mut r, &mut out, Body::Chunked).await.unwrap();
        assert_eq!(
            (out.as_slice(), r),
            (chunked.as_slice(), b"GET /next".as_slice())
        );
        for bad in [&b"5\r\nhelloXX0\r\n\r\n"[..], b"zz\r\n", b"5\r\nhel"] {
            let (mut out, mut r) = (Vec::new(), bad);
            assert!(
                copy_body(&mut r, &mut out, Body::Chunked).await.is_err(),
                "{bad:?}"
            );
        }
        let (mut out, mut r) = (Vec::new(), &b"abc"[..]);
        assert!(copy_body(&mut r, &mut out, Body::Length(5)).await.is_err());
    }
}
