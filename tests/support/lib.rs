//! Test harness: an isolated app per test (its own table on the emulator), requests built
//! as API Gateway delivers them, and a DynamoDB request log for cost assertions.

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use studios_local::simulate::StreamReader;
use studios_shared::cleanup::SqsTasks;
use studios_shared::events::EventBridgeSink;
use studios_shared::http::{handle, Action, ApiGatewayEvent};
use studios_shared::objects::S3Objects;
use studios_shared::store::dynamo::{create_table, DynamoStore};
use studios_shared::{consumers, sessions, App, Config};

pub use studios_shared::http::Action as A;

pub mod iam;

/// The platform admin configured for every test app.
pub const PLATFORM_ADMIN: &str = "platform-admin";

/// One DynamoDB request as the SDK sent it.
#[derive(Clone, Debug)]
pub struct Sent {
    pub operation: String,
    pub start: Instant,
    pub end: Instant,
}

#[derive(Debug, Default)]
pub struct RequestLog {
    sent: Mutex<Vec<Sent>>,
}

impl RequestLog {
    pub fn take(&self) -> Vec<Sent> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

/// Requests per operation, plus sequential round trips: the longest chain of requests
/// each of which started after the previous one ended (concurrent requests overlap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cost {
    pub operations: Vec<String>,
    pub round_trips: usize,
}

pub fn cost(mut sent: Vec<Sent>) -> Cost {
    sent.sort_by_key(|s| s.end);
    let mut chain = vec![0usize; sent.len()];
    for i in 0..sent.len() {
        chain[i] = 1
            + (0..i)
                .filter(|&j| sent[j].end <= sent[i].start)
                .map(|j| chain[j])
                .max()
                .unwrap_or(0);
    }
    let mut operations: Vec<String> = sent.iter().map(|s| s.operation.clone()).collect();
    operations.sort();
    Cost {
        operations,
        round_trips: chain.into_iter().max().unwrap_or(0),
    }
}

#[derive(Debug, Clone)]
struct StartedAt(Instant);
impl Storable for StartedAt {
    type Storer = StoreReplace<Self>;
}

#[derive(Debug)]
struct Counter(Arc<RequestLog>);

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(StartedAt(Instant::now()));
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let end = Instant::now();
        let start = cfg.load::<StartedAt>().map(|s| s.0).unwrap_or(end);
        let operation = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_default();
        self.0.sent.lock().unwrap().push(Sent {
            operation,
            start,
            end,
        });
        Ok(())
    }
}

pub struct TestApp {
    pub app: App,
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    pub log: Arc<RequestLog>,
    pub sdk: aws_config::SdkConfig,
    pub batch: aws_sdk_batch::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// The app's task queue (released data, stop deadlines): `run_task_queue` is its worker.
    pub tasks_url: String,
    /// The test's own event bus, with a rule delivering everything to `events_queue`.
    pub bus: String,
    events_queue: Mutex<Option<String>>,
    stream: tokio::sync::Mutex<Option<StreamReader>>,
}

/// The bucket every test compute environment uses as its work directory.
pub const WORK_BUCKET: &str = "work-bucket";

pub const CONNECT_URL_PATTERN: &str = "https://studios.example.org/{workspaceId}/{studioId}/";

pub fn test_config(table: &str) -> Config {
    Config {
        table_name: table.to_string(),
        platform_admins: vec![PLATFORM_ADMIN.to_string()],
        template_images: studios_shared::domain::TemplateKind::ALL
            .into_iter()
            .map(|k| (k, format!("registry.example.org/studios/{}:1", k.as_str())))
            .collect(),
        event_bus: format!("{table}-bus"),
        submit_grace_seconds: 600,
        start_deadline_seconds: 3600,
        force_stop_after_seconds: 900,
        agent: studios_shared::config::AgentSettings::default(),
        relay_tunnel_addr: Some("tcp://relay.example.org:8081".into()),
        connect_key: studios_shared::config::ConnectKey::Local(
            studios_shared::connect::LocalSigner::generate().unwrap(),
        ),
        relay_key: studios_shared::config::ConnectKey::Local(
            studios_shared::connect::LocalSigner::generate().unwrap(),
        ),
        connect_url_pattern: Some(CONNECT_URL_PATTERN.into()),
        job_name_prefix: "studios-test".into(),
        stack_limits: Default::default(),
        cleanup_queue_url: None,
        image_registries: None,
        job_definitions: studios_shared::compute::JobDefinitions {
            prefix: "studios-test".into(),
            // A compute environment's session role (under the stack's SessionRolePath,
            // as the stack requires): what tests' environments without their own run with.
            job_role_arn: Some(
                "arn:aws:iam::123456789012:role/studios-sessions/studios-test-default".into(),
            ),
        },
    }
}

