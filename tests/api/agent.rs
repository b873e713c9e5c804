//! The session agents' channel (`POST /agent/report`, docs/agent.md) on the emulator: a
//! session's own credential (minted at its start, passed in its job, stored hashed) is
//! the only way in; the agent reports ready, activity and failures, and learns of a stop
//! before AWS Batch is asked to end the job.

use crate::lifecycle::{get, running, setup};
use serde_json::{json, Value};
use std::sync::Arc;
use studios_integration_tests::{cost, job_env, save_uri, TestApp, A};

fn agent_credential(job: &aws_sdk_batch::types::JobDetail) -> String {
    job_env(job, "STUDIO_AGENT_TOKEN").expect("the job carries its session's credential")
}

async fn report(t: &TestApp, token: &str, body: Value) -> studios_integration_tests::Resp {
    t.req(A::AgentReport).bearer(token).body(body).send().await
}

/// A ready report that asks for a relay token; the answer.
async fn ask_relay_token(t: &TestApp, job: &aws_sdk_batch::types::JobDetail) -> Value {
    let body = json!({"state": "ready", "relayTokenWanted": true});
    report(t, &agent_credential(job), body).await.ok(200)
}

async fn studio(t: &TestApp, ws: &str, ce: &str, name: &str) -> String {
    t.studio(ws, ce, name).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A stop as the studio's maintainer asks it (202).
async fn stop(t: &TestApp, ws: &str, id: &str) {
    t.req(A::StopStudio)
        .user("maintain")
        .param("ws", ws)
        .param("id", id)
        .send()
        .await
        .ok(202);
}

async fn batch_status(t: &TestApp, job: &aws_sdk_batch::types::JobDetail) -> String {
    t.job(job.job_id().unwrap())
        .await
        .status()
        .unwrap()
        .as_str()
        .to_string()
}

#[tokio::test]
async fn an_agent_reports_ready_and_learns_of_a_stop_before_batch_ends_its_job() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio(&t, &s.ws, &s.ce, "with agent").await;
    let job = running(&t, &s.ws, &id).await;
    let credential = agent_credential(&job);
    // The job gets the template and the path its IDE is served under.
    assert_eq!(job_env(&job, "STUDIO_TEMPLATE").as_deref(), Some("jupyter"));
    assert_eq!(
        job_env(&job, "STUDIO_BASE_PATH"),
        Some(format!("/{}/{id}/", s.ws))
    );
    assert_eq!(get(&t, &s.ws, &id).await["session"]["ready"], false);
    // While it prepares, the studio shows what it is doing.
    report(
        &t,
        &credential,
        json!({"state": "starting", "detail": "installing 3 conda packages"}),
    )
    .await
    .ok(200);
    assert_eq!(
        get(&t, &s.ws, &id).await["session"]["progress"],
        "installing 3 conda packages"
    );

    t.log.take();
    let reply = report(&t, &credential, json!({"state": "ready"}))
        .await
        .ok(200);
    let c = cost(t.log.take());
    assert_eq!(c.operations, ["BatchGetItem", "UpdateItem"]);
    assert_eq!(
        reply,
        json!({"stopRequested": false, "reportSeconds": 15, "revokedUsers": []})
    );
    let view = get(&t, &s.ws, &id).await;
    assert_eq!(view["session"]["ready"], true);
    assert_eq!(view["session"]["progress"], Value::Null);
    // Nothing new: a read only.
    t.log.take();
    report(&t, &credential, json!({"state": "ready"}))
        .await
        .ok(200);
    assert_eq!(cost(t.log.take()).operations, ["BatchGetItem"]);
    // Activity is recorded to the minute.
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    report(
        &t,
        &credential,
        json!({"state": "ready", "lastActivityAt": at}),
    )
    .await
    .ok(200);
    assert_eq!(
        get(&t, &s.ws, &id).await["session"]["lastActivityAt"],
        json!(at)
    );

    // A stop: the studio is stopping, Batch is not asked yet, the agent learns of it.
    stop(&t, &s.ws, &id).await;
    assert_ne!(batch_status(&t, &job).await, "FAILED", "not terminated");
    let reply = report(&t, &credential, json!({"state": "ready"}))
        .await
        .ok(200);
    assert_eq!(reply["stopRequested"], true);
    // The reconciler leaves it to the agent within the grace period.
    studios_shared::consumers::reconcile(&t.app).await.unwrap();
    assert_ne!(batch_status(&t, &job).await, "FAILED", "not terminated");

    // The agent saved and exited 0: stopped, by whom, with its checkpoint.
    t.write_manifest(&save_uri(&job)).await;
    t.deliver(&t.job_event(&job, "SUCCEEDED", true, None, Some(0)))
        .await;
    let studio = get(&t, &s.ws, &id).await;
    assert_eq!(studio["status"], "stopped");
    assert_eq!(studio["statusReason"], "stopped by maintain user");
    assert!(studio["restoreFrom"]["checkpointId"].is_string());
    // The credential ended with its session.
    let (code, _) = report(&t, &credential, json!({"state": "ready"}))
        .await
        .err(401);
    assert_eq!(code, "unauthenticated");
}

