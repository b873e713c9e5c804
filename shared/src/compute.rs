//! The compute port (AWS Batch runs each session) and its adapter.

use crate::domain::lifecycle::{attempt_from_job_name, BatchStatus, JobReport};
use crate::error::{Error, Result};
use async_trait::async_trait;
use aws_sdk_batch::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_batch::types::{
    ContainerOverrides, ContainerProperties, JobDefinitionType, KeyValuePair, KeyValuesPair,
    ResourceRequirement, ResourceType, RetryStrategy,
};
use aws_sdk_batch::Client;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Tags every session job carries, for people (cost allocation, the console). Events
/// and the reconciler find a job's studio by its name (`JobName`), not by these.
pub const TAG_WORKSPACE: &str = "studios:workspace-id";
pub const TAG_STUDIO: &str = "studios:studio-id";
pub const TAG_ATTEMPT: &str = "studios:attempt-id";

#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub queue: String,
    pub image: String,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub gpus: u32,
    pub environment: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// The session's IAM role (its compute environment's); `None`: the stack's default.
    pub job_role_arn: Option<String>,
    /// The session mounts S3 paths (mount-s3 needs FUSE: `/dev/fuse` and a privileged
    /// container, which AWS Batch offers instead of single capabilities).
    pub fuse: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Batch refused the job (unknown queue, bad parameters): it will not run.
    #[error("AWS Batch refused the job: {0}")]
    Rejected(String),
    /// Throttled or Batch failing: nothing was submitted; retry later.
    #[error("AWS Batch is busy")]
    Throttled,
    /// No answer (timeout, connection lost): the job may or may not exist.
    #[error("no answer from AWS Batch: {0}")]
    Unknown(String),
}

/// What runs a job queue's jobs (its compute environments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueuePlatform {
    /// ECS on EC2 instances (on-demand or Spot, managed or not): what sessions need.
    Ec2,
    /// Fargate: no GPUs, no FUSE (S3 mounts), not supported.
    Fargate,
    /// Amazon EKS: not supported (sessions are ECS container jobs).
    Eks,
    /// AWS Batch has no such queue.
    Missing,
}

#[async_trait]
pub trait Compute: Send + Sync {
    /// What runs `queue`'s jobs (checked when a compute environment is created).
    async fn queue_platform(&self, queue: &str) -> Result<QueuePlatform>;
    /// Submits a job; returns its id.
    async fn submit(&self, job: &JobSpec) -> Result<String, SubmitError>;
    async fn terminate(&self, job_id: &str, reason: &str) -> Result<()>;
    /// The jobs Batch still knows among `job_ids` (finished jobs vanish after ~24 h).
    async fn describe(&self, job_ids: &[String]) -> Result<Vec<JobReport>>;
    /// A job of `queue` named `name`, if Batch knows one.
    async fn find_by_name(&self, queue: &str, name: &str) -> Result<Option<JobReport>>;
}

/// How the stack's job definitions are named and what role their containers get.
#[derive(Clone, Debug, Default)]
pub struct JobDefinitions {
    /// Per stack, so two stacks in one account never share a definition
    /// (`JOB_DEFINITION_PREFIX`).
    pub prefix: String,
    /// The IAM role the session containers run with (`JOB_ROLE_ARN`).
    pub job_role_arn: Option<String>,
}

/// AWS Batch. Job definitions are registered per image (Batch cannot override the image)
/// under a name derived from the image and job role, idempotently, and remembered for
/// the process.
pub struct BatchCompute {
    client: Client,
    settings: JobDefinitions,
    /// Definitions known to exist (registered or found), by name.
    definitions: Mutex<std::collections::HashSet<String>>,
}

impl BatchCompute {
    pub fn new(client: Client, settings: JobDefinitions) -> Self {
        BatchCompute {
            client,
            settings,
            definitions: Mutex::new(Default::default()),
        }
    }

    /// The role a job runs with: its own, else the stack's default.
    fn role<'a>(&'a self, job_role: Option<&'a str>) -> Option<&'a str> {
        job_role.or(self.settings.job_role_arn.as_deref())
    }

