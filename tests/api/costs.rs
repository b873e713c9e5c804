//! DynamoDB cost per API action, counted by an SDK interceptor: requests per operation
//! and sequential round trips. Budgets (docs/performance.md): a read action waits on exactly one
//! round trip; a write action on at most one read and one write. `cargo test costs --
//! --nocapture` prints the table kept in docs/performance.md.

use serde_json::json;
use studios_integration_tests::{cost, Cost, Req, TestApp, A};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Read,
    Write,
    NoStore,
}

async fn measure(t: &TestApp, req: Req<'_>, expected_status: u16) -> (Cost, f64) {
    t.log.take();
    let started = std::time::Instant::now();
    let r = req.send().await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(r.status, expected_status, "{}", r.json);
    (cost(t.log.take()), ms)
}

#[tokio::test]
async fn every_action_stays_within_its_round_trip_budget() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({})).await;
    t.ensure_queue("q").await;
    let spare_ce = t.compute_env(&ws, json!({})).await;
    let link = t
        .data_link(&ws, "d", "s3://data-bucket/x", "us-east-1")
        .await;
    let spare_link = t
        .data_link(&ws, "e", "s3://data-bucket/y", "us-east-1")
        .await;
    for i in 0..30 {
        t.studio(&ws, &ce, &format!("s{i}")).await;
    }
    let st = t.studio(&ws, &ce, "measured").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let doomed = t.studio(&ws, &ce, "doomed").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.req(A::SetMember)
        .user("owner")
        .param("ws", &ws)
        .param("userId", "leaver")
        .body(json!({"role": "view"}))
        .send()
        .await
        .ok(200);

    let u = |a: A, user: &str| t.req(a).user(user).param("ws", &ws);
    let rows: Vec<(A, Kind, Req<'_>, u16)> = vec![
        (
            A::ListWorkspaces,
            Kind::Read,
            t.req(A::ListWorkspaces).user("view"),
            200,
        ),
        (
            A::CreateWorkspace,
            Kind::Write,
            t.req(A::CreateWorkspace)
                .user("platform-admin")
                .body(json!({"name": "w"})),
            201,
        ),
        (A::ListMembers, Kind::Read, u(A::ListMembers, "view"), 200),
        (
            A::SetMember,
            Kind::Write,
            u(A::SetMember, "admin")
                .param("userId", "newbie")
                .body(json!({"role": "view"})),
            200,
        ),
        (
            A::RemoveMember,
            Kind::Write,
            u(A::RemoveMember, "admin").param("userId", "leaver"),
            204,
        ),
        (
            A::ListComputeEnvs,
            Kind::Read,
            u(A::ListComputeEnvs, "view"),
            200,
        ),
        (
            A::CreateComputeEnv,
            Kind::Write,
            u(A::CreateComputeEnv, "admin").body(json!({
            "name": "q", "region": "us-east-1",
            "jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/q",
            "maxCpus": 4, "maxMemoryMiB": 8192, "workDir": format!("s3://work-bucket/x/{ws}")})),
            201,
        ),
        (
            A::GetComputeEnv,
            Kind::Read,
            u(A::GetComputeEnv, "view").param("ceId", &ce),
            200,
        ),
        (
            A::DeleteComputeEnv,
            Kind::Write,
            u(A::DeleteComputeEnv, "admin").param("ceId", &spare_ce),
            204,
        ),
        (
            A::ListDataLinks,
            Kind::Read,
            u(A::ListDataLinks, "view"),
            200,
        ),
        (
            A::CreateDataLink,
            Kind::Write,
            u(A::CreateDataLink, "admin")
                .body(json!({"name": "n", "uri": "s3://data-bucket/z", "region": "us-east-1"})),
            201,
        ),
        (
            A::GetDataLink,
            Kind::Read,
            u(A::GetDataLink, "view").param("linkId", &link),
            200,
        ),
        (
            A::DeleteDataLink,
            Kind::Write,
            u(A::DeleteDataLink, "admin").param("linkId", &spare_link),
            204,
        ),
        (
            A::ListTemplates,
            Kind::NoStore,
            t.req(A::ListTemplates).user("view"),
            200,
        ),
        (
            A::ListStudios,
            Kind::Read,
            u(A::ListStudios, "view").query("limit", "20"),
            200,
        ),
        (
            A::ListStudios,
            Kind::Read,
            u(A::ListStudios, "view").query("search", "s1"),
            200,
        ),
        (
            A::AddStudio,
            Kind::Write,
            u(A::AddStudio, "maintain").body(json!({
            "name": "new", "computeEnvId": ce, "template": {"kind": "jupyter"},
            "mounts": [{"dataLinkId": link}]})),
            201,
        ),
        (
            A::GetStudio,
            Kind::Read,
            u(A::GetStudio, "view").param("id", &st),
            200,
        ),
        (
            A::UpdateStudio,
            Kind::Write,
            u(A::UpdateStudio, "maintain")
                .param("id", &st)
                .body(json!({"name": "renamed", "mounts": [{"dataLinkId": link}]})),
            200,
        ),
        (
            A::DeleteStudio,
            Kind::Write,
            u(A::DeleteStudio, "maintain").param("id", &doomed),
            204,
        ),
    ];
    println!("| action | DynamoDB requests | sequential round trips | ms on the emulator |");
    println!("|---|---|---|---|");
    for (action, kind, req, status) in rows {
        let (c, ms) = measure(&t, req, status).await;
        println!(
            "| {} {} | {} | {} | {ms:.1} |",
            action.method(),
            action.path(),
            if c.operations.is_empty() {
                "none".to_string()
            } else {
                c.operations.join(" + ")
            },
            c.round_trips
        );
        let reads = c
            .operations
            .iter()
            .filter(|o| ["BatchGetItem", "GetItem", "Query"].contains(&o.as_str()))
            .count();
        let writes = c
            .operations
            .iter()
            .filter(|o| o.as_str() == "TransactWriteItems")
            .count();
        match kind {
            Kind::Read => {
                assert_eq!(c.round_trips, 1, "{action:?}: {c:?}");
                assert_eq!(writes, 0, "{action:?}: {c:?}");
            }
            Kind::Write => {
                // One write, and the reads (if any) all in the round trip before it.
                assert!(c.round_trips <= 2, "{action:?}: {c:?}");
                assert_eq!(writes, 1, "{action:?}: {c:?}");
                assert!(reads <= 2, "{action:?}: {c:?}");
            }
            Kind::NoStore => assert!(c.operations.is_empty(), "{action:?}: {c:?}"),
        }
    }
}

