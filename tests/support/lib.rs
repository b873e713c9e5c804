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
use studios_shared::http::{handle, Action, ApiGatewayEvent};
use studios_shared::store::dynamo::{create_table, DynamoStore};
use studios_shared::{App, Config};

pub use studios_shared::http::Action as A;

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
}

pub fn test_config(table: &str) -> Config {
    Config {
        table_name: table.to_string(),
        platform_admins: vec![PLATFORM_ADMIN.to_string()],
        template_images: studios_shared::domain::TemplateKind::ALL
            .into_iter()
            .map(|k| (k, format!("public.ecr.aws/studios/{}:1", k.as_str())))
            .collect(),
    }
}

impl TestApp {
    /// A fresh table on the emulator, wired through the production SDK code path.
    pub async fn new() -> TestApp {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "integration tests need the local AWS emulator: run them with infra/test.sh"
        );
        let sdk = aws_config::load_from_env().await;
        let log = Arc::new(RequestLog::default());
        let dynamo_config = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(Counter(log.clone()))
            .build();
        let client = aws_sdk_dynamodb::Client::from_conf(dynamo_config);
        let table = format!("studios-test-{}", uuid::Uuid::now_v7().simple());
        create_table(&client, &table).await.expect("create table");
        let store = DynamoStore::new(client.clone(), table.clone());
        let app = App::new(Arc::new(store), test_config(&table));
        log.take();
        TestApp {
            app,
            client,
            table,
            log,
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
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_string();
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
            "jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/studios",
            "maxCpus": 16,
            "maxMemoryMiB": 65536,
            "allowedWriteBuckets": ["scratch-bucket"],
            "workDir": "s3://work-bucket/studios/",
        });
        merge(&mut body, extra);
        self.req(A::CreateComputeEnv)
            .user("admin")
            .param("ws", ws)
            .body(body)
            .send()
            .await
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn data_link(&self, ws: &str, name: &str, uri: &str, region: &str) -> String {
        self.req(A::CreateDataLink)
            .user("admin")
            .param("ws", ws)
            .body(json!({"name": name, "uri": uri, "region": region}))
            .send()
            .await
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_string()
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

    pub fn raw_body(mut self, body: &str) -> Self {
        self.body = Some(body.to_string());
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
            request_id: "test-request",
        };
        let request = event.to_request().expect("valid API Gateway event");
        let response = handle(&self.t.app, self.action, request).await;
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