    pub fn definition_name(&self, image: &str, job_role: Option<&str>, fuse: bool) -> String {
        let mut digest = Sha256::new();
        digest.update(image.as_bytes());
        digest.update(b"\0");
        digest.update(self.role(job_role).unwrap_or_default());
        if fuse {
            digest.update(b"\0fuse");
        }
        // The definition's settings changed (init process, /dev/shm): a new name, so a
        // stack that registered the older one registers this one.
        digest.update(b"\0v2");
        let hex: String = digest.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}-{hex}", self.settings.prefix)
    }

    async fn ensure_definition(
        &self,
        image: &str,
        job_role: Option<&str>,
        fuse: bool,
    ) -> Result<String, SubmitError> {
        let name = self.definition_name(image, job_role, fuse);
        if self.cached(&name) {
            return Ok(name);
        }
        let existing = self
            .client
            .describe_job_definitions()
            .job_definition_name(&name)
            .status("ACTIVE")
            .send()
            .await
            .map_err(submit_error)?;
        if existing.job_definitions().is_empty() {
            let resources = vec![
                resource(ResourceType::Vcpu, 1),
                resource(ResourceType::Memory, 2048),
            ];
            self.client
                .register_job_definition()
                .job_definition_name(&name)
                .r#type(JobDefinitionType::Container)
                .container_properties(container_properties(
                    image,
                    self.role(job_role),
                    resources,
                    &SessionContainer::new(fuse),
                ))
                // A session is never retried: its states only move forward (docs/architecture.md, "The status machine").
                .retry_strategy(RetryStrategy::builder().attempts(1).build())
                .propagate_tags(true)
                .send()
                .await
                .map_err(submit_error)?;
        }
        if let Ok(mut cache) = self.definitions.lock() {
            cache.insert(name.clone());
        }
        Ok(name)
    }

    fn cached(&self, name: &str) -> bool {
        self.definitions
            .lock()
            .is_ok_and(|cache| cache.contains(name))
    }
}

/// `/dev/shm` of a session (Docker's default is 64 MiB, too small for PyTorch's data
/// loaders and for browsers in Xpra desktops). Pages used there count against the job's
/// memory, so a large size costs nothing until used.
pub const SHARED_MEMORY_MIB: i32 = 4096;

/// What a session's container gets beyond its image and role, decided in one place for
/// AWS Batch's job definition (and for anything that runs the same container locally).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionContainer {
    /// An init process as PID 1 (`initProcessEnabled`): it reaps the IDE's orphans and
    /// passes SIGTERM on to the agent, which would otherwise be PID 1 and reap nothing.
    pub init: bool,
    pub shared_memory_mib: i32,
    /// `/dev/fuse` and privileged mode for mount-s3 (Batch's linuxParameters cannot add
    /// SYS_ADMIN alone): only for sessions with mounts (docs/agent.md).
    pub fuse: bool,
}

impl SessionContainer {
    pub fn new(fuse: bool) -> SessionContainer {
        SessionContainer {
            init: true,
            shared_memory_mib: SHARED_MEMORY_MIB,
            fuse,
        }
    }
}

/// A session's container as AWS Batch registers it.
fn container_properties(
    image: &str,
    role: Option<&str>,
    resources: Vec<aws_sdk_batch::types::ResourceRequirement>,
    container: &SessionContainer,
) -> ContainerProperties {
    use aws_sdk_batch::types::{Device, DeviceCgroupPermission, LinuxParameters};
    let mut linux = LinuxParameters::builder()
        .init_process_enabled(container.init)
        .shared_memory_size(container.shared_memory_mib);
    let mut props = ContainerProperties::builder()
        .image(image)
        .set_job_role_arn(role.map(String::from))
        .set_resource_requirements(Some(resources));
    if container.fuse {
        let device = Device::builder()
            .host_path("/dev/fuse")
            .container_path("/dev/fuse")
            .permissions(DeviceCgroupPermission::Read)
            .permissions(DeviceCgroupPermission::Write)
            .permissions(DeviceCgroupPermission::Mknod)
            .build();
        linux = linux.devices(device);
        props = props.privileged(true);
    }
    props.linux_parameters(linux.build()).build()
}

