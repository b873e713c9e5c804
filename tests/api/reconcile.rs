//! The reconciler repairs what events missed, through the same decisions as the event
//! consumer. AWS Batch's answers are scripted here (moto's jobs do not run), while
//! submits, the table, S3 and the lock items are the emulator's.

use crate::lifecycle::{get, on_studio, running, setup, start, studio_with_mount, Setup};
use async_trait::async_trait;
use proptest::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use studios_integration_tests::{TestApp, A};
use studios_shared::compute::{Compute, JobSpec, SubmitError};
use studios_shared::consumers::reconcile;
use studios_shared::domain::lifecycle::{BatchStatus, JobReport};
use studios_shared::{App, Config, Result};

/// Real submits; DescribeJobs / ListJobs answers from a script.
#[derive(Default)]
struct ScriptedBatch {
    real: Option<Arc<dyn Compute>>,
    jobs: Mutex<HashMap<String, JobReport>>,
    fail_describe: AtomicBool,
    submit_unanswered: AtomicBool,
    terminated: Mutex<Vec<String>>,
}

impl ScriptedBatch {
    fn set(&self, job_id: &str, status: BatchStatus, started: bool, reason: Option<&str>) {
        self.jobs.lock().unwrap().insert(
            job_id.to_string(),
            JobReport {
                job_id: job_id.into(),
                job_name: String::new(),
                attempt_id: None,
                queue: None,
                definition: None,
                status,
                status_reason: reason.map(String::from),
                container_reason: None,
                exit_code: None,
                started,
            },
        );
    }
}

#[async_trait]
impl Compute for ScriptedBatch {
    async fn queue_platform(&self, queue: &str) -> Result<studios_shared::compute::QueuePlatform> {
        self.real.as_ref().unwrap().queue_platform(queue).await
    }
    async fn submit(&self, job: &JobSpec) -> std::result::Result<String, SubmitError> {
        if self.submit_unanswered.load(Ordering::SeqCst) {
            return Err(SubmitError::Unknown("timed out".into()));
        }
        self.real.as_ref().unwrap().submit(job).await
    }
    async fn terminate(&self, job_id: &str, reason: &str) -> Result<()> {
        self.terminated.lock().unwrap().push(job_id.to_string());
        self.real.as_ref().unwrap().terminate(job_id, reason).await
    }
    async fn describe(&self, job_ids: &[String]) -> Result<Vec<JobReport>> {
        if self.fail_describe.load(Ordering::SeqCst) {
            return Err(studios_shared::Error::internal("DescribeJobs: throttled"));
        }
        let jobs = self.jobs.lock().unwrap();
        Ok(job_ids
            .iter()
            .filter_map(|id| jobs.get(id).cloned())
            .collect())
    }
    async fn find_by_name(&self, _: &str, name: &str) -> Result<Option<JobReport>> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs.values().find(|j| j.job_name == name).cloned())
    }
}

fn scripted(t: &mut TestApp, grace_seconds: u64) -> Arc<ScriptedBatch> {
    let batch = Arc::new(ScriptedBatch {
        real: Some(t.app.compute.clone()),
        ..Default::default()
    });
    let config = Config {
        submit_grace_seconds: grace_seconds,
        ..(*t.app.config).clone()
    };
    t.app = App {
        compute: batch.clone(),
        config: Arc::new(config),
        ..t.app.clone()
    };
    batch
}

