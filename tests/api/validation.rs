//! Bad input answers 400 naming the field and the rule, through the real request path.

use serde_json::{json, Value};
use studios_integration_tests::{merge, TestApp, A};

async fn add(t: &TestApp, ws: &str, ce: &str, extra: Value) -> (String, String) {
    let mut body = json!({"name": "s", "computeEnvId": ce, "template": {"kind": "jupyter"}});
    merge(&mut body, extra);
    t.req(A::AddStudio)
        .user("maintain")
        .param("ws", ws)
        .body(body)
        .send()
        .await
        .err(400)
}

#[tokio::test]
async fn studio_add_rejects_bad_input_naming_the_field() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({})).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": ""}), "name: must be 1 to 80 characters"),
        // Every derived key must fit: a 1,020-character mount URI would make a lock key
        // over DynamoDB's 1,024 bytes at start; a long spec list an item over 400 KB.
        (
            json!({"mounts": [{"uri": format!("s3://data-bucket/{}", "a".repeat(1003))}]}),
            "mounts[0].uri: must be at most 1000 characters",
        ),
        (
            json!({"condaPackages": [format!("numpy>=1.{}", "0".repeat(300))]}),
            "condaPackages[0]: must be at most 200 characters",
        ),
        (
            json!({"name": "QC \u{202E}cod.exe"}),
            "name: must not contain invisible formatting characters",
        ),
        (
            json!({"name": "x".repeat(81)}),
            "name: must be 1 to 80 characters",
        ),
        (
            json!({"description": "d".repeat(2049)}),
            "description: must be at most 2048",
        ),
        (
            json!({"template": {"kind": "emacs"}}),
            "template.kind: unknown template 'emacs'",
        ),
        (
            json!({"template": {}}),
            "template: give exactly one of kind",
        ),
        (
            json!({"template": {"kind": "jupyter", "image": "a/b:1"}}),
            "template: give exactly one",
        ),
        (
            json!({"template": {"image": "not an image"}}),
            "template.image: must be a container image",
        ),
        (
            json!({"template": {"image": "ghcr.io/lab/img:1"}, "condaPackages": ["numpy"]}),
            "condaPackages: cannot be combined with a custom image",
        ),
        (
            json!({"condaPackages": ["numpy", "numpy>>=1"]}),
            "condaPackages[1]: 'numpy>>=1' is not a valid conda match spec",
        ),
        (
            json!({"resources": {"cpus": 0}}),
            "resources.cpus: must be between 1 and 16",
        ),
        (
            json!({"resources": {"cpus": 17}}),
            "resources.cpus: must be between 1 and 16",
        ),
        (
            json!({"resources": {"memoryMiB": 70000}}),
            "resources.memoryMiB: must be between 512 and 65536",
        ),
        (
            json!({"resources": {"gpus": 1}}),
            "resources.gpus: compute environment 'cpu-queue' is not GPU-enabled",
        ),
        (
            json!({"resources": {"cpus": -1}}),
            "resources.cpus: invalid value: integer `-1`",
        ),
        (
            json!({"resources": {"cpus": "two"}}),
            "resources.cpus: invalid type: string",
        ),
        (
            json!({"resources": {"disks": 2}}),
            "resources.disks: unknown field `disks`",
        ),
        (
            json!({"status": "running"}),
            "status: unknown field `status`",
        ),
        (
            json!({"mounts": [{}]}),
            "mounts[0]: give exactly one of dataLinkId or uri",
        ),
        (
            json!({"mounts": [{"uri": "https://x/y"}]}),
            "mounts[0].uri: must be an S3 URI",
        ),
        (
            json!({"mounts": [{"dataLinkId": "dl-nope"}]}),
            "mounts[0].dataLinkId: no data link 'dl-nope'",
        ),
        (
            json!({"mounts": [{"uri": "s3://bkt/a/"}, {"uri": "s3://bkt/a/b"}]}),
            "mounts[1]: s3://bkt/a/b/ overlaps mounts[0]",
        ),
        (
            json!({"mounts": [{"uri": "s3://bkt/a/x"}, {"uri": "s3://bkt/b/x"}]}),
            "mounts[1]: mount directory 'x' is already used",
        ),
        (
            json!({"computeEnvId": "ce-0"}),
            "computeEnvId: no compute environment 'ce-0'",
        ),
    ];
    for (extra, expected) in cases {
        let (code, message) = add(&t, &ws, &ce, extra.clone()).await;
        assert_eq!(code, "invalid_request");
        assert!(
            message.starts_with(expected),
            "{extra}: got {message:?}, want {expected:?}"
        );
    }
    // Deep mounts that cannot fit one transaction's lock items.
    let deep: Vec<Value> = (0..10)
        .map(|i| json!({"uri": format!("s3://bkt/m{i}/a/b/c/d/e/f/g/h/x{i}/")}))
        .collect();
    let (_, message) = add(&t, &ws, &ce, json!({ "mounts": deep })).await;
    assert!(
        message.starts_with("mounts: these mounts need 101 mount-lock items"),
        "{message}"
    );
}