fn submit_error<E>(err: SdkError<E>) -> SubmitError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            SubmitError::Unknown(
                aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
            )
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code();
            let status = se.raw().status().as_u16();
            match classify_service_error(code, status) {
                Refusal::Busy => {
                    tracing::warn!(code, status, "AWS Batch is busy");
                    SubmitError::Throttled
                }
                Refusal::Refused => {
                    let code = code.unwrap_or("an error");
                    let message = se.err().message().unwrap_or("the request was refused");
                    // A deployer's problem (IAM, a queue, a definition): say it loudly.
                    tracing::error!(code, status, message, "AWS Batch refused the request");
                    SubmitError::Rejected(refusal_reason(code, message))
                }
            }
        }
        _ => SubmitError::Unknown(err.to_string()),
    }
}

/// How an AWS service error of a submit is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Throttling, or AWS failing (5xx): nothing was submitted; try again shortly.
    Busy,
    /// Anything else (access denied, a bad request, a missing queue): it will not
    /// work by waiting; the studio errors with the reason.
    Refused,
}

pub fn classify_service_error(code: Option<&str>, http_status: u16) -> Refusal {
    const THROTTLING: [&str; 8] = [
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    ];
    let throttled = code.is_some_and(|c| THROTTLING.contains(&c));
    if throttled || http_status == 429 || http_status >= 500 {
        Refusal::Busy
    } else {
        Refusal::Refused
    }
}

/// The studio's `statusReason` for a refused submit: the AWS error code and message,
/// and for access denials where a deployer looks first.
fn refusal_reason(code: &str, message: &str) -> String {
    let hint = if code.contains("AccessDenied") || code == "UnauthorizedOperation" {
        " (the stack's IAM policies do not allow it: see docs/iam.md)"
    } else {
        ""
    };
    let message: String = message.chars().take(600).collect();
    format!("{code}: {message}{hint}")
}

fn batch_error<E>(err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    crate::error::aws(err)
}

fn resource(t: ResourceType, v: u32) -> ResourceRequirement {
    ResourceRequirement::builder()
        .r#type(t)
        .value(v.to_string())
        .build()
}

#[allow(clippy::too_many_arguments)]
fn report_from(
    job_id: &str,
    job_name: &str,
    queue: Option<&str>,
    definition: Option<&str>,
    status: Option<&str>,
    reason: Option<&str>,
    started: bool,
    container: Option<(Option<&str>, Option<i32>)>,
    tags: Option<&HashMap<String, String>>,
) -> Option<JobReport> {
    let status = BatchStatus::parse(status?)?;
    let attempt = attempt_from_job_name(job_name)
        .map(String::from)
        .or_else(|| tags.and_then(|t| t.get(TAG_ATTEMPT).cloned()));
    Some(JobReport {
        job_id: job_id.to_string(),
        job_name: job_name.to_string(),
        attempt_id: attempt,
        queue: queue.map(String::from),
        definition: definition.map(String::from),
        status,
        status_reason: reason.map(String::from),
        container_reason: container.and_then(|c| c.0).map(String::from),
        exit_code: container.and_then(|c| c.1).map(i64::from),
        started,
    })
}

