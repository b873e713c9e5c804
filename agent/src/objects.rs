//! Where checkpoints live: S3, behind a narrow port so the checkpoint logic is tested
//! against memory and the emulator alike.

use hyper::body::Bytes;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// `s3://bucket/key`; a prefix's key ends with `/` (or is empty).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct S3Uri {
    pub bucket: String,
    pub key: String,
}

impl S3Uri {
    pub fn parse(uri: &str) -> Result<S3Uri, String> {
        if !uri.starts_with("s3://") {
            return Err(format!("'{uri}' is not an s3:// URI"));
        }
        let (bucket, key) = studios_protocol::s3::parse_uri(uri)
            .ok_or_else(|| format!("'{uri}' names no bucket"))?;
        Ok(S3Uri {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// `name` under this prefix.
    pub fn join(&self, name: &str) -> S3Uri {
        let mut key = self.key.clone();
        if !key.is_empty() && !key.ends_with('/') {
            key.push('/');
        }
        key.push_str(name);
        S3Uri {
            bucket: self.bucket.clone(),
            key,
        }
    }
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

#[async_trait::async_trait]
pub trait Objects: Send + Sync {
    /// The object, or `None` if there is none; one larger than `max_bytes` is refused
    /// as soon as that shows (its stated length, else while it streams), never buffered
    /// whole.
    async fn get(&self, uri: &S3Uri, max_bytes: u64) -> Result<Option<Bytes>, String>;
    async fn put(&self, uri: &S3Uri, body: Bytes) -> Result<(), String>;
}

fn too_large(uri: &S3Uri, max_bytes: u64) -> String {
    format!("{uri} holds more than {max_bytes} bytes")
}

pub struct S3Objects {
    client: aws_sdk_s3::Client,
}

impl S3Objects {
    /// Path-style addressing when an endpoint is set (the local emulator).
    pub fn new(sdk: &aws_config::SdkConfig) -> S3Objects {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        S3Objects {
            client: aws_sdk_s3::Client::from_conf(conf),
        }
    }
}

#[async_trait::async_trait]
impl Objects for S3Objects {
    async fn get(&self, uri: &S3Uri, max_bytes: u64) -> Result<Option<Bytes>, String> {
        let out = self
            .client
            .get_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .send()
            .await;
        match out {
            Ok(mut out) => {
                let stated = out.content_length().unwrap_or_default().max(0) as u64;
                if stated > max_bytes {
                    return Err(too_large(uri, max_bytes));
                }
                let mut body = Vec::with_capacity(stated as usize);
                while let Some(part) = out
                    .body
                    .try_next()
                    .await
                    .map_err(|e| format!("reading {uri}: {e}"))?
                {
                    if (body.len() + part.len()) as u64 > max_bytes {
                        return Err(too_large(uri, max_bytes));
                    }
                    body.extend_from_slice(&part);
                }
                Ok(Some(Bytes::from(body)))
            }
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    return Ok(None);
                }
                let detail = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                // Without s3:ListBucket a missing key reads as AccessDenied.
                Err(format!("cannot read {uri}: {detail}"))
            }
        }
    }

    async fn put(&self, uri: &S3Uri, body: Bytes) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "cannot write {uri}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })
    }
}

/// Objects in memory, counting what was uploaded (tests and the benchmark's reference).
#[derive(Default)]
pub struct MemoryObjects {
    pub objects: Mutex<HashMap<String, Bytes>>,
    pub puts: AtomicU64,
    pub put_bytes: AtomicU64,
}

impl MemoryObjects {
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.objects.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }
}

#[async_trait::async_trait]
impl Objects for MemoryObjects {
    async fn get(&self, uri: &S3Uri, max_bytes: u64) -> Result<Option<Bytes>, String> {
        let body = self.objects.lock().unwrap().get(&uri.to_string()).cloned();
        match body {
            Some(b) if b.len() as u64 > max_bytes => Err(too_large(uri, max_bytes)),
            other => Ok(other),
        }
    }
    async fn put(&self, uri: &S3Uri, body: Bytes) -> Result<(), String> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.put_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        self.objects.lock().unwrap().insert(uri.to_string(), body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_join() {
        let p = S3Uri::parse("s3://b/work/.studios/st-1/checkpoints/cp-1/").unwrap();
        assert_eq!(p.bucket, "b");
        assert_eq!(
            p.join("manifest.json").to_string(),
            "s3://b/work/.studios/st-1/checkpoints/cp-1/manifest.json"
        );
        assert_eq!(
            S3Uri::parse("s3://b").unwrap().join("k").to_string(),
            "s3://b/k"
        );
        assert!(S3Uri::parse("https://b/k").is_err());
        assert!(S3Uri::parse("s3:///k").is_err());
    }

    /// An S3 stand-in that answers every GET with a body that never ends (no length).
    async fn endless_server() -> (String, Arc<std::sync::atomic::AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n")
                        .await;
                    let piece = vec![b'x'; 65_536];
                    loop {
                        let mut out = b"10000\r\n".to_vec();
                        out.extend_from_slice(&piece);
                        out.extend_from_slice(b"\r\n");
                        if sock.write_all(&out).await.is_err() {
                            return;
                        }
                        counter.fetch_add(piece.len() as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        (format!("http://{addr}"), sent)
    }

    use std::sync::Arc;

    #[tokio::test]
    async fn an_object_larger_than_asked_for_is_refused_while_it_streams() {
        let (endpoint, sent) = endless_server().await;
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "a", "b", None, None, "test",
            ))
            .build();
        let objects = S3Objects {
            client: aws_sdk_s3::Client::from_conf(config),
        };
        let uri = S3Uri::parse("s3://b/chunks/abc").unwrap();
        let got = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            objects.get(&uri, 1 << 20),
        )
        .await
        .expect("refused while streaming, not read to its (absent) end");
        let err = got.unwrap_err();
        assert!(err.contains("holds more than 1048576 bytes"), "{err}");
        // Read about as far as the limit, not far past it.
        assert!(sent.load(Ordering::Relaxed) < 64 << 20);
    }
}