#[tokio::test]
async fn malformed_bodies_and_missing_fields() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let send = |raw: &'static str| {
        t.req(A::AddStudio)
            .user("maintain")
            .param("ws", &ws)
            .raw_body(raw)
            .send()
    };
    let (_, m) = send("{\"name\": ").await.err(400);
    assert!(m.starts_with("body: is not valid JSON"), "{m}");
    let (_, m) = send("").await.err(400);
    assert_eq!(m, "body: a JSON object is required");
    let (_, m) = send("[1]").await.err(400);
    assert_eq!(m, "body: must be a JSON object");
    let (_, m) = send("{\"name\": \"x\", \"template\": {\"kind\": \"jupyter\"}}")
        .await
        .err(400);
    assert_eq!(m, "computeEnvId: is required");
    let (_, m) = send("{\"name\": \"x\", \"computeEnvId\": \"c\", \"template\": {\"kind\": 3}}")
        .await
        .err(400);
    assert!(
        m.starts_with("template.kind: invalid type: integer `3`"),
        "{m}"
    );
    // A key twice is refused, not silently "last one wins".
    let (_, m) = send("{\"name\": \"a\", \"name\": \"b\", \"computeEnvId\": \"c\"}")
        .await
        .err(400);
    assert!(m.contains("the key \"name\" appears twice"), "{m}");
    let (_, m) = send("{\"name\": \"a\", \"template\": {\"kind\": \"x\", \"kind\": \"y\"}}")
        .await
        .err(400);
    assert!(m.contains("the key \"kind\" appears twice"), "{m}");
    // A body that is not JSON by its Content-Type: 415.
    let r = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &ws)
        .raw_body("name=x")
        .content_type("application/x-www-form-urlencoded")
        .send()
        .await;
    let (code, m) = r.err(415);
    assert_eq!(code, "unsupported_media_type");
    assert!(m.contains("application/json"), "{m}");
    // JSON with parameters, a +json type, or no Content-Type at all are read as JSON.
    for ct in [
        "application/json; charset=utf-8",
        "application/merge-patch+json",
        "",
    ] {
        let (_, m) = t
            .req(A::AddStudio)
            .user("maintain")
            .param("ws", &ws)
            .raw_body("{}")
            .content_type(ct)
            .send()
            .await
            .err(400);
        assert_eq!(m, "name: is required", "{ct}");
    }
}

#[tokio::test]
async fn explicit_null_for_a_fixed_field_is_setting_it() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({})).await;
    let id = t.studio(&ws, &ce, "source").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for field in ["parent", "template", "computeEnvId", "condaPackages"] {
        let mut body = json!({"name": "copy"});
        body[field] = Value::Null;
        let (_, m) = t
            .req(A::CloneStudio)
            .user("maintain")
            .param("ws", &ws)
            .param("id", &id)
            .body(body)
            .send()
            .await
            .err(400);
        assert!(m.starts_with(&format!("{field}: ")), "{field}: {m}");
    }
    let (_, m) = t
        .req(A::UpdateStudio)
        .user("maintain")
        .param("ws", &ws)
        .param("id", &id)
        .body(json!({"computeEnvId": null}))
        .send()
        .await
        .err(400);
    assert!(m.starts_with("computeEnvId: "), "{m}");
}