impl TestApp {
    /// A fresh table on the emulator, wired through the production SDK code path: its
    /// own table, signing keys (KMS) and task queue (SQS), and every AWS call a function
    /// makes recorded for the IAM check (iam.rs).
    pub async fn new() -> TestApp {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "integration tests need the local AWS emulator: run them with infra/test.sh"
        );
        let sdk = aws_config::load_from_env().await;
        let region = sdk
            .region()
            .map_or("us-east-1".to_string(), |r| r.to_string());
        let recorder = iam::Recorder::new(&region);
        let log = Arc::new(RequestLog::default());
        let dynamo_config = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(Counter(log.clone()))
            .interceptor(recorder.clone())
            .build();
        let client = aws_sdk_dynamodb::Client::from_conf(dynamo_config);
        let table = format!("studios-test-{}", uuid::Uuid::now_v7().simple());
        let batch = aws_sdk_batch::Client::from_conf(
            aws_sdk_batch::config::Builder::from(&sdk)
                .interceptor(recorder.clone())
                .build(),
        );
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .interceptor(recorder.clone())
                .build(),
        );
        let events = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(&sdk)
                .interceptor(recorder.clone())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .interceptor(recorder.clone())
                .build(),
        );
        let kms = aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(&sdk)
                .interceptor(recorder.clone())
                .build(),
        );
        // As on AWS: links and relay tokens signed by KMS keys (one each), released data
        // and stop deadlines through the task queue.
        let tasks_queue = format!("{table}-tasks");
        let (created, connect_key, relay_key, queue) = tokio::join!(
            create_table(&client, &table),
            signing_key(&kms),
            signing_key(&kms),
            sqs.create_queue().queue_name(&tasks_queue).send(),
        );
        created.expect("create table");
        let tasks_url = queue
            .expect("create the task queue")
            .queue_url()
            .expect("a queue URL")
            .to_string();
        let store = DynamoStore::new(client.clone(), table.clone());
        let mut config = test_config(&table);
        config.connect_key = studios_shared::config::ConnectKey::Kms(connect_key.clone());
        config.relay_key = studios_shared::config::ConnectKey::Kms(relay_key.clone());
        config.cleanup_queue_url = Some(tasks_url.clone());
        for (logical_id, arn) in [
            (
                "Table",
                format!("arn:aws:dynamodb:{region}:{}:table/{table}", iam::ACCOUNT),
            ),
            (
                "EventBus",
                format!(
                    "arn:aws:events:{region}:{}:event-bus/{}",
                    iam::ACCOUNT,
                    config.event_bus
                ),
            ),
            (
                "CleanupQueue",
                format!("arn:aws:sqs:{region}:{}:{tasks_queue}", iam::ACCOUNT),
            ),
            ("ConnectSigningKey", connect_key.clone()),
            ("RelayTokenKey", relay_key.clone()),
        ] {
            iam::declare_resource(logical_id, &arn);
        }
        iam::declare_job_definition_prefix(&format!(
            "arn:aws:batch:{region}:{}:job-definition/{}-",
            iam::ACCOUNT,
            config.job_definitions.prefix
        ));
        iam::declare_checkpoint_bucket(WORK_BUCKET);
        let app = App {
            store: Arc::new(store),
            compute: Arc::new(iam::BatchPerFunction::new(
                batch.clone(),
                config.job_definitions.clone(),
            )),
            objects: Arc::new(S3Objects::new(s3.clone())),
            tasks: Arc::new(SqsTasks::new(sqs.clone(), tasks_url.clone())),
            events: Arc::new(EventBridgeSink::new(events, config.event_bus.clone())),
            connect: Some(Arc::new(iam::KmsKeyPerFunction::new(
                kms.clone(),
                connect_key,
            ))),
            relay: Some(Arc::new(iam::KmsKeyPerFunction::new(kms, relay_key))),
            config: Arc::new(config),
        };
        log.take();
        TestApp {
            bus: app.config.event_bus.clone(),
            app,
            client,
            table,
            log,
            sdk,
            batch,
            s3,
            sqs,
            tasks_url,
            events_queue: Mutex::new(None),
            stream: tokio::sync::Mutex::new(None),
        }
    }

    pub fn req(&self, action: Action) -> Req<'_> {
        Req {
            t: self,
            action,
            params: Vec::new(),
            query: Vec::new(),
            claims: None,
            body: None,
            content_type: None,
            authorization: None,
        }
    }

    /// Creates a workspace (as the platform admin, its first owner) with one member per
    /// role, named after the role: "view", "connect", ..., "owner".
    pub async fn workspace_with_roles(&self) -> String {
        let ws = self
            .req(A::CreateWorkspace)
            .user(PLATFORM_ADMIN)
            .body(json!({"name": "Genomics"}))
            .send()
            .await
            .id(201);
        for role in ["view", "connect", "launch", "maintain", "admin", "owner"] {
            self.req(A::SetMember)
                .user(PLATFORM_ADMIN)
                .param("ws", &ws)
                .param("userId", role)
                .body(json!({"role": role, "name": format!("{role} user")}))
                .send()
                .await
                .ok(200);
        }
        ws
    }

    pub async fn compute_env(&self, ws: &str, extra: Value) -> String {
        let mut body = json!({
            "name": "cpu-queue",
            "region": "us-east-1",
            // A queue serves one workspace (docs/security.md, "Hosts").
            "jobQueue": format!("arn:aws:batch:us-east-1:123456789012:job-queue/studios-{}", &ws[3..]),
            "maxCpus": 16,
            "maxMemoryMiB": 65536,
            "allowedWriteBuckets": ["scratch-bucket"],
            "workDir": format!("s3://work-bucket/studios/{ws}/"),
        });
        merge(&mut body, extra);
        // The queue must exist in AWS Batch (it is checked at creation).
        if let Some(name) = body["jobQueue"]
            .as_str()
            .and_then(|q| q.strip_prefix("arn:aws:batch:us-east-1:123456789012:job-queue/"))
        {
            self.ensure_queue(name).await;
        }
        self.req(A::CreateComputeEnv)
            .user("admin")
            .param("ws", ws)
            .body(body)
            .send()
            .await
            .id(201)
    }

    pub async fn data_link(&self, ws: &str, name: &str, uri: &str, region: &str) -> String {
        self.req(A::CreateDataLink)
            .user("admin")
            .param("ws", ws)
            .body(json!({"name": name, "uri": uri, "region": region}))
            .send()
            .await
            .id(201)
    }

    pub async fn studio(&self, ws: &str, ce: &str, name: &str) -> Value {
        self.req(A::AddStudio)
            .user("maintain")
            .param("ws", ws)
            .body(json!({"name": name, "computeEnvId": ce, "template": {"kind": "jupyter"}}))
            .send()
            .await
            .ok(201)
    }
}

