//! The object-store port (S3 holds checkpoints) and its adapter.

use crate::domain::S3Prefix;
use crate::error::{Error, Result};
use async_trait::async_trait;

#[async_trait]
pub trait Objects: Send + Sync {
    /// Whether the object `name` exists under `prefix`.
    async fn exists(&self, prefix: &S3Prefix, name: &str) -> Result<bool>;
}

pub struct S3Objects {
    client: aws_sdk_s3::Client,
}

impl S3Objects {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Objects { client }
    }
}

/// The object key of `name` under `prefix` (`s3://bucket/a/b/` → `a/b/name`).
pub fn object_key(prefix: &S3Prefix, name: &str) -> String {
    let mut key: String = prefix.segments().map(|s| format!("{s}/")).collect();
    key.push_str(name);
    key
}

#[async_trait]
impl Objects for S3Objects {
    async fn exists(&self, prefix: &S3Prefix, name: &str) -> Result<bool> {
        let result = self
            .client
            .head_object()
            .bucket(prefix.bucket())
            .key(object_key(prefix, name))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => Ok(false),
            Err(e) => Err(Error::internal(
                aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_under_a_prefix() {
        let p = S3Prefix::parse("s3://work-bucket/.studios/st-1/checkpoints/cp-1").unwrap();
        assert_eq!(
            object_key(&p, "manifest.json"),
            ".studios/st-1/checkpoints/cp-1/manifest.json"
        );
        let root = S3Prefix::parse("s3://work-bucket").unwrap();
        assert_eq!(object_key(&root, "x"), "x");
    }
}
