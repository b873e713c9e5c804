//! Checkpoints, "start as new" clones, connect, and what a delete leaves behind
//! (docs/api.md) — through the production handlers, Batch events and the table-stream
//! consumer, on the emulator.

use crate::lifecycle::{get, on_studio, running, setup, started, studio_with_mount, Setup};
use serde_json::{json, Value};
use studios_integration_tests::{job_env, TestApp, A, CONNECT_URL_PATTERN, WORK_BUCKET};

/// One session of `id` that runs and is stopped by a maintainer; the container saves
/// its checkpoint (manifest written) iff `saved`. Returns the recorded checkpoint.
async fn session(t: &TestApp, s: &Setup, id: &str, saved: bool) -> Value {
    let job = running(t, &s.ws, id).await;
    on_studio(t, A::StopStudio, "maintain", &s.ws, id)
        .await
        .ok(202);
    if saved {
        t.write_manifest(&env_of(&job, "CHECKPOINT_SAVE_URI")).await;
    }
    t.deliver(&t.job_event(&job, "FAILED", true, Some("stopped"), Some(143)))
        .await;
    assert_eq!(get(t, &s.ws, id).await["status"], "stopped");
    checkpoints(t, &s.ws, id).await.remove(0)
}

fn env_of(job: &aws_sdk_batch::types::JobDetail, name: &str) -> String {
    job_env(job, name).unwrap_or_default()
}

/// Newest first.
async fn checkpoints(t: &TestApp, ws: &str, id: &str) -> Vec<Value> {
    on_studio(t, A::ListCheckpoints, "view", ws, id)
        .await
        .ok(200)["checkpoints"]
        .as_array()
        .unwrap()
        .clone()
}

fn names(list: &[Value]) -> Vec<&str> {
    list.iter().map(|c| c["name"].as_str().unwrap()).collect()
}

async fn clone(t: &TestApp, ws: &str, id: &str, body: Value) -> studios_integration_tests::Resp {
    t.req(A::CloneStudio)
        .user("maintain")
        .param("ws", ws)
        .param("id", id)
        .body(body)
        .send()
        .await
}

async fn objects_under(t: &TestApp, prefix: &str) -> Vec<String> {
    let out =
        t.s3.list_objects_v2()
            .bucket(WORK_BUCKET)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect()
}

/// Raw checkpoint records and name claims of a studio left in the table.
async fn records_of(t: &TestApp, ws: &str, id: &str) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut n = 0;
    for prefix in [format!("CP#{id}#"), format!("CPNAME#{id}#")] {
        n += t
            .client
            .query()
            .table_name(&t.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :p)")
            .expression_attribute_values(":pk", AttributeValue::S(format!("WS#{ws}")))
            .expression_attribute_values(":p", AttributeValue::S(prefix))
            .send()
            .await
            .unwrap()
            .count() as usize;
    }
    n
}