/// Shallow merge of `extra`'s fields into `base`.
/// A variable of the environment Studios gave a job (what the session container gets).
pub fn job_env(job: &aws_sdk_batch::types::JobDetail, name: &str) -> Option<String> {
    job.container()?
        .environment()
        .iter()
        .find(|kv| kv.name() == Some(name))
        .and_then(|kv| kv.value().map(String::from))
}

/// Where the job's session saves its checkpoint.
pub fn save_uri(job: &aws_sdk_batch::types::JobDetail) -> String {
    job_env(job, "CHECKPOINT_SAVE_URI").expect("CHECKPOINT_SAVE_URI")
}

pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
}

pub struct Req<'a> {
    t: &'a TestApp,
    action: Action,
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
    claims: Option<Vec<(String, String)>>,
    body: Option<String>,
    content_type: Option<String>,
    authorization: Option<String>,
}

impl Req<'_> {
    /// Signed in as `sub` (display name "<sub> user").
    pub fn user(mut self, sub: &str) -> Self {
        self.claims = Some(vec![
            ("sub".into(), sub.into()),
            ("name".into(), format!("{sub} user")),
        ]);
        self
    }

    pub fn claims(mut self, claims: &[(&str, &str)]) -> Self {
        self.claims = Some(
            claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }

    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body.to_string());
        self
    }

    /// `Authorization: Bearer <token>` as sent (the agent channel's credential).
    pub fn bearer(mut self, token: &str) -> Self {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    pub fn raw_body(mut self, body: &str) -> Self {
        self.body = Some(body.to_string());
        self
    }

    /// The request's Content-Type (default `application/json`; `""`: none).
    pub fn content_type(mut self, value: &str) -> Self {
        self.content_type = Some(value.to_string());
        self
    }

    pub async fn send(self) -> Resp {
        let mut path = self.action.path().to_string();
        for (k, v) in &self.params {
            path = path.replace(&format!("{{{k}}}"), v);
        }
        let event = ApiGatewayEvent {
            action: self.action,
            path: &path,
            path_params: &self.params,
            query: &self.query,
            claims: self.claims.as_deref(),
            body: self.body.as_deref(),
            content_type: match self.content_type.as_deref() {
                None => Some("application/json"),
                Some("") => None,
                other => other,
            },
            authorization: self.authorization.as_deref(),
            request_id: "test-request",
        };
        let request = event.to_request().expect("valid API Gateway event");
        let response = iam::as_function(
            self.action.handler_name(),
            handle(&self.t.app, self.action, request),
        )
        .await;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let body: &[u8] = response.body().as_ref();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).expect("JSON response")
        };
        Resp {
            status,
            json,
            retry_after,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub json: Value,
    pub retry_after: Option<String>,
}

