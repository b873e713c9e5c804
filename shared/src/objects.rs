//! The object-store port (S3 holds checkpoints) and its adapter.

use crate::domain::S3Prefix;
use crate::error::{Error, Result};
use async_trait::async_trait;

#[async_trait]
pub trait Objects: Send + Sync {
    /// Whether the object `name` exists under `prefix`.
    async fn exists(&self, prefix: &S3Prefix, name: &str) -> Result<bool>;
    /// Deletes every object under `prefix`; returns how many.
    async fn delete_prefix(&self, prefix: &S3Prefix) -> Result<usize>;
}

fn s3_error<E>(e: aws_sdk_s3::error::SdkError<E>) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    Error::internal(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())
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
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn delete_prefix(&self, prefix: &S3Prefix) -> Result<usize> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let key_prefix = object_key(prefix, "");
        let mut deleted = 0;
        let mut token = None;
        loop {
            // Pages hold at most 1000 keys: exactly what one DeleteObjects takes.
            let page = self
                .client
                .list_objects_v2()
                .bucket(prefix.bucket())
                .prefix(&key_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(s3_error)?;
            let ids = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(Error::internal)?;
            if !ids.is_empty() {
                let count = ids.len();
                let out = self
                    .client
                    .delete_objects()
                    .bucket(prefix.bucket())
                    .delete(
                        Delete::builder()
                            .set_objects(Some(ids))
                            .quiet(true)
                            .build()
                            .map_err(Error::internal)?,
                    )
                    .send()
                    .await
                    .map_err(s3_error)?;
                if let Some(e) = out.errors().first() {
                    return Err(Error::internal(format!(
                        "{} objects under {prefix} not deleted (first: {:?} {:?})",
                        out.errors().len(),
                        e.key(),
                        e.code()
                    )));
                }
                deleted += count;
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(deleted),
            }
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