#[tokio::test]
async fn clone_from_a_stopped_studio_and_from_an_older_checkpoint() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let src = studio_with_mount(&t, &s, "Source", "s3://data-bucket/a/").await;
    let cp1 = session(&t, &s, &src, true).await;
    let cp2 = session(&t, &s, &src, true).await;
    assert_eq!(
        names(&checkpoints(&t, &s.ws, &src).await),
        ["checkpoint-2", "checkpoint-1"]
    );

    // Fixed fields are refused by name.
    for (field, value) in [
        ("template", json!({"kind": "rstudio"})),
        ("computeEnvId", json!(s.ce)),
        ("condaPackages", json!(["scipy"])),
    ] {
        let mut body = json!({"name": "Fork"});
        body[field] = value;
        let (code, msg) = clone(&t, &s.ws, &src, body).await.err(400);
        assert_eq!(code, "invalid_request");
        assert!(
            msg.starts_with(&format!("{field}: is fixed for a clone")),
            "{msg}"
        );
    }

    // WHEN cloned without a checkpoint: from the latest finalized one
    let latest = clone(
        &t,
        &s.ws,
        &src,
        json!({"name": "Fork latest", "description": "try B", "resources": {"cpus": 4}}),
    )
    .await
    .ok(201);
    assert_eq!(
        latest["parent"],
        json!({"studioId": src, "checkpointId": cp2["id"]})
    );
    assert_eq!(latest["status"], "stopped");
    assert_eq!(latest["template"], json!({"kind": "jupyter"}));
    assert_eq!(latest["condaPackages"], json!(["numpy>=1.26"]));
    assert_eq!(latest["computeEnv"]["id"], s.ce.as_str());
    assert_eq!(latest["resources"]["cpus"], 4);
    assert_eq!(latest["description"], "try B");
    assert_eq!(latest["mounts"][0]["uri"], "s3://data-bucket/a/");
    assert_eq!(latest["restoreFrom"]["checkpointId"], cp2["id"]);
    let latest_id = latest["id"].as_str().unwrap();
    let inherited = checkpoints(&t, &s.ws, latest_id).await;
    assert_eq!(names(&inherited), ["checkpoint-2", "checkpoint-1"]);
    assert_eq!(
        inherited[0]["uri"], cp2["uri"],
        "the data stays where it was saved"
    );
    assert_eq!(inherited[0]["studioId"], latest_id);
    assert_eq!(inherited[0]["savedByStudioId"], src.as_str());

    // WHEN cloned from the older checkpoint: history up to the fork only
    let older = clone(
        &t,
        &s.ws,
        &src,
        json!({"name": "Fork older", "checkpointId": cp1["id"], "mounts": []}),
    )
    .await
    .ok(201);
    let older_id = older["id"].as_str().unwrap().to_string();
    assert_eq!(older["parent"]["checkpointId"], cp1["id"]);
    assert_eq!(older["mounts"], json!([]));
    assert_eq!(
        names(&checkpoints(&t, &s.ws, &older_id).await),
        ["checkpoint-1"]
    );
    // A clone's fixed fields stay fixed.
    let (_, msg) = t
        .req(A::UpdateStudio)
        .user("maintain")
        .param("ws", &s.ws)
        .param("id", &older_id)
        .body(json!({"condaPackages": ["scipy"]}))
        .send()
        .await
        .err(400);
    assert!(
        msg.starts_with("condaPackages: is fixed for a clone"),
        "{msg}"
    );

    // THEN the clone starts restoring from that checkpoint
    let (_, job) = started(&t, &s.ws, &older_id).await;
    assert_eq!(
        env_of(&job, "CHECKPOINT_RESTORE_URI"),
        cp1["uri"].as_str().unwrap()
    );
    assert!(env_of(&job, "CHECKPOINT_SAVE_URI").starts_with(&format!(
        "s3://{WORK_BUCKET}/studios/{ws}/.studios/{older_id}/checkpoints/",
        ws = s.ws
    )));
    t.deliver(&t.job_event(&job, "RUNNING", true, None, None))
        .await;
    on_studio(&t, A::StopStudio, "maintain", &s.ws, &older_id)
        .await
        .ok(202);
    t.write_manifest(&env_of(&job, "CHECKPOINT_SAVE_URI")).await;
    t.deliver(&t.job_event(&job, "FAILED", true, Some("stopped"), Some(143)))
        .await;
    // Its own next checkpoint continues the numbering; the source is unaffected.
    assert_eq!(
        names(&checkpoints(&t, &s.ws, &older_id).await),
        ["checkpoint-2", "checkpoint-1"]
    );
    assert_eq!(checkpoints(&t, &s.ws, &src).await.len(), 2);

    // Unknown and invalid checkpoints are refused.
    let (_, msg) = clone(
        &t,
        &s.ws,
        &src,
        json!({"name": "X", "checkpointId": "cp-nope"}),
    )
    .await
    .err(400);
    assert!(msg.starts_with("checkpointId:"), "{msg}");
    let invalid = session(&t, &s, &src, false).await;
    assert_eq!(invalid["status"], "invalid");
    let (code, _) = clone(
        &t,
        &s.ws,
        &src,
        json!({"name": "X", "checkpointId": invalid["id"]}),
    )
    .await
    .err(409);
    assert_eq!(code, "checkpoint_invalid");
    // Names are unique in the workspace, clones included.
    let (code, _) = clone(&t, &s.ws, &src, json!({"name": "fork LATEST"}))
        .await
        .err(409);
    assert_eq!(code, "name_taken");
    // Viewers cannot clone.
    let r = t
        .req(A::CloneStudio)
        .user("connect")
        .param("ws", &s.ws)
        .param("id", &src)
        .body(json!({"name": "Y"}))
        .send()
        .await;
    assert_eq!(r.err(403).0, "forbidden");
}

