//! The IAM-by-calls record (tests/support/iam.rs, docs/iam.md): what it records for a
//! start is what IAM authorises (checked here, so a wrong derivation fails a test, not
//! only the check), and the paths the other tests reach without a function's entry
//! point — the reconciler, the task queue's worker, the API document — run here as
//! their functions, so infra/iam-calls.py checks their roles too.

use crate::lifecycle::{get, on_studio, running, setup, start, studio_with_mount};
use async_trait::async_trait;
use serde_json::json;
use std::sync::Arc;
use studios_integration_tests::iam::{capture, Call};
use studios_integration_tests::{TestApp, A, WORK_BUCKET};
use studios_shared::compute::{Compute, JobSpec, QueuePlatform, SubmitError};
use studios_shared::domain::lifecycle::JobReport;
use studios_shared::App;

fn has(calls: &[Call], function: &str, action: &str, resource: &str) -> bool {
    calls.iter().any(|c| {
        c.function == function && c.action == action && c.resource.as_deref() == Some(resource)
    })
}

/// An image no job definition was registered for yet.
fn fresh_image() -> String {
    format!(
        "registry.example.org/iam/{}:1",
        uuid::Uuid::now_v7().simple()
    )
}

fn arn_of(calls: &[Call], function: &str, action: &str) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.function == function && c.action == action)
        .filter_map(|c| c.resource.clone())
        .collect()
}

#[tokio::test]
async fn a_start_is_recorded_as_iam_authorises_it() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    // Its own image: a job definition no other test registered.
    let id = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &s.ws)
        .body(
            json!({"name": "recorded", "computeEnvId": s.ce, "template": {"image": fresh_image()},
                     "mounts": [{"uri": "s3://data-bucket/rec/"}]}),
        )
        .send()
        .await
        .id(201);
    let (studio, calls) = capture(start(&t, &s.ws, &id)).await;
    let studio = studio.ok(202);
    let table = format!("arn:aws:dynamodb:us-east-1:123456789012:table/{}", t.table);
    // The start's one transaction, per item: the role re-checked, the studio, its locks.
    for action in ["ConditionCheckItem", "PutItem", "UpdateItem"] {
        assert!(
            has(
                &calls,
                "start-studio",
                &format!("dynamodb:{action}"),
                &table
            ),
            "{action}: {calls:#?}"
        );
    }
    // SubmitJob on the queue, the definition and the new job; the job's tags.
    let job = t.job(studio["session"]["jobId"].as_str().unwrap()).await;
    let job_arn = job.job_arn().unwrap().to_string();
    let submitted = arn_of(&calls, "start-studio", "batch:SubmitJob");
    assert!(submitted.contains(&s.fx.queue_arn), "{submitted:?}");
    assert!(submitted.contains(&job_arn), "{submitted:?}");
    assert!(
        submitted
            .iter()
            .any(|r| r
                .starts_with("arn:aws:batch:us-east-1:123456789012:job-definition/studios-test-")),
        "{submitted:?}"
    );
    assert!(has(&calls, "start-studio", "batch:TagResource", &job_arn));
    // The definition is registered with the session's role (passed).
    let passed = arn_of(&calls, "start-studio", "iam:PassRole");
    assert_eq!(
        passed,
        [t.app.config.job_definitions.job_role_arn.clone().unwrap()]
    );
    // A start signs nothing (relay tokens come over the agent channel); the connect
    // key gives its public half for the job's environment.
    let keys = |action| arn_of(&calls, "start-studio", action);
    let studios_shared::config::ConnectKey::Kms(connect) = &t.app.config.connect_key else {
        panic!("the test app signs with KMS keys");
    };
    assert_eq!(keys("kms:Sign"), Vec::<String>::new());
    assert_eq!(keys("kms:GetPublicKey"), std::slice::from_ref(connect));
    // Only the function's calls: none of the test's own (the fixtures, the job look-up).
    assert!(
        calls.iter().all(|c| c.function == "start-studio"),
        "{calls:#?}"
    );
    assert!(calls.iter().all(|c| c.resource.is_some()), "{calls:#?}");
}