impl Resp {
    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn ok(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected response: {}", self.json);
        self.json
    }

    /// Asserts the status and returns the `id` of the created resource.
    #[track_caller]
    pub fn id(self, status: u16) -> String {
        self.ok(status)["id"]
            .as_str()
            .expect("an id in the response")
            .to_string()
    }

    /// Asserts an error response and returns (code, message).
    #[track_caller]
    pub fn err(self, status: u16) -> (String, String) {
        assert_eq!(self.status, status, "unexpected response: {}", self.json);
        let e = &self.json["error"];
        (
            e["code"].as_str().expect("error.code").to_string(),
            e["message"].as_str().expect("error.message").to_string(),
        )
    }
}

/// The lifecycle's real (emulated) AWS surroundings for one test.
pub struct Fixtures {
    pub queue_arn: String,
}

impl TestApp {
    fn suffix(&self) -> &str {
        self.table.trim_start_matches("studios-test-")
    }

    /// An emulated AWS Batch job queue, the work bucket, and the event bus delivering
    /// every status event to an SQS queue the test reads.
    /// A role in the emulated IAM (a service role for Batch compute environments).
    pub async fn iam_role(&self, name: &str) -> String {
        aws_sdk_iam_role(&self.sdk, &format!("{name}-{}", self.suffix())).await
    }

    /// An emulated AWS Batch job queue named `name` (with an EC2-style unmanaged compute
    /// environment), created unless it exists; its ARN.
    pub async fn ensure_queue(&self, name: &str) -> String {
        let known = self
            .batch
            .describe_job_queues()
            .job_queues(name)
            .send()
            .await
            .ok()
            .and_then(|o| {
                o.job_queues()
                    .first()
                    .and_then(|q| q.job_queue_arn().map(String::from))
            });
        if let Some(arn) = known {
            return arn;
        }
        let iam = aws_sdk_iam_role(&self.sdk, &format!("{name}-{}", self.suffix())).await;
        let ce = self
            .batch
            .create_compute_environment()
            .compute_environment_name(format!("ce-{name}-{}", self.suffix()))
            .r#type(aws_sdk_batch::types::CeType::Unmanaged)
            .state(aws_sdk_batch::types::CeState::Enabled)
            .service_role(iam)
            .send()
            .await
            .expect("create compute environment");
        let created = self
            .batch
            .create_job_queue()
            .job_queue_name(name)
            .state(aws_sdk_batch::types::JqState::Enabled)
            .priority(1)
            .compute_environment_order(
                aws_sdk_batch::types::ComputeEnvironmentOrder::builder()
                    .order(1)
                    .compute_environment(ce.compute_environment_arn().unwrap())
                    .build(),
            )
            .send()
            .await;
        match created {
            Ok(q) => q.job_queue_arn().unwrap().to_string(),
            // Another test made it meanwhile.
            Err(_) => format!("arn:aws:batch:us-east-1:123456789012:job-queue/{name}"),
        }
    }