#[tokio::test]
async fn the_checkpoint_a_running_session_uses_cannot_be_cloned() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let src = studio_with_mount(&t, &s, "Busy", "s3://data-bucket/b/").await;
    let cp1 = session(&t, &s, &src, true).await;
    let cp2 = session(&t, &s, &src, true).await;
    // Restarted: the session restores from cp2.
    running(&t, &s.ws, &src).await;
    let (code, msg) = clone(
        &t,
        &s.ws,
        &src,
        json!({"name": "F", "checkpointId": cp2["id"]}),
    )
    .await
    .err(409);
    assert_eq!(code, "checkpoint_in_use");
    assert!(msg.contains("checkpoint-2"), "{msg}");
    let (code, _) = clone(&t, &s.ws, &src, json!({"name": "F"})).await.err(409);
    assert_eq!(code, "studio_not_stopped");
    // An older checkpoint is fine, and "Add and start" applies the mount locks: the
    // source still holds s3://data-bucket/b/.
    let (code, msg) = clone(
        &t,
        &s.ws,
        &src,
        json!({"name": "F", "checkpointId": cp1["id"], "autoStart": true}),
    )
    .await
    .err(409);
    assert_eq!(code, "mount_locked");
    assert!(msg.contains("Busy"), "{msg}");
    let started = clone(
        &t,
        &s.ws,
        &src,
        json!({"name": "F", "checkpointId": cp1["id"], "autoStart": true,
               "mounts": [{"uri": "s3://data-bucket/c/"}]}),
    )
    .await
    .ok(202);
    assert_eq!(started["status"], "starting");
    let job = t.job(started["session"]["jobId"].as_str().unwrap()).await;
    assert_eq!(
        env_of(&job, "CHECKPOINT_RESTORE_URI"),
        cp1["uri"].as_str().unwrap()
    );
}

#[tokio::test]
async fn deleting_the_parent_keeps_the_data_its_clone_depends_on() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let parent = studio_with_mount(&t, &s, "Parent", "s3://data-bucket/p/").await;
    let cp = session(&t, &s, &parent, true).await;
    let child = clone(&t, &s.ws, &parent, json!({"name": "Child"}))
        .await
        .id(201);
    let parent_data = format!("studios/{ws}/.studios/{parent}/", ws = s.ws);
    assert_eq!(
        objects_under(&t, &parent_data).await.len(),
        1,
        "the manifest"
    );

    // WHEN the parent is deleted (and the stream consumer has run)
    on_studio(&t, A::DeleteStudio, "maintain", &s.ws, &parent)
        .await
        .ok(204);
    let report = t.process_stream().await;
    assert_eq!(report.purged, 1, "the parent's checkpoint record");
    assert_eq!(report.data_deleted, 0);
    // THEN its records are gone, its data is kept for the clone
    assert_eq!(records_of(&t, &s.ws, &parent).await, 0);
    assert_eq!(
        on_studio(&t, A::ListCheckpoints, "view", &s.ws, &parent)
            .await
            .status,
        404
    );
    assert_eq!(objects_under(&t, &parent_data).await.len(), 1);
    assert_eq!(
        names(&checkpoints(&t, &s.ws, &child).await),
        ["checkpoint-1"]
    );
    // AND the clone starts from the inherited checkpoint
    let job = running(&t, &s.ws, &child).await;
    assert_eq!(
        env_of(&job, "CHECKPOINT_RESTORE_URI"),
        cp["uri"].as_str().unwrap()
    );
    on_studio(&t, A::StopStudio, "maintain", &s.ws, &child)
        .await
        .ok(202);
    t.write_manifest(&env_of(&job, "CHECKPOINT_SAVE_URI")).await;
    t.deliver(&t.job_event(&job, "FAILED", true, None, Some(143)))
        .await;

    // WHEN the clone is deleted too, nothing depends on either studio's data any more
    on_studio(&t, A::DeleteStudio, "maintain", &s.ws, &child)
        .await
        .ok(204);
    let report = t.process_stream().await;
    assert_eq!(report.data_deleted, 2);
    assert!(objects_under(&t, &parent_data).await.is_empty());
    assert!(
        objects_under(&t, &format!("studios/{ws}/.studios/{child}/", ws = s.ws))
            .await
            .is_empty()
    );
    assert_eq!(records_of(&t, &s.ws, &child).await, 0);
    // Reprocessing (a stream retry) changes nothing.
    assert_eq!(t.process_stream().await, Default::default());
}