/// Each function that submits registers the job definition it needs when none exists
/// (and passes the session's role): add with autoStart, start, and a clone with mounts
/// (privileged: another definition than its source's).
#[tokio::test]
async fn every_submitting_function_registers_its_definition_and_passes_the_role() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let role = t.app.config.job_definitions.job_role_arn.clone().unwrap();
    let registered = |calls: &[Call], function: &str| {
        !arn_of(calls, function, "batch:RegisterJobDefinition").is_empty()
            && arn_of(calls, function, "iam:PassRole") == [role.clone()]
    };
    let add = |name: &str| json!({"name": name, "computeEnvId": s.ce, "template": {"image": fresh_image()}});
    let (added, calls) = capture(
        t.req(A::AddStudio)
            .user("maintain")
            .param("ws", &s.ws)
            .query("autoStart", "true")
            .body(add("added"))
            .send(),
    )
    .await;
    assert_eq!(added.ok(202)["status"], "starting");
    assert!(registered(&calls, "add-studio"), "{calls:#?}");

    let source = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &s.ws)
        .body(add("source"))
        .send()
        .await
        .id(201);
    let (job, calls) = capture(running(&t, &s.ws, &source)).await;
    assert!(registered(&calls, "start-studio"), "{calls:#?}");
    on_studio(&t, A::StopStudio, "maintain", &s.ws, &source)
        .await
        .ok(202);
    t.write_manifest(&studios_integration_tests::save_uri(&job))
        .await;
    t.deliver(&t.job_event(&job, "SUCCEEDED", true, None, Some(0)))
        .await;
    assert_eq!(get(&t, &s.ws, &source).await["status"], "stopped");
    let (cloned, calls) = capture(
        t.req(A::CloneStudio)
            .user("maintain")
            .param("ws", &s.ws)
            .param("id", &source)
            .body(json!({"name": "clone", "autoStart": true,
                         "mounts": [{"uri": "s3://data-bucket/clone/"}]}))
            .send(),
    )
    .await;
    assert_eq!(cloned.ok(202)["status"], "starting");
    assert!(registered(&calls, "clone-studio"), "{calls:#?}");
}

/// The reconciler as its scheduled function, against the emulator's Batch: a start past
/// its deadline is cancelled (DescribeJobs, TerminateJob), the job's end is applied (the
/// manifest looked for: GetObject, and ListBucket for a missing one), and a start whose
/// SubmitJob never answered is looked for by name (ListJobs).
#[tokio::test]
async fn the_reconciler_runs_as_its_function() {
    let mut t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "stuck", "s3://data-bucket/stuck/").await;
    let job_id = start(&t, &s.ws, &id).await.ok(202)["session"]["jobId"]
        .as_str()
        .unwrap()
        .to_string();
    t.app.config = Arc::new(studios_shared::Config {
        start_deadline_seconds: 0,
        ..(*t.app.config).clone()
    });
    let (report, calls) = capture(t.reconcile()).await;
    assert_eq!(report.checked, 1);
    assert!(has(&calls, "reconcile", "batch:DescribeJobs", "*"));
    let job_arn = t.job(&job_id).await.job_arn().unwrap().to_string();
    assert!(
        has(&calls, "reconcile", "batch:TerminateJob", &job_arn),
        "{calls:#?}"
    );
    // The emulator ends a terminated job at once: the next round applies its end.
    let (report, calls) = capture(t.reconcile()).await;
    assert_eq!(report.changed, 1);
    assert_eq!(get(&t, &s.ws, &id).await["status"], "errored");
    assert!(
        has(
            &calls,
            "reconcile",
            "s3:ListBucket",
            &format!("arn:aws:s3:::{WORK_BUCKET}")
        ),
        "a missing manifest: {calls:#?}"
    );

    // A start whose SubmitJob was never answered has no job id: found by name.
    t.app = App {
        compute: Arc::new(Unanswered(t.app.compute.clone())),
        ..t.app.clone()
    };
    let other = studio_with_mount(&t, &s, "unanswered", "s3://data-bucket/un/").await;
    let st = start(&t, &s.ws, &other).await.ok(202);
    assert!(st["session"]["jobId"].is_null());
    let (_, calls) = capture(t.reconcile()).await;
    assert!(
        has(&calls, "reconcile", "batch:ListJobs", "*"),
        "{calls:#?}"
    );
}

/// AWS Batch whose SubmitJob never answers (the rest as the emulator's).
struct Unanswered(Arc<dyn Compute>);

#[async_trait]
impl Compute for Unanswered {
    async fn queue_platform(&self, queue: &str) -> studios_shared::Result<QueuePlatform> {
        self.0.queue_platform(queue).await
    }
    async fn submit(&self, _: &JobSpec) -> Result<String, SubmitError> {
        Err(SubmitError::Unknown("timed out".into()))
    }
    async fn terminate(&self, job_id: &str, reason: &str) -> studios_shared::Result<()> {
        self.0.terminate(job_id, reason).await
    }
    async fn describe(&self, job_ids: &[String]) -> studios_shared::Result<Vec<JobReport>> {
        self.0.describe(job_ids).await
    }
    async fn find_by_name(
        &self,
        queue: &str,
        name: &str,
    ) -> studios_shared::Result<Option<JobReport>> {
        self.0.find_by_name(queue, name).await
    }
}