/// A stop of a session whose agent saves by itself schedules its deadline: a message
/// delayed by `STOP_GRACE_SECONDS` on the task queue. When it comes and the studio is
/// still stopping in that session, the job is terminated with a reason that says why;
/// once the studio stopped (or started again) the same message changes nothing.
#[tokio::test]
async fn a_stop_terminates_the_job_at_its_grace_deadline_not_the_reconcilers_round() {
    let mut t = TestApp::new().await;
    let mut config = (*t.app.config).clone();
    config.agent.stop_grace_seconds = 1;
    t.app.config = Arc::new(config);
    let s = setup(&t).await;
    let id = studio(&t, &s.ws, &s.ce, "slow saver").await;
    let job = running(&t, &s.ws, &id).await;
    report(&t, &agent_credential(&job), json!({"state": "ready"}))
        .await
        .ok(200);
    stop(&t, &s.ws, &id).await;
    assert_ne!(batch_status(&t, &job).await, "FAILED", "not terminated yet");
    assert_eq!(t.run_task_queue().await, 0, "the deadline is not due yet");
    // The deadline comes after the grace (SQS delays it; 1 s here) to the task worker.
    let started = std::time::Instant::now();
    while t.run_task_queue().await == 0 {
        assert!(started.elapsed().as_secs() < 20, "no stop deadline");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(started.elapsed().as_millis() >= 500, "delayed by the grace");
    let ended = t.job(job.job_id().unwrap()).await;
    assert_eq!(ended.status().unwrap().as_str(), "FAILED", "terminated");
    assert_eq!(
        ended.status_reason(),
        Some("Stopped from Studios: the session did not save and exit within the stop grace (1 s)")
    );
    // Its end arrives; a repeated deadline is a no-op.
    t.deliver(&t.job_event(&job, "FAILED", true, ended.status_reason(), Some(143)))
        .await;
    assert_eq!(get(&t, &s.ws, &id).await["status"], "stopped");
    let deadline =
        studios_shared::cleanup::QueuedTask::StopDeadline(studios_shared::cleanup::StopDeadline {
            workspace_id: s.ws.clone(),
            studio_id: id.clone(),
            attempt_id: job_env(&job, "STUDIO_ATTEMPT_ID").unwrap(),
        });
    studios_shared::consumers::run_queued(&t.app, &deadline)
        .await
        .unwrap();
    assert_eq!(get(&t, &s.ws, &id).await["status"], "stopped");
}

#[tokio::test]
async fn only_a_sessions_own_credential_is_accepted() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let a = studio(&t, &s.ws, &s.ce, "a").await;
    let b = studio(&t, &s.ws, &s.ce, "b").await;
    let (job_a, job_b) = (running(&t, &s.ws, &a).await, running(&t, &s.ws, &b).await);
    let (ta, tb) = (agent_credential(&job_a), agent_credential(&job_b));
    assert_ne!(ta, tb);
    // b's secret under a's name (a session trying to speak for another).
    let a_parts: Vec<&str> = ta.splitn(4, '.').collect();
    let b_secret = tb.splitn(4, '.').nth(3).unwrap();
    let forged = format!("{}.{}.{}.{b_secret}", a_parts[0], a_parts[1], a_parts[2]);
    for bad in [forged.as_str(), "garbage", "", &format!("{ta}x")] {
        let (code, _) = report(&t, bad, json!({"state": "ready"})).await.err(401);
        assert_eq!(code, "unauthenticated", "{bad}");
    }
    // A user's token is not a session's credential.
    let r = t
        .req(A::AgentReport)
        .user("owner")
        .body(json!({"state": "ready"}))
        .send()
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(get(&t, &s.ws, &a).await["session"]["ready"], false);
    // Bad reports name their field.
    let (code, message) = report(&t, &ta, json!({"state": "sleepy"})).await.err(400);
    assert_eq!(code, "invalid_request");
    assert!(message.contains("state"), "{message}");
    let (_, message) = report(
        &t,
        &ta,
        json!({"state": "ready", "lastActivityAt": "yesterday"}),
    )
    .await
    .err(400);
    assert!(message.contains("lastActivityAt"), "{message}");
    // b's own credential works for b.
    report(&t, &tb, json!({"state": "ready"})).await.ok(200);
    assert_eq!(get(&t, &s.ws, &b).await["session"]["ready"], true);
    assert_eq!(get(&t, &s.ws, &a).await["session"]["ready"], false);
}

