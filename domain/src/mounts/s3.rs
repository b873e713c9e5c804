//! S3 locations as validated, normalised prefixes. Mount-lock conflicts compare these,
//! so every spelling of one location must normalise to one string (docs/architecture.md).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest URI accepted, after normalisation (S3 keys are at most 1,024 bytes).
const MAX_LEN: usize = 1024;

/// `s3://bucket/seg/.../` — lower-case scheme, valid bucket, no empty or `.` segments,
/// always ending in `/`. Two prefixes overlap iff one is a string prefix of the other.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct S3Prefix(String);

/// In the API document: a normalised `s3://bucket/prefix/` string.
impl utoipa::PartialSchema for S3Prefix {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/(.+/)?$"))
            .max_length(Some(MAX_LEN))
            .description(Some("A normalised S3 prefix: `s3://bucket/prefix/`."))
            .into()
    }
}

impl utoipa::ToSchema for S3Prefix {}

impl S3Prefix {
    /// Parses and normalises; the error is the rule that was broken.
    pub fn parse(input: &str) -> Result<S3Prefix, String> {
        if input.len() > MAX_LEN {
            return Err(format!("must be at most {MAX_LEN} characters"));
        }
        if input.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must not contain whitespace or control characters".into());
        }
        let rest = match input.get(..5) {
            Some(scheme) if scheme.eq_ignore_ascii_case("s3://") => &input[5..],
            _ => return Err("must be an S3 URI of the form s3://bucket/prefix/".into()),
        };
        let mut parts = rest.split('/');
        let bucket = parts.next().unwrap_or_default();
        validate_bucket(bucket)?;
        let mut out = format!("s3://{bucket}/");
        for segment in parts {
            match segment {
                "" | "." => continue,
                ".." => return Err("must not contain '..' segments".into()),
                s => {
                    out.push_str(s);
                    out.push('/');
                }
            }
        }
        // Normalising adds the trailing '/': check the result, not the input.
        if out.len() > MAX_LEN {
            return Err(format!("must be at most {MAX_LEN} characters"));
        }
        Ok(S3Prefix(out))
    }

    /// The prefix one level down, named `segment` (an id of ours: letters, digits, '-',
    /// '.'). Never fails: callers bound what they derive (see `validate::MAX_WORK_DIR_KEY`).
    pub fn child(&self, segment: &str) -> S3Prefix {
        debug_assert!(
            !segment.is_empty() && !segment.contains('/') && segment != "." && segment != ".."
        );
        S3Prefix(format!("{}{segment}/", self.0))
    }

    /// Bytes of the key part (after `s3://bucket/`).
    pub fn key_len(&self) -> usize {
        self.0.len() - 5 - self.bucket().len() - 1
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn bucket(&self) -> &str {
        let rest = &self.0[5..];
        &rest[..rest.find('/').unwrap_or(rest.len())]
    }

    /// Key segments below the bucket.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0[5..].split('/').skip(1).filter(|s| !s.is_empty())
    }

    /// The last key segment, or the bucket for a bucket root.
    pub fn last_segment(&self) -> &str {
        self.segments().last().unwrap_or_else(|| self.bucket())
    }

    /// Strict ancestors, from the bucket root down (empty for a bucket root).
    pub fn ancestors(&self) -> Vec<S3Prefix> {
        let mut out = Vec::new();
        let mut current = format!("s3://{}/", self.bucket());
        for segment in self.segments() {
            out.push(S3Prefix(current.clone()));
            current.push_str(segment);
            current.push('/');
        }
        out
    }

    /// One location contains the other (or they are equal).
    pub fn overlaps(&self, other: &S3Prefix) -> bool {
        self.0.starts_with(&other.0) || other.0.starts_with(&self.0)
    }
}

impl fmt::Display for S3Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for S3Prefix {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        S3Prefix::parse(&value)
    }
}

impl From<S3Prefix> for String {
    fn from(value: S3Prefix) -> Self {
        value.0
    }
}

