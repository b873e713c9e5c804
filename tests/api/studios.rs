use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use std::collections::HashSet;
use studios_integration_tests::{TestApp, A};

/// Puts a studio into `status` as the lifecycle would (there is no API to do so here).
pub async fn force_status(t: &TestApp, ws: &str, id: &str, status: &str) {
    t.client
        .update_item()
        .table_name(&t.table)
        .key("PK", AttributeValue::S(format!("WS#{ws}")))
        .key("SK", AttributeValue::S(format!("STUDIO#{id}")))
        .update_expression("SET #s = :s")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":s", AttributeValue::S(status.into()))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn add_view_update_delete() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({})).await;
    let link = t
        .data_link(&ws, "reads", "s3://scratch-bucket/reads/", "us-east-1")
        .await;
    // WHEN a maintainer adds a studio with a data link and a raw URI mounted
    let added = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &ws)
        .body(json!({
            "name": "RNA-seq QC",
            "description": "first pass",
            "computeEnvId": ce,
            "template": {"kind": "rstudio"},
            "condaPackages": ["conda-forge::scanpy=1.10", "numpy>=1.26"],
            "mounts": [{"dataLinkId": link}, {"uri": "s3://ref-data/genomes/hg38"}],
        }))
        .send()
        .await
        .ok(201);
    // THEN it is stopped, with defaults and resolved mounts
    assert_eq!(added["status"], "stopped");
    assert_eq!(
        added["resources"],
        json!({"cpus": 2, "gpus": 0, "memoryMiB": 8192})
    );
    assert_eq!(added["computeEnv"]["name"], "cpu-queue");
    assert_eq!(
        added["author"],
        json!({"id": "maintain", "name": "maintain user"})
    );
    assert_eq!(added["parent"], Value::Null);
    assert_eq!(added["url"], Value::Null);
    assert_eq!(added["connectedUsers"], json!([]));
    assert_eq!(added["warnings"], json!([]));
    assert_eq!(
        added["mounts"],
        json!([
            {"uri": "s3://scratch-bucket/reads/", "name": "reads", "mountPath": "/workspace/data/reads",
             "access": "read-write", "dataLinkId": link},
            {"uri": "s3://ref-data/genomes/hg38/", "name": "hg38", "mountPath": "/workspace/data/hg38",
             "access": "read-only"},
        ])
    );
    let id = added["id"].as_str().unwrap();
    let viewed = t
        .req(A::GetStudio)
        .user("view")
        .param("ws", &ws)
        .param("id", id)
        .send()
        .await
        .ok(200);
    let mut expected = added.clone();
    expected["warnings"] = json!([]);
    assert_eq!(viewed, expected);

    // WHEN it is renamed and resized
    let updated = t
        .req(A::UpdateStudio)
        .user("maintain")
        .param("ws", &ws)
        .param("id", id)
        .body(json!({"name": "RNA-seq QC v2", "resources": {"cpus": 4}}))
        .send()
        .await
        .ok(200);
    assert_eq!(updated["name"], "RNA-seq QC v2");
    assert_eq!(
        updated["resources"],
        json!({"cpus": 4, "gpus": 0, "memoryMiB": 8192})
    );
    assert_eq!(updated["mounts"], added["mounts"]);
    // THEN the old name is free again and the new one is taken
    t.studio(&ws, &ce, "RNA-seq QC").await;
    let (code, _) = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &ws)
        .body(json!({"name": "rna-SEQ qc V2", "computeEnvId": ce, "template": {"kind": "jupyter"}}))
        .send()
        .await
        .err(409);
    assert_eq!(code, "name_taken");

    t.req(A::DeleteStudio)
        .user("maintain")
        .param("ws", &ws)
        .param("id", id)
        .send()
        .await
        .ok(204);
    t.req(A::GetStudio)
        .user("view")
        .param("ws", &ws)
        .param("id", id)
        .send()
        .await
        .err(404);
    // The deleted studio's name can be used again.
    t.studio(&ws, &ce, "RNA-seq QC v2").await;
}

#[tokio::test]
async fn cross_region_data_is_allowed_with_a_warning() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({})).await;
    let link = t
        .data_link(&ws, "eu-data", "s3://eu-bucket/x", "eu-west-1")
        .await;
    let added = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &ws)
        .body(
            json!({"name": "far", "computeEnvId": ce, "template": {"kind": "vscode"},
                     "mounts": [{"dataLinkId": link}]}),
        )
        .send()
        .await
        .ok(201);
    let warnings = added["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    let w = warnings[0].as_str().unwrap();
    assert!(w.contains("eu-west-1") && w.contains("us-east-1"), "{w}");
    assert_eq!(added["mounts"][0]["access"], "read-only");
}

#[tokio::test]
async fn update_and_delete_only_while_stopped_or_errored() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({})).await;
    let id = t.studio(&ws, &ce, "busy").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for status in ["starting", "running", "stopping"] {
        force_status(&t, &ws, &id, status).await;
        let (code, message) = t
            .req(A::UpdateStudio)
            .user("maintain")
            .param("ws", &ws)
            .param("id", &id)
            .body(json!({"description": "x"}))
            .send()
            .await
            .err(409);
        assert_eq!(code, "studio_not_stopped");
        assert!(message.contains(status), "{message}");
        let (code, _) = t
            .req(A::DeleteStudio)
            .user("maintain")
            .param("ws", &ws)
            .param("id", &id)
            .send()
            .await
            .err(409);
        assert_eq!(code, "studio_not_stopped");
    }
    force_status(&t, &ws, &id, "errored").await;
    t.req(A::UpdateStudio)
        .user("maintain")
        .param("ws", &ws)
        .param("id", &id)
        .body(json!({"description": "fixed"}))
        .send()
        .await
        .ok(200);
    t.req(A::DeleteStudio)
        .user("maintain")
        .param("ws", &ws)
        .param("id", &id)
        .send()
        .await
        .ok(204);
}

