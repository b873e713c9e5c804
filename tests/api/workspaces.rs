use serde_json::json;
use studios_integration_tests::{TestApp, A, PLATFORM_ADMIN};

#[tokio::test]
async fn platform_admin_creates_a_workspace_and_becomes_its_owner() {
    let t = TestApp::new().await;
    // WHEN the platform admin creates a workspace
    let ws = t
        .req(A::CreateWorkspace)
        .user(PLATFORM_ADMIN)
        .body(json!({"name": "Genomics", "description": "the lab"}))
        .send()
        .await
        .ok(201);
    assert_eq!(ws["name"], "Genomics");
    assert_eq!(ws["role"], "owner");
    // THEN it is listed among the admin's workspaces, with the owner role
    let list = t
        .req(A::ListWorkspaces)
        .user(PLATFORM_ADMIN)
        .send()
        .await
        .ok(200);
    assert_eq!(
        list["workspaces"],
        json!([{"id": ws["id"], "name": "Genomics", "role": "owner"}])
    );
    // AND someone else sees no workspaces
    let other = t
        .req(A::ListWorkspaces)
        .user("stranger")
        .send()
        .await
        .ok(200);
    assert_eq!(other["workspaces"], json!([]));
}

#[tokio::test]
async fn only_platform_admins_create_workspaces() {
    let t = TestApp::new().await;
    let (code, message) = t
        .req(A::CreateWorkspace)
        .user("someone")
        .body(json!({"name": "Mine"}))
        .send()
        .await
        .err(403);
    assert_eq!(code, "forbidden");
    assert!(message.contains("platform administrators"), "{message}");
    let (code, _) = t
        .req(A::CreateWorkspace)
        .body(json!({"name": "Mine"}))
        .send()
        .await
        .err(401);
    assert_eq!(code, "unauthenticated");
}

#[tokio::test]
async fn members_see_their_role_in_each_workspace() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let list = t.req(A::ListWorkspaces).user("launch").send().await.ok(200);
    assert_eq!(
        list["workspaces"],
        json!([{"id": ws, "name": "Genomics", "role": "launch"}])
    );
}

#[tokio::test]
async fn templates_list_the_configured_images() {
    let t = TestApp::new().await;
    let list = t.req(A::ListTemplates).user("anyone").send().await.ok(200);
    let kinds: Vec<&str> = list["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["jupyter", "rstudio", "vscode", "xpra"]);
    assert_eq!(
        list["templates"][1]["image"],
        "registry.example.org/studios/rstudio:1"
    );
    t.req(A::ListTemplates).send().await.err(401);
}

#[tokio::test]
async fn display_name_falls_back_to_email_then_subject() {
    let t = TestApp::new().await;
    let ws = t
        .req(A::CreateWorkspace)
        .claims(&[("sub", PLATFORM_ADMIN), ("email", "admin@example.org")])
        .body(json!({"name": "Mail"}))
        .send()
        .await
        .ok(201);
    assert_eq!(ws["createdBy"]["name"], "admin@example.org");
    // A Cognito access token has `username` (and no name or email).
    let ws = t
        .req(A::CreateWorkspace)
        .claims(&[("sub", PLATFORM_ADMIN), ("username", "admin-user")])
        .body(json!({"name": "Access token"}))
        .send()
        .await
        .ok(201);
    assert_eq!(ws["createdBy"]["name"], "admin-user");
    let ws = t
        .req(A::CreateWorkspace)
        .claims(&[("sub", PLATFORM_ADMIN)])
        .body(json!({"name": "Bare"}))
        .send()
        .await
        .ok(201);
    assert_eq!(ws["createdBy"]["name"], PLATFORM_ADMIN);
}