/// The task queue's worker as its function: a stop's deadline (sent by the stop,
/// delayed by the grace) terminates the job, and deleting released data of more than a
/// page goes in steps, the rest sent back to the queue.
#[tokio::test]
async fn the_task_queue_worker_runs_as_its_function() {
    let mut t = TestApp::new().await;
    let mut config = (*t.app.config).clone();
    config.agent.stop_grace_seconds = 1;
    t.app.config = Arc::new(config);
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "deadline", "s3://data-bucket/dl/").await;
    let job = running(&t, &s.ws, &id).await;
    let credential =
        studios_integration_tests::job_env(&job, "STUDIO_AGENT_TOKEN").expect("a channel");
    // A live session's relay token: signed by the agent channel, with the relay's key.
    let (reply, calls) = capture(
        t.req(A::AgentReport)
            .bearer(&credential)
            .body(json!({"state": "ready", "relayTokenWanted": true}))
            .send(),
    )
    .await;
    assert!(reply.ok(200)["relayToken"].is_string());
    let studios_shared::config::ConnectKey::Kms(relay) = &t.app.config.relay_key else {
        panic!("the test app signs with KMS keys");
    };
    assert_eq!(
        arn_of(&calls, "agent-report", "kms:Sign"),
        std::slice::from_ref(relay)
    );
    on_studio(&t, A::StopStudio, "maintain", &s.ws, &id)
        .await
        .ok(202);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (ran, calls) = capture(t.run_task_queue()).await;
    assert_eq!(ran, 1, "the deadline");
    let job_arn = job.job_arn().unwrap().to_string();
    assert!(
        has(&calls, "data-cleanup", "batch:TerminateJob", &job_arn),
        "{calls:#?}"
    );
    assert_eq!(
        t.job(job.job_id().unwrap())
            .await
            .status()
            .unwrap()
            .as_str(),
        "FAILED"
    );
    t.write_manifest(&studios_integration_tests::save_uri(&job))
        .await;
    t.deliver(&t.job_event(&job, "FAILED", true, None, Some(143)))
        .await;
    assert_eq!(get(&t, &s.ws, &id).await["status"], "stopped");

    // More than a page (1,000 objects) of checkpoint data, released by a delete.
    let prefix = format!("studios/{ws}/.studios/{id}/", ws = s.ws);
    for chunk in (0..1001).collect::<Vec<_>>().chunks(50) {
        let puts = chunk.iter().map(|i| {
            t.s3.put_object()
                .bucket(WORK_BUCKET)
                .key(format!("{prefix}chunks/{i:05}"))
                .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
                .send()
        });
        for put in futures::future::join_all(puts).await {
            put.unwrap();
        }
    }
    on_studio(&t, A::DeleteStudio, "maintain", &s.ws, &id)
        .await
        .ok(204);
    let (report, calls) = capture(t.process_stream()).await;
    assert_eq!(report.data_deleted, 1);
    let queue = arn_of(&calls, "table-stream", "sqs:SendMessage");
    assert_eq!(queue.len(), 1, "{calls:#?}");
    assert!(
        has(&calls, "data-cleanup", "sqs:SendMessage", &queue[0]),
        "the rest: {calls:#?}"
    );
    assert!(has(&calls, "data-cleanup", "sqs:DeleteMessage", &queue[0]));
    assert!(has(
        &calls,
        "data-cleanup",
        "s3:DeleteObject",
        &format!("arn:aws:s3:::{WORK_BUCKET}/{prefix}chunks/01000")
    ));
    let left =
        t.s3.list_objects_v2()
            .bucket(WORK_BUCKET)
            .prefix(&prefix)
            .send()
            .await
            .unwrap();
    assert_eq!(left.key_count(), Some(0));
}

/// The functions that touch nothing make no call (their roles have no statements).
#[tokio::test]
async fn the_api_document_and_the_templates_need_nothing() {
    let t = TestApp::new().await;
    let (document, calls) = capture(t.req(A::GetOpenApi).send()).await;
    assert!(document.ok(200)["paths"].is_object());
    let (templates, more) = capture(t.req(A::ListTemplates).user("view").send()).await;
    templates.ok(200);
    assert!(calls.is_empty() && more.is_empty(), "{calls:?} {more:?}");
}