#[async_trait]
impl Compute for BatchCompute {
    async fn queue_platform(&self, queue: &str) -> Result<QueuePlatform> {
        use aws_sdk_batch::types::{CrType, OrchestrationType};
        let out = self
            .client
            .describe_job_queues()
            .job_queues(queue)
            .send()
            .await
            .map_err(batch_error)?;
        let Some(q) = out.job_queues().first() else {
            return Ok(QueuePlatform::Missing);
        };
        let envs: Vec<String> = q
            .compute_environment_order()
            .iter()
            .filter_map(|o| o.compute_environment().map(String::from))
            .collect();
        if envs.is_empty() {
            return Ok(QueuePlatform::Ec2);
        }
        let out = self
            .client
            .describe_compute_environments()
            .set_compute_environments(Some(envs))
            .send()
            .await
            .map_err(batch_error)?;
        let mut platform = QueuePlatform::Ec2;
        for env in out.compute_environments() {
            if env.container_orchestration_type() == Some(&OrchestrationType::Eks) {
                return Ok(QueuePlatform::Eks);
            }
            let kind = env.compute_resources().and_then(|r| r.r#type());
            if matches!(kind, Some(CrType::Fargate) | Some(CrType::FargateSpot)) {
                platform = QueuePlatform::Fargate;
            }
        }
        Ok(platform)
    }

    async fn submit(&self, job: &JobSpec) -> Result<String, SubmitError> {
        let definition = self
            .ensure_definition(&job.image, job.job_role_arn.as_deref(), job.fuse)
            .await?;
        let mut resources = vec![
            resource(ResourceType::Vcpu, job.vcpus),
            resource(ResourceType::Memory, job.memory_mib),
        ];
        if job.gpus > 0 {
            resources.push(resource(ResourceType::Gpu, job.gpus));
        }
        let environment = job
            .environment
            .iter()
            .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
            .collect();
        let out = self
            .client
            .submit_job()
            .job_name(&job.name)
            .job_queue(&job.queue)
            .job_definition(definition)
            .container_overrides(
                ContainerOverrides::builder()
                    .set_environment(Some(environment))
                    .set_resource_requirements(Some(resources))
                    .build(),
            )
            .retry_strategy(RetryStrategy::builder().attempts(1).build())
            .propagate_tags(true)
            .set_tags(Some(job.tags.iter().cloned().collect()))
            // SubmitJob has no idempotency token: an SDK retry after a lost response can
            // start a second job. One attempt; a lost answer is `Unknown`, and the
            // reconciler adopts the job by its name (or errors the start after the grace).
            .customize()
            .config_override(
                aws_sdk_batch::config::Builder::new()
                    .retry_config(aws_sdk_batch::config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(submit_error)?;
        out.job_id()
            .map(String::from)
            .ok_or_else(|| SubmitError::Unknown("SubmitJob returned no job id".into()))
    }

    async fn terminate(&self, job_id: &str, reason: &str) -> Result<()> {
        self.client
            .terminate_job()
            .job_id(job_id)
            .reason(reason)
            .send()
            .await
            .map_err(batch_error)?;
        Ok(())
    }

    async fn describe(&self, job_ids: &[String]) -> Result<Vec<JobReport>> {
        let mut reports = Vec::new();
        for chunk in job_ids.chunks(100) {
            let out = self
                .client
                .describe_jobs()
                .set_jobs(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(batch_error)?;
            for job in out.jobs() {
                let container = job.container().map(|c| (c.reason(), c.exit_code()));
                reports.extend(report_from(
                    job.job_id().unwrap_or_default(),
                    job.job_name().unwrap_or_default(),
                    job.job_queue(),
                    job.job_definition(),
                    job.status().map(|s| s.as_str()),
                    job.status_reason(),
                    job.started_at().is_some(),
                    container,
                    job.tags(),
                ));
            }
        }
        Ok(reports)
    }

    async fn find_by_name(&self, queue: &str, name: &str) -> Result<Option<JobReport>> {
        let out = self
            .client
            .list_jobs()
            .job_queue(queue)
            .filters(
                KeyValuesPair::builder()
                    .name("JOB_NAME")
                    .values(name)
                    .build(),
            )
            .send()
            .await
            .map_err(batch_error)?;
        let Some(job) = out
            .job_summary_list()
            .iter()
            .find(|j| j.job_name() == Some(name))
        else {
            return Ok(None);
        };
        let container = job.container().map(|c| (c.reason(), c.exit_code()));
        Ok(report_from(
            job.job_id().unwrap_or_default(),
            job.job_name().unwrap_or_default(),
            Some(queue),
            job.job_definition(),
            job.status().map(|s| s.as_str()),
            job.status_reason(),
            job.started_at().is_some(),
            container,
            None,
        ))
    }
}

/// A `Batch Job State Change` EventBridge event for `job` in `status`, shaped like AWS's
/// documented example (the detail mirrors DescribeJobs). The local run delivers these for
/// the jobs it simulates; tests use them as fixtures (feature `local`).
#[cfg(any(test, feature = "local"))]
pub fn job_state_change_event(
    job: &aws_sdk_batch::types::JobDetail,
    status: &str,
    started: bool,
    reason: Option<&str>,
    exit_code: Option<i32>,
) -> serde_json::Value {
    use serde_json::json;
    // AWS's documented example carries only `resourceArn` in `tags`, not the job's own
    // tags: the consumer must not need them, so neither do these events.
    let tags = json!({"resourceArn": job.job_arn()});
    let mut detail = json!({
        "jobArn": job.job_arn(),
        "jobName": job.job_name(),
        "jobId": job.job_id(),
        "jobQueue": job.job_queue(),
        "status": status,
        "attempts": [],
        "createdAt": job.created_at(),
        "retryStrategy": {"attempts": 1},
        "dependsOn": [],
        "jobDefinition": job.job_definition(),
        "parameters": {},
        "container": {
            "image": job.container().and_then(|c| c.image()),
            "command": [],
            "volumes": [],
            "environment": [],
            "mountPoints": [],
            "ulimits": [],
            "resourceRequirements": [],
            "secrets": [],
        },
        "tags": tags,
        "propagateTags": true,
        "platformCapabilities": [],
    });
    if started {
        detail["startedAt"] = json!(job.started_at().unwrap_or(1_764_000_060_000));
    }
    if let Some(r) = reason {
        detail["statusReason"] = json!(r);
    }
    if let Some(code) = exit_code {
        detail["container"]["exitCode"] = json!(code);
        detail["stoppedAt"] = json!(job.stopped_at().unwrap_or(1_764_000_900_000));
    }
    json!({
        "version": "0",
        "id": uuid::Uuid::now_v7().to_string(),
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "account": job.job_arn().and_then(|a| a.split(':').nth(4)).unwrap_or("000000000000"),
        "time": crate::clock::now(),
        "region": job.job_arn().and_then(|a| a.split(':').nth(3)).unwrap_or("us-east-1"),
        "resources": [job.job_arn()],
        "detail": detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compute(prefix: &str, role: Option<&str>) -> BatchCompute {
        let config = aws_sdk_batch::Config::builder()
            .behavior_version(aws_sdk_batch::config::BehaviorVersion::latest())
            .region(aws_sdk_batch::config::Region::new("us-east-1"))
            .build();
        BatchCompute::new(
            Client::from_conf(config),
            JobDefinitions {
                prefix: prefix.into(),
                job_role_arn: role.map(String::from),
            },
        )
    }

    fn service_error(code: &str, status: u16) -> SubmitError {
        use aws_sdk_batch::operation::submit_job::SubmitJobError;
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;
        let err = SubmitJobError::generic(
            ErrorMetadata::builder()
                .code(code)
                .message("User: arn:aws:sts::1:assumed-role/x is not authorized")
                .build(),
        );
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        submit_error(SdkError::service_error(err, raw))
    }

    /// SubmitJob is sent once, never retried by the SDK (a retry could start a second
    /// job): a server that answers 500 sees exactly one request.
    #[tokio::test]
    async fn submit_is_never_retried() {
        let server = crate::test_server::answering(
            500,
            "Internal Server Error",
            r#"{"__type":"ServerException","message":"boom"}"#,
        )
        .await;
        let compute = compute_at(&server.endpoint);
        let name = compute.definition_name("img", None, false);
        compute.definitions.lock().unwrap().insert(name);
        let job = JobSpec {
            name: "j".into(),
            queue: "q".into(),
            image: "img".into(),
            vcpus: 1,
            memory_mib: 2048,
            gpus: 0,
            environment: vec![],
            tags: vec![],
            job_role_arn: None,
            fuse: false,
        };
        let out = compute.submit(&job).await;
        assert!(matches!(out, Err(SubmitError::Throttled)), "{out:?}");
        assert_eq!(server.requests(), 1);
    }

    /// The platform of a queue comes from its compute environments: Fargate and EKS
    /// ones are told apart from EC2 (the server answers both Describe calls with one body
    /// holding both lists).
    #[tokio::test]
    async fn queue_platforms_are_read_from_batch() {
        for (resources, orchestration, want) in [
            (
                r#"{"type":"FARGATE","maxvCpus":16,"subnets":[]}"#,
                "ECS",
                QueuePlatform::Fargate,
            ),
            (
                r#"{"type":"FARGATE_SPOT","maxvCpus":16,"subnets":[]}"#,
                "ECS",
                QueuePlatform::Fargate,
            ),
            (
                r#"{"type":"EC2","maxvCpus":16,"subnets":[]}"#,
                "ECS",
                QueuePlatform::Ec2,
            ),
            (
                r#"{"type":"SPOT","maxvCpus":16,"subnets":[]}"#,
                "EKS",
                QueuePlatform::Eks,
            ),
        ] {
            let body = format!(
                r#"{{"jobQueues":[{{"jobQueueName":"q","jobQueueArn":"arn:aws:batch:us-east-1:1:job-queue/q","state":"ENABLED","priority":1,"computeEnvironmentOrder":[{{"order":1,"computeEnvironment":"arn:aws:batch:us-east-1:1:compute-environment/c"}}]}}],"computeEnvironments":[{{"computeEnvironmentName":"c","computeEnvironmentArn":"arn:aws:batch:us-east-1:1:compute-environment/c","type":"MANAGED","containerOrchestrationType":"{orchestration}","computeResources":{resources}}}]}}"#
            );
            let server =
                crate::test_server::answering(200, "OK", Box::leak(body.into_boxed_str())).await;
            let platform = compute_at(&server.endpoint)
                .queue_platform("arn:aws:batch:us-east-1:1:job-queue/q")
                .await
                .unwrap();
            assert_eq!(platform, want, "{resources} {orchestration}");
        }
        let server = crate::test_server::answering(200, "OK", r#"{"jobQueues":[]}"#).await;
        let platform = compute_at(&server.endpoint)
            .queue_platform("q")
            .await
            .unwrap();
        assert_eq!(platform, QueuePlatform::Missing);
    }

    fn compute_at(endpoint: &str) -> BatchCompute {
        let config = aws_sdk_batch::Config::builder()
            .behavior_version(aws_sdk_batch::config::BehaviorVersion::latest())
            .region(aws_sdk_batch::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_batch::config::Credentials::new(
                "a", "b", None, None, "test",
            ))
            .build();
        BatchCompute::new(Client::from_conf(config), JobDefinitions::default())
    }

    #[test]
    fn only_throttling_and_aws_failures_are_busy() {
        for (code, status) in [
            ("TooManyRequestsException", 429),
            ("ThrottlingException", 400),
            ("ServerException", 500),
            ("ServiceUnavailable", 503),
        ] {
            assert!(
                matches!(service_error(code, status), SubmitError::Throttled),
                "{code}"
            );
        }
        for (code, status) in [
            ("AccessDeniedException", 403),
            ("ClientException", 400),
            ("UnrecognizedClientException", 403),
            ("ValidationException", 400),
        ] {
            match service_error(code, status) {
                SubmitError::Rejected(reason) => {
                    assert!(reason.starts_with(&format!("{code}: User: ")), "{reason}");
                    assert_eq!(
                        reason.contains("docs/iam.md"),
                        code.contains("AccessDenied")
                    );
                }
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn definition_names_are_per_stack_image_and_role() {
        let a = compute("stack-a-studio", Some("arn:aws:iam::1:role/a"));
        let name = a.definition_name("img:1", None, false);
        assert!(name.starts_with("stack-a-studio-"), "{name}");
        assert_eq!(name.len(), "stack-a-studio-".len() + 16);
        assert_eq!(name, a.definition_name("img:1", None, false), "stable");
        assert_ne!(name, a.definition_name("img:2", None, false));
        let other_role = compute("stack-a-studio", Some("arn:aws:iam::1:role/b"));
        assert_ne!(name, other_role.definition_name("img:1", None, false));
        let other_stack = compute("stack-b-studio", Some("arn:aws:iam::1:role/a"));
        assert_ne!(name, other_stack.definition_name("img:1", None, false));
        // Sessions that mount S3 paths (FUSE, privileged): their own definition.
        assert_ne!(name, a.definition_name("img:1", None, true));
        // A compute environment's own role: its own definition.
        let own = a.definition_name("img:1", Some("arn:aws:iam::1:role/sessions/ws-x"), false);
        assert_ne!(name, own);
        assert_eq!(
            own,
            other_role.definition_name("img:1", Some("arn:aws:iam::1:role/sessions/ws-x"), false)
        );
    }
}
