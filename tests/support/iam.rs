//! Every AWS call a function's code makes in the tests, as IAM sees it (docs/iam.md,
//! "Checked against the calls the code makes"): which function (its handler name), which
//! IAM action, on which resource ARN. Written as JSON lines to the file
//! `STUDIOS_IAM_CALLS` names (infra/test.sh sets it); infra/iam-calls.py then checks each
//! against that function's role in the expanded template.
//!
//! The function is a task-local, set where the tests enter a function as Lambda would
//! (`as_function`: an API request, a Batch event, a table-stream batch, the reconciler,
//! a queue message). Calls outside any function (the tests' own fixtures) are not
//! recorded. The resource is derived from the request the SDK is about to send, by the
//! rules of AWS's Service Authorization Reference: a transaction is authorised per item,
//! HeadObject is s3:GetObject (and s3:ListBucket when the object is missing: without it
//! S3 answers 403, not 404), SubmitJob is authorised on the queue, the definition and
//! the new job (and TagResource on the job when it carries tags), RegisterJobDefinition
//! passes the container's role (iam:PassRole).

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef, Input,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// The environment variable naming the file the calls are appended to.
pub const CALLS_ENV: &str = "STUDIOS_IAM_CALLS";

/// The emulator's account (moto's default), which is also the checker's stand-in.
pub const ACCOUNT: &str = "123456789012";

/// One recorded call: IAM's `action` on `resource` (`None`: the recorder cannot derive
/// it), by `function` (a handler name), made by the SDK `operation`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Call {
    pub function: &'static str,
    pub action: String,
    pub resource: Option<String>,
    pub operation: String,
}

type Captured = Arc<Mutex<Vec<Call>>>;

/// What the current task runs as (`as_function`), and where `capture` collects.
#[derive(Clone)]
pub struct Scope {
    function: Option<&'static str>,
    /// Where `capture` collects the calls of this task (besides the file).
    captured: Option<Captured>,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Runs `work` as the function whose handler is `handler` (template.yaml's `Handler`):
/// the AWS calls it makes are that function's. `work` goes on the heap: a handler's
/// future is large in a debug build, and the tests' threads have small stacks.
pub fn as_function<F: std::future::Future>(
    handler: &'static str,
    work: F,
) -> tokio::task::futures::TaskLocalFuture<Scope, std::pin::Pin<Box<F>>> {
    write(json!({ "invoked": handler }));
    let captured = SCOPE.try_with(|s| s.captured.clone()).ok().flatten();
    SCOPE.scope(
        Scope {
            function: Some(handler),
            captured,
        },
        Box::pin(work),
    )
}

/// `work`'s output and the calls the functions it runs made (for tests of the record
/// itself; the file gets them too).
pub async fn capture<F: std::future::Future>(work: F) -> (F::Output, Vec<Call>) {
    let captured: Captured = Arc::default();
    let scope = Scope {
        function: None,
        captured: Some(captured.clone()),
    };
    let output = SCOPE.scope(scope, Box::pin(work)).await;
    let calls = std::mem::take(&mut *captured.lock().unwrap_or_else(|p| p.into_inner()));
    (output, calls)
}

/// The function the current task runs as, if any.
pub fn current_function() -> Option<&'static str> {
    SCOPE.try_with(|s| s.function).ok().flatten()
}

struct Sink {
    file: std::fs::File,
    /// Lines written so far: each distinct line once (tests repeat the same calls).
    seen: HashSet<String>,
}

static SINK: OnceLock<Option<Mutex<Sink>>> = OnceLock::new();

fn sink() -> Option<&'static Mutex<Sink>> {
    SINK.get_or_init(|| {
        let path = std::env::var_os(CALLS_ENV).filter(|p| !p.is_empty())?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{CALLS_ENV}={}: {e}", path.to_string_lossy()));
        Some(Mutex::new(Sink {
            file,
            seen: HashSet::new(),
        }))
    })
    .as_ref()
}

