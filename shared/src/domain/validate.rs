//! Request bodies as received (`*Input`, unknown fields rejected) and the rules that turn
//! them into entities. Every failure names the field and the rule (400).

use super::s3::validate_bucket;
use super::*;
use crate::error::{Error, Result};
use rattler_conda_types::{MatchSpec, ParseStrictness};
use serde::Deserialize;
use std::collections::HashMap;

pub const MAX_NAME: usize = 80;
pub const MAX_DESCRIPTION: usize = 2048;
pub const MAX_CONDA_PACKAGES: usize = 100;
pub const MAX_GPUS: u32 = 16;
pub const MIN_MEMORY_MIB: u32 = 512;
/// A start writes the studio, a role check and one lock item per mounted path and per
/// ancestor prefix of it in one `TransactWriteItems`, which holds at most 100 items.
pub const MAX_LOCK_ITEMS: usize = 98;
pub const MOUNT_ROOT: &str = "/workspace/data";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceInput {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberInput {
    pub role: String,
    /// Display name shown in member lists until the user's own token says otherwise.
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComputeEnvInput {
    pub name: String,
    pub region: String,
    pub job_queue: String,
    #[serde(default)]
    pub gpu_enabled: bool,
    pub max_cpus: u32,
    #[serde(rename = "maxMemoryMiB")]
    pub max_memory_mib: u32,
    #[serde(default)]
    pub allowed_write_buckets: Vec<String>,
    pub work_dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataLinkInput {
    pub name: String,
    pub uri: String,
    pub region: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    pub kind: Option<String>,
    pub image: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesInput {
    pub cpus: Option<u32>,
    pub gpus: Option<u32>,
    #[serde(rename = "memoryMiB")]
    pub memory_mib: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MountInput {
    pub data_link_id: Option<String>,
    pub uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StudioInput {
    pub name: String,
    pub description: Option<String>,
    pub compute_env_id: String,
    pub template: TemplateInput,
    pub conda_packages: Option<Vec<String>>,
    pub resources: Option<ResourcesInput>,
    pub mounts: Option<Vec<MountInput>>,
}

/// PATCH body: present fields replace; `resources` merges field by field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StudioPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Accepted only to explain that it cannot change.
    pub compute_env_id: Option<serde_json::Value>,
    pub template: Option<TemplateInput>,
    pub conda_packages: Option<Vec<String>>,
    pub resources: Option<ResourcesInput>,
    pub mounts: Option<Vec<MountInput>>,
}

impl StudioInput {
    /// The data links the mounts refer to (fetched in the same read as the rest).
    pub fn data_link_ids(&self) -> Vec<String> {
        data_link_ids(self.mounts.as_deref().unwrap_or_default())
    }
}

impl StudioPatch {
    pub fn data_link_ids(&self) -> Vec<String> {
        data_link_ids(self.mounts.as_deref().unwrap_or_default())
    }
}

fn data_link_ids(mounts: &[MountInput]) -> Vec<String> {
    let mut ids: Vec<String> = mounts
        .iter()
        .filter_map(|m| m.data_link_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// A name shown to people: 1..=max characters, no control characters, no outer spaces.
pub fn name(field: &str, value: &str, max: usize) -> Result<String> {
    let len = value.chars().count();
    if len == 0 || len > max {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {max} characters (got {len})"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    if value.trim() != value {
        return Err(Error::invalid(
            field,
            "must not start or end with whitespace",
        ));
    }
    Ok(value.to_string())
}

pub fn description(field: &str, value: Option<&str>) -> Result<String> {
    let value = value.unwrap_or_default();
    let len = value.chars().count();
    if len > MAX_DESCRIPTION {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_DESCRIPTION} characters (got {len})"),
        ));
    }
    Ok(value.to_string())
}

pub fn region(field: &str, value: &str) -> Result<String> {
    // e.g. us-east-1, eu-central-2, us-gov-west-1, ap-southeast-4
    let parts: Vec<&str> = value.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].len() <= 2
        && !parts[parts.len() - 1].is_empty()
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::invalid(
            field,
            format!("'{value}' is not an AWS region name (like us-east-1)"),
        ))
    }
}

pub fn s3_prefix(field: &str, value: &str) -> Result<S3Prefix> {
    S3Prefix::parse(value).map_err(|rule| Error::invalid(field, rule))
}

/// `arn:<partition>:batch:<region>:<account>:job-queue/<name>`, in the environment's region.
pub fn job_queue_arn(field: &str, value: &str, region: &str) -> Result<String> {
    let bad = || {
        Error::invalid(
            field,
            "must be a job queue ARN: arn:aws:batch:<region>:<account-id>:job-queue/<name>",
        )
    };
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let [arn, partition, service, arn_region, account, resource] = parts[..] else {
        return Err(bad());
    };
    let queue = resource.strip_prefix("job-queue/").ok_or_else(bad)?;
    let queue_ok = (1..=128).contains(&queue.len())
        && queue
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if arn != "arn"
        || !partition.starts_with("aws")
        || service != "batch"
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
        || !queue_ok
    {
        return Err(bad());
    }
    if arn_region != region {
        return Err(Error::invalid(
            field,
            format!(
                "the queue is in '{arn_region}' but the compute environment's region is '{region}'"
            ),
        ));
    }
    Ok(value.to_string())
}

pub fn compute_env(
    input: ComputeEnvInput,
    id: String,
    workspace_id: String,
    by: UserRef,
) -> Result<ComputeEnv> {
    let name = name("name", &input.name, MAX_NAME)?;
    let region = region("region", &input.region)?;
    let job_queue = job_queue_arn("jobQueue", &input.job_queue, &region)?;
    if !(1..=10_000).contains(&input.max_cpus) {
        return Err(Error::invalid("maxCpus", "must be between 1 and 10000"));
    }
    if !(MIN_MEMORY_MIB..=4_194_304).contains(&input.max_memory_mib) {
        return Err(Error::invalid(
            "maxMemoryMiB",
            format!("must be between {MIN_MEMORY_MIB} and 4194304"),
        ));
    }
    let mut buckets = Vec::new();
    for (i, bucket) in input.allowed_write_buckets.iter().enumerate() {
        validate_bucket(bucket)
            .map_err(|rule| Error::invalid(format!("allowedWriteBuckets[{i}]"), rule))?;
        if !buckets.contains(bucket) {
            buckets.push(bucket.clone());
        }
    }
    let work_dir = s3_prefix("workDir", &input.work_dir)?;
    Ok(ComputeEnv {
        id,
        workspace_id,
        name,
        region,
        job_queue,
        gpu_enabled: input.gpu_enabled,
        max_cpus: input.max_cpus,
        max_memory_mib: input.max_memory_mib,
        allowed_write_buckets: buckets,
        work_dir,
        created_at: now(),
        created_by: by,
    })
}

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

pub fn data_link(
    input: DataLinkInput,
    id: String,
    workspace_id: String,
    by: UserRef,
) -> Result<DataLink> {
    Ok(DataLink {
        id,
        workspace_id,
        name: mount_name("name", &input.name)?,
        uri: s3_prefix("uri", &input.uri)?,
        region: region("region", &input.region)?,
        created_at: now(),
        created_by: by,
    })
}

pub fn template(field: &str, input: &TemplateInput) -> Result<Template> {
    match (&input.kind, &input.image) {
        (Some(kind), None) => TemplateKind::parse(kind)
            .map(|kind| Template::Kind { kind })
            .ok_or_else(|| {
                Error::invalid(
                    format!("{field}.kind"),
                    format!(
                        "unknown template '{kind}'; expected one of jupyter, rstudio, vscode, xpra"
                    ),
                )
            }),
        (None, Some(image)) => Ok(Template::Image {
            image: image_ref(&format!("{field}.image"), image)?,
        }),
        _ => Err(Error::invalid(
            field,
            "give exactly one of kind (jupyter, rstudio, vscode, xpra) or image",
        )),
    }
}

/// A container image reference: `[registry/]repository[:tag][@sha256:<hex>]`.
pub fn image_ref(field: &str, value: &str) -> Result<String> {
    let (name, digest) = match value.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (value, None),
    };
    let digest_ok = digest.is_none_or(|d| {
        d.strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    let name_ok = (1..=255).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b':'));
    if name_ok && digest_ok {
        Ok(value.to_string())
    } else {
        Err(Error::invalid(
            field,
            "must be a container image reference like registry.example.com/team/image:tag",
        ))
    }
}