async fn checkpoints(t: &TestApp, s: &Setup, id: &str) -> Vec<serde_json::Value> {
    t.req(A::ListCheckpoints)
        .user("view")
        .param("ws", &s.ws)
        .param("id", id)
        .send()
        .await
        .ok(200)["checkpoints"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn lost_running_and_terminal_events_are_repaired() {
    let mut t = TestApp::new().await;
    let s = setup(&t).await;
    let batch = scripted(&mut t, 600);
    let id = studio_with_mount(&t, &s, "quiet", "s3://data-bucket/quiet/").await;
    let started = start(&t, &s.ws, &id).await.ok(202);
    let job_id = started["session"]["jobId"].as_str().unwrap().to_string();

    // No event arrived, but Batch says RUNNING.
    batch.set(&job_id, BatchStatus::Running, true, None);
    let r = reconcile(&t.app).await.unwrap();
    assert_eq!((r.checked, r.changed), (1, 1));
    assert_eq!(get(&t, &s.ws, &id).await["status"], "running");

    // The job crashed after saving; the FAILED event was lost.
    t.write_manifest(started_save_uri(&t, &job_id).await.as_str())
        .await;
    batch.set(
        &job_id,
        BatchStatus::Failed,
        true,
        Some("Essential container in task exited"),
    );
    reconcile(&t.app).await.unwrap();
    let st = get(&t, &s.ws, &id).await;
    assert_eq!(st["status"], "errored");
    assert_eq!(st["statusReason"], "Essential container in task exited");
    let cps = checkpoints(&t, &s, &id).await;
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0]["status"], "finalized");
    assert!(t.live_locks(&s.ws).await.is_empty());
    // Nothing left to do.
    assert_eq!(reconcile(&t.app).await.unwrap().checked, 0);
}

async fn started_save_uri(t: &TestApp, job_id: &str) -> String {
    studios_integration_tests::save_uri(&t.job(job_id).await)
}

#[tokio::test]
async fn vanished_jobs_and_unsubmitted_starts_end_errored_and_unlocked() {
    let mut t = TestApp::new().await;
    let s = setup(&t).await;
    let batch = scripted(&mut t, 600);
    // A running session whose job Batch no longer knows.
    let a = studio_with_mount(&t, &s, "vanished", "s3://data-bucket/a/").await;
    running(&t, &s.ws, &a).await;
    // A start whose SubmitJob never answered: no job id.
    batch.submit_unanswered.store(true, Ordering::SeqCst);
    let b = studio_with_mount(&t, &s, "unanswered", "s3://data-bucket/b/").await;
    let st = start(&t, &s.ws, &b).await.ok(202);
    assert_eq!(st["session"]["jobId"], serde_json::Value::Null);

    // Within the grace period both are left alone: Batch may not list a new job yet.
    let r = reconcile(&t.app).await.unwrap();
    assert_eq!((r.checked, r.changed, r.unknown), (2, 0, 2));
    assert_eq!(get(&t, &s.ws, &a).await["status"], "running");
    assert_eq!(get(&t, &s.ws, &b).await["status"], "starting");

    // After it, both end errored, with their locks released.
    let _ = scripted(&mut t, 0);
    let r = reconcile(&t.app).await.unwrap();
    assert_eq!((r.checked, r.changed, r.unknown), (2, 2, 0));
    let st = get(&t, &s.ws, &a).await;
    assert_eq!(st["status"], "errored");
    assert_eq!(st["statusReason"], "the AWS Batch job no longer exists");
    assert_eq!(checkpoints(&t, &s, &a).await[0]["status"], "invalid");
    let st = get(&t, &s.ws, &b).await;
    assert_eq!(st["status"], "errored");
    assert_eq!(
        st["statusReason"],
        "the session was never submitted to AWS Batch"
    );
    assert!(checkpoints(&t, &s, &b).await.is_empty());
    assert!(t.live_locks(&s.ws).await.is_empty());
}

#[tokio::test]
async fn aws_errors_change_nothing_and_stops_are_retried() {
    let mut t = TestApp::new().await;
    let s = setup(&t).await;
    let batch = scripted(&mut t, 600);
    let id = studio_with_mount(&t, &s, "stubborn", "s3://data-bucket/s/").await;
    let job = running(&t, &s.ws, &id).await;
    let job_id = job.job_id().unwrap().to_string();
    on_studio(&t, A::StopStudio, "maintain", &s.ws, &id)
        .await
        .ok(202);
    assert_eq!(batch.terminated.lock().unwrap().len(), 1);

    // DescribeJobs fails: unknown, not stopped.
    batch.fail_describe.store(true, Ordering::SeqCst);
    let r = reconcile(&t.app).await.unwrap();
    assert_eq!((r.checked, r.changed, r.unknown), (1, 0, 1));
    assert_eq!(get(&t, &s.ws, &id).await["status"], "stopping");

    // Batch says the job still runs: the stop is asked again.
    batch.fail_describe.store(false, Ordering::SeqCst);
    batch.set(&job_id, BatchStatus::Running, true, None);
    reconcile(&t.app).await.unwrap();
    assert_eq!(batch.terminated.lock().unwrap().len(), 2);
    assert_eq!(get(&t, &s.ws, &id).await["status"], "stopping");

    // The job ended after the stop: stopped, not errored.
    batch.set(
        &job_id,
        BatchStatus::Failed,
        true,
        Some("Stopped by maintain user"),
    );
    reconcile(&t.app).await.unwrap();
    assert_eq!(get(&t, &s.ws, &id).await["status"], "stopped");
}