/// Whether calls are being recorded (`STUDIOS_IAM_CALLS` is set).
pub fn enabled() -> bool {
    sink().is_some()
}

fn write(line: Value) {
    let Some(sink) = sink() else {
        return;
    };
    let text = line.to_string();
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    if sink.seen.insert(text.clone()) {
        writeln!(sink.file, "{text}").unwrap_or_else(|e| panic!("{CALLS_ENV}: {e}"));
    }
}

/// Declares that the test's `arn` stands for the template's resource `logical_id`
/// (each test has its own table, bus, keys and queue; the checker renames them).
pub fn declare_resource(logical_id: &str, arn: &str) {
    write(json!({ "resource": logical_id, "arn": arn }));
}

/// Declares the test's job-definition name prefix (the template's JOB_DEFINITION_PREFIX).
pub fn declare_job_definition_prefix(prefix: &str) {
    write(json!({ "jobDefinitionPrefix": prefix }));
}

/// Declares a bucket the tests' compute environments keep checkpoints in (the stack
/// allows only its CheckpointBuckets there).
pub fn declare_checkpoint_bucket(bucket: &str) {
    write(json!({ "checkpointBucket": bucket }));
}

fn record(call: Call) {
    if let Ok(Some(captured)) = SCOPE.try_with(|s| s.captured.clone()) {
        captured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call.clone());
    }
    write(json!({
        "function": call.function,
        "action": call.action,
        "resource": call.resource,
        "operation": call.operation,
    }));
}

/// The interceptor on every AWS client of a test app.
#[derive(Debug, Clone)]
pub struct Recorder {
    region: String,
}

impl Recorder {
    pub fn new(region: &str) -> Recorder {
        Recorder {
            region: region.to_string(),
        }
    }

    fn arn(&self, service: &str, resource: &str) -> String {
        format!("arn:aws:{service}:{}:{ACCOUNT}:{resource}", self.region)
    }

    fn table(&self, name: &str) -> String {
        if name.starts_with("arn:") {
            name.to_string()
        } else {
            self.arn("dynamodb", &format!("table/{name}"))
        }
    }

    fn batch(&self, kind: &str, name_or_arn: &str) -> String {
        if name_or_arn.starts_with("arn:") {
            name_or_arn.to_string()
        } else {
            self.arn("batch", &format!("{kind}/{name_or_arn}"))
        }
    }

    fn key(&self, id: &str) -> String {
        if id.starts_with("arn:") {
            id.to_string()
        } else {
            self.arn("kms", &format!("key/{id}"))
        }
    }

    /// `https://sqs.<region>.amazonaws.com/<account>/<name>` (or the emulator's
    /// `http://host:port/<account>/<name>`) as its ARN.
    fn queue(&self, url: &str) -> Option<String> {
        let mut parts = url.trim_end_matches('/').rsplit('/');
        let name = parts.next()?;
        let account = parts.next()?;
        Some(format!("arn:aws:sqs:{}:{account}:{name}", self.region))
    }