pub fn conda_packages(field: &str, specs: &[String]) -> Result<Vec<String>> {
    if specs.len() > MAX_CONDA_PACKAGES {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_CONDA_PACKAGES} packages"),
        ));
    }
    for (i, spec) in specs.iter().enumerate() {
        if spec.trim().is_empty() {
            return Err(Error::invalid(format!("{field}[{i}]"), "must not be empty"));
        }
        MatchSpec::from_str(spec, ParseStrictness::Strict).map_err(|e| {
            Error::invalid(
                format!("{field}[{i}]"),
                format!("'{spec}' is not a valid conda match spec: {e}"),
            )
        })?;
    }
    Ok(specs.to_vec())
}

pub fn resources(
    field: &str,
    input: ResourcesInput,
    base: Resources,
    ce: &ComputeEnvSnapshot,
) -> Result<Resources> {
    let r = Resources {
        cpus: input.cpus.unwrap_or(base.cpus),
        gpus: input.gpus.unwrap_or(base.gpus),
        memory_mib: input.memory_mib.unwrap_or(base.memory_mib),
    };
    if r.cpus < 1 || r.cpus > ce.max_cpus {
        return Err(Error::invalid(
            format!("{field}.cpus"),
            format!(
                "must be between 1 and {} (maxCpus of compute environment '{}'; got {})",
                ce.max_cpus, ce.name, r.cpus
            ),
        ));
    }
    if r.memory_mib < MIN_MEMORY_MIB || r.memory_mib > ce.max_memory_mib {
        return Err(Error::invalid(
            format!("{field}.memoryMiB"),
            format!(
                "must be between {MIN_MEMORY_MIB} and {} (maxMemoryMiB of compute environment '{}'; got {})",
                ce.max_memory_mib, ce.name, r.memory_mib
            ),
        ));
    }
    if r.gpus > 0 && !ce.gpu_enabled {
        return Err(Error::invalid(
            format!("{field}.gpus"),
            format!("compute environment '{}' is not GPU-enabled", ce.name),
        ));
    }
    if r.gpus > MAX_GPUS {
        return Err(Error::invalid(
            format!("{field}.gpus"),
            format!("must be at most {MAX_GPUS}"),
        ));
    }
    Ok(r)
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
                let uri = s3_prefix(&format!("{at}.uri"), uri)?;
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
    let lock_items: usize = out.iter().map(|m| 1 + m.uri.ancestors().len()).sum();
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

/// Everything a studio's configuration must satisfy, whatever built it (add, update, ...).
pub struct ConfigDraft<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub template: &'a TemplateInput,
    pub conda_packages: &'a [String],
    pub resources: ResourcesInput,
    pub base_resources: Resources,
    pub mounts: &'a [MountInput],
}

