//! Sessions end to end on the emulator: start submits a real (emulated) AWS Batch job,
//! Batch events arrive as real-shaped EventBridge JSON, checkpoints are checked in S3,
//! and status events travel the table's stream → EventBridge bus → rule → SQS.

use serde_json::{json, Value};
use studios_integration_tests::{job_env, Fixtures, TestApp, A};
use studios_shared::domain::lifecycle::JobName;
use studios_shared::sessions::Applied;

pub struct Setup {
    pub ws: String,
    pub ce: String,
    pub fx: Fixtures,
}

pub async fn setup(t: &TestApp) -> Setup {
    let fx = t.fixtures().await;
    let ws = t.workspace_with_roles().await;
    let ce = t
        .compute_env(
            &ws,
            json!({"jobQueue": fx.queue_arn, "workDir": format!("s3://work-bucket/studios/{ws}")}),
        )
        .await;
    Setup { ws, ce, fx }
}

pub async fn studio_with_mount(t: &TestApp, s: &Setup, name: &str, uri: &str) -> String {
    t.req(A::AddStudio)
        .user("maintain")
        .param("ws", &s.ws)
        .body(
            json!({"name": name, "computeEnvId": s.ce, "template": {"kind": "jupyter"},
                     "condaPackages": ["numpy>=1.26"], "mounts": [{"uri": uri}]}),
        )
        .send()
        .await
        .id(201)
}

pub async fn get(t: &TestApp, ws: &str, id: &str) -> Value {
    t.req(A::GetStudio)
        .user("view")
        .param("ws", ws)
        .param("id", id)
        .send()
        .await
        .ok(200)
}

pub async fn start(t: &TestApp, ws: &str, id: &str) -> studios_integration_tests::Resp {
    t.req(A::StartStudio)
        .user("maintain")
        .param("ws", ws)
        .param("id", id)
        .send()
        .await
}

/// Starts the studio (202): the response, and the job as Batch describes it.
pub async fn started(t: &TestApp, ws: &str, id: &str) -> (Value, aws_sdk_batch::types::JobDetail) {
    let studio = start(t, ws, id).await.ok(202);
    let job = t
        .job(
            studio["session"]["jobId"]
                .as_str()
                .expect("job id recorded"),
        )
        .await;
    (studio, job)
}

/// Starts the studio and delivers its job's RUNNING event: the studio is running.
pub async fn running(t: &TestApp, ws: &str, id: &str) -> aws_sdk_batch::types::JobDetail {
    let (_, job) = started(t, ws, id).await;
    t.deliver(&t.job_event(&job, "RUNNING", true, None, None))
        .await;
    job
}

/// `action` on studio `id` as `user`.
pub async fn on_studio(
    t: &TestApp,
    action: A,
    user: &str,
    ws: &str,
    id: &str,
) -> studios_integration_tests::Resp {
    t.req(action)
        .user(user)
        .param("ws", ws)
        .param("id", id)
        .send()
        .await
}