    /// What IAM authorises for the request `input` of `service`'s `operation`:
    /// (action, resource); `None` as the resource: the recorder cannot say (the checker
    /// fails on it, naming the operation, so that a new call is never left unchecked).
    fn calls(
        &self,
        service: &str,
        operation: &str,
        input: &Input,
    ) -> Vec<(String, Option<String>)> {
        let prefix = match service {
            "DynamoDB" => "dynamodb",
            "S3" => "s3",
            "Batch" => "batch",
            "EventBridge" => "events",
            "SQS" => "sqs",
            "KMS" => "kms",
            other => return vec![(format!("{other}:{operation}"), None)],
        };
        let action = |a: &str| format!("{prefix}:{a}");
        let one = |a: &str, r: Option<String>| vec![(action(a), r)];
        let unknown = || vec![(action(operation), None)];
        match (prefix, operation) {
            ("dynamodb", _) => self.dynamodb(operation, input).unwrap_or_else(unknown),
            ("s3", "HeadObject") => {
                use aws_sdk_s3::operation::head_object::HeadObjectInput;
                let i = input.downcast_ref::<HeadObjectInput>();
                one(
                    "GetObject",
                    i.and_then(|i| s3_object(i.bucket()?, i.key()?)),
                )
            }
            ("s3", "GetObject") => {
                use aws_sdk_s3::operation::get_object::GetObjectInput;
                let i = input.downcast_ref::<GetObjectInput>();
                one(
                    "GetObject",
                    i.and_then(|i| s3_object(i.bucket()?, i.key()?)),
                )
            }
            ("s3", "PutObject") => {
                use aws_sdk_s3::operation::put_object::PutObjectInput;
                let i = input.downcast_ref::<PutObjectInput>();
                one(
                    "PutObject",
                    i.and_then(|i| s3_object(i.bucket()?, i.key()?)),
                )
            }
            ("s3", "ListObjectsV2") => {
                use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Input;
                let i = input.downcast_ref::<ListObjectsV2Input>();
                one("ListBucket", i.and_then(|i| i.bucket()).map(s3_bucket))
            }
            ("s3", "DeleteObjects") => {
                // Authorised as s3:DeleteObject on each object.
                use aws_sdk_s3::operation::delete_objects::DeleteObjectsInput;
                let Some(i) = input.downcast_ref::<DeleteObjectsInput>() else {
                    return unknown();
                };
                let bucket = i.bucket().unwrap_or_default();
                i.delete()
                    .map(|d| d.objects())
                    .unwrap_or_default()
                    .iter()
                    .map(|o| (action("DeleteObject"), s3_object(bucket, o.key())))
                    .collect()
            }
            ("batch", "SubmitJob") => {
                use aws_sdk_batch::operation::submit_job::SubmitJobInput;
                let Some(i) = input.downcast_ref::<SubmitJobInput>() else {
                    return unknown();
                };
                // The new job's ARN is known only from the answer (`after`).
                vec![
                    (
                        action("SubmitJob"),
                        i.job_queue().map(|q| self.batch("job-queue", q)),
                    ),
                    (
                        action("SubmitJob"),
                        i.job_definition().map(|d| self.batch("job-definition", d)),
                    ),
                ]
            }
            ("batch", "RegisterJobDefinition") => {
                use aws_sdk_batch::operation::register_job_definition::RegisterJobDefinitionInput;
                let Some(i) = input.downcast_ref::<RegisterJobDefinitionInput>() else {
                    return unknown();
                };
                let definition = i
                    .job_definition_name()
                    .map(|n| self.batch("job-definition", n));
                let mut calls = vec![(action("RegisterJobDefinition"), definition.clone())];
                if i.tags().is_some_and(|t| !t.is_empty()) {
                    calls.push((action("TagResource"), definition));
                }
                if let Some(c) = i.container_properties() {
                    for role in [c.job_role_arn(), c.execution_role_arn()]
                        .into_iter()
                        .flatten()
                    {
                        calls.push(("iam:PassRole".into(), Some(role.to_string())));
                    }
                }
                calls
            }
            ("batch", "TerminateJob") => {
                use aws_sdk_batch::operation::terminate_job::TerminateJobInput;
                let i = input.downcast_ref::<TerminateJobInput>();
                one(
                    "TerminateJob",
                    i.and_then(|i| i.job_id()).map(|j| self.batch("job", j)),
                )
            }
            // No resource-level permissions (Service Authorization Reference).
            (
                "batch",
                "DescribeJobs"
                | "ListJobs"
                | "DescribeJobQueues"
                | "DescribeComputeEnvironments"
                | "DescribeJobDefinitions",
            ) => one(operation, Some("*".into())),
            ("events", "PutEvents") => {
                use aws_sdk_eventbridge::operation::put_events::PutEventsInput;
                let Some(i) = input.downcast_ref::<PutEventsInput>() else {
                    return unknown();
                };
                i.entries()
                    .iter()
                    .map(|e| {
                        let bus = e.event_bus_name().unwrap_or("default");
                        let arn = if bus.starts_with("arn:") {
                            bus.to_string()
                        } else {
                            self.arn("events", &format!("event-bus/{bus}"))
                        };
                        (action("PutEvents"), Some(arn))
                    })
                    .collect()
            }
            ("sqs", "SendMessage") => {
                use aws_sdk_sqs::operation::send_message::SendMessageInput;
                let i = input.downcast_ref::<SendMessageInput>();
                one(
                    "SendMessage",
                    i.and_then(|i| i.queue_url()).and_then(|u| self.queue(u)),
                )
            }
            ("sqs", "ReceiveMessage") => {
                use aws_sdk_sqs::operation::receive_message::ReceiveMessageInput;
                let i = input.downcast_ref::<ReceiveMessageInput>();
                one(
                    "ReceiveMessage",
                    i.and_then(|i| i.queue_url()).and_then(|u| self.queue(u)),
                )
            }
            ("sqs", "DeleteMessage") => {
                use aws_sdk_sqs::operation::delete_message::DeleteMessageInput;
                let i = input.downcast_ref::<DeleteMessageInput>();
                one(
                    "DeleteMessage",
                    i.and_then(|i| i.queue_url()).and_then(|u| self.queue(u)),
                )
            }
            ("kms", "Sign") => {
                use aws_sdk_kms::operation::sign::SignInput;
                let i = input.downcast_ref::<SignInput>();
                one("Sign", i.and_then(|i| i.key_id()).map(|k| self.key(k)))
            }
            ("kms", "GetPublicKey") => {
                use aws_sdk_kms::operation::get_public_key::GetPublicKeyInput;
                let i = input.downcast_ref::<GetPublicKeyInput>();
                one(
                    "GetPublicKey",
                    i.and_then(|i| i.key_id()).map(|k| self.key(k)),
                )
            }
            _ => unknown(),
        }
    }

