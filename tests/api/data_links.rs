use studios_integration_tests::{TestApp, A};

#[tokio::test]
async fn create_list_get_delete_with_a_normalised_uri() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let id = t
        .data_link(
            &ws,
            "reference",
            "S3://ref-data//genomes/./hg38",
            "us-east-1",
        )
        .await;
    let link = t
        .req(A::GetDataLink)
        .user("view")
        .param("ws", &ws)
        .param("linkId", &id)
        .send()
        .await
        .ok(200);
    assert_eq!(link["uri"], "s3://ref-data/genomes/hg38/");
    assert_eq!(link["createdBy"]["id"], "admin");
    let list = t
        .req(A::ListDataLinks)
        .user("view")
        .param("ws", &ws)
        .send()
        .await
        .ok(200);
    assert_eq!(list["dataLinks"][0]["id"], id.as_str());
    t.req(A::DeleteDataLink)
        .user("admin")
        .param("ws", &ws)
        .param("linkId", &id)
        .send()
        .await
        .ok(204);
    t.req(A::GetDataLink)
        .user("view")
        .param("ws", &ws)
        .param("linkId", &id)
        .send()
        .await
        .err(404);
}

#[tokio::test]
async fn ids_from_another_workspace_are_not_found() {
    let t = TestApp::new().await;
    let ws1 = t.workspace_with_roles().await;
    let ws2 = t.workspace_with_roles().await;
    let link = t
        .data_link(&ws2, "other", "s3://other-bucket/x", "us-east-1")
        .await;
    t.req(A::GetDataLink)
        .user("owner")
        .param("ws", &ws1)
        .param("linkId", &link)
        .send()
        .await
        .err(404);
    t.req(A::DeleteDataLink)
        .user("owner")
        .param("ws", &ws1)
        .param("linkId", &link)
        .send()
        .await
        .err(404);
}
