//! The object-store port (S3 holds checkpoints) and its adapter.

use crate::domain::S3Prefix;
use crate::error::{Error, Result};
use async_trait::async_trait;

/// What a look for an object found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    Found,
    Missing,
    /// S3 will not say, and asking again will not change that (access denied, the bucket
    /// in another region): the reason, for people.
    Unreadable(String),
}

#[async_trait]
pub trait Objects: Send + Sync {
    /// Whether the object `name` exists under `prefix`. AWS failing (5xx, no answer) is
    /// an error: the caller retries.
    async fn exists(&self, prefix: &S3Prefix, name: &str) -> Result<Presence>;
    /// Deletes one page (at most 1,000) of the objects under `prefix` whose keys come
    /// after `after`; returns how many, and the key to continue after if there are more.
    async fn delete_page(
        &self,
        prefix: &S3Prefix,
        after: Option<&str>,
    ) -> Result<(usize, Option<String>)>;
}

fn s3_error<E>(e: aws_sdk_s3::error::SdkError<E>) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    crate::error::aws(e)
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
    async fn exists(&self, prefix: &S3Prefix, name: &str) -> Result<Presence> {
        let result = self
            .client
            .head_object()
            .bucket(prefix.bucket())
            .key(object_key(prefix, name))
            .send()
            .await;
        let e = match result {
            Ok(_) => return Ok(Presence::Found),
            Err(e) => e,
        };
        if e.as_service_error().is_some_and(|se| se.is_not_found()) {
            return Ok(Presence::Missing);
        }
        let status = e.raw_response().map(|r| r.status().as_u16());
        match status {
            Some(403) => Ok(Presence::Unreadable(format!(
                "S3 denied reading s3://{}/{} (403): the stack may read checkpoints only in its CheckpointBuckets, and the bucket's policy or encryption key must allow it",
                prefix.bucket(),
                object_key(prefix, name)
            ))),
            Some(301) | Some(400) => Ok(Presence::Unreadable(format!(
                "S3 refused reading bucket {} ({}): it is in another region than the stack, or its name is wrong",
                prefix.bucket(),
                status.unwrap_or_default()
            ))),
            _ => Err(s3_error(e)),
        }
    }

    async fn delete_page(
        &self,
        prefix: &S3Prefix,
        after: Option<&str>,
    ) -> Result<(usize, Option<String>)> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        // A page holds at most 1000 keys: exactly what one DeleteObjects takes.
        let page = self
            .client
            .list_objects_v2()
            .bucket(prefix.bucket())
            .prefix(object_key(prefix, ""))
            .set_start_after(after.map(String::from))
            .send()
            .await
            .map_err(s3_error)?;
        let keys: Vec<&str> = page.contents().iter().filter_map(|o| o.key()).collect();
        let ids = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(*k).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::internal)?;
        if !ids.is_empty() {
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
        }
        let more = page.is_truncated() == Some(true);
        let last = keys.last().map(|k| k.to_string());
        Ok((keys.len(), last.filter(|_| more)))
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

    async fn objects_at(endpoint: &str) -> S3Objects {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "a", "b", None, None, "test",
            ))
            .build();
        S3Objects::new(aws_sdk_s3::Client::from_conf(config))
    }

    /// A manifest S3 will not show (403, another region) is a checkpoint to record as
    /// invalid with the reason, not an error retried forever; a 5xx stays an error.
    #[tokio::test]
    async fn refusals_are_unreadable_and_failures_are_errors() {
        let prefix = S3Prefix::parse("s3://work-bucket/w/.studios/st-1/checkpoints/cp-1/").unwrap();
        for (status, reason, words) in [
            (403, "Forbidden", "denied"),
            (301, "Moved Permanently", "another region"),
        ] {
            let server = crate::test_server::answering(status, reason, "").await;
            let presence = objects_at(&server.endpoint)
                .await
                .exists(&prefix, "manifest.json")
                .await
                .unwrap();
            match presence {
                Presence::Unreadable(why) => assert!(why.contains(words), "{why}"),
                other => panic!("{status}: {other:?}"),
            }
        }
        let server = crate::test_server::answering(404, "Not Found", "").await;
        let presence = objects_at(&server.endpoint)
            .await
            .exists(&prefix, "m")
            .await;
        assert_eq!(presence.unwrap(), Presence::Missing);
        let server = crate::test_server::answering(503, "Slow Down", "").await;
        let presence = objects_at(&server.endpoint)
            .await
            .exists(&prefix, "m")
            .await;
        assert!(presence.is_err());
    }
}