    fn dynamodb(&self, operation: &str, input: &Input) -> Option<Vec<(String, Option<String>)>> {
        use aws_sdk_dynamodb::operation::*;
        let on = |action: &str, table: Option<&str>| {
            (format!("dynamodb:{action}"), table.map(|t| self.table(t)))
        };
        Some(match operation {
            "BatchGetItem" => {
                let i = input.downcast_ref::<batch_get_item::BatchGetItemInput>()?;
                i.request_items()?
                    .keys()
                    .map(|t| on("BatchGetItem", Some(t)))
                    .collect()
            }
            "BatchWriteItem" => {
                let i = input.downcast_ref::<batch_write_item::BatchWriteItemInput>()?;
                i.request_items()?
                    .keys()
                    .map(|t| on("BatchWriteItem", Some(t)))
                    .collect()
            }
            // Authorised per item: no action is called TransactWriteItems.
            "TransactWriteItems" => {
                let i = input.downcast_ref::<transact_write_items::TransactWriteItemsInput>()?;
                i.transact_items()
                    .iter()
                    .map(|item| {
                        if let Some(c) = item.condition_check() {
                            on("ConditionCheckItem", Some(c.table_name()))
                        } else if let Some(p) = item.put() {
                            on("PutItem", Some(p.table_name()))
                        } else if let Some(u) = item.update() {
                            on("UpdateItem", Some(u.table_name()))
                        } else if let Some(d) = item.delete() {
                            on("DeleteItem", Some(d.table_name()))
                        } else {
                            ("dynamodb:TransactWriteItems".into(), None)
                        }
                    })
                    .collect()
            }
            "Query" => {
                let i = input.downcast_ref::<query::QueryInput>()?;
                let mut table = self.table(i.table_name()?);
                if let Some(index) = i.index_name() {
                    table = format!("{table}/index/{index}");
                }
                vec![("dynamodb:Query".into(), Some(table))]
            }
            "PutItem" => vec![on(
                "PutItem",
                input.downcast_ref::<put_item::PutItemInput>()?.table_name(),
            )],
            "UpdateItem" => vec![on(
                "UpdateItem",
                input
                    .downcast_ref::<update_item::UpdateItemInput>()?
                    .table_name(),
            )],
            "DeleteItem" => vec![on(
                "DeleteItem",
                input
                    .downcast_ref::<delete_item::DeleteItemInput>()?
                    .table_name(),
            )],
            "GetItem" => vec![on(
                "GetItem",
                input.downcast_ref::<get_item::GetItemInput>()?.table_name(),
            )],
            _ => return None,
        })
    }

