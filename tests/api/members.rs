use serde_json::json;
use studios_integration_tests::{TestApp, A, PLATFORM_ADMIN};

async fn set(
    t: &TestApp,
    by: &str,
    ws: &str,
    user: &str,
    role: &str,
) -> studios_integration_tests::Resp {
    t.req(A::SetMember)
        .user(by)
        .param("ws", ws)
        .param("userId", user)
        .body(json!({ "role": role }))
        .send()
        .await
}

#[tokio::test]
async fn admins_add_change_and_remove_members() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let m = set(&t, "admin", &ws, "newbie", "view").await.ok(200);
    assert_eq!(m["role"], "view");
    set(&t, "admin", &ws, "newbie", "maintain").await.ok(200);
    let list = t
        .req(A::ListMembers)
        .user("view")
        .param("ws", &ws)
        .send()
        .await
        .ok(200);
    let newbie = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["userId"] == "newbie")
        .unwrap()
        .clone();
    assert_eq!(newbie["role"], "maintain");
    assert_eq!(newbie["updatedBy"], "admin");
    t.req(A::RemoveMember)
        .user("admin")
        .param("ws", &ws)
        .param("userId", "newbie")
        .send()
        .await
        .ok(204);
    // The removed member no longer sees the workspace at all.
    t.req(A::ListMembers)
        .user("newbie")
        .param("ws", &ws)
        .send()
        .await
        .err(404);
    t.req(A::RemoveMember)
        .user("admin")
        .param("ws", &ws)
        .param("userId", "newbie")
        .send()
        .await
        .err(404);
}

#[tokio::test]
async fn only_owners_grant_or_change_owner() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let (_, message) = set(&t, "admin", &ws, "maintain", "owner").await.err(403);
    assert!(message.contains("only owners"), "{message}");
    let (_, _) = set(&t, "admin", &ws, "owner", "view").await.err(403);
    t.req(A::RemoveMember)
        .user("admin")
        .param("ws", &ws)
        .param("userId", "owner")
        .send()
        .await
        .err(403);
    set(&t, "owner", &ws, "maintain", "owner").await.ok(200);
}

#[tokio::test]
async fn the_last_owner_can_be_neither_removed_nor_demoted() {
    let t = TestApp::new().await;
    let ws = t
        .req(A::CreateWorkspace)
        .user(PLATFORM_ADMIN)
        .body(json!({"name": "Solo"}))
        .send()
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _) = set(&t, PLATFORM_ADMIN, &ws, PLATFORM_ADMIN, "admin")
        .await
        .err(409);
    assert_eq!(code, "last_owner");
    let (code, _) = t
        .req(A::RemoveMember)
        .user(PLATFORM_ADMIN)
        .param("ws", &ws)
        .param("userId", PLATFORM_ADMIN)
        .send()
        .await
        .err(409);
    assert_eq!(code, "last_owner");
    // With a second owner, the first may step down.
    set(&t, PLATFORM_ADMIN, &ws, "second", "owner")
        .await
        .ok(200);
    set(&t, PLATFORM_ADMIN, &ws, PLATFORM_ADMIN, "admin")
        .await
        .ok(200);
    // ... and now "second" is the last owner again.
    let (code, _) = set(&t, "second", &ws, "second", "view").await.err(409);
    assert_eq!(code, "last_owner");
}

#[tokio::test]
async fn unknown_role_is_a_400_naming_role() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let (code, message) = set(&t, "admin", &ws, "x", "superuser").await.err(400);
    assert_eq!(code, "invalid_request");
    assert!(
        message.starts_with("role: unknown role 'superuser'"),
        "{message}"
    );
}