#[tokio::test]
async fn full_cycle_start_run_stop_checkpoint_and_restart() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "RNA QC", "s3://data-bucket/reads/").await;

    // WHEN the studio is started
    let started = start(&t, &s.ws, &id).await.ok(202);
    assert_eq!(started["status"], "starting");
    let job_id = started["session"]["jobId"]
        .as_str()
        .expect("job id recorded")
        .to_string();
    // THEN Batch has the job, with what the session needs
    let job = t.job(&job_id).await;
    assert_eq!(job_env(&job, "STUDIO_ID").as_deref(), Some(id.as_str()));
    assert_eq!(
        job_env(&job, "WORKSPACE_ID").as_deref(),
        Some(s.ws.as_str())
    );
    assert_eq!(job_env(&job, "CHECKPOINT_RESTORE_URI").as_deref(), Some(""));
    let save_uri = job_env(&job, "CHECKPOINT_SAVE_URI").unwrap();
    assert!(
        save_uri.starts_with(&format!(
            "s3://work-bucket/studios/{ws}/.studios/{id}/checkpoints/cp-",
            ws = s.ws
        )),
        "{save_uri}"
    );
    let mounts: Value = serde_json::from_str(&job_env(&job, "STUDIO_MOUNTS").unwrap()).unwrap();
    assert_eq!(
        mounts,
        json!([{"uri": "s3://data-bucket/reads/", "mountPath": "/workspace/data/reads", "access": "read-only"}])
    );
    assert_eq!(
        job_env(&job, "CONDA_PACKAGES").as_deref(),
        Some("[\"numpy>=1.26\"]")
    );
    assert_eq!(job.tags().unwrap()["studios:studio-id"], id);
    // The job's name is how its events find the studio (the stack's rule matches the
    // prefix): `<prefix>-<workspace>-<studio>-<attempt>`.
    let name = JobName::parse(job.job_name().unwrap()).expect("a studio job name");
    assert_eq!(
        (name.prefix, name.workspace_id, name.studio_id),
        ("studios-test", s.ws.as_str(), id.as_str())
    );
    // The container runs with the stack's job role, from a definition of this stack.
    let definition = job.job_definition().unwrap();
    assert!(
        definition.contains("job-definition/studios-test-"),
        "{definition}"
    );
    let defs = t
        .batch
        .describe_job_definitions()
        .job_definitions(definition)
        .send()
        .await
        .unwrap();
    let container = defs.job_definitions()[0].container_properties().unwrap();
    assert_eq!(
        container.job_role_arn(),
        t.app.config.job_definitions.job_role_arn.as_deref()
    );
    // The studio mounts S3 paths: mount-s3 gets FUSE (privileged, /dev/fuse).
    assert_eq!(container.privileged(), Some(true));
    let devices = container.linux_parameters().unwrap().devices();
    assert_eq!(devices[0].host_path(), Some("/dev/fuse"));
    // AND the path is locked, held by the studio
    let held = t
        .req(A::ListMounts)
        .user("view")
        .param("ws", &s.ws)
        .send()
        .await
        .ok(200);
    assert_eq!(held["mounts"][0]["uri"], "s3://data-bucket/reads/");
    assert_eq!(
        held["mounts"][0]["studio"],
        json!({"id": id, "name": "RNA QC"})
    );

    // WHEN Batch reports progress (with a duplicate and a late one)
    for (status, started) in [
        ("RUNNABLE", false),
        ("STARTING", false),
        ("RUNNABLE", false),
    ] {
        t.deliver(&t.job_event(&job, status, started, None, None))
            .await;
    }
    let st = get(&t, &s.ws, &id).await;
    assert_eq!(st["status"], "starting");
    assert_eq!(st["session"]["jobStatus"], "STARTING");
    assert_eq!(
        t.deliver(&t.job_event(&job, "RUNNING", true, None, None))
            .await,
        Applied::Changed
    );
    assert_eq!(get(&t, &s.ws, &id).await["status"], "running");

    // WHEN a maintainer stops it: stopping, then Batch ends the job as terminated
    let stopping = on_studio(&t, A::StopStudio, "maintain", &s.ws, &id)
        .await
        .ok(202);
    assert_eq!(stopping["status"], "stopping");
    // Stopping twice is fine.
    on_studio(&t, A::StopStudio, "maintain", &s.ws, &id)
        .await
        .ok(202);
    t.write_manifest(&save_uri).await;
    let end = t.job_event(
        &job,
        "FAILED",
        true,
        Some("Stopped by maintain user"),
        Some(143),
    );
    assert_eq!(t.deliver(&end).await, Applied::Changed);
    // A redelivery of the same event changes nothing.
    assert!(matches!(t.deliver(&end).await, Applied::Ignored(_)));

    // THEN it is stopped with a finalized checkpoint and no locks
    let stopped = get(&t, &s.ws, &id).await;
    assert_eq!(stopped["status"], "stopped");
    assert_eq!(stopped["statusReason"], "stopped by maintain user");
    assert_eq!(stopped["session"], Value::Null);
    let cps = on_studio(&t, A::ListCheckpoints, "view", &s.ws, &id)
        .await
        .ok(200);
    let cps = cps["checkpoints"].as_array().unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0]["status"], "finalized");
    assert_eq!(cps[0]["name"], "checkpoint-1");
    assert_eq!(cps[0]["uri"], save_uri.as_str());
    assert_eq!(stopped["restoreFrom"]["checkpointId"], cps[0]["id"]);
    assert!(t.live_locks(&s.ws).await.is_empty());
    let held = t
        .req(A::ListMounts)
        .user("view")
        .param("ws", &s.ws)
        .send()
        .await
        .ok(200);
    assert_eq!(held["mounts"], json!([]));

    // AND the status events were published in the order of the transitions
    assert!(t.publish_status_events().await >= 5);
    let events = t.received_events().await;
    let transitions: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["detail-type"] == "Studio Status Changed")
        .map(|e| {
            (
                e["detail"]["previousStatus"].as_str().unwrap().to_string(),
                e["detail"]["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        transitions,
        pairs(&[
            ("stopped", "starting"),
            ("starting", "running"),
            ("running", "stopping"),
            ("stopping", "stopped")
        ])
    );
    let last = events
        .iter()
        .rev()
        .find(|e| e["detail-type"] == "Studio Status Changed")
        .unwrap();
    assert_eq!(last["source"], "studios");
    assert_eq!(last["detail"]["checkpointId"], cps[0]["id"]);
    assert_eq!(last["detail"]["studioName"], "RNA QC");
    assert_eq!(last["detail"]["actor"]["type"], "system");
    let stop_event = &events
        .iter()
        .find(|e| e["detail"]["status"] == "stopping")
        .unwrap()["detail"];
    assert_eq!(
        stop_event["actor"],
        json!({"type": "user", "id": "maintain", "name": "maintain user"})
    );
    let recorded: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail-type"] == "Checkpoint Recorded")
        .collect();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["detail"]["status"], "finalized");
    // Event ids are stable: publishing again would repeat them for consumers to drop.
    let ids: std::collections::HashSet<&str> = events
        .iter()
        .map(|e| e["detail"]["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), events.len());

    // WHEN it is restarted THEN the job restores from that checkpoint
    let restarted = start(&t, &s.ws, &id).await.ok(202);
    let job2 = t.job(restarted["session"]["jobId"].as_str().unwrap()).await;
    assert_eq!(
        job_env(&job2, "CHECKPOINT_RESTORE_URI"),
        Some(save_uri.clone())
    );
    assert_ne!(job_env(&job2, "CHECKPOINT_SAVE_URI"), Some(save_uri));
    // AND events of the old job no longer touch it
    assert!(matches!(t.deliver(&end).await, Applied::Ignored(_)));
    assert_eq!(get(&t, &s.ws, &id).await["status"], "starting");
}

#[tokio::test]
async fn a_session_that_never_ran_records_no_checkpoint_and_an_unsaved_one_is_invalid() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "crashy", "s3://data-bucket/x/").await;
    let job = started(&t, &s.ws, &id).await.1;
    // The image cannot be pulled: FAILED before RUNNING.
    t.deliver(&t.job_event(
        &job,
        "FAILED",
        false,
        Some("CannotPullContainerError: not found"),
        None,
    ))
    .await;
    let st = get(&t, &s.ws, &id).await;
    assert_eq!(st["status"], "errored");
    assert_eq!(st["statusReason"], "CannotPullContainerError: not found");
    assert!(t.live_locks(&s.ws).await.is_empty());
    let cps = on_studio(&t, A::ListCheckpoints, "view", &s.ws, &id)
        .await
        .ok(200);
    assert_eq!(cps["checkpoints"], json!([]));

    // Restart from errored; it runs, then crashes without writing a manifest.
    let job = running(&t, &s.ws, &id).await;
    t.deliver(&t.job_event(
        &job,
        "FAILED",
        true,
        Some("Essential container in task exited"),
        Some(137),
    ))
    .await;
    let st = get(&t, &s.ws, &id).await;
    assert_eq!(st["status"], "errored");
    assert_eq!(
        st["statusReason"],
        "Essential container in task exited; exit code 137"
    );
    assert_eq!(
        st["latestCheckpointId"],
        Value::Null,
        "an invalid checkpoint is never restored"
    );
    let cps = on_studio(&t, A::ListCheckpoints, "view", &s.ws, &id)
        .await
        .ok(200);
    assert_eq!(cps["checkpoints"][0]["status"], "invalid");
}

#[tokio::test]
async fn start_conflicts_name_the_holder_and_add_flags_held_paths() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let a = studio_with_mount(&t, &s, "holder", "s3://data-bucket/shared/").await;
    let b = studio_with_mount(&t, &s, "same", "s3://data-bucket/shared").await;
    let c = studio_with_mount(&t, &s, "below", "s3://data-bucket/shared/x/").await;
    let d = studio_with_mount(&t, &s, "above", "s3://data-bucket/").await;
    let e = studio_with_mount(&t, &s, "beside", "s3://data-bucket/other/").await;
    start(&t, &s.ws, &a).await.ok(202);
    for (id, expect) in [
        (&b, "s3://data-bucket/shared/ is mounted by running studio 'holder'"),
        (&c, "s3://data-bucket/shared/x/ overlaps s3://data-bucket/shared/, mounted by running studio 'holder'"),
        (&d, "s3://data-bucket/ overlaps s3://data-bucket/shared/, mounted by running studio 'holder'"),
    ] {
        let (code, message) = start(&t, &s.ws, id).await.err(409);
        assert_eq!(code, "mount_locked");
        assert!(message.starts_with(expect), "{message}");
        assert!(message.contains(&a), "names the holder's id: {message}");
        assert_eq!(get(&t, &s.ws, id).await["status"], "stopped");
    }
    start(&t, &s.ws, &e).await.ok(202);
    // The same path in another workspace is not a conflict.
    let ws2 = t.workspace_with_roles().await;
    let ce2 = t.compute_env(&ws2, json!({})).await;
    let other = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &ws2)
        .body(
            json!({"name": "elsewhere", "computeEnvId": ce2, "template": {"kind": "jupyter"},
                     "mounts": [{"uri": "s3://data-bucket/shared/"}]}),
        )
        .send()
        .await
        .ok(201);
    assert_eq!(other["warnings"], json!([]));
    start(&t, &ws2, other["id"].as_str().unwrap()).await.ok(202);
    // Adding a studio over a held path says it is unavailable.
    let flagged = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &s.ws)
        .body(
            json!({"name": "later", "computeEnvId": s.ce, "template": {"kind": "jupyter"},
                     "mounts": [{"uri": "s3://data-bucket/shared/deep/"}]}),
        )
        .send()
        .await
        .ok(201);
    let w = flagged["warnings"][0].as_str().unwrap();
    assert!(
        w.starts_with("mounts[0]: s3://data-bucket/shared/deep/ is unavailable"),
        "{w}"
    );
}