    /// What only the answer says: the job SubmitJob made (authorised too, and tagged
    /// when the request had tags), and whether HeadObject found the object (the input
    /// is gone by then: `pending` kept what is needed of it).
    fn after(
        &self,
        pending: &Pending,
        ctx: &FinalizerInterceptorContextRef<'_>,
    ) -> Vec<(String, Option<String>)> {
        match pending.operation.as_str() {
            "SubmitJob" => {
                use aws_sdk_batch::operation::submit_job::SubmitJobOutput;
                let job = ctx
                    .output_or_error()
                    .and_then(|o| o.ok())
                    .and_then(|o| o.downcast_ref::<SubmitJobOutput>())
                    .and_then(|o| o.job_arn())
                    .map(String::from);
                let Some(job) = job else {
                    return vec![];
                };
                let mut calls = vec![("batch:SubmitJob".to_string(), Some(job.clone()))];
                if pending.tagged {
                    calls.push(("batch:TagResource".into(), Some(job)));
                }
                calls
            }
            "HeadObject" if ctx.response().is_some_and(|r| r.status().as_u16() == 404) => {
                vec![("s3:ListBucket".into(), pending.bucket.clone())]
            }
            _ => vec![],
        }
    }
}

fn s3_bucket(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

fn s3_object(bucket: &str, key: &str) -> Option<String> {
    Some(format!("arn:aws:s3:::{bucket}/{key}"))
}

/// What a call will be authorised for, kept from before it is sent to after its answer.
#[derive(Debug, Clone)]
struct Pending {
    function: &'static str,
    operation: String,
    calls: Vec<(String, Option<String>)>,
    /// SubmitJob: the job gets tags.
    tagged: bool,
    /// HeadObject: the bucket's ARN.
    bucket: Option<String>,
}

impl Storable for Pending {
    type Storer = StoreReplace<Self>;
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "IamCallRecorder"
    }

    // Not read_before_execution: client interceptors run that before the operation's
    // configuration (and so its `Metadata`) is in the bag.
    fn read_before_serialization(
        &self,
        ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let capturing = SCOPE.try_with(|s| s.captured.is_some()).unwrap_or(false);
        let Some(function) = current_function().filter(|_| enabled() || capturing) else {
            return Ok(());
        };
        let Some(metadata) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let (service, operation) = (metadata.service().to_string(), metadata.name().to_string());
        let input = ctx.input();
        let calls = self.calls(&service, &operation, input);
        let tagged = input
            .downcast_ref::<aws_sdk_batch::operation::submit_job::SubmitJobInput>()
            .and_then(|i| i.tags())
            .is_some_and(|t| !t.is_empty());
        let bucket = input
            .downcast_ref::<aws_sdk_s3::operation::head_object::HeadObjectInput>()
            .and_then(|i| i.bucket())
            .map(s3_bucket);
        cfg.interceptor_state().store_put(Pending {
            function,
            operation,
            calls,
            tagged,
            bucket,
        });
        Ok(())
    }

    fn read_after_execution(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(pending) = cfg.load::<Pending>().cloned() else {
            return Ok(());
        };
        let mut calls = pending.calls.clone();
        calls.extend(self.after(&pending, ctx));
        for (action, resource) in calls {
            record(Call {
                function: pending.function,
                action,
                resource,
                operation: pending.operation.clone(),
            });
        }
        Ok(())
    }
}