    pub async fn fixtures(&self) -> Fixtures {
        let queue_arn = self.ensure_queue(&format!("q-{}", self.suffix())).await;
        let _ = self.s3.create_bucket().bucket(WORK_BUCKET).send().await;
        let events = aws_sdk_eventbridge::Client::new(&self.sdk);
        events
            .create_event_bus()
            .name(&self.bus)
            .send()
            .await
            .expect("create bus");
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let url = sqs
            .create_queue()
            .queue_name(format!("events-{}", self.suffix()))
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .unwrap()
            .to_string();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        events
            .put_rule()
            .name("all-studio-events")
            .event_bus_name(&self.bus)
            .event_pattern(json!({"source": ["studios"]}).to_string())
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule("all-studio-events")
            .event_bus_name(&self.bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("sqs")
                    .arn(arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        *self.events_queue.lock().unwrap() = Some(url);
        Fixtures { queue_arn }
    }

    /// The job as AWS Batch describes it.
    pub async fn job(&self, job_id: &str) -> aws_sdk_batch::types::JobDetail {
        self.batch
            .describe_jobs()
            .jobs(job_id)
            .send()
            .await
            .unwrap()
            .jobs()
            .first()
            .cloned()
            .expect("job known to Batch")
    }

    /// A `Batch Job State Change` event for `job` in `status` (with a field AWS may add
    /// later, which the consumer must tolerate).
    pub fn job_event(
        &self,
        job: &aws_sdk_batch::types::JobDetail,
        status: &str,
        started: bool,
        reason: Option<&str>,
        exit_code: Option<i32>,
    ) -> Value {
        let mut event = studios_shared::compute::job_state_change_event(
            job, status, started, reason, exit_code,
        );
        event["detail"]["someFieldAddedLater"] = json!({"ignored": true});
        event
    }

    /// Delivers an EventBridge event to the Batch event consumer, as Lambda would.
    pub async fn deliver(&self, event: &Value) -> sessions::Applied {
        iam::as_function(
            consumers::BATCH_EVENTS_HANDLER,
            consumers::on_batch_event(&self.app, event),
        )
        .await
        .expect("the consumer acknowledges the event")
    }

    /// The reconciler's scheduled run, as its function.
    pub async fn reconcile(&self) -> consumers::ReconcileReport {
        iam::as_function(
            consumers::RECONCILE_HANDLER,
            consumers::reconcile(&self.app),
        )
        .await
        .expect("the reconciler runs")
    }

    /// The task queue's worker, as Lambda's SQS trigger runs it (messages received and
    /// deleted with the worker's role): every message due so far, until none is left.
    /// Returns how many it ran.
    pub async fn run_task_queue(&self) -> usize {
        use studios_shared::cleanup::{QueuedTask, CLEANUP_HANDLER};
        use studios_shared::consumers::run_queued;
        let mut ran = 0;
        loop {
            let out = iam::as_function(
                CLEANUP_HANDLER,
                self.sqs
                    .receive_message()
                    .queue_url(&self.tasks_url)
                    .max_number_of_messages(10)
                    .send(),
            )
            .await
            .expect("receive from the task queue");
            if out.messages().is_empty() {
                return ran;
            }
            for message in out.messages() {
                let task: QueuedTask = serde_json::from_str(message.body().unwrap_or_default())
                    .expect("a task of the queue");
                iam::as_function(CLEANUP_HANDLER, async {
                    run_queued(&self.app, &task).await.expect("the task runs");
                    self.sqs
                        .delete_message()
                        .queue_url(&self.tasks_url)
                        .receipt_handle(message.receipt_handle().unwrap_or_default())
                        .send()
                        .await
                        .expect("delete the task")
                })
                .await;
                ran += 1;
            }
        }
    }

    /// What the session container does on SIGTERM: write the checkpoint, manifest last.
    pub async fn write_manifest(&self, save_uri: &str) {
        let key = save_uri
            .strip_prefix(&format!("s3://{WORK_BUCKET}/"))
            .expect("save URI under the work bucket");
        self.s3
            .put_object()
            .bucket(WORK_BUCKET)
            .key(format!("{key}manifest.json"))
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"{\"files\": []}",
            ))
            .send()
            .await
            .unwrap();
    }

