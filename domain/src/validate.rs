//! Request bodies as received (`*Input`, unknown fields rejected) and the rules that turn
//! them into entities. Every failure names the field and the rule (400).

pub use super::inputs::*;
pub use super::mounts::{mount_name, mount_uri, mounts};
use super::s3::validate_bucket;
use super::*;
use crate::error::{Error, Result};
use rattler_conda_types::{MatchSpec, ParseStrictness};
use std::collections::HashMap;

pub const MAX_NAME: usize = 80;

pub const MAX_DESCRIPTION: usize = 2048;

pub const MAX_CONDA_PACKAGES: usize = 100;

/// Longest conda match spec (a name, channel, version and build fit easily).
pub const MAX_CONDA_SPEC: usize = 200;

/// Longest mount URI (and data link URI), in bytes: its lock item's sort key
/// (`LOCK#<uri>`) must fit DynamoDB's 1,024-byte limit.
pub const MAX_MOUNT_URI: usize = 1000;

/// Longest key part of a compute environment's `workDir`, in bytes: checkpoint objects go
/// under `<workDir>.studios/<studio>/checkpoints/<checkpoint>/`, and the session's own
/// object names below that need room, within S3's 1,024-byte key limit.
pub const MAX_WORK_DIR_KEY: usize = 700;

pub const MAX_GPUS: u32 = 16;

pub const MIN_MEMORY_MIB: u32 = 512;

/// A start writes the studio, a role check and one lock item per mounted path and per
/// ancestor prefix in one `TransactWriteItems` (at most 100 items: 2 + 96); a session's
/// end writes the studio, releases the locks and records a checkpoint and its name
/// (3 + 96). An add-and-start (or clone-and-start) also claims the name, counts the
/// compute environment and tracks checkpoint data: with the most lock items it does not
/// fit, and the store answers 400 (add, then start).
pub const MAX_LOCK_ITEMS: usize = 96;

pub const MOUNT_ROOT: &str = "/workspace/data";

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
    if let Some(c) = value.chars().find(|c| is_format_character(*c)) {
        return Err(Error::invalid(
            field,
            format!(
                "must not contain invisible formatting characters such as U+{:04X} (they can make one name look like another)",
                u32::from(c)
            ),
        ));
    }
    if value.trim() != value {
        return Err(Error::invalid(
            field,
            "must not start or end with whitespace",
        ));
    }
    Ok(value.to_string())
}

/// The name a checkpoint gets when it is recorded: the studio's n-th checkpoint.
pub fn default_checkpoint_name(n: u32) -> String {
    format!("checkpoint-{n}")
}

/// A new checkpoint name: 1–80 characters, unique per studio (checked by the store), and
/// not of the form `checkpoint-<n>`, which is kept for the names given at recording so
/// that a rename can never block a later session from recording its checkpoint.
pub fn checkpoint_name(value: &str) -> Result<String> {
    let value = name("name", value, MAX_NAME)?;
    let reserved = value
        .to_lowercase()
        .strip_prefix("checkpoint-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if reserved {
        return Err(Error::invalid(
            "name",
            "names of the form 'checkpoint-<number>' are given to new checkpoints; choose another",
        ));
    }
    Ok(value)
}