/// A job that never gets capacity is cancelled by the reconciler after the start
/// deadline, with a reason; its FAILED event then errors the studio and frees its locks.
#[tokio::test]
async fn a_start_stuck_past_its_deadline_is_cancelled_with_a_reason() {
    let mut t = TestApp::new().await;
    let s = setup(&t).await;
    let batch = scripted(&mut t, 600);
    let id = studio_with_mount(&t, &s, "no capacity", "s3://data-bucket/nc/").await;
    let (_, job) = crate::lifecycle::started(&t, &s.ws, &id).await;
    let job_id = job.job_id().unwrap().to_string();
    batch.set(&job_id, BatchStatus::Runnable, false, None);
    // Within the deadline (an hour by default): left alone.
    reconcile(&t.app).await.unwrap();
    assert!(batch.terminated.lock().unwrap().is_empty());
    assert_eq!(get(&t, &s.ws, &id).await["status"], "starting");
    // Past it: cancelled with a reason a user can act on.
    t.app.config = Arc::new(Config {
        start_deadline_seconds: 0,
        ..(*t.app.config).clone()
    });
    reconcile(&t.app).await.unwrap();
    assert_eq!(*batch.terminated.lock().unwrap(), vec![job_id.clone()]);
    let reason = t.job(&job_id).await.status_reason().unwrap().to_string();
    assert!(
        reason
            .starts_with("the session did not start within 0 minutes (AWS Batch status RUNNABLE)"),
        "{reason}"
    );
    batch.set(&job_id, BatchStatus::Failed, false, Some(&reason));
    reconcile(&t.app).await.unwrap();
    let st = get(&t, &s.ws, &id).await;
    assert_eq!(st["status"], "errored");
    assert_eq!(st["statusReason"], reason);
    assert!(t.live_locks(&s.ws).await.is_empty());
}

/// A studio stuck in `stopping` (its job never ends) can be force-stopped once it has
/// been stopping for FORCE_STOP_AFTER_SECONDS: stopped, locks released, recorded.
#[tokio::test]
async fn a_stuck_stop_can_be_forced_after_the_deadline() {
    let mut t = TestApp::new().await;
    let s = setup(&t).await;
    scripted(&mut t, 600);
    let id = studio_with_mount(&t, &s, "stuck", "s3://data-bucket/stuck/").await;
    running(&t, &s.ws, &id).await;
    on_studio(&t, A::StopStudio, "maintain", &s.ws, &id)
        .await
        .ok(202);
    async fn force(t: &TestApp, ws: &str, id: &str, user: &str) -> studios_integration_tests::Resp {
        t.req(A::StopStudio)
            .user(user)
            .param("ws", ws)
            .param("id", id)
            .query("force", "true")
            .send()
            .await
    }
    let (code, message) = force(&t, &s.ws, &id, "maintain").await.err(409);
    assert_eq!(code, "stop_in_progress");
    assert!(message.contains("15 minutes"), "{message}");
    t.app.config = Arc::new(Config {
        force_stop_after_seconds: 0,
        ..(*t.app.config).clone()
    });
    force(&t, &s.ws, &id, "view").await.err(403);
    let forced = force(&t, &s.ws, &id, "maintain").await.ok(202);
    assert_eq!(forced["status"], "stopped");
    assert!(forced["statusReason"]
        .as_str()
        .unwrap()
        .starts_with("force-stopped by maintain user after 0 minutes in stopping"));
    assert!(t.live_locks(&s.ws).await.is_empty());
    // It ran, so its checkpoint is recorded (invalid: the session wrote no manifest).
    let cps = checkpoints(&t, &s, &id).await;
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0]["status"], "invalid");
    // The job's late end changes nothing.
    let r = reconcile(&t.app).await.unwrap();
    assert_eq!(r.checked, 0);
}