#[tokio::test]
async fn faults_leave_nothing_locked_or_stuck() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    // SubmitJob refused: the queue was deleted after the compute environment was made.
    let doomed = format!("doomed-{}", uuid::Uuid::now_v7().simple());
    let bad_ce = t
        .compute_env(
            &s.ws,
            json!({"jobQueue": format!("arn:aws:batch:us-east-1:123456789012:job-queue/{doomed}")}),
        )
        .await;
    t.batch
        .update_job_queue()
        .job_queue(&doomed)
        .state(aws_sdk_batch::types::JqState::Disabled)
        .send()
        .await
        .unwrap();
    t.batch
        .delete_job_queue()
        .job_queue(&doomed)
        .send()
        .await
        .unwrap();
    let id = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &s.ws)
        .body(
            json!({"name": "nowhere", "computeEnvId": bad_ce, "template": {"kind": "jupyter"},
                     "mounts": [{"uri": "s3://data-bucket/q/"}]}),
        )
        .send()
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, message) = start(&t, &s.ws, &id).await.err(409);
    assert_eq!(code, "batch_rejected");
    assert!(
        message.starts_with("AWS Batch refused the job"),
        "{message}"
    );
    let st = get(&t, &s.ws, &id).await;
    assert_eq!(st["status"], "errored");
    assert!(st["statusReason"]
        .as_str()
        .unwrap()
        .starts_with("AWS Batch refused the job"));
    assert!(t.live_locks(&s.ws).await.is_empty());

    // Delete and start are refused while it starts and runs.
    let id = studio_with_mount(&t, &s, "busy", "s3://data-bucket/b/").await;
    let job = started(&t, &s.ws, &id).await.1;
    let (code, _) = on_studio(&t, A::DeleteStudio, "maintain", &s.ws, &id)
        .await
        .err(409);
    assert_eq!(code, "studio_not_stopped");
    t.deliver(&t.job_event(&job, "RUNNING", true, None, None))
        .await;
    let (code, _) = on_studio(&t, A::DeleteStudio, "maintain", &s.ws, &id)
        .await
        .err(409);
    assert_eq!(code, "studio_not_stopped");
    let (code, _) = start(&t, &s.ws, &id).await.err(409);
    assert_eq!(code, "studio_not_stopped");
    // A viewer cannot stop it; nobody can stop a stopped studio.
    on_studio(&t, A::StopStudio, "view", &s.ws, &id)
        .await
        .err(403);

    // Events that are not about a studio job are acknowledged, not bounced.
    let mut foreign = t.job_event(&job, "RUNNING", true, None, None);
    foreign["detail"]["jobName"] = json!("event-test");
    assert_eq!(t.deliver(&foreign).await, Applied::UnknownStudio);
    let mut junk = t.job_event(&job, "RUNNING", true, None, None);
    junk["detail"]["status"] = json!("EXPLODED");
    assert!(matches!(t.deliver(&junk).await, Applied::Ignored(_)));
}