#[tokio::test]
async fn an_agents_failure_is_the_status_reason_and_a_silent_agent_is_terminated_after_the_grace() {
    let mut t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio(&t, &s.ws, &s.ce, "fails").await;
    let job = running(&t, &s.ws, &id).await;
    let why = "checkpoint s3://work-bucket/x/ is corrupt: a.txt: chunk 0 has checksum 00, the manifest says ff";
    report(
        &t,
        &agent_credential(&job),
        json!({"state": "failed", "reason": why}),
    )
    .await
    .ok(200);
    t.deliver(&t.job_event(
        &job,
        "FAILED",
        true,
        Some("Essential container in task exited"),
        Some(3),
    ))
    .await;
    let studio = get(&t, &s.ws, &id).await;
    assert_eq!(studio["status"], "errored");
    assert_eq!(studio["statusReason"], why);

    // An agent that went quiet after a stop: with no grace left, the reconciler (and
    // a repeated stop) ask Batch to end the job.
    let mut config = (*t.app.config).clone();
    config.agent.stop_grace_seconds = 0;
    t.app.config = Arc::new(config);
    let quiet = studio_id_running(&t, &s).await;
    let (id2, job2) = quiet;
    report(&t, &agent_credential(&job2), json!({"state": "ready"}))
        .await
        .ok(200);
    stop(&t, &s.ws, &id2).await;
    // The emulator marks a terminated job FAILED at once.
    assert_eq!(batch_status(&t, &job2).await, "FAILED");
}

async fn studio_id_running(
    t: &TestApp,
    s: &crate::lifecycle::Setup,
) -> (String, aws_sdk_batch::types::JobDetail) {
    let id = studio(t, &s.ws, &s.ce, "quiet").await;
    let job = running(t, &s.ws, &id).await;
    (id, job)
}