// ---- Each function is its own process ----
//
// On AWS every function runs in its own Lambda process, with its own caches: the signing
// keys' public halves (`KmsSigner`) and the job definitions known to exist
// (`BatchCompute`). One test app serves every function, so it keeps one of each per
// function; otherwise only the first function to need a cached value would be seen
// calling AWS for it, and the others' roles would go unchecked for that call.

use std::collections::HashMap;
use studios_shared::compute::{
    BatchCompute, Compute, JobDefinitions, JobSpec, QueuePlatform, SubmitError,
};
use studios_shared::connect::{KmsSigner, SignFuture, Signer};
use studios_shared::domain::lifecycle::JobReport;

/// A KMS signing key, one `KmsSigner` (one cached public key) per function.
pub struct KmsKeyPerFunction {
    client: aws_sdk_kms::Client,
    key_id: String,
    signers: Mutex<HashMap<&'static str, Arc<KmsSigner>>>,
}

impl KmsKeyPerFunction {
    pub fn new(client: aws_sdk_kms::Client, key_id: String) -> Self {
        KmsKeyPerFunction {
            client,
            key_id,
            signers: Mutex::new(HashMap::new()),
        }
    }

    fn current(&self) -> Arc<KmsSigner> {
        let mut signers = self.signers.lock().unwrap_or_else(|p| p.into_inner());
        signers
            .entry(current_function().unwrap_or_default())
            .or_insert_with(|| Arc::new(KmsSigner::new(self.client.clone(), self.key_id.clone())))
            .clone()
    }
}

impl Signer for KmsKeyPerFunction {
    type Error = studios_shared::error::Error;
    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a, Vec<u8>, Self::Error> {
        let signer = self.current();
        Box::pin(async move { signer.sign(message).await })
    }

    fn public_key(&self) -> SignFuture<'_, Vec<u8>, Self::Error> {
        let signer = self.current();
        Box::pin(async move { signer.public_key().await })
    }
}

/// AWS Batch, one `BatchCompute` (one cache of job definitions) per function.
pub struct BatchPerFunction {
    client: aws_sdk_batch::Client,
    settings: JobDefinitions,
    computes: Mutex<HashMap<&'static str, Arc<BatchCompute>>>,
}

impl BatchPerFunction {
    pub fn new(client: aws_sdk_batch::Client, settings: JobDefinitions) -> Self {
        BatchPerFunction {
            client,
            settings,
            computes: Mutex::new(HashMap::new()),
        }
    }

    fn current(&self) -> Arc<BatchCompute> {
        let mut computes = self.computes.lock().unwrap_or_else(|p| p.into_inner());
        computes
            .entry(current_function().unwrap_or_default())
            .or_insert_with(|| {
                Arc::new(BatchCompute::new(
                    self.client.clone(),
                    self.settings.clone(),
                ))
            })
            .clone()
    }
}

#[async_trait::async_trait]
impl Compute for BatchPerFunction {
    async fn queue_platform(&self, queue: &str) -> studios_shared::error::Result<QueuePlatform> {
        self.current().queue_platform(queue).await
    }

    async fn submit(&self, job: &JobSpec) -> Result<String, SubmitError> {
        self.current().submit(job).await
    }

    async fn terminate(&self, job_id: &str, reason: &str) -> studios_shared::error::Result<()> {
        self.current().terminate(job_id, reason).await
    }

    async fn describe(&self, job_ids: &[String]) -> studios_shared::error::Result<Vec<JobReport>> {
        self.current().describe(job_ids).await
    }

    async fn find_by_name(
        &self,
        queue: &str,
        name: &str,
    ) -> studios_shared::error::Result<Option<JobReport>> {
        self.current().find_by_name(queue, name).await
    }
}