#[tokio::test]
async fn add_and_start_in_one_request() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let added = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &s.ws)
        .query("autoStart", "true")
        .body(
            json!({"name": "quick", "computeEnvId": s.ce, "template": {"kind": "vscode"},
                     "mounts": [{"uri": "s3://data-bucket/quick/"}]}),
        )
        .send()
        .await
        .ok(202);
    assert_eq!(added["status"], "starting");
    assert!(added["session"]["jobId"].is_string());
    assert_eq!(
        t.live_locks(&s.ws).await.len(),
        2,
        "the path and its bucket root"
    );
    // The name is taken even though the studio was created starting.
    let (code, _) = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &s.ws)
        .query("autoStart", "true")
        .body(json!({"name": "QUICK", "computeEnvId": s.ce, "template": {"kind": "vscode"}}))
        .send()
        .await
        .err(409);
    assert_eq!(code, "name_taken");
}

#[tokio::test]
async fn the_most_mount_lock_items_start_run_and_end_in_one_transaction_each() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    // 5 mounts × 19 path segments + the shared bucket root = 96 lock items.
    let mounts: Vec<Value> = (0..5)
        .map(|i| json!({"uri": format!("s3://deep-bucket/m{i}/{}x{i}/", "d/".repeat(17))}))
        .collect();
    let body = json!({"name": "deep", "computeEnvId": s.ce, "template": {"kind": "jupyter"},
                      "mounts": mounts});
    // Add-and-start cannot also claim the name, count and track in the same write.
    let (code, message) = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &s.ws)
        .query("autoStart", "true")
        .body(body.clone())
        .send()
        .await
        .err(400);
    assert_eq!(code, "invalid_request");
    assert!(
        message.starts_with("mounts: these mounts need 96 mount-lock items"),
        "{message}"
    );
    assert!(message.contains("without autoStart"), "{message}");
    // Added, then started: fits, runs, and ends with its checkpoint and locks released.
    let id = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &s.ws)
        .body(body)
        .send()
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = running(&t, &s.ws, &id).await;
    assert_eq!(t.live_locks(&s.ws).await.len(), 96);
    on_studio(&t, A::StopStudio, "maintain", &s.ws, &id)
        .await
        .ok(202);
    t.write_manifest(&studios_integration_tests::save_uri(&job))
        .await;
    t.deliver(&t.job_event(&job, "FAILED", true, None, Some(143)))
        .await;
    let stopped = get(&t, &s.ws, &id).await;
    assert_eq!(stopped["status"], "stopped");
    assert!(stopped["restoreFrom"]["checkpointId"].is_string());
    assert!(t.live_locks(&s.ws).await.is_empty());
}