/// Session actions: start and the event consumer are the documented exceptions (start
/// also records the Batch job id; a terminal event also reads S3 for the manifest).
#[tokio::test]
async fn session_actions_and_events_cost() {
    use crate::lifecycle::{setup, studio_with_mount};
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "measured", "s3://data-bucket/m/").await;
    // Warm the job definition cache, as a warm Lambda would have it.
    let warm = studio_with_mount(&t, &s, "warm", "s3://data-bucket/w/").await;
    t.req(A::StartStudio)
        .user("maintain")
        .param("ws", &s.ws)
        .param("id", &warm)
        .send()
        .await
        .ok(202);

    println!("| action | DynamoDB requests | sequential DynamoDB round trips |");
    println!("|---|---|---|");
    let row = |name: &str, c: &Cost| {
        println!(
            "| {name} | {} | {} |",
            c.operations.join(" + "),
            c.round_trips
        );
    };
    let (c, _) = measure(
        &t,
        t.req(A::StartStudio)
            .user("maintain")
            .param("ws", &s.ws)
            .param("id", &id),
        202,
    )
    .await;
    row("POST …/studios/{id}/start (+ SubmitJob)", &c);
    assert_eq!(
        c.operations,
        ["BatchGetItem", "TransactWriteItems", "UpdateItem"]
    );
    assert_eq!(c.round_trips, 3);
    let studio = crate::lifecycle::get(&t, &s.ws, &id).await;
    let job = t.job(studio["session"]["jobId"].as_str().unwrap()).await;
    t.log.take();
    t.deliver(&t.job_event(&job, "RUNNING", true, None, None))
        .await;
    let c = cost(t.log.take());
    row("Batch event (progress)", &c);
    assert_eq!((c.operations.len(), c.round_trips), (2, 2));
    t.log.take();
    t.deliver(&t.job_event(&job, "RUNNING", true, None, None))
        .await;
    let c = cost(t.log.take());
    row("Batch event (duplicate)", &c);
    assert_eq!(c.operations, ["BatchGetItem"]);
    let (c, _) = measure(
        &t,
        t.req(A::StopStudio)
            .user("maintain")
            .param("ws", &s.ws)
            .param("id", &id),
        202,
    )
    .await;
    row("POST …/studios/{id}/stop (+ TerminateJob)", &c);
    assert_eq!((c.operations.len(), c.round_trips), (2, 2));
    t.write_manifest(&studios_integration_tests::save_uri(&job))
        .await;
    t.log.take();
    t.deliver(&t.job_event(&job, "FAILED", true, Some("stopped"), Some(143)))
        .await;
    let c = cost(t.log.take());
    row("Batch event (terminal, + S3 HeadObject)", &c);
    assert_eq!(c.operations, ["BatchGetItem", "TransactWriteItems"]);
    let (c, _) = measure(
        &t,
        t.req(A::ListMounts).user("view").param("ws", &s.ws),
        200,
    )
    .await;
    row("GET /workspaces/{ws}/mounts", &c);
    assert_eq!(c.round_trips, 1);
    let (c, _) = measure(
        &t,
        t.req(A::ListCheckpoints)
            .user("view")
            .param("ws", &s.ws)
            .param("id", &id),
        200,
    )
    .await;
    row("GET …/studios/{id}/checkpoints", &c);
    assert_eq!(c.round_trips, 1);
    let cp = crate::lifecycle::get(&t, &s.ws, &id).await["restoreFrom"]["checkpointId"]
        .as_str()
        .unwrap()
        .to_string();
    let (c, _) = measure(
        &t,
        t.req(A::RenameCheckpoint)
            .user("maintain")
            .param("ws", &s.ws)
            .param("id", &id)
            .param("cpId", &cp)
            .body(json!({"name": "baseline"})),
        200,
    )
    .await;
    row("PATCH …/checkpoints/{cpId}", &c);
    assert_eq!(c.operations, ["BatchGetItem", "TransactWriteItems"]);
    let (c, _) = measure(
        &t,
        t.req(A::CloneStudio)
            .user("maintain")
            .param("ws", &s.ws)
            .param("id", &id)
            .body(json!({"name": "fork"})),
        201,
    )
    .await;
    row("POST …/studios/{id}/clone (1 checkpoint inherited)", &c);
    assert_eq!(c.round_trips, 2, "{c:?}");
    assert_eq!(
        c.operations.len(),
        3,
        "BatchGetItem ‖ Query, then one transaction"
    );
    // Connect: the warm studio is running once its job reports RUNNING.
    let warm_job = crate::lifecycle::get(&t, &s.ws, &warm).await["session"]["jobId"]
        .as_str()
        .unwrap()
        .to_string();
    let warm_job = t.job(&warm_job).await;
    t.deliver(&t.job_event(&warm_job, "RUNNING", true, None, None))
        .await;
    let (c, _) = measure(
        &t,
        t.req(A::ConnectStudio)
            .user("connect")
            .param("ws", &s.ws)
            .param("id", &warm),
        200,
    )
    .await;
    row("POST …/studios/{id}/connect", &c);
    assert_eq!(c.operations, ["BatchGetItem", "TransactWriteItems"]);
}