#[tokio::test]
async fn a_deleted_studio_without_clones_leaves_nothing_behind() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "Solo", "s3://data-bucket/solo/").await;
    session(&t, &s, &id, true).await;
    session(&t, &s, &id, false).await;
    // Not while it runs.
    running(&t, &s.ws, &id).await;
    let (code, _) = on_studio(&t, A::DeleteStudio, "maintain", &s.ws, &id)
        .await
        .err(409);
    assert_eq!(code, "studio_not_stopped");
    let job_id = get(&t, &s.ws, &id).await["session"]["jobId"]
        .as_str()
        .unwrap()
        .to_string();
    on_studio(&t, A::StopStudio, "maintain", &s.ws, &id)
        .await
        .ok(202);
    let job = t.job(&job_id).await;
    t.deliver(&t.job_event(&job, "FAILED", true, None, Some(143)))
        .await;

    on_studio(&t, A::DeleteStudio, "maintain", &s.ws, &id)
        .await
        .ok(204);
    let report = t.process_stream().await;
    assert_eq!(report.purged, 3);
    assert_eq!(report.data_deleted, 1);
    assert_eq!(records_of(&t, &s.ws, &id).await, 0);
    assert!(
        objects_under(&t, &format!("studios/{ws}/.studios/{id}/", ws = s.ws))
            .await
            .is_empty()
    );
    assert!(t.live_locks(&s.ws).await.is_empty());
}

#[tokio::test]
async fn renames_are_unique_per_studio_and_never_cross_to_a_clone() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let src = studio_with_mount(&t, &s, "Named", "s3://data-bucket/n/").await;
    let cp1 = session(&t, &s, &src, true).await;
    let cp2 = session(&t, &s, &src, true).await;
    let fork = clone(&t, &s.ws, &src, json!({"name": "Named fork"}))
        .await
        .id(201);
    let rename = |user: &'static str, id: String, cp: Value, name: &'static str| {
        let t = &t;
        let ws = s.ws.clone();
        async move {
            t.req(A::RenameCheckpoint)
                .user(user)
                .param("ws", &ws)
                .param("id", &id)
                .param("cpId", cp["id"].as_str().unwrap())
                .body(json!({"name": name}))
                .send()
                .await
        }
    };
    let r = rename("maintain", src.clone(), cp1.clone(), "before QC")
        .await
        .ok(200);
    assert_eq!(r["name"], "before QC");
    let (code, msg) = rename("maintain", src.clone(), cp2.clone(), "BEFORE qc")
        .await
        .err(409);
    assert_eq!(code, "checkpoint_name_taken");
    assert!(msg.contains("BEFORE qc"), "{msg}");
    let (_, msg) = rename("maintain", src.clone(), cp2.clone(), "checkpoint-7")
        .await
        .err(400);
    assert!(msg.starts_with("name: names of the form"), "{msg}");
    assert_eq!(
        rename("view", src.clone(), cp2.clone(), "x")
            .await
            .err(403)
            .0,
        "forbidden"
    );
    assert_eq!(
        rename("connect", src.clone(), cp2.clone(), "x")
            .await
            .err(403)
            .0,
        "forbidden"
    );
    // Case-only renames keep the name claimed; the old name becomes free again.
    rename("maintain", src.clone(), cp1.clone(), "Before QC")
        .await
        .ok(200);
    rename("maintain", src.clone(), cp2.clone(), "after QC")
        .await
        .ok(200);
    rename("maintain", src.clone(), cp1.clone(), "baseline")
        .await
        .ok(200);
    rename("maintain", src.clone(), cp2.clone(), "Before QC")
        .await
        .ok(200);
    assert_eq!(
        names(&checkpoints(&t, &s.ws, &src).await),
        ["Before QC", "baseline"]
    );
    // The clone's copies keep their own names, and can reuse the source's.
    assert_eq!(
        names(&checkpoints(&t, &s.ws, &fork).await),
        ["checkpoint-2", "checkpoint-1"]
    );
    rename("maintain", fork.clone(), cp1.clone(), "baseline")
        .await
        .ok(200);
    // A checkpoint of another studio is not found under this one.
    let other = t.studio(&s.ws, &s.ce, "Other").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        rename("maintain", other, cp1.clone(), "z").await.err(404).0,
        "not_found"
    );
}