#[tokio::test]
async fn the_channel_says_whose_access_was_revoked() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio(&t, &s.ws, &s.ce, "shared").await;
    let job = running(&t, &s.ws, &id).await;
    let credential = agent_credential(&job);
    let ask = |users: Value| {
        let credential = credential.clone();
        let t = &t;
        async move {
            t.log.take();
            let r = report(
                t,
                &credential,
                json!({"state": "ready", "connectedUsers": users}),
            )
            .await
            .ok(200);
            (r["revokedUsers"].clone(), cost(t.log.take()))
        }
    };
    // view may not connect; a stranger is no member.
    let (revoked, c) = ask(json!(["connect", "view", "stranger", "owner"])).await;
    assert_eq!(revoked, json!(["view", "stranger"]));
    assert_eq!(c.round_trips, 2, "one read, one write (ready)");
    // connect is removed from the workspace: its cookie stops working at the next report.
    t.req(A::RemoveMember)
        .user("owner")
        .param("ws", &s.ws)
        .param("userId", "connect")
        .send()
        .await
        .ok(204);
    let (revoked, c) = ask(json!(["connect", "owner"])).await;
    assert_eq!(revoked, json!(["connect"]));
    assert_eq!(c.operations, ["BatchGetItem"]);
    let too_many: Vec<String> = (0..51).map(|i| format!("u{i}")).collect();
    let (_, message) = report(
        &t,
        &credential,
        json!({"state": "ready", "connectedUsers": too_many}),
    )
    .await
    .err(400);
    assert!(message.contains("connectedUsers"), "{message}");
}

#[tokio::test]
async fn connect_links_are_signed_for_the_user_studio_and_session() {
    use base64::Engine;
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio(&t, &s.ws, &s.ce, "linked").await;
    let job = running(&t, &s.ws, &id).await;
    let r = t
        .req(A::ConnectStudio)
        .user("connect")
        .param("ws", &s.ws)
        .param("id", &id)
        .send()
        .await
        .ok(200);
    let url = r["url"].as_str().unwrap();
    let (base, token) = url.split_once("?studio_token=").expect("a token");
    assert_eq!(base, format!("https://studios.example.org/{}/{id}/", s.ws));
    let mut parts = token.split('.');
    let (header, body, sig) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims: Value = serde_json::from_slice(&b64.decode(body).unwrap()).unwrap();
    assert_eq!(claims["sub"], "connect");
    assert_eq!(claims["st"], id.as_str());
    assert_eq!(
        claims["att"],
        job_env(&job, "STUDIO_ATTEMPT_ID").unwrap().as_str()
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    // The session verifies it with the public key its job got, nothing else.
    let point = base64::engine::general_purpose::STANDARD
        .decode(job_env(&job, "STUDIO_CONNECT_PUBLIC_KEY").unwrap())
        .unwrap();
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        &point,
    );
    assert!(key
        .verify(
            format!("{header}.{body}").as_bytes(),
            &b64.decode(sig).unwrap()
        )
        .is_ok());
    assert_eq!(
        job_env(&job, "STUDIO_CONNECT_URL").unwrap(),
        format!("https://studios.example.org/{}/{id}/", s.ws)
    );
    // And its tunnel to the connect relay: the job has only the address. No relay
    // credential is in its environment (DescribeJobs, Batch events and the DLQ show
    // that); the agent asks for a short-lived token over its channel.
    assert_eq!(
        job_env(&job, "STUDIO_RELAY_ADDR").as_deref(),
        Some("tcp://relay.example.org:8081")
    );
    let env = job.container().unwrap().environment();
    assert!(
        env.iter()
            .all(|kv| !kv.value().unwrap_or_default().starts_with("eyJ")),
        "no signed token in the job's environment: {env:?}"
    );
    let unasked = report(&t, &agent_credential(&job), json!({"state": "ready"}))
        .await
        .ok(200);
    assert_eq!(unasked.get("relayToken"), None, "only when asked for");
    let reply = ask_relay_token(&t, &job).await;
    let relay_token = reply["relayToken"].as_str().unwrap().to_string();
    let relay_claims: Value =
        serde_json::from_slice(&b64.decode(relay_token.split('.').nth(1).unwrap()).unwrap())
            .unwrap();
    assert_eq!(relay_claims["aud"], "relay");
    assert_eq!(relay_claims["st"], id.as_str());
    assert_eq!(relay_claims["att"], claims["att"]);
    // Worth an hour at most: a copied token soon expires, and an ended session gets none.
    assert_eq!(
        relay_claims["exp"].as_i64().unwrap() - relay_claims["iat"].as_i64().unwrap(),
        3600
    );
    // Relay tokens have their own key: the connect key's public point (what sessions
    // check links with) does not verify them, so whatever signs relay tokens (the
    // functions that start sessions) cannot mint a connect link.
    let (input, sig) = relay_token.rsplit_once('.').unwrap();
    let sig = b64.decode(sig).unwrap();
    assert!(key.verify(input.as_bytes(), &sig).is_err());
    let relay_point = t.app.relay.as_ref().unwrap().public_key().await.unwrap();
    assert!(aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        &relay_point,
    )
    .verify(input.as_bytes(), &sig)
    .is_ok());
    // Once the studio is stopping, its session gets no more relay tokens.
    stop(&t, &s.ws, &id).await;
    let reply = ask_relay_token(&t, &job).await;
    assert_eq!(reply["stopRequested"], true);
    assert_eq!(reply.get("relayToken"), None, "{reply}");
}

