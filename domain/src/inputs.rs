//! Request bodies as received: the serde types the handlers parse (unknown fields
//! rejected, lists capped while parsing) and their schemas in the API document.
//! `validate` turns them into entities.

use super::validate::fixed_for_clone;
use super::validate::{MAX_CONDA_PACKAGES, MAX_CONDA_SPEC, MAX_LOCK_ITEMS, MAX_MOUNT_URI};
use super::Role;
use crate::error::Result;
use serde::Deserialize;
use utoipa::openapi::schema::Schema;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceInput {
    #[schema(min_length = 1, max_length = 80)]
    pub name: String,
    #[schema(max_length = 2048)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberInput {
    #[schema(value_type = Role)]
    pub role: String,
    /// Display name shown in member lists until the user's own token says otherwise.
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComputeEnvInput {
    #[schema(min_length = 1, max_length = 80)]
    pub name: String,
    pub region: String,
    pub job_queue: String,
    #[serde(default)]
    pub gpu_enabled: bool,
    #[schema(minimum = 1)]
    pub max_cpus: u32,
    #[serde(rename = "maxMemoryMiB")]
    #[schema(minimum = 512)]
    pub max_memory_mib: u32,
    #[serde(default, deserialize_with = "at_most_buckets")]
    #[schema(max_items = 50)]
    pub allowed_write_buckets: Vec<String>,
    /// Where sessions save checkpoints (`<workDir>.studios/`): an S3 prefix whose last
    /// segment is the workspace's id, e.g. `s3://bucket/studios/ws-…/`.
    #[schema(max_length = 1024)]
    pub work_dir: String,
    pub job_role_arn: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataLinkInput {
    #[schema(min_length = 1, max_length = 80)]
    pub name: String,
    #[schema(max_length = 1000)]
    pub uri: String,
    pub region: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    pub kind: Option<String>,
    pub image: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesInput {
    #[schema(minimum = 1)]
    pub cpus: Option<u32>,
    #[schema(maximum = 16)]
    pub gpus: Option<u32>,
    #[serde(rename = "memoryMiB")]
    #[schema(minimum = 512)]
    pub memory_mib: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MountInput {
    pub data_link_id: Option<String>,
    pub uri: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StudioInput {
    #[schema(min_length = 1, max_length = 80)]
    pub name: String,
    #[schema(max_length = 2048)]
    pub description: Option<String>,
    pub compute_env_id: String,
    pub template: TemplateInput,
    #[serde(default, deserialize_with = "at_most_conda")]
    #[schema(schema_with = conda_packages_schema)]
    pub conda_packages: Option<Vec<String>>,
    pub resources: Option<ResourcesInput>,
    #[serde(default, deserialize_with = "at_most_mounts")]
    #[schema(max_items = 96)]
    pub mounts: Option<Vec<MountInput>>,
}

/// A schema of the API document written as JSON (for the shapes derive cannot say:
/// "exactly one of").
fn json_schema(value: serde_json::Value) -> Schema {
    serde_json::from_value(value).expect("a valid schema")
}

/// An object with exactly one of two fields: `{first}` or `{second}`.
fn one_of(first: (&str, serde_json::Value), second: (&str, serde_json::Value)) -> Schema {
    let alternative = |(name, schema): (&str, serde_json::Value)| {
        serde_json::json!({"type": "object", "additionalProperties": false,
            "required": [name], "properties": {name: schema}})
    };
    json_schema(serde_json::json!({"oneOf": [alternative(first), alternative(second)]}))
}

/// Types whose schema is written here rather than derived.
macro_rules! written_schema {
    ($type:ty, $schema:expr) => {
        impl utoipa::ToSchema for $type {}

        impl utoipa::PartialSchema for $type {
            fn schema() -> utoipa::openapi::RefOr<Schema> {
                $schema.into()
            }
        }
    };
}

// `{kind}` or `{image}`, exactly one.
written_schema!(
    TemplateInput,
    one_of(
        (
            "kind",
            serde_json::json!({"$ref": "#/components/schemas/TemplateKind"})
        ),
        (
            "image",
            serde_json::json!({"type": "string", "minLength": 1,
            "description": "A container image reference (with the studio agent as its entrypoint: docs/agent.md)."})
        ),
    )
);

// `{dataLinkId}` or `{uri}`, exactly one.
written_schema!(
    MountInput,
    one_of(
        ("dataLinkId", serde_json::json!({"type": "string"})),
        (
            "uri",
            serde_json::json!({"type": "string", "maxLength": MAX_MOUNT_URI})
        ),
    )
);

/// Conda match specs: at most 100 of at most 200 characters.
fn conda_packages_schema() -> Schema {
    json_schema(serde_json::json!({
        "type": ["array", "null"],
        "maxItems": MAX_CONDA_PACKAGES,
        "items": {"type": "string", "minLength": 1, "maxLength": MAX_CONDA_SPEC},
    }))
}

/// PATCH body: present fields replace; `resources` merges field by field.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StudioPatch {
    #[schema(min_length = 1, max_length = 80)]
    pub name: Option<String>,
    #[schema(max_length = 2048)]
    pub description: Option<String>,
    /// Accepted only to explain that it cannot change (`null` included).
    #[serde(default, deserialize_with = "present")]
    #[schema(ignore)]
    pub compute_env_id: Option<serde_json::Value>,
    pub template: Option<TemplateInput>,
    #[serde(default, deserialize_with = "at_most_conda")]
    #[schema(schema_with = conda_packages_schema)]
    pub conda_packages: Option<Vec<String>>,
    pub resources: Option<ResourcesInput>,
    #[serde(default, deserialize_with = "at_most_mounts")]
    #[schema(max_items = 96)]
    pub mounts: Option<Vec<MountInput>>,
}

/// `POST …/start` body (optional): overrides saved into the studio's configuration.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartInput {
    #[schema(max_length = 2048)]
    pub description: Option<String>,
    pub resources: Option<ResourcesInput>,
    #[serde(default, deserialize_with = "at_most_mounts")]
    #[schema(max_items = 96)]
    pub mounts: Option<Vec<MountInput>>,
}

impl StartInput {
    pub fn data_link_ids(&self) -> Vec<String> {
        data_link_ids(self.mounts.as_deref().unwrap_or_default())
    }
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

/// `PATCH …/checkpoints/{cpId}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointPatch {
    #[schema(min_length = 1, max_length = 80)]
    pub name: String,
}

/// Most items any list in a request body may have; more is a 400 while parsing, before
/// anything is read or computed from the list (`mounts` is bounded by the lock budget,
/// `condaPackages` by `MAX_CONDA_PACKAGES`, `allowedWriteBuckets` by this).
pub const MAX_WRITE_BUCKETS: usize = 50;

/// A list of at most `N` items (or `null`/absent: `None`), refused while parsing.
fn at_most<'de, D, T, const N: usize>(d: D) -> std::result::Result<Option<Vec<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    use serde::de::{Error as _, SeqAccess, Visitor};
    struct Bounded<T, const N: usize>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Bounded<T, N> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a list of at most {N} items")
        }
        fn visit_none<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(
            self,
            d: D2,
        ) -> std::result::Result<Self::Value, D2::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                if out.len() == N {
                    return Err(A::Error::custom(format!("must have at most {N} items")));
                }
                out.push(item);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(Bounded::<T, N>(std::marker::PhantomData))
}

fn at_most_mounts<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<MountInput>>, D::Error> {
    at_most::<D, MountInput, MAX_LOCK_ITEMS>(d)
}

fn at_most_conda<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<String>>, D::Error> {
    at_most::<D, String, MAX_CONDA_PACKAGES>(d)
}

fn at_most_buckets<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    at_most::<D, String, MAX_WRITE_BUCKETS>(d).map(Option::unwrap_or_default)
}