#[tokio::test]
async fn connect_by_role_records_users_until_the_session_stops() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "Shared", "s3://data-bucket/s/").await;
    let (code, msg) = on_studio(&t, A::ConnectStudio, "connect", &s.ws, &id)
        .await
        .err(409);
    assert_eq!(code, "studio_not_running");
    assert!(msg.contains("stopped"), "{msg}");
    assert_eq!(get(&t, &s.ws, &id).await["url"], Value::Null);

    let job = running(&t, &s.ws, &id).await;
    let url = CONNECT_URL_PATTERN
        .replace("{workspaceId}", &s.ws)
        .replace("{studioId}", &id);
    assert_eq!(
        get(&t, &s.ws, &id).await["url"],
        url.as_str(),
        "the share link while running"
    );
    assert_eq!(
        on_studio(&t, A::ConnectStudio, "view", &s.ws, &id)
            .await
            .err(403)
            .0,
        "forbidden"
    );
    assert_eq!(
        on_studio(&t, A::ConnectStudio, "stranger", &s.ws, &id)
            .await
            .err(404)
            .0,
        "not_found"
    );
    for role in ["connect", "launch", "maintain", "admin", "owner", "connect"] {
        let r = on_studio(&t, A::ConnectStudio, role, &s.ws, &id)
            .await
            .ok(200);
        // The studio's URL with a connect link's token (tests/api/agent.rs checks it).
        let link = r["url"].as_str().unwrap();
        assert!(link.starts_with(&format!("{url}?studio_token=")), "{link}");
    }
    let view = get(&t, &s.ws, &id).await;
    let users = view["connectedUsers"].as_array().unwrap();
    let mut ids: Vec<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids[0], "connect", "most recent first");
    ids.sort();
    assert_eq!(ids, ["admin", "connect", "launch", "maintain", "owner"]);
    assert_eq!(users[0]["name"], "connect user");
    assert!(users[0]["lastSeenAt"].as_str().unwrap().ends_with('Z'));
    let listed = t
        .req(A::ListStudios)
        .user("view")
        .param("ws", &s.ws)
        .send()
        .await
        .ok(200);
    assert_eq!(
        listed["studios"][0]["connectedUsers"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // WHEN the session stops: no one is connected, no link
    on_studio(&t, A::StopStudio, "maintain", &s.ws, &id)
        .await
        .ok(202);
    t.deliver(&t.job_event(&job, "FAILED", true, None, Some(143)))
        .await;
    let stopped = get(&t, &s.ws, &id).await;
    assert_eq!(stopped["connectedUsers"], json!([]));
    assert_eq!(stopped["url"], Value::Null);
    assert_eq!(
        on_studio(&t, A::ConnectStudio, "connect", &s.ws, &id)
            .await
            .err(409)
            .0,
        "studio_not_running"
    );
}

#[tokio::test]
async fn checkpoint_lists_page_newest_first_and_long_histories_clone_whole() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let src = studio_with_mount(&t, &s, "Long", "s3://data-bucket/l/").await;
    // 52 sessions: more inherited records than one transaction holds.
    const SESSIONS: usize = 52;
    for i in 0..SESSIONS {
        let job = running(&t, &s.ws, &src).await;
        if i == SESSIONS - 1 {
            on_studio(&t, A::StopStudio, "maintain", &s.ws, &src)
                .await
                .ok(202);
            t.write_manifest(&env_of(&job, "CHECKPOINT_SAVE_URI")).await;
        }
        // Without a stop request the end is an error; the next start is a restart.
        t.deliver(&t.job_event(&job, "FAILED", true, Some("stopped"), Some(143)))
            .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = t
            .req(A::ListCheckpoints)
            .user("view")
            .param("ws", &s.ws)
            .param("id", &src)
            .query("limit", "20");
        if let Some(c) = &cursor {
            req = req.query("cursor", c);
        }
        let page = req.send().await.ok(200);
        seen.extend(
            names(page["checkpoints"].as_array().unwrap())
                .into_iter()
                .map(String::from),
        );
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=SESSIONS)
        .rev()
        .map(|n| format!("checkpoint-{n}"))
        .collect();
    assert_eq!(seen, expected);

    t.log.take();
    let fork = clone(&t, &s.ws, &src, json!({"name": "Long fork"}))
        .await
        .ok(201);
    let cost = studios_integration_tests::cost(t.log.take());
    println!("clone of a {SESSIONS}-checkpoint history: {cost:?}");
    let fork = fork["id"].as_str().unwrap();
    let inherited: Vec<Value> = {
        let page = t
            .req(A::ListCheckpoints)
            .user("view")
            .param("ws", &s.ws)
            .param("id", fork)
            .query("limit", "100")
            .send()
            .await
            .ok(200);
        page["checkpoints"].as_array().unwrap().clone()
    };
    assert_eq!(
        names(&inherited),
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let (code, _) = t
        .req(A::ListCheckpoints)
        .user("view")
        .param("ws", &s.ws)
        .param("id", &src)
        .query("cursor", "bm90LWEtY3Vyc29y")
        .send()
        .await
        .err(400);
    assert_eq!(code, "invalid_request");
}

/// Deleting released data happens off the table stream: the stream consumer only
/// enqueues; the worker deletes a page (≤ 1,000 objects) per message and re-enqueues the
/// rest, so 2,500 objects take 3 steps, and a repeated step is harmless.
#[tokio::test]
async fn released_data_is_deleted_by_the_worker_in_pages() {
    use studios_shared::cleanup::{run, CleanupTask, SqsTasks};
    let mut t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "big data", "s3://data-bucket/big/").await;
    session(&t, &s, &id, true).await;
    let prefix = format!("studios/{ws}/.studios/{id}/", ws = s.ws);
    // The session saved many small objects.
    for batch in (0..2500).collect::<Vec<_>>().chunks(20) {
        let puts = batch.iter().map(|i| {
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
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    let url = sqs
        .create_queue()
        .queue_name(format!("cleanup-{}", uuid::Uuid::now_v7().simple()))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    t.app.tasks = std::sync::Arc::new(SqsTasks::new(sqs.clone(), url.clone()));

    on_studio(&t, A::DeleteStudio, "maintain", &s.ws, &id)
        .await
        .ok(204);
    let report = t.process_stream().await;
    assert_eq!(report.data_deleted, 1, "released and queued");
    assert_eq!(
        objects_under(&t, &prefix).await.len(),
        1000,
        "a full page: nothing deleted on the stream"
    );

    // The worker, as Lambda's SQS trigger runs it: one message at a time.
    let mut steps = 0;
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(1)
            .send()
            .await
            .unwrap();
        let Some(message) = out.messages().first() else {
            break;
        };
        let task: CleanupTask = serde_json::from_str(message.body().unwrap()).unwrap();
        run(&t.app, &task).await.unwrap();
        if steps == 0 {
            // A redelivered first step (the worker died before deleting the message).
            run(&t.app, &task).await.unwrap();
        }
        sqs.delete_message()
            .queue_url(&url)
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
        steps += 1;
        assert!(steps < 10, "runaway");
    }
    assert!(steps >= 3, "2,500 objects in pages of 1,000: {steps} steps");
    let left =
        t.s3.list_objects_v2()
            .bucket(WORK_BUCKET)
            .prefix(&prefix)
            .send()
            .await
            .unwrap();
    assert_eq!(left.key_count(), Some(0));
}

/// The agent's checkpoint code (chunks + manifest), as a session runs it.
mod with_chunks {
    use super::*;
    use std::sync::Arc;
    use studios_agent::checkpoint::{restore, save, Index, Layout, Source};
    use studios_agent::objects::S3Objects;

    async fn objects() -> Arc<S3Objects> {
        Arc::new(S3Objects::new(&aws_config::load_from_env().await))
    }

    #[tokio::test]
    async fn a_clones_checkpoint_that_points_into_its_deleted_parent_still_restores() {
        let t = TestApp::new().await;
        let s = setup(&t).await;
        let store = objects().await;
        let parent = studio_with_mount(&t, &s, "Parent", "s3://data-bucket/p/").await;

        // The parent's session saves a big file and a small one.
        let big: Vec<u8> = (0..6_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
        let one = tempfile::tempdir().unwrap();
        std::fs::write(one.path().join("big.bin"), &big).unwrap();
        std::fs::write(one.path().join("notes.txt"), "v1").unwrap();
        let job = running(&t, &s.ws, &parent).await;
        let layout = Layout::from_save_uri(&env_of(&job, "CHECKPOINT_SAVE_URI")).unwrap();
        save(
            store.clone(),
            one.path(),
            &layout,
            &mut Index::default(),
            &[],
        )
        .await
        .unwrap();
        on_studio(&t, A::StopStudio, "maintain", &s.ws, &parent)
            .await
            .ok(202);
        t.deliver(&t.job_event(&job, "FAILED", true, None, Some(0)))
            .await;

        // The clone's session restores it, changes the small file, saves: its
        // manifest points at the parent's chunks for the big one.
        let child = clone(&t, &s.ws, &parent, json!({"name": "Child"}))
            .await
            .id(201);
        let job = running(&t, &s.ws, &child).await;
        let two = tempfile::tempdir().unwrap();
        let (mut index, _) = restore(
            store.clone(),
            &Source {
                uri: &env_of(&job, "CHECKPOINT_RESTORE_URI"),
                manifest_sha256: None,
            },
            two.path(),
        )
        .await
        .unwrap();
        std::fs::write(two.path().join("notes.txt"), "v2").unwrap();
        let child_save = env_of(&job, "CHECKPOINT_SAVE_URI");
        let stats = save(
            store.clone(),
            two.path(),
            &Layout::from_save_uri(&child_save).unwrap(),
            &mut index,
            &[],
        )
        .await
        .unwrap();
        assert_eq!(stats.transferred_chunks, 1, "only the changed file");
        on_studio(&t, A::StopStudio, "maintain", &s.ws, &child)
            .await
            .ok(202);
        t.deliver(&t.job_event(&job, "FAILED", true, None, Some(0)))
            .await;
        assert_eq!(
            checkpoints(&t, &s.ws, &child).await[0]["status"],
            "finalized"
        );

        // WHEN the parent is deleted, its chunks stay: the clone's checkpoint needs them.
        on_studio(&t, A::DeleteStudio, "maintain", &s.ws, &parent)
            .await
            .ok(204);
        assert_eq!(t.process_stream().await.data_deleted, 0);
        let three = tempfile::tempdir().unwrap();
        let source = Source {
            uri: &child_save,
            manifest_sha256: None,
        };
        restore(store.clone(), &source, three.path())
            .await
            .expect("the clone's checkpoint restores whole");
        assert_eq!(std::fs::read(three.path().join("big.bin")).unwrap(), big);
        assert_eq!(
            std::fs::read_to_string(three.path().join("notes.txt")).unwrap(),
            "v2"
        );

        // WHEN the clone goes too, both studios' chunks and manifests are deleted.
        on_studio(&t, A::DeleteStudio, "maintain", &s.ws, &child)
            .await
            .ok(204);
        assert_eq!(t.process_stream().await.data_deleted, 2);
        for id in [&parent, &child] {
            assert!(
                objects_under(&t, &format!("studios/{ws}/.studios/{id}/", ws = s.ws))
                    .await
                    .is_empty()
            );
        }
    }

    /// The manifest's SHA-256 goes from the session's last report to the checkpoint's
    /// record and into the next session's job; a manifest rewritten after it was
    /// recorded is refused there (docs/security.md, "Checkpoints and restore").
    #[tokio::test]
    async fn a_manifest_rewritten_after_its_checkpoint_was_recorded_is_refused() {
        let t = TestApp::new().await;
        let s = setup(&t).await;
        let store = objects().await;
        let id = studio_with_mount(&t, &s, "Hashed", "s3://data-bucket/h/").await;
        let job = running(&t, &s.ws, &id).await;
        let token = env_of(&job, "STUDIO_AGENT_TOKEN");
        let one = tempfile::tempdir().unwrap();
        std::fs::write(one.path().join("notes.txt"), "v1").unwrap();
        let save_uri = env_of(&job, "CHECKPOINT_SAVE_URI");
        let stats = save(
            store.clone(),
            one.path(),
            &Layout::from_save_uri(&save_uri).unwrap(),
            &mut Index::default(),
            &[],
        )
        .await
        .unwrap();
        let sha = stats.manifest_sha256.unwrap();
        // Not a SHA-256: refused.
        let bad = t
            .req(A::AgentReport)
            .bearer(&token)
            .body(json!({"state": "ready", "manifestSha256": "../x"}))
            .send()
            .await
            .err(400);
        assert_eq!(bad.0, "invalid_request");
        t.req(A::AgentReport)
            .bearer(&token)
            .body(json!({"state": "ready", "manifestSha256": sha}))
            .send()
            .await
            .ok(200);
        on_studio(&t, A::StopStudio, "maintain", &s.ws, &id)
            .await
            .ok(202);
        t.deliver(&t.job_event(&job, "SUCCEEDED", true, None, Some(0)))
            .await;
        let recorded = checkpoints(&t, &s.ws, &id).await.remove(0);
        assert_eq!(recorded["status"], "finalized");
        assert_eq!(recorded["manifestSha256"], json!(sha));

        // Rewritten later by whoever can write the work directory: a link out.
        let key = format!("{save_uri}manifest.json");
        let (bucket, path) = key
            .strip_prefix("s3://")
            .and_then(|k| k.split_once('/'))
            .unwrap();
        let original =
            t.s3.get_object()
                .bucket(bucket)
                .key(path)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes();
        let mut hostile: Value = serde_json::from_slice(&original).unwrap();
        hostile["symlinks"] = json!([{"path": "etc", "target": "/etc"}]);
        t.s3.put_object()
            .bucket(bucket)
            .key(path)
            .body(hostile.to_string().into_bytes().into())
            .send()
            .await
            .unwrap();

        // The next session is told what to expect, and refuses the other manifest.
        let job = running(&t, &s.ws, &id).await;
        assert_eq!(env_of(&job, "CHECKPOINT_RESTORE_URI"), save_uri);
        assert_eq!(env_of(&job, "CHECKPOINT_RESTORE_SHA256"), sha);
        let expected = env_of(&job, "CHECKPOINT_RESTORE_SHA256");
        let source = Source {
            uri: &save_uri,
            manifest_sha256: Some(&expected),
        };
        let two = tempfile::tempdir().unwrap();
        let err = restore(store.clone(), &source, two.path())
            .await
            .unwrap_err();
        assert!(
            err.contains("manifest.json was changed after the checkpoint was recorded"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(two.path()).unwrap().count(), 0);
    }
}