/// Sessions run with their compute environment's role (their own job definition), else
/// with the stack's default role.
#[tokio::test]
async fn sessions_run_with_their_compute_environments_role() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let role = "arn:aws:iam::123456789012:role/studios-sessions/genomics";
    let ce = t
        .compute_env(
            &s.ws,
            json!({"jobQueue": s.fx.queue_arn, "workDir": format!("s3://work-bucket/studios/{}", s.ws), "jobRoleArn": role}),
        )
        .await;
    let id = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &s.ws)
        .body(json!({"name": "own role", "computeEnvId": ce, "template": {"kind": "jupyter"}}))
        .send()
        .await
        .id(201);
    let (_, job) = started(&t, &s.ws, &id).await;
    let definition = job.job_definition().unwrap().to_string();
    let described = t
        .batch
        .describe_job_definitions()
        .job_definitions(&definition)
        .send()
        .await
        .unwrap();
    let def = described
        .job_definitions()
        .first()
        .expect("the job's definition");
    assert_eq!(
        def.container_properties().and_then(|c| c.job_role_arn()),
        Some(role)
    );
    // An init process as PID 1 (it reaps the IDE's orphans and passes SIGTERM on) and
    // a /dev/shm larger than Docker's 64 MiB.
    let linux = def
        .container_properties()
        .and_then(|c| c.linux_parameters())
        .expect("linux parameters");
    assert_eq!(linux.init_process_enabled(), Some(true));
    assert_eq!(
        linux.shared_memory_size(),
        Some(studios_shared::compute::SHARED_MEMORY_MIB)
    );
    // The job knows its region (with IMDS blocked the agent has no other way).
    assert_eq!(
        studios_integration_tests::job_env(&job, "AWS_REGION").as_deref(),
        Some("us-east-1")
    );
    // The default compute environment's studios keep the stack's role.
    let other = studio_with_mount(&t, &s, "default role", "s3://data-bucket/dr/").await;
    let (_, job) = started(&t, &s.ws, &other).await;
    assert_ne!(job.job_definition().unwrap(), definition);
}