#[tokio::test]
async fn ids_from_another_workspace_are_not_found() {
    let t = TestApp::new().await;
    let ws1 = t.workspace_with_roles().await;
    let ws2 = t.workspace_with_roles().await;
    let ce1 = t.compute_env(&ws1, json!({})).await;
    let ce2 = t.compute_env(&ws2, json!({})).await;
    let st2 = t.studio(&ws2, &ce2, "theirs").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for action in [A::GetStudio, A::UpdateStudio, A::DeleteStudio] {
        t.req(action)
            .user("owner")
            .param("ws", &ws1)
            .param("id", &st2)
            .body(json!({"description": "x"}))
            .send()
            .await
            .err(404);
    }
    // A compute environment of another workspace cannot be used either.
    let (_, message) = t
        .req(A::AddStudio)
        .user("owner")
        .param("ws", &ws1)
        .body(json!({"name": "n", "computeEnvId": ce2, "template": {"kind": "jupyter"}}))
        .send()
        .await
        .err(400);
    assert!(
        message.starts_with("computeEnvId: no compute environment"),
        "{message}"
    );
    let _ = ce1;
}

async fn all_pages(t: &TestApp, ws: &str, search: Option<&str>, limit: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut req = t
            .req(A::ListStudios)
            .user("view")
            .param("ws", ws)
            .query("limit", limit);
        if let Some(s) = search {
            req = req.query("search", s);
        }
        if let Some(c) = &cursor {
            req = req.query("cursor", c);
        }
        let page = req.send().await.ok(200);
        let studios = page["studios"].as_array().unwrap();
        assert!(studios.len() <= limit.parse().unwrap());
        ids.extend(
            studios
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn pagination_over_120_studios_returns_each_once() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({})).await;
    let gpu = t
        .compute_env(&ws, json!({"name": "gpu-queue", "gpuEnabled": true}))
        .await;
    let mut created = Vec::new();
    for i in 0..120 {
        let env = if i % 3 == 0 { &gpu } else { &ce };
        let name = if i % 2 == 0 {
            format!("even-{i}")
        } else {
            format!("odd-{i}")
        };
        created.push(
            t.studio(&ws, env, &name).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let ids = all_pages(&t, &ws, None, "25").await;
    assert_eq!(ids.len(), 120);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 120);
    // Newest first.
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(ids, newest_first);

    // Filtered pages also return each match once.
    let even = all_pages(&t, &ws, Some("EVEN"), "7").await;
    assert_eq!(even.len(), 60);
    assert_eq!(even.iter().collect::<HashSet<_>>().len(), 60);
    let gpu_even = all_pages(&t, &ws, Some("even computeEnv:gpu-queue"), "100").await;
    assert_eq!(gpu_even.len(), 20);
    let by_id = all_pages(&t, &ws, Some(&format!("computeEnv:{gpu}")), "100").await;
    assert_eq!(by_id.len(), 40);
}

#[tokio::test]
async fn search_by_author_and_status() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({})).await;
    let mine = t.studio(&ws, &ce, "mine").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.req(A::AddStudio)
        .user("owner")
        .param("ws", &ws)
        .body(json!({"name": "owners", "computeEnvId": ce, "template": {"kind": "xpra"}}))
        .send()
        .await
        .ok(201);
    let by_author = all_pages(&t, &ws, Some("author:maintain"), "10").await;
    assert_eq!(by_author, vec![mine.clone()]);
    let by_name = all_pages(&t, &ws, Some("author:\"owner user\""), "10").await;
    assert_eq!(by_name.len(), 1);
    force_status(&t, &ws, &mine, "running").await;
    assert_eq!(
        all_pages(&t, &ws, Some("status:running"), "10").await,
        vec![mine]
    );
    assert_eq!(
        all_pages(&t, &ws, Some("status:errored"), "10").await.len(),
        0
    );
    let (_, message) = t
        .req(A::ListStudios)
        .user("view")
        .param("ws", &ws)
        .query("search", "status:paused")
        .send()
        .await
        .err(400);
    assert!(
        message.starts_with("search: unknown status 'paused'"),
        "{message}"
    );
    for bad in ["0", "101", "ten"] {
        let (_, message) = t
            .req(A::ListStudios)
            .user("view")
            .param("ws", &ws)
            .query("limit", bad)
            .send()
            .await
            .err(400);
        assert!(message.starts_with("limit:"), "{message}");
    }
    let (_, message) = t
        .req(A::ListStudios)
        .user("view")
        .param("ws", &ws)
        .query("cursor", "bm90LWEtY3Vyc29y")
        .send()
        .await
        .err(400);
    assert!(message.starts_with("cursor:"), "{message}");
    // A tampered cursor that decodes to a key over DynamoDB's limit: 400, not 500.
    let huge: String = {
        let key = format!("STUDIO#{}", "a".repeat(1100));
        // URL-safe base64 without padding, by hand (3 bytes → 4 characters).
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        key.as_bytes()
            .chunks(3)
            .flat_map(|c| {
                let n =
                    c.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - c.len()));
                (0..=c.len()).map(move |i| ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char)
            })
            .collect()
    };
    for cursor in [huge.as_str(), &"A".repeat(3000)] {
        let (_, message) = t
            .req(A::ListStudios)
            .user("view")
            .param("ws", &ws)
            .query("cursor", cursor)
            .send()
            .await
            .err(400);
        assert!(message.starts_with("cursor:"), "{message}");
    }
}
