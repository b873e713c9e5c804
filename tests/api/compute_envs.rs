use serde_json::json;
use studios_integration_tests::{TestApp, A};

#[tokio::test]
async fn create_list_get_delete() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let id = t
        .compute_env(&ws, json!({"workDir": "S3://work-bucket//studios"}))
        .await;
    let ce = t
        .req(A::GetComputeEnv)
        .user("view")
        .param("ws", &ws)
        .param("ceId", &id)
        .send()
        .await
        .ok(200);
    assert_eq!(ce["name"], "cpu-queue");
    assert_eq!(ce["workDir"], "s3://work-bucket/studios/");
    assert_eq!(ce["maxMemoryMiB"], 65536);
    assert_eq!(ce["gpuEnabled"], false);
    let list = t
        .req(A::ListComputeEnvs)
        .user("view")
        .param("ws", &ws)
        .send()
        .await
        .ok(200);
    assert_eq!(list["computeEnvs"].as_array().unwrap().len(), 1);
    t.req(A::DeleteComputeEnv)
        .user("admin")
        .param("ws", &ws)
        .param("ceId", &id)
        .send()
        .await
        .ok(204);
    t.req(A::GetComputeEnv)
        .user("view")
        .param("ws", &ws)
        .param("ceId", &id)
        .send()
        .await
        .err(404);
    t.req(A::DeleteComputeEnv)
        .user("admin")
        .param("ws", &ws)
        .param("ceId", &id)
        .send()
        .await
        .err(404);
}

#[tokio::test]
async fn delete_is_refused_while_a_studio_uses_it() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({})).await;
    let studio = t.studio(&ws, &ce, "analysis").await;
    let (code, message) = t
        .req(A::DeleteComputeEnv)
        .user("admin")
        .param("ws", &ws)
        .param("ceId", &ce)
        .send()
        .await
        .err(409);
    assert_eq!(code, "compute_env_in_use");
    assert!(message.contains("used by 1 studio"), "{message}");
    t.req(A::DeleteStudio)
        .user("maintain")
        .param("ws", &ws)
        .param("id", studio["id"].as_str().unwrap())
        .send()
        .await
        .ok(204);
    t.req(A::DeleteComputeEnv)
        .user("admin")
        .param("ws", &ws)
        .param("ceId", &ce)
        .send()
        .await
        .ok(204);
}

#[tokio::test]
async fn ids_from_another_workspace_are_not_found() {
    let t = TestApp::new().await;
    let ws1 = t.workspace_with_roles().await;
    let ws2 = t.workspace_with_roles().await;
    let ce2 = t.compute_env(&ws2, json!({})).await;
    t.req(A::GetComputeEnv)
        .user("owner")
        .param("ws", &ws1)
        .param("ceId", &ce2)
        .send()
        .await
        .err(404);
    t.req(A::DeleteComputeEnv)
        .user("owner")
        .param("ws", &ws1)
        .param("ceId", &ce2)
        .send()
        .await
        .err(404);
    // Still there in its own workspace.
    t.req(A::GetComputeEnv)
        .user("owner")
        .param("ws", &ws2)
        .param("ceId", &ce2)
        .send()
        .await
        .ok(200);
}