    /// Runs the table-stream consumer over the stream records so far, as the stream's
    /// Lambda trigger would. Returns how many status events it published.
    pub async fn publish_status_events(&self) -> usize {
        self.process_stream().await.published
    }

    /// The table-stream consumer over the records so far: events, then clean-up.
    pub async fn process_stream(&self) -> consumers::StreamReport {
        let mut reader = self.stream.lock().await;
        let reader = reader.get_or_insert_with(|| StreamReader::new(&self.sdk, &self.table));
        let changes = reader.next_changes().await.expect("stream records");
        let report = iam::as_function(
            consumers::TABLE_STREAM_HANDLER,
            consumers::on_table_changes(&self.app, &changes),
        )
        .await
        .unwrap();
        // What the stream enqueued (released checkpoint data), deleted by the worker.
        self.run_task_queue().await;
        report
    }

    /// The events delivered to the test's queue so far (EventBridge envelopes).
    pub async fn received_events(&self) -> Vec<Value> {
        let url = self
            .events_queue
            .lock()
            .unwrap()
            .clone()
            .expect("fixtures()");
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut events = Vec::new();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            if out.messages().is_empty() {
                return events;
            }
            for m in out.messages() {
                events.push(serde_json::from_str(m.body().unwrap()).unwrap());
                sqs.delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// Lock items of a workspace that still hold or mark anything.
    /// Every `LOCK#` item of the workspace, live or not.
    async fn lock_rows(
        &self,
        ws: &str,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :l)")
            .expression_attribute_values(":pk", AttributeValue::S(format!("WS#{ws}")))
            .expression_attribute_values(":l", AttributeValue::S("LOCK#".into()))
            .send()
            .await
            .unwrap()
            .items()
            .to_vec()
    }

    pub async fn lock_items(&self, ws: &str) -> usize {
        self.lock_rows(ws).await.len()
    }

    /// The lock items that hold a path or carry an intent.
    pub async fn live_locks(&self, ws: &str) -> Vec<String> {
        self.lock_rows(ws)
            .await
            .iter()
            .filter(|i| i.contains_key("holderAttempt") || i.contains_key("intents"))
            .map(|i| i["SK"].as_s().unwrap().clone())
            .collect()
    }
}

/// A KMS key for ES256 signatures (as the stack's ConnectSigningKey and RelayTokenKey);
/// its ARN.
async fn signing_key(kms: &aws_sdk_kms::Client) -> String {
    kms.create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .expect("create a signing key")
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("the key's ARN")
        .to_string()
}

/// moto checks that a compute environment's service role exists.
async fn aws_sdk_iam_role(sdk: &aws_config::SdkConfig, suffix: &str) -> String {
    let endpoint = sdk.endpoint_url().expect("emulator endpoint").to_string();
    create_role_via_query_api(&endpoint, &format!("batch-{suffix}")).await
}

/// IAM's query API, called directly: one role is all the tests need, not an SDK crate.
async fn create_role_via_query_api(endpoint: &str, name: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let body = format!(
        "Action=CreateRole&Version=2010-05-08&RoleName={name}&AssumeRolePolicyDocument=%7B%7D"
    );
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=x\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "CreateRole: {response}"
    );
    format!("arn:aws:iam::123456789012:role/{name}")
}
