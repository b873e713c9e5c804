//! Resolving a studio's mounts, and what users are told about paths others hold.

use super::locks::{self, Holder};
use super::s3::S3Prefix;
use crate::error::{Error, Result};
use crate::validate::{s3_prefix, MAX_LOCK_ITEMS, MAX_MOUNT_URI, MAX_NAME, MOUNT_ROOT};
use crate::{Access, ComputeEnvSnapshot, DataLink, Mount, MountInput};
use std::collections::HashMap;

/// A data link's name becomes a directory under /workspace/data.
pub fn mount_name(field: &str, value: &str) -> Result<String> {
    let ok = (1..=MAX_NAME).contains(&value.len())
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::invalid(
            field,
            format!("must be 1 to {MAX_NAME} letters, digits, '.', '_' or '-', not starting with '.' (it names the mount directory)"),
        ))
    }
}

/// An S3 location that can be mounted (and so locked): at most `MAX_MOUNT_URI` bytes.
pub fn mount_uri(field: &str, value: &str) -> Result<S3Prefix> {
    let uri = s3_prefix(field, value)?;
    if uri.as_str().len() > MAX_MOUNT_URI {
        return Err(Error::invalid(
            field,
            format!(
                "must be at most {MAX_MOUNT_URI} characters (got {}), so that its mount lock fits",
                uri.as_str().len()
            ),
        ));
    }
    Ok(uri)
}

/// Resolves and checks mounts; returns them with warnings (e.g. cross-region data).
pub fn mounts(
    field: &str,
    inputs: &[MountInput],
    ce: &ComputeEnvSnapshot,
    links: &HashMap<String, DataLink>,
) -> Result<(Vec<Mount>, Vec<String>)> {
    let mut out: Vec<Mount> = Vec::new();
    let mut warnings = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let (uri, name, link_id) = match (&input.data_link_id, &input.uri) {
            (Some(id), None) => {
                let link = links.get(id).ok_or_else(|| {
                    Error::invalid(
                        format!("{at}.dataLinkId"),
                        format!("no data link '{id}' in this workspace"),
                    )
                })?;
                if link.region != ce.region {
                    warnings.push(format!(
                        "{at}: data link '{}' is in {} but compute environment '{}' is in {}; reads cross regions (slower, with transfer charges)",
                        link.name, link.region, ce.name, ce.region
                    ));
                }
                (link.uri.clone(), link.name.clone(), Some(id.clone()))
            }
            (None, Some(uri)) => {
                let uri = mount_uri(&format!("{at}.uri"), uri)?;
                let name = sanitise_dir_name(uri.last_segment());
                (uri, name, None)
            }
            _ => return Err(Error::invalid(at, "give exactly one of dataLinkId or uri")),
        };
        if let Some((j, other)) = out.iter().enumerate().find(|(_, m)| m.uri.overlaps(&uri)) {
            return Err(Error::invalid(
                at,
                format!("{uri} overlaps {field}[{j}] ({})", other.uri),
            ));
        }
        if let Some(j) = out.iter().position(|m| m.name == name) {
            return Err(Error::invalid(
                at,
                format!("mount directory '{name}' is already used by {field}[{j}]"),
            ));
        }
        let access = if ce.allowed_write_buckets.iter().any(|b| b == uri.bucket()) {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        out.push(Mount {
            mount_path: format!("{MOUNT_ROOT}/{name}"),
            uri,
            name,
            access,
            data_link_id: link_id,
        });
    }
    let paths: Vec<&S3Prefix> = out.iter().map(|m| &m.uri).collect();
    let lock_items = locks::item_count(&paths);
    if lock_items > MAX_LOCK_ITEMS {
        return Err(Error::invalid(
            field,
            format!("these mounts need {lock_items} mount-lock items (one per path and per parent prefix) but at most {MAX_LOCK_ITEMS} fit in one start; mount fewer or shallower paths"),
        ));
    }
    Ok((out, warnings))
}

fn sanitise_dir_name(segment: &str) -> String {
    let cleaned: String = segment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME)
        .collect();
    match cleaned.trim_start_matches('.') {
        "" => "data".to_string(),
        s => s.to_string(),
    }
}

/// Warnings for an add or update: which of `mounts` are held by other running studios
/// (starting will fail until they stop).
pub fn held_warnings<'a>(
    mounts: &[Mount],
    held: impl IntoIterator<Item = &'a Holder> + Clone,
    studio_id: &str,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        for h in held.clone() {
            if h.studio_id != studio_id && h.path.overlaps(&m.uri) {
                warnings.push(format!(
                    "mounts[{i}]: {} is unavailable: {} is mounted by running studio '{}' ({}); starting will fail until it stops",
                    m.uri, h.path, h.studio_name, h.studio_id
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_uri_mounts_get_a_safe_directory_name() {
        assert_eq!(sanitise_dir_name("my data (v2)"), "my-data--v2-");
        assert_eq!(sanitise_dir_name(".hidden"), "hidden");
        assert_eq!(sanitise_dir_name("..."), "data");
    }

    #[test]
    fn held_paths_of_other_studios_warn() {
        let p = |s: &str| S3Prefix::parse(s).unwrap();
        let holder = Holder {
            studio_id: "st-1".into(),
            studio_name: "QC".into(),
            path: p("s3://bkt/reads/"),
        };
        let mount = Mount {
            uri: p("s3://bkt/"),
            name: "bkt".into(),
            mount_path: "/workspace/data/bkt".into(),
            access: Access::ReadOnly,
            data_link_id: None,
        };
        let warnings = held_warnings(std::slice::from_ref(&mount), [&holder], "st-2");
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("mounts[0]: s3://bkt/ is unavailable"),
            "{warnings:?}"
        );
        assert!(
            held_warnings(&[mount], [&holder], "st-1").is_empty(),
            "its own paths"
        );
    }
}