/// A start that waits (no capacity, say) can be cancelled: stop during `starting`
/// terminates (cancels) the job; its FAILED event ends the studio `stopped`, with no
/// checkpoint and nothing locked.
#[tokio::test]
async fn stop_while_starting_cancels_the_start() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "waiting", "s3://data-bucket/wait/").await;
    let (_, job) = started(&t, &s.ws, &id).await;
    t.deliver(&t.job_event(&job, "RUNNABLE", false, None, None))
        .await;
    let stopping = on_studio(&t, A::StopStudio, "maintain", &s.ws, &id)
        .await
        .ok(202);
    assert_eq!(stopping["status"], "stopping");
    assert_eq!(stopping["statusReason"], "start cancelled by maintain user");
    // Batch was asked to end it: the emulated job is FAILED with our reason.
    let ended = t.job(job.job_id().unwrap()).await;
    assert_eq!(ended.status().map(|s| s.as_str()), Some("FAILED"));
    let reason = ended.status_reason().unwrap_or_default().to_string();
    assert!(
        reason.starts_with("Stopped from Studios by user maintain"),
        "{reason}"
    );
    // A late RUNNABLE changes nothing; the FAILED event ends it.
    t.deliver(&t.job_event(&job, "STARTING", false, None, None))
        .await;
    assert_eq!(get(&t, &s.ws, &id).await["status"], "stopping");
    t.deliver(&t.job_event(&job, "FAILED", false, Some(&reason), None))
        .await;
    let st = get(&t, &s.ws, &id).await;
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["statusReason"], "stopped by maintain user");
    assert!(t.live_locks(&s.ws).await.is_empty());
    let cps = t
        .req(A::ListCheckpoints)
        .user("view")
        .param("ws", &s.ws)
        .param("id", &id)
        .send()
        .await
        .ok(200);
    assert_eq!(cps["checkpoints"], json!([]), "nothing ran, nothing saved");
}

/// AWS-facing reasons carry ids only: a user whose token has a 1,000-character display
/// name can still stop a studio (TerminateJob takes at most 1,024 characters).
#[tokio::test]
async fn a_long_display_name_does_not_block_a_stop() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "named", "s3://data-bucket/named/").await;
    let job = running(&t, &s.ws, &id).await;
    let long = "N".repeat(1000);
    t.req(A::StopStudio)
        .claims(&[("sub", "maintain"), ("name", &long)])
        .param("ws", &s.ws)
        .param("id", &id)
        .send()
        .await
        .ok(202);
    let ended = t.job(job.job_id().unwrap()).await;
    let reason = ended.status_reason().unwrap_or_default();
    assert_eq!(reason, "Stopped from Studios by user maintain");
}

/// Simultaneous stops of one running studio all succeed (stopping again is fine).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stops_all_answer_202() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "popular", "s3://data-bucket/pop/").await;
    running(&t, &s.ws, &id).await;
    let stops = futures::future::join_all(
        (0..8).map(|_| on_studio(&t, A::StopStudio, "maintain", &s.ws, &id)),
    )
    .await;
    for r in stops {
        assert_eq!(r.ok(202)["status"], "stopping");
    }
}

/// Released lock items do not pile up: once a session ends, the stream consumer deletes
/// every lock item left with neither holder nor intents (deep paths leave many).
#[tokio::test]
async fn released_lock_items_are_deleted() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "deep", "s3://data-bucket/a/b/c/d/e/f/").await;
    let job = running(&t, &s.ws, &id).await;
    t.process_stream().await;
    assert_eq!(
        t.lock_items(&s.ws).await,
        7,
        "the path and its six ancestors"
    );
    t.deliver(&t.job_event(&job, "SUCCEEDED", true, None, Some(0)))
        .await;
    assert!(t.live_locks(&s.ws).await.is_empty());
    let report = t.process_stream().await;
    assert_eq!(report.locks_deleted, 6, "{report:?}");
    assert_eq!(t.lock_items(&s.ws).await, 0);
    // A redelivered stream batch changes nothing; the next start locks afresh.
    running(&t, &s.ws, &id).await;
    assert_eq!(t.live_locks(&s.ws).await.len(), 7);
}
