use serde_json::json;
use studios_integration_tests::{TestApp, A};

#[tokio::test]
async fn create_list_get_delete() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let id = t
        .compute_env(
            &ws,
            json!({"workDir": format!("S3://work-bucket//studios/{ws}")}),
        )
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
    assert_eq!(ce["workDir"], format!("s3://work-bucket/studios/{ws}/"));
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

async fn create(
    t: &TestApp,
    ws: &str,
    queue: &str,
    work_dir: &str,
    write: &[&str],
) -> studios_integration_tests::Resp {
    t.req(A::CreateComputeEnv)
        .user("admin")
        .param("ws", ws)
        .body(
            json!({"name": "q", "region": "us-east-1", "jobQueue": queue, "maxCpus": 4,
                     "maxMemoryMiB": 8192, "workDir": format!("{work_dir}/{ws}"),
                     "allowedWriteBuckets": write}),
        )
        .send()
        .await
}

/// A compute environment may use only what the stack allows (its parameters): otherwise
/// the first start (IAM) or the first save would fail.
#[tokio::test]
async fn compute_environments_stay_within_the_stack() {
    let mut t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ours = t.ensure_queue("stack-queue").await;
    let other = t.ensure_queue("other-queue").await;
    t.app.config = std::sync::Arc::new(studios_shared::Config {
        stack_limits: studios_shared::config::StackLimits {
            job_queues: Some(vec![ours.clone()]),
            checkpoint_buckets: Some(vec!["work-bucket".into()]),
            write_buckets: Some(vec![]),
            session_role_path: Some("/studios-sessions/".into()),
        },
        ..(*t.app.config).clone()
    });
    let (_, m) = create(&t, &ws, &other, "s3://work-bucket/w", &[])
        .await
        .err(400);
    assert_eq!(
        m,
        format!("jobQueue: this Studios stack may submit only to its JobQueueArns: {ours}")
    );
    let (_, m) = create(&t, &ws, &ours, "s3://elsewhere/w", &[])
        .await
        .err(400);
    assert_eq!(
        m,
        "workDir: the bucket must be one of the stack's CheckpointBuckets: work-bucket"
    );
    let (_, m) = create(&t, &ws, &ours, "s3://work-bucket/w", &["scratch-bucket"])
        .await
        .err(400);
    assert_eq!(
        m,
        "allowedWriteBuckets[0]: sessions of this stack may write only to its WriteBuckets: none"
    );
    // Sessions' roles are tied to the workspace by their IAM path (docs/iam.md).
    let (_, m) = create(&t, &ws, &ours, "s3://work-bucket/w", &[])
        .await
        .err(400);
    assert!(
        m.starts_with("jobRoleArn: required: sessions need a role that can save checkpoints under workDir; create the workspace's session role with infra/session-role.yaml (WorkspaceId="),
        "{m}"
    );
    let other_ws = "ws-0123456789abcdef0123456789abcdef";
    for foreign in [
        format!("arn:aws:iam::123456789012:role/studios-sessions/{other_ws}/genomics"),
        "arn:aws:iam::123456789012:role/studios-sessions/genomics".to_string(),
        format!("arn:aws:iam::123456789012:role/elsewhere/{ws}/genomics"),
    ] {
        let (_, m) = create_with_role(&t, &ws, &ours, &foreign).await.err(400);
        assert!(
            m.starts_with(&format!("jobRoleArn: must be a role of this workspace, under the IAM path /studios-sessions/{ws}/ ")),
            "{foreign}: {m}"
        );
    }
    let own = format!("arn:aws:iam::123456789012:role/studios-sessions/{ws}/genomics");
    create_with_role(&t, &ws, &ours, &own).await.ok(201);
}

async fn create_with_role(
    t: &TestApp,
    ws: &str,
    queue: &str,
    role: &str,
) -> studios_integration_tests::Resp {
    t.req(A::CreateComputeEnv)
        .user("admin")
        .param("ws", ws)
        .body(
            json!({"name": "q", "region": "us-east-1", "jobQueue": queue, "maxCpus": 4,
                     "maxMemoryMiB": 8192, "workDir": format!("s3://work-bucket/w/{ws}"),
                     "jobRoleArn": role}),
        )
        .send()
        .await
}

/// Queues AWS Batch does not have are refused when the compute environment is made.
#[tokio::test]
async fn missing_queues_are_refused() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let missing = "arn:aws:batch:us-east-1:123456789012:job-queue/no-such-queue-anywhere";
    let (_, m) = create(&t, &ws, missing, "s3://work-bucket/w", &[])
        .await
        .err(400);
    assert_eq!(m, format!("jobQueue: AWS Batch has no job queue {missing}"));

    // Fargate and EKS queues: see compute::tests::queue_platforms_are_read_from_batch
    // (moto's Fargate environments need a VPC, subnets and security groups).
}

/// Sessions of different workspaces never share a job queue (and so its EC2 hosts, where
/// IDEs listen on the host's loopback, docs/security.md): a queue serves the first
/// workspace that uses it until that workspace's last compute environment on it is gone;
/// and no workspace can point its `workDir` at another's.
#[tokio::test]
async fn a_queue_and_a_work_dir_serve_one_workspace() {
    let t = TestApp::new().await;
    let a = t.workspace_with_roles().await;
    let b = t.workspace_with_roles().await;
    let queue = t.ensure_queue(&format!("shared-{}", &a[3..11])).await;
    let first = t.compute_env(&a, json!({"jobQueue": queue})).await;
    // The same workspace may put several compute environments on its queue.
    let second = t
        .compute_env(&a, json!({"jobQueue": queue, "name": "gpu-queue"}))
        .await;

    let (code, m) = create(&t, &b, &queue, "s3://work-bucket/b", &[])
        .await
        .err(400);
    assert_eq!(code, "invalid_request");
    assert!(
        m.starts_with("jobQueue: the queue runs another workspace's sessions"),
        "{m}"
    );
    assert!(!m.contains(&a), "another workspace's id is not shown: {m}");
    // B cannot take A's work directory either (it does not end in B's id).
    let (_, m) = t
        .req(A::CreateComputeEnv)
        .user("admin")
        .param("ws", &b)
        .body(
            json!({"name": "q", "region": "us-east-1", "jobQueue": queue, "maxCpus": 4,
                     "maxMemoryMiB": 8192, "workDir": format!("s3://work-bucket/studios/{a}/")}),
        )
        .send()
        .await
        .err(400);
    assert!(
        m.starts_with(&format!("workDir: must end in this workspace's id, /{b}/")),
        "{m}"
    );

    // Once A's last compute environment on the queue is gone, B may have it.
    for ce in [&first, &second] {
        t.req(A::DeleteComputeEnv)
            .user("admin")
            .param("ws", &a)
            .param("ceId", ce)
            .send()
            .await
            .ok(204);
    }
    create(&t, &b, &queue, "s3://work-bucket/b", &[])
        .await
        .ok(201);
    let (_, m) = create(&t, &a, &queue, "s3://work-bucket/a", &[])
        .await
        .err(400);
    assert!(
        m.starts_with("jobQueue: the queue runs another workspace's sessions"),
        "{m}"
    );
}