pub fn studio_config(
    draft: ConfigDraft<'_>,
    ce: &ComputeEnvSnapshot,
    links: &HashMap<String, DataLink>,
) -> Result<(StudioConfig, Vec<String>)> {
    let name = name("name", draft.name, MAX_NAME)?;
    let description = description("description", draft.description)?;
    let template = template("template", draft.template)?;
    let conda_packages = conda_packages("condaPackages", draft.conda_packages)?;
    if matches!(template, Template::Image { .. }) && !conda_packages.is_empty() {
        return Err(Error::invalid(
            "condaPackages",
            "cannot be combined with a custom image: install the packages in the image instead",
        ));
    }
    let resources = resources("resources", draft.resources, draft.base_resources, ce)?;
    let (mounts, warnings) = mounts("mounts", draft.mounts, ce, links)?;
    Ok((
        StudioConfig {
            name,
            description,
            template,
            conda_packages,
            resources,
            mounts,
        },
        warnings,
    ))
}

/// The draft of a patch applied over a studio's current configuration.
pub fn mount_inputs_of(config: &StudioConfig) -> Vec<MountInput> {
    config
        .mounts
        .iter()
        .map(|m| match &m.data_link_id {
            Some(id) => MountInput {
                data_link_id: Some(id.clone()),
                uri: None,
            },
            None => MountInput {
                data_link_id: None,
                uri: Some(m.uri.to_string()),
            },
        })
        .collect()
}

pub fn template_input_of(template: &Template) -> TemplateInput {
    match template {
        Template::Kind { kind } => TemplateInput {
            kind: Some(kind.as_str().to_string()),
            image: None,
        },
        Template::Image { image } => TemplateInput {
            kind: None,
            image: Some(image.clone()),
        },
    }
}
