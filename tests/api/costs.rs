//! DynamoDB cost per API action, counted by an SDK interceptor: requests per operation
//! and sequential round trips. Budgets (DESIGN §10): a read action waits on exactly one
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
            "maxCpus": 4, "maxMemoryMiB": 8192, "workDir": "s3://work-bucket/x"})),
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