/// S3 bucket naming rules (general purpose buckets, as S3's documentation lists them).
pub fn validate_bucket(bucket: &str) -> Result<(), String> {
    let ok_len = (3..=63).contains(&bucket.len());
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if !(ok_len && ok_chars && ends_ok && !bucket.contains("..")) {
        return Err(format!(
            "'{bucket}' is not a valid S3 bucket name (3-63 lower-case letters, digits, '.' or '-', starting and ending with a letter or digit)"
        ));
    }
    let ip_form = bucket.split('.').count() == 4
        && bucket
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if ip_form {
        return Err(format!(
            "'{bucket}' is not a valid S3 bucket name (it must not look like an IP address)"
        ));
    }
    // Reserved by S3 for other kinds of buckets and access points.
    const PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const SUFFIXES: [&str; 5] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
    if let Some(p) = PREFIXES.iter().find(|p| bucket.starts_with(*p)) {
        return Err(format!(
            "'{bucket}' is not a valid S3 bucket name (the prefix '{p}' is reserved)"
        ));
    }
    if let Some(sfx) = SUFFIXES.iter().find(|sfx| bucket.ends_with(*sfx)) {
        return Err(format!(
            "'{bucket}' is not a valid S3 bucket name (the suffix '{sfx}' is reserved)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> S3Prefix {
        S3Prefix::parse(s).unwrap()
    }

    #[test]
    fn normalises_scheme_slashes_and_dot_segments() {
        assert_eq!(p("S3://data/a//b/./c").as_str(), "s3://data/a/b/c/");
        assert_eq!(p("s3://data").as_str(), "s3://data/");
        assert_eq!(p("s3://data/").as_str(), "s3://data/");
        assert_eq!(p("s3://data/a/b/"), p("s3://data/a/b"));
    }

    #[test]
    fn rejects_what_is_not_an_s3_location() {
        for (input, rule) in [
            ("https://data/a", "must be an S3 URI"),
            ("s3:/data/a", "must be an S3 URI"),
            ("s3://Data/a", "not a valid S3 bucket name"),
            ("s3://ab/a", "not a valid S3 bucket name"),
            ("s3:///a", "not a valid S3 bucket name"),
            ("s3://192.168.5.4/a", "IP address"),
            ("s3://xn--data/a", "prefix 'xn--'"),
            ("s3://sthree-data/a", "prefix 'sthree-'"),
            ("s3://amzn-s3-demo-bucket/a", "prefix 'amzn-s3-demo-'"),
            ("s3://data-s3alias/a", "suffix '-s3alias'"),
            ("s3://data--ol-s3/a", "suffix '--ol-s3'"),
            ("s3://data.mrap/a", "suffix '.mrap'"),
            ("s3://data--x-s3/a", "suffix '--x-s3'"),
            ("s3://data--table-s3/a", "suffix '--table-s3'"),
            ("s3://data/../x", "'..'"),
            ("s3://data/a b", "whitespace"),
        ] {
            let err = S3Prefix::parse(input).unwrap_err();
            assert!(err.contains(rule), "{input}: {err}");
        }
    }

    #[test]
    fn ancestors_and_names() {
        let x = p("s3://b1b/a/x/");
        assert_eq!(x.ancestors(), vec![p("s3://b1b/"), p("s3://b1b/a/")]);
        assert_eq!(x.last_segment(), "x");
        assert_eq!(x.bucket(), "b1b");
        assert!(p("s3://b1b").ancestors().is_empty());
        assert_eq!(p("s3://b1b").last_segment(), "b1b");
    }

    #[test]
    fn overlap_is_segment_wise() {
        assert!(p("s3://bkt/a/").overlaps(&p("s3://bkt/a/x/")));
        assert!(p("s3://bkt/a/x").overlaps(&p("s3://bkt/a")));
        assert!(!p("s3://bkt/a/").overlaps(&p("s3://bkt/ab/")));
        assert!(!p("s3://bkt/a/").overlaps(&p("s3://bkt2/a/")));
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("ab".to_string()),
            Just(".".to_string()),
            Just(String::new()),
        ]
    }

    fn location() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just("bkt"), Just("bkt2")],
            prop::collection::vec(segment(), 0..5),
            any::<bool>(),
        )
            .prop_map(|(bucket, segs, upper)| {
                let scheme = if upper { "S3://" } else { "s3://" };
                format!("{scheme}{bucket}/{}", segs.join("/"))
            })
    }

    proptest! {
        #[test]
        fn normalising_is_idempotent(raw in location()) {
            let once = S3Prefix::parse(&raw).unwrap();
            prop_assert_eq!(S3Prefix::parse(once.as_str()).unwrap(), once);
        }

        #[test]
        fn overlap_means_one_is_an_ancestor_or_equal(a in location(), b in location()) {
            let (a, b) = (S3Prefix::parse(&a).unwrap(), S3Prefix::parse(&b).unwrap());
            let related = a == b || a.ancestors().contains(&b) || b.ancestors().contains(&a);
            prop_assert_eq!(a.overlaps(&b), related);
            prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
        }

        #[test]
        fn every_ancestor_overlaps_and_is_shallower(raw in location()) {
            let x = S3Prefix::parse(&raw).unwrap();
            for (depth, anc) in x.ancestors().iter().enumerate() {
                prop_assert!(anc.overlaps(&x));
                prop_assert_eq!(anc.segments().count(), depth);
            }
        }
    }
}