#[tokio::test]
async fn compute_env_and_data_link_rules() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let base = json!({
        "name": "q", "region": "us-east-1",
        "jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/q",
        "maxCpus": 4, "maxMemoryMiB": 8192, "workDir": format!("s3://work-bucket/x/{ws}"),
    });
    let cases: Vec<(Value, &str)> = vec![
        (json!({"region": "mars-1"}), "region: 'mars-1' is not an AWS region name"),
        (json!({"jobQueue": "my-queue"}), "jobQueue: must be a job queue ARN"),
        (json!({"jobQueue": "arn:aws:batch:eu-west-1:123456789012:job-queue/q"}),
            "jobQueue: the queue is in 'eu-west-1' but the compute environment's region is 'us-east-1'"),
        (json!({"maxCpus": 0}), "maxCpus: must be between 1 and 10000"),
        (json!({"maxMemoryMiB": 100}), "maxMemoryMiB: must be between 512"),
        (json!({"allowedWriteBuckets": ["Bad_Bucket"]}), "allowedWriteBuckets[0]: 'Bad_Bucket' is not a valid S3 bucket name"),
        (json!({"workDir": "/tmp/x"}), "workDir: must be an S3 URI"),
        // Checkpoint keys below the work directory must fit S3's 1,024 bytes.
        (json!({"workDir": format!("s3://work-bucket/{}", "w".repeat(701))}),
            "workDir: the part after the bucket must be at most 700 characters (got 702)"),
        (json!({"workDir": format!("s3://work-bucket/{}", "w".repeat(1007))}),
            "workDir: must be at most 1024 characters"),
        (json!({"gpuEnabled": "yes"}), "gpuEnabled: invalid type: string"),
        // A workDir belongs to one workspace: it ends in the workspace's id.
        (json!({"workDir": "s3://work-bucket/x/"}), "workDir: must end in this workspace's id"),
        (json!({"workDir": "s3://work-bucket/.studios/ws-0123456789abcdef0123456789abcdef/"}),
            "workDir: must not contain a .studios segment"),
    ];
    for (extra, expected) in cases {
        let mut body = base.clone();
        merge(&mut body, extra.clone());
        let (_, m) = t
            .req(A::CreateComputeEnv)
            .user("admin")
            .param("ws", &ws)
            .body(body)
            .send()
            .await
            .err(400);
        assert!(m.starts_with(expected), "{extra}: got {m:?}");
    }
    let (_, m) = t
        .req(A::CreateDataLink)
        .user("admin")
        .param("ws", &ws)
        .body(json!({"name": "../etc", "uri": "s3://b1b/x", "region": "us-east-1"}))
        .send()
        .await
        .err(400);
    assert!(m.starts_with("name: must be 1 to 80 letters"), "{m}");
    let (_, m) = t
        .req(A::CreateDataLink)
        .user("admin")
        .param("ws", &ws)
        .body(json!({"name": "ok", "uri": "s3://b1b/../x", "region": "us-east-1"}))
        .send()
        .await
        .err(400);
    assert_eq!(m, "uri: must not contain '..' segments");
}

#[tokio::test]
async fn update_rejects_bad_input_and_compute_env_changes() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({})).await;
    let id = t.studio(&ws, &ce, "s").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (body, expected) in [
        (
            json!({"computeEnvId": ce}),
            "computeEnvId: cannot be changed",
        ),
        (
            json!({"resources": {"memoryMiB": 1}}),
            "resources.memoryMiB: must be between 512",
        ),
        (
            json!({"template": {"image": "ghcr.io/a/b:1"}, "condaPackages": ["x"]}),
            "condaPackages: cannot be combined",
        ),
        (json!({"id": "st-1"}), "id: unknown field `id`"),
    ] {
        let (_, m) = t
            .req(A::UpdateStudio)
            .user("maintain")
            .param("ws", &ws)
            .param("id", &id)
            .body(body.clone())
            .send()
            .await
            .err(400);
        assert!(m.starts_with(expected), "{body}: got {m:?}");
    }
}

/// Every list in a body is capped while parsing: an oversized list costs no read, and a
/// stranger's largest allowed one costs one bounded read before the 404.
#[tokio::test]
async fn request_lists_are_capped_before_anything_is_read() {
    let t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({})).await;
    let links = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"dataLinkId": format!("dl-{i:032x}")}))
            .collect()
    };
    let body = |mounts: Vec<Value>| json!({"name": "big", "computeEnvId": ce, "template": {"kind": "jupyter"}, "mounts": mounts});
    t.log.take();
    let (_, m) = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &ws)
        .body(body(links(97)))
        .send()
        .await
        .err(400);
    assert_eq!(m, "mounts: must have at most 96 items");
    assert!(
        t.log.take().is_empty(),
        "nothing read for an oversized list"
    );
    let (_, m) = t
        .req(A::AddStudio)
        .user("maintain")
        .param("ws", &ws)
        .body(
            json!({"name": "x", "computeEnvId": ce, "template": {"kind": "jupyter"},
                     "condaPackages": vec!["numpy"; 101]}),
        )
        .send()
        .await
        .err(400);
    assert_eq!(m, "condaPackages: must have at most 100 items");
    // A stranger (no member of the workspace) with 96 data links: one round trip of
    // bounded reads (one BatchGetItem beside the held-mounts Query), nothing written.
    t.log.take();
    t.req(A::AddStudio)
        .user("stranger")
        .param("ws", &ws)
        .body(body(links(96)))
        .send()
        .await
        .err(404);
    let c = studios_integration_tests::cost(t.log.take());
    assert_eq!(c.round_trips, 1, "{c:?}");
    assert!(c.operations.len() <= 2, "{c:?}");
    assert!(
        c.operations
            .iter()
            .all(|o| o == "BatchGetItem" || o == "Query"),
        "{c:?}"
    );
}
