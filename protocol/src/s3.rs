//! S3 URIs (`s3://bucket/key`), as the job environment and the API carry them.

/// The bucket and key of `s3://bucket/key` (the key may be empty: `s3://bucket` and
/// `s3://bucket/`); `None` if `uri` is not an S3 URI or names no bucket.
pub fn parse_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_into_bucket_and_key() {
        assert_eq!(parse_uri("s3://b/w/x/"), Some(("b", "w/x/")));
        assert_eq!(parse_uri("s3://b/k"), Some(("b", "k")));
        assert_eq!(parse_uri("s3://b"), Some(("b", "")));
        assert_eq!(parse_uri("s3://b/"), Some(("b", "")));
        assert_eq!(parse_uri("s3:///k"), None);
        assert_eq!(parse_uri("s3://"), None);
        assert_eq!(parse_uri("https://b/k"), None);
        assert_eq!(parse_uri("S3://b/k"), None);
        assert_eq!(parse_uri(""), None);
    }
}