/// A stack without a connect relay says so: connect is a 409 naming the missing relay,
/// nothing is recorded, the view has no URL, and the job gets no connect settings —
/// even with a URL pattern set, since sessions open no inbound port (nothing but the
/// relay's tunnel reaches their agent).
#[tokio::test]
async fn without_a_relay_connect_says_so_instead_of_a_dead_link() {
    let mut t = TestApp::new().await;
    t.app.config = Arc::new(studios_shared::Config {
        relay_tunnel_addr: None,
        ..(*t.app.config).clone()
    });
    let s = setup(&t).await;
    let id = studio(&t, &s.ws, &s.ce, "unreachable").await;
    let job = running(&t, &s.ws, &id).await;
    let (code, message) = t
        .req(A::ConnectStudio)
        .user("connect")
        .param("ws", &s.ws)
        .param("id", &id)
        .send()
        .await
        .err(409);
    assert_eq!(code, "connect_unavailable");
    assert!(message.contains("RelayDomain"), "{message}");
    let view = get(&t, &s.ws, &id).await;
    assert_eq!(view["status"], "running");
    assert_eq!(view["url"], Value::Null);
    assert_eq!(view["connectedUsers"], json!([]));
    assert_eq!(job_env(&job, "STUDIO_CONNECT_URL"), None);
    assert_eq!(job_env(&job, "STUDIO_RELAY_ADDR"), None);
    assert_eq!(job_env(&job, "STUDIO_BASE_PATH").as_deref(), Some("/"));
}

#[tokio::test]
async fn links_signed_by_a_kms_key_verify_with_its_public_key() {
    use base64::Engine;
    use studios_shared::connect::{sign_link, KmsSigner, LinkClaims, Signer};
    let t = TestApp::new().await;
    let kms = aws_sdk_kms::Client::new(&aws_config::load_from_env().await);
    let key = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_string();
    let signer = KmsSigner::new(kms, arn);
    let claims = LinkClaims {
        sub: "carol".into(),
        name: "Carol".into(),
        ws: "ws-1".into(),
        st: "st-1".into(),
        att: "a1".into(),
        iat: 1,
        exp: 121,
        jti: "j".into(),
    };
    // Several times: KMS's DER signatures vary in length (leading zeros).
    let point = signer.public_key().await.unwrap();
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        &point,
    );
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for _ in 0..8 {
        let token = sign_link(&signer, &claims).await.unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        assert!(key
            .verify(input.as_bytes(), &b64.decode(sig).unwrap())
            .is_ok());
    }
    drop(t);
}