// ---- property: random deliveries, repaired by the reconciler, end as the model says ----

fn job_path() -> impl Strategy<Value = Vec<&'static str>> {
    (0usize..=5, any::<bool>()).prop_map(|(len, ok)| {
        let path = ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"];
        let mut v = path[..len].to_vec();
        v.push(if ok { "SUCCEEDED" } else { "FAILED" });
        v
    })
}

#[test]
fn random_event_deliveries_end_as_the_model_says() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (t, s, batch) = rt.block_on(async {
        let mut t = TestApp::new().await;
        let s = setup(&t).await;
        let batch = scripted(&mut t, 600);
        (t, s, batch)
    });
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(24));
    let strategy = (
        job_path(),
        job_path(),
        prop::collection::vec(any::<bool>(), 6),
        prop::collection::vec(any::<bool>(), 6),
        prop::collection::vec(any::<u16>(), 20),
    );
    runner
        .run(&strategy, |(path, old, dups, drops, order)| {
            rt.block_on(async {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let id = studio_with_mount(
                    &t,
                    &s,
                    &format!("case-{n}"),
                    &format!("s3://data-bucket/case-{n}/"),
                )
                .await;
                let started = start(&t, &s.ws, &id).await.ok(202);
                let job_id = started["session"]["jobId"].as_str().unwrap().to_string();
                let job = t.job(&job_id).await;
                let ran = path.contains(&"RUNNING");
                if ran {
                    t.write_manifest(&started_save_uri(&t, &job_id).await).await;
                }
                let event = |status: &str, ran: bool| {
                    let running_or_later = ["RUNNING", "SUCCEEDED", "FAILED"].contains(&status);
                    let exit = if status == "FAILED" || status == "SUCCEEDED" {
                        Some(1)
                    } else {
                        None
                    };
                    t.job_event(
                        &job,
                        status,
                        ran && running_or_later,
                        Some("the job's reason"),
                        exit,
                    )
                };
                // This job's events: some lost, some twice; an older job's events too.
                let mut delivered = Vec::new();
                for (i, status) in path.iter().enumerate() {
                    if !drops[i] {
                        delivered.push(event(status, ran));
                    }
                    if dups[i] {
                        delivered.push(event(status, ran));
                    }
                }
                for status in &old {
                    let mut e = event(status, true);
                    e["detail"]["jobId"] = json!("an-older-job");
                    let name = e["detail"]["jobName"].as_str().unwrap().to_string();
                    let (rest, _) = name.rsplit_once('-').unwrap();
                    e["detail"]["jobName"] = json!(format!("{rest}-anolderattempt"));
                    delivered.push(e);
                }
                let mut keyed: Vec<(u16, serde_json::Value)> = delivered
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| (order.get(i).copied().unwrap_or(0), e))
                    .collect();
                keyed.sort_by_key(|(k, _)| *k);
                for (_, e) in &keyed {
                    t.deliver(e).await;
                }
                // What the events missed, Batch's DescribeJobs tells the reconciler.
                let last = *path.last().unwrap();
                let status = BatchStatus::parse(last).unwrap();
                batch.set(&job_id, status, ran, Some("the job's reason"));
                reconcile(&t.app).await.unwrap();

                let st = get(&t, &s.ws, &id).await;
                let want = if last == "SUCCEEDED" {
                    "stopped"
                } else {
                    "errored"
                };
                prop_assert_eq!(st["status"].as_str().unwrap(), want, "path {:?}", path);
                let cps = checkpoints(&t, &s, &id).await;
                prop_assert_eq!(cps.len(), usize::from(ran), "path {:?}", path);
                if ran {
                    prop_assert_eq!(cps[0]["status"].as_str().unwrap(), "finalized");
                }
                prop_assert!(t.live_locks(&s.ws).await.is_empty());
                Ok(())
            })
        })
        .unwrap();
}