/// A field that is there, whatever its value (`null` too); absent is `None`.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<serde_json::Value>, D::Error> {
    <serde_json::Value as Deserialize>::deserialize(d).map(Some)
}

/// `POST …/studios/{id}/clone` ("start as new").
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloneInput {
    #[schema(min_length = 1, max_length = 80)]
    pub name: String,
    pub checkpoint_id: Option<String>,
    #[schema(max_length = 2048)]
    pub description: Option<String>,
    pub resources: Option<ResourcesInput>,
    #[serde(default, deserialize_with = "at_most_mounts")]
    #[schema(max_items = 96)]
    pub mounts: Option<Vec<MountInput>>,
    pub auto_start: Option<bool>,
    /// Accepted only to explain that a clone keeps them; an explicit `null` is setting
    /// them too.
    #[serde(default, deserialize_with = "present")]
    #[schema(ignore)]
    pub template: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(ignore)]
    pub compute_env_id: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(ignore)]
    pub conda_packages: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(ignore)]
    pub parent: Option<serde_json::Value>,
}

impl CloneInput {
    pub fn data_link_ids(&self) -> Vec<String> {
        data_link_ids(self.mounts.as_deref().unwrap_or_default())
    }

    /// 400 naming the first field a clone cannot set.
    pub fn check_fixed(&self) -> Result<()> {
        let fixed = [
            ("template", self.template.is_some()),
            ("computeEnvId", self.compute_env_id.is_some()),
            ("condaPackages", self.conda_packages.is_some()),
            ("parent", self.parent.is_some()),
        ];
        match fixed.into_iter().find(|(_, set)| *set) {
            Some((field, _)) => Err(fixed_for_clone(field)),
            None => Ok(()),
        }
    }
}