/// The error for changing what a clone keeps from its source.
pub fn fixed_for_clone(field: &str) -> Error {
    Error::invalid(
        field,
        "is fixed for a clone: it keeps the template, compute environment and conda packages of the checkpoint it starts from",
    )
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
    // The first line is what lists show next to the name.
    let first_line = value.lines().next().unwrap_or_default();
    if let Some(c) = first_line.chars().find(|c| is_format_character(*c)) {
        return Err(Error::invalid(
            field,
            format!(
                "the first line must not contain invisible formatting characters such as U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    Ok(value.to_string())
}

/// Unicode's format characters (general category Cf: bidirectional overrides and
/// isolates, zero-width characters, the BOM, tag characters, …), which change how text
/// is shown without being seen.
pub fn is_format_character(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
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
    now: &str,
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
    if work_dir.key_len() > MAX_WORK_DIR_KEY {
        return Err(Error::invalid(
            "workDir",
            format!(
                "the part after the bucket must be at most {MAX_WORK_DIR_KEY} characters (got {}), so that checkpoint object keys below it fit S3's 1,024",
                work_dir.key_len()
            ),
        ));
    }
    work_dir_of(&work_dir, &workspace_id)?;
    let job_role_arn = input
        .job_role_arn
        .as_deref()
        .map(|arn| role_arn("jobRoleArn", arn))
        .transpose()?;
    Ok(ComputeEnv {
        job_role_arn,
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
        created_at: now.to_string(),
        created_by: by,
    })
}

/// A `workDir` belongs to one workspace (docs/security.md, "Workspaces"): its last
/// segment is the workspace's id and no segment is `.studios`, so the checkpoint area of
/// one workspace (`<workDir>.studios/`) is never inside another's, however their
/// `workDir`s nest, and a role granted on one workspace's area reaches no other's.
fn work_dir_of(work_dir: &S3Prefix, workspace_id: &str) -> Result<()> {
    let example = format!("s3://{}/studios/{workspace_id}/", work_dir.bucket());
    if work_dir.segments().any(|s| s == ".studios") {
        return Err(Error::invalid(
            "workDir",
            format!("must not contain a .studios segment (that is where checkpoints live), e.g. {example}"),
        ));
    }
    if work_dir.segments().last() != Some(workspace_id) {
        return Err(Error::invalid(
            "workDir",
            format!("must end in this workspace's id, /{workspace_id}/, so that no other workspace can share it, e.g. {example}"),
        ));
    }
    Ok(())
}

pub fn data_link(
    input: DataLinkInput,
    id: String,
    workspace_id: String,
    by: UserRef,
    now: &str,
) -> Result<DataLink> {
    Ok(DataLink {
        id,
        workspace_id,
        name: mount_name("name", &input.name)?,
        uri: mount_uri("uri", &input.uri)?,
        region: region("region", &input.region)?,
        created_at: now.to_string(),
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

/// A custom image's registry must be one the stack allows (`IMAGE_REGISTRIES`; `None`:
/// any). The registry is the reference's first component if it has a `.` or `:` or is
/// `localhost`, else Docker Hub (`docker.io`).
pub fn image_allowed(template: &Template, registries: &Option<Vec<String>>) -> Result<()> {
    let (Template::Image { image }, Some(allowed)) = (template, registries) else {
        return Ok(());
    };
    let first = image.split('/').next().unwrap_or_default();
    let registry = if image.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        first
    } else {
        "docker.io"
    };
    if allowed.iter().any(|r| r == registry) {
        Ok(())
    } else {
        Err(Error::invalid(
            "template.image",
            format!(
                "this Studios stack runs custom images only from: {} (not {registry})",
                allowed.join(", ")
            ),
        ))
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

/// An IAM role ARN, `arn:<partition>:iam::<account>:role/<path/>name`.
pub fn role_arn(field: &str, value: &str) -> Result<String> {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|rest| {
            !rest.is_empty()
                && rest.len() <= 512
                && !rest.ends_with('/')
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
        });
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::invalid(
            field,
            "must be an IAM role ARN: arn:aws:iam::<account-id>:role/<path/>name",
        ))
    }
}

/// The path of a role ARN (`/` for `role/name`, `/a/b/` for `role/a/b/name`).
fn role_path(arn: &str) -> String {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
    let name_path = resource.strip_prefix("role").unwrap_or_default();
    match name_path.rfind('/') {
        Some(i) => name_path[..=i].to_string(),
        None => "/".to_string(),
    }
}

/// A compute environment may use only what the stack's IAM policies allow: its queue
/// among `JobQueueArns`, its `workDir` in `CheckpointBuckets`, its write buckets among
/// `WriteBuckets`. Otherwise sessions would fail at the first start or save.
/// The queues and buckets the stack's IAM policies allow (the configuration sets them).
#[derive(Clone, Debug, Default)]
pub struct StackLimits {
    pub job_queues: Option<Vec<String>>,
    pub checkpoint_buckets: Option<Vec<String>>,
    pub write_buckets: Option<Vec<String>>,
    /// Compute environments' job roles must be under this IAM path (`SESSION_ROLE_PATH`,
    /// e.g. `/studios-sessions/`): the only roles the stack may pass.
    pub session_role_path: Option<String>,
}

pub fn within_stack(ce: &ComputeEnv, limits: &StackLimits) -> Result<()> {
    let listed = |allowed: &Option<Vec<String>>, value: &str| {
        allowed
            .as_ref()
            .is_none_or(|list| list.iter().any(|a| a == value))
    };
    let shown = |allowed: &Option<Vec<String>>| match allowed.as_deref() {
        Some([]) | None => "none".to_string(),
        Some(list) => list.join(", "),
    };
    if !listed(&limits.job_queues, &ce.job_queue) {
        return Err(Error::invalid(
            "jobQueue",
            format!(
                "this Studios stack may submit only to its JobQueueArns: {}",
                shown(&limits.job_queues)
            ),
        ));
    }
    if !listed(&limits.checkpoint_buckets, ce.work_dir.bucket()) {
        return Err(Error::invalid(
            "workDir",
            format!(
                "the bucket must be one of the stack's CheckpointBuckets: {}",
                shown(&limits.checkpoint_buckets)
            ),
        ));
    }
    for (i, bucket) in ce.allowed_write_buckets.iter().enumerate() {
        if !listed(&limits.write_buckets, bucket) {
            return Err(Error::invalid(
                format!("allowedWriteBuckets[{i}]"),
                format!(
                    "sessions of this stack may write only to its WriteBuckets: {}",
                    shown(&limits.write_buckets)
                ),
            ));
        }
    }
    // A session's role is tied to its workspace by its IAM path
    // (`<SessionRolePath><workspace id>/`, docs/iam.md): a workspace admin cannot give
    // sessions another workspace's role, and the stack's default role (read-only on the
    // data buckets) could not save checkpoints, so a stack with a role path needs one.
    if let Some(path) = &limits.session_role_path {
        let own = format!("{path}{}/", ce.workspace_id);
        let how = format!(
            "create the workspace's session role with infra/session-role.yaml (WorkspaceId={}, WorkDir={}) and use its RoleArn output",
            ce.workspace_id, ce.work_dir
        );
        match &ce.job_role_arn {
            None => {
                return Err(Error::invalid(
                    "jobRoleArn",
                    format!("required: sessions need a role that can save checkpoints under workDir; {how}"),
                ))
            }
            Some(arn) if !role_path(arn).starts_with(&own) => {
                return Err(Error::invalid(
                    "jobRoleArn",
                    format!("must be a role of this workspace, under the IAM path {own} (this stack's SessionRolePath and the workspace id); {how}"),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
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
        if spec.len() > MAX_CONDA_SPEC {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("must be at most {MAX_CONDA_SPEC} characters"),
            ));
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

/// Changes to a studio's configuration, as PATCH and start overrides give them.
#[derive(Default)]
pub struct ConfigChanges<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub template: Option<&'a TemplateInput>,
    pub conda_packages: Option<&'a [String]>,
    pub resources: Option<ResourcesInput>,
    pub mounts: Option<&'a [MountInput]>,
}

/// The studio's configuration with `changes` applied, validated as an add would be.
pub fn changed_config(
    current: &Studio,
    changes: ConfigChanges<'_>,
    links: &HashMap<String, DataLink>,
) -> Result<(StudioConfig, Vec<String>)> {
    let old = &current.config;
    let template = match changes.template {
        Some(t) => t.clone(),
        None => template_input_of(&old.template),
    };
    let draft = ConfigDraft {
        name: changes.name.unwrap_or(&old.name),
        description: Some(changes.description.unwrap_or(&old.description)),
        template: &template,
        conda_packages: changes.conda_packages.unwrap_or(&old.conda_packages),
        resources: changes.resources.unwrap_or_default(),
        base_resources: old.resources,
        mounts: changes.mounts.unwrap_or_default(),
    };
    let (mut config, warnings) = studio_config(draft, &current.compute_env, links)?;
    if changes.mounts.is_none() {
        // Unchanged mounts were validated when set; their data links may be gone since.
        config.mounts = old.mounts.clone();
    }
    Ok((config, warnings))
}

#[cfg(test)]
mod checkpoint_name_tests {
    use super::*;

    #[test]
    fn default_names_are_reserved_for_recording() {
        assert_eq!(default_checkpoint_name(3), "checkpoint-3");
        for taken in ["checkpoint-3", "Checkpoint-12"] {
            let err = checkpoint_name(taken).unwrap_err();
            assert!(err.to_string().contains("checkpoint-<number>"), "{err}");
        }
        for ok in [
            "checkpoint-final",
            "checkpoint-",
            "before QC",
            "checkpoint-3b",
        ] {
            assert_eq!(checkpoint_name(ok).unwrap(), ok);
        }
        assert!(checkpoint_name("").is_err());
        assert!(checkpoint_name(&"x".repeat(81)).is_err());
        assert!(checkpoint_name(" padded").is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const NOW: &str = "2026-01-01T00:00:00.000Z";

    fn ce(gpu: bool) -> ComputeEnvSnapshot {
        ComputeEnvSnapshot {
            id: "ce-1".into(),
            name: "cpu".into(),
            region: "us-east-1".into(),
            job_queue: "arn:aws:batch:us-east-1:123456789012:job-queue/q".into(),
            gpu_enabled: gpu,
            max_cpus: 8,
            max_memory_mib: 16384,
            allowed_write_buckets: vec!["rw-bucket".into()],
            work_dir: S3Prefix::parse("s3://work-bucket/w").unwrap(),
            job_role_arn: None,
        }
    }

    /// The error's field and message, for comparing with what the API answers.
    fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
        r.unwrap_err().to_string()
    }

    fn kind(k: &str) -> TemplateInput {
        TemplateInput {
            kind: Some(k.into()),
            image: None,
        }
    }

    fn image(i: &str) -> TemplateInput {
        TemplateInput {
            kind: None,
            image: Some(i.into()),
        }
    }

    fn uri(u: &str) -> MountInput {
        MountInput {
            data_link_id: None,
            uri: Some(u.into()),
        }
    }

    fn config(
        template: TemplateInput,
        conda: &[&str],
        resources: ResourcesInput,
        mounts: &[MountInput],
        links: &HashMap<String, DataLink>,
        gpu: bool,
    ) -> Result<(StudioConfig, Vec<String>)> {
        let conda: Vec<String> = conda.iter().map(|s| s.to_string()).collect();
        studio_config(
            ConfigDraft {
                name: "s",
                description: None,
                template: &template,
                conda_packages: &conda,
                resources,
                base_resources: Resources::default(),
                mounts,
            },
            &ce(gpu),
            links,
        )
    }

    #[test]
    fn names_are_1_to_80_visible_characters() {
        assert_eq!(
            name("name", "RNA-seq QC ✓", MAX_NAME).unwrap(),
            "RNA-seq QC ✓"
        );
        assert_eq!(
            err(name("name", "", MAX_NAME)),
            "name: must be 1 to 80 characters (got 0)"
        );
        assert_eq!(
            err(name("name", &"é".repeat(81), MAX_NAME)),
            "name: must be 1 to 80 characters (got 81)"
        );
        assert!(name("name", &"é".repeat(80), MAX_NAME).is_ok());
        assert_eq!(
            err(name("name", " padded", MAX_NAME)),
            "name: must not start or end with whitespace"
        );
        assert_eq!(
            err(name("name", "a\u{7}b", MAX_NAME)),
            "name: must not contain control characters"
        );
        // Bidi overrides and zero-width characters make spoofable names.
        for spoof in [
            "QC \u{202E}txt.exe",
            "a\u{200B}b",
            "\u{2066}x\u{2069}",
            "x\u{FEFF}",
        ] {
            assert!(
                err(name("name", spoof, MAX_NAME)).contains("invisible formatting"),
                "{spoof:?}"
            );
        }
        assert!(name("name", "Gänse ä ß 日本 👍", MAX_NAME).is_ok());
        assert!(err(description("description", Some("a\u{202E}b\nrest"))).contains("first line"));
        assert!(description("description", Some("fine\nsecond \u{200B} line")).is_ok());
    }

    #[test]
    fn description_is_at_most_2048_characters() {
        assert!(description("description", Some(&"x".repeat(2048))).is_ok());
        assert_eq!(
            err(description("description", Some(&"x".repeat(2049)))),
            "description: must be at most 2048 characters (got 2049)"
        );
        assert_eq!(description("description", None).unwrap(), "");
    }

    #[test]
    fn defaults_are_2_cpus_0_gpus_8192_mib() {
        let (c, warnings) = config(
            kind("jupyter"),
            &[],
            Default::default(),
            &[],
            &HashMap::new(),
            false,
        )
        .unwrap();
        assert_eq!(
            c.resources,
            Resources {
                cpus: 2,
                gpus: 0,
                memory_mib: 8192
            }
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn resources_are_bounded_by_the_compute_environment() {
        let r = |cpus, gpus, mem| ResourcesInput {
            cpus,
            gpus,
            memory_mib: mem,
        };
        let check = |input, gpu| resources("resources", input, Resources::default(), &ce(gpu));
        assert_eq!(
            err(check(r(Some(9), None, None), false)),
            "resources.cpus: must be between 1 and 8 (maxCpus of compute environment 'cpu'; got 9)"
        );
        assert_eq!(
            err(check(r(Some(0), None, None), false)),
            "resources.cpus: must be between 1 and 8 (maxCpus of compute environment 'cpu'; got 0)"
        );
        assert_eq!(
            err(check(r(None, None, Some(16385)), false)),
            "resources.memoryMiB: must be between 512 and 16384 (maxMemoryMiB of compute environment 'cpu'; got 16385)"
        );
        assert_eq!(
            err(check(r(None, Some(1), None), false)),
            "resources.gpus: compute environment 'cpu' is not GPU-enabled"
        );
        assert_eq!(
            check(r(Some(8), Some(1), Some(16384)), true).unwrap().gpus,
            1
        );
        assert_eq!(
            err(check(r(None, Some(17), None), true)),
            "resources.gpus: must be at most 16"
        );
    }

    #[test]
    fn template_is_a_known_kind_or_an_image() {
        assert_eq!(
            template("template", &kind("rstudio")).unwrap(),
            Template::Kind {
                kind: TemplateKind::Rstudio
            }
        );
        assert_eq!(
            err(template("template", &kind("emacs"))),
            "template.kind: unknown template 'emacs'; expected one of jupyter, rstudio, vscode, xpra"
        );
        assert!(template("template", &image("ghcr.io/lab/img:1.2")).is_ok());
        assert!(template(
            "template",
            &image(&format!("repo/img@sha256:{}", "a".repeat(64)))
        )
        .is_ok());
        for bad in ["", "has space", "-leading", "img@sha256:short"] {
            assert_eq!(
                err(template("template", &image(bad))),
                "template.image: must be a container image reference like registry.example.com/team/image:tag",
                "{bad}"
            );
        }
        assert_eq!(
            err(template(
                "template",
                &TemplateInput {
                    kind: None,
                    image: None
                }
            )),
            "template: give exactly one of kind (jupyter, rstudio, vscode, xpra) or image"
        );
    }

    #[test]
    fn conda_specs_use_conda_match_spec_syntax() {
        let ok = [
            "numpy",
            "numpy>=1.26",
            "conda-forge::scanpy=1.10",
            "python 3.11.*",
            "r-base>=4.3,<4.5",
        ];
        let specs: Vec<String> = ok.iter().map(|s| s.to_string()).collect();
        assert!(conda_packages("condaPackages", &specs).is_ok());
        for bad in ["numpy>>=1", "numpy==", ""] {
            let msg = err(conda_packages("condaPackages", &[bad.to_string()]));
            assert!(msg.starts_with("condaPackages[0]: "), "{bad}: {msg}");
        }
        let many = vec!["numpy".to_string(); 101];
        assert_eq!(
            err(conda_packages("condaPackages", &many)),
            "condaPackages: at most 100 packages"
        );
    }

    #[test]
    fn custom_image_and_conda_packages_are_exclusive() {
        let r = config(
            image("ghcr.io/lab/img:1"),
            &["numpy"],
            Default::default(),
            &[],
            &HashMap::new(),
            false,
        );
        assert_eq!(
            err(r),
            "condaPackages: cannot be combined with a custom image: install the packages in the image instead"
        );
    }

    #[test]
    fn mounts_are_read_only_unless_the_bucket_allows_writes() {
        let (c, _) = config(
            kind("jupyter"),
            &[],
            Default::default(),
            &[uri("s3://rw-bucket/a"), uri("s3://ro-bucket/b")],
            &HashMap::new(),
            false,
        )
        .unwrap();
        assert_eq!(c.mounts[0].access, Access::ReadWrite);
        assert_eq!(c.mounts[0].mount_path, "/workspace/data/a");
        assert_eq!(c.mounts[1].access, Access::ReadOnly);
    }

    #[test]
    fn mounts_in_another_region_warn() {
        let link = DataLink {
            id: "dl-1".into(),
            workspace_id: "ws".into(),
            name: "eu".into(),
            uri: S3Prefix::parse("s3://eu-bucket/x").unwrap(),
            region: "eu-west-1".into(),
            created_at: NOW.into(),
            created_by: UserRef {
                id: "u".into(),
                name: "u".into(),
            },
        };
        let links = HashMap::from([("dl-1".to_string(), link)]);
        let m = MountInput {
            data_link_id: Some("dl-1".into()),
            uri: None,
        };
        let (c, warnings) = config(
            kind("jupyter"),
            &[],
            Default::default(),
            &[m],
            &links,
            false,
        )
        .unwrap();
        assert_eq!(c.mounts[0].name, "eu");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("mounts[0]: data link 'eu' is in eu-west-1"));
    }

    #[test]
    fn mounts_must_not_overlap_or_share_a_directory() {
        let run = |m: &[MountInput]| {
            err(config(
                kind("jupyter"),
                &[],
                Default::default(),
                m,
                &HashMap::new(),
                false,
            ))
        };
        assert_eq!(
            run(&[uri("s3://bkt/a/x/"), uri("S3://bkt//a")]),
            "mounts[1]: s3://bkt/a/ overlaps mounts[0] (s3://bkt/a/x/)"
        );
        assert_eq!(
            run(&[uri("s3://bkt/a/x"), uri("s3://bkt/b/x")]),
            "mounts[1]: mount directory 'x' is already used by mounts[0]"
        );
        assert_eq!(
            run(&[MountInput {
                data_link_id: Some("dl-1".into()),
                uri: Some("s3://bkt/a".into())
            }]),
            "mounts[0]: give exactly one of dataLinkId or uri"
        );
        assert_eq!(
            run(&[MountInput {
                data_link_id: Some("dl-9".into()),
                uri: None
            }]),
            "mounts[0].dataLinkId: no data link 'dl-9' in this workspace"
        );
    }

    #[test]
    fn mounts_must_fit_one_transaction_of_lock_items() {
        // 7 mounts of depth 13 share the bucket root: 1 + 7 * 13 = 92 lock items fit;
        // at depth 14, 1 + 7 * 14 = 99 do not.
        let deep = |depth: usize| -> Vec<MountInput> {
            (0..7)
                .map(|i| {
                    let path: Vec<String> = (0..depth).map(|d| format!("m{i}d{d}")).collect();
                    uri(&format!("s3://bkt/{}", path.join("/")))
                })
                .collect()
        };
        let ok = config(
            kind("jupyter"),
            &[],
            Default::default(),
            &deep(13),
            &HashMap::new(),
            false,
        );
        assert!(ok.is_ok());
        let too_deep = config(
            kind("jupyter"),
            &[],
            Default::default(),
            &deep(14),
            &HashMap::new(),
            false,
        );
        assert!(err(too_deep).starts_with("mounts: these mounts need 99 mount-lock items"));
    }

    #[test]
    fn compute_environment_rules() {
        let by = UserRef {
            id: "u".into(),
            name: "u".into(),
        };
        let input = |queue: &str, region: &str, cpus: u32| ComputeEnvInput {
            name: "q".into(),
            region: region.into(),
            job_queue: queue.into(),
            gpu_enabled: false,
            max_cpus: cpus,
            max_memory_mib: 8192,
            allowed_write_buckets: vec!["b1b".into(), "b1b".into()],
            work_dir: "s3://work-bucket/w/ws".into(),
            job_role_arn: None,
        };
        let arn = "arn:aws:batch:us-east-1:123456789012:job-queue/q";
        let ok = compute_env(
            input(arn, "us-east-1", 4),
            "ce".into(),
            "ws".into(),
            by.clone(),
            NOW,
        )
        .unwrap();
        assert_eq!(ok.allowed_write_buckets, vec!["b1b"]);
        assert_eq!(ok.work_dir.as_str(), "s3://work-bucket/w/ws/");
        let with_dir = |dir: &str| ComputeEnvInput {
            work_dir: dir.into(),
            ..input(arn, "us-east-1", 4)
        };
        assert_eq!(
            err(compute_env(with_dir("s3://work-bucket/w/"), "ce".into(), "ws".into(), by.clone(), NOW)),
            "workDir: must end in this workspace's id, /ws/, so that no other workspace can share it, e.g. s3://work-bucket/studios/ws/"
        );
        assert_eq!(
            err(compute_env(with_dir("s3://work-bucket/other/.studios/ws/"), "ce".into(), "ws".into(), by.clone(), NOW)),
            "workDir: must not contain a .studios segment (that is where checkpoints live), e.g. s3://work-bucket/studios/ws/"
        );
        assert_eq!(
            err(compute_env(input(arn, "eu-west-1", 4), "ce".into(), "ws".into(), by.clone(), NOW)),
            "jobQueue: the queue is in 'us-east-1' but the compute environment's region is 'eu-west-1'"
        );
        assert_eq!(
            err(compute_env(input("q", "us-east-1", 4), "ce".into(), "ws".into(), by.clone(), NOW)),
            "jobQueue: must be a job queue ARN: arn:aws:batch:<region>:<account-id>:job-queue/<name>"
        );
        assert_eq!(
            err(compute_env(
                input(arn, "us-east-1", 0),
                "ce".into(),
                "ws".into(),
                by,
                NOW
            )),
            "maxCpus: must be between 1 and 10000"
        );
    }

    proptest::proptest! {
        /// However two workspaces' accepted `workDir`s nest (one may be a prefix of the
        /// other), neither workspace's checkpoint area is inside the other's.
        #[test]
        fn checkpoint_areas_of_two_workspaces_never_nest(
            a in proptest::collection::vec("[a-z0-9.-]{1,8}|\\.studios|ws-b", 0..5),
            b in proptest::collection::vec("[a-z0-9.-]{1,8}|\\.studios|ws-a", 0..5),
            nest in proptest::bool::ANY,
        ) {
            let dir_a = format!("s3://work-bucket/{}/ws-a/", a.join("/")).replace("//ws", "/ws");
            let dir_b = if nest {
                format!("{}{}/ws-b/", dir_a, b.join("/")).replace("//ws", "/ws")
            } else {
                format!("s3://work-bucket/{}/ws-b/", b.join("/")).replace("//ws", "/ws")
            };
            let accepted = |dir: &str, ws: &str| {
                S3Prefix::parse(dir).ok().filter(|p| work_dir_of(p, ws).is_ok())
            };
            if let (Some(pa), Some(pb)) = (accepted(&dir_a, "ws-a"), accepted(&dir_b, "ws-b")) {
                let area_a = pa.child(".studios");
                let area_b = pb.child(".studios");
                proptest::prop_assert!(!area_a.as_str().starts_with(area_b.as_str()), "{} in {}", area_a, area_b);
                proptest::prop_assert!(!area_b.as_str().starts_with(area_a.as_str()), "{} in {}", area_b, area_a);
            }
        }
    }

    proptest::proptest! {
        /// Whatever `workDir` is accepted, every key derived from it fits: the
        /// checkpoint prefix of any studio, with room for the session's object names
        /// (S3: 1,024 bytes); whatever mount URI is accepted, its lock key fits
        /// (DynamoDB sort key: 1,024 bytes). What does not fit is a 400, never a panic.
        #[test]
        fn derived_keys_fit_their_limits(
            segments in proptest::collection::vec("[a-z0-9._-]{1,60}", 1..30),
        ) {
            use crate::ids::{format_id, IdKind};
            let uri = format!("s3://work-bucket/{}/ws", segments.join("/"));
            let input = ComputeEnvInput {
                name: "q".into(),
                region: "us-east-1".into(),
                job_queue: "arn:aws:batch:us-east-1:123456789012:job-queue/q".into(),
                gpu_enabled: false,
                max_cpus: 4,
                max_memory_mib: 8192,
                allowed_write_buckets: vec![],
                work_dir: uri.clone(),
                job_role_arn: None,
            };
            let by = UserRef { id: "u".into(), name: "u".into() };
            match compute_env(input, "ce".into(), "ws".into(), by, NOW) {
                Ok(ce) => {
                    let save = ce.work_dir
                        .child(".studios")
                        .child(&format_id(IdKind::Studio, u128::MAX))
                        .child("checkpoints")
                        .child(&format_id(IdKind::Checkpoint, u128::MAX));
                    proptest::prop_assert!(save.key_len() + 200 <= 1024, "{}", save);
                    let reparsed = S3Prefix::parse(save.as_str()); proptest::prop_assert_eq!(reparsed, Ok(save.clone()));
                }
                Err(e) => {
                    let text = e.to_string();
                    proptest::prop_assert!(text.starts_with("workDir: "), "{}", text);
                    if text.contains("at most") {
                        proptest::prop_assert!(uri.len() > MAX_WORK_DIR_KEY, "{}", text);
                    }
                }
            }
            match mount_uri("uri", &uri) {
                Ok(m) => { let key = format!("LOCK#{}", m); proptest::prop_assert!(key.len() <= 1024) }
                Err(e) if e.to_string().contains("at most") => {
                    proptest::prop_assert!(uri.len() >= MAX_MOUNT_URI - 1, "{}", e)
                }
                Err(_) => {}
            }
        }
    }

    #[test]
    fn custom_images_come_from_allowed_registries() {
        let image = |i: &str| Template::Image { image: i.into() };
        let ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com".to_string();
        let only_ecr = Some(vec![ecr.clone()]);
        assert!(image_allowed(&image(&format!("{ecr}/lab/img:1")), &only_ecr).is_ok());
        for other in [
            "ghcr.io/lab/img:1",
            "ubuntu:24.04",
            "library/ubuntu",
            "localhost:5000/x",
        ] {
            assert!(
                err(image_allowed(&image(other), &only_ecr))
                    .starts_with("template.image: this Studios stack runs custom images only from"),
                "{other}"
            );
        }
        assert!(image_allowed(&image("ubuntu:24.04"), &Some(vec!["docker.io".into()])).is_ok());
        assert!(image_allowed(&image("ghcr.io/x/y"), &None).is_ok());
        let kind = Template::Kind {
            kind: TemplateKind::Jupyter,
        };
        assert!(
            image_allowed(&kind, &only_ecr).is_ok(),
            "templates are the stack's own"
        );
    }

    #[test]
    fn region_names() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "ap-southeast-4",
        ] {
            assert!(region("region", ok).is_ok(), "{ok}");
        }
        for bad in ["us-east", "US-EAST-1", "mars-1", "us-east-123", ""] {
            assert_eq!(
                err(region("region", bad)),
                format!("region: '{bad}' is not an AWS region name (like us-east-1)")
            );
        }
    }
}
