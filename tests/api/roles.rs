//! The role matrix: six roles, a non-member and an anonymous caller against every
//! workspace endpoint (docs/api.md): allowed → 2xx, member lacking the role → 403,
//! non-member → 404, no claims → 401.

use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use studios_integration_tests::{Resp, TestApp, A};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Need {
    Read,
    Operate,
    Administer,
}

const ROLES: [&str; 6] = ["view", "connect", "launch", "maintain", "admin", "owner"];

fn allowed(role: &str, need: Need) -> bool {
    let rank = ROLES.iter().position(|r| *r == role).unwrap();
    match need {
        Need::Read => true,
        Need::Operate => rank >= 3,
        Need::Administer => rank >= 4,
    }
}

static N: AtomicUsize = AtomicUsize::new(0);

fn fresh(prefix: &str) -> String {
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Sends one request of `action` as `user`, creating a fresh target first where needed.
async fn attempt(t: &TestApp, ws: &str, ce: &str, action: A, user: Option<&str>) -> Resp {
    let req = |a: A| {
        let r = t.req(a).param("ws", ws);
        match user {
            Some(u) => r.user(u),
            None => r,
        }
    };
    match action {
        A::ListMembers | A::ListComputeEnvs | A::ListDataLinks | A::ListStudios | A::ListMounts => {
            req(action).send().await
        }
        A::StartStudio | A::ListCheckpoints => {
            let id = t.studio(ws, ce, &fresh("studio")).await["id"].as_str().unwrap().to_string();
            req(action).param("id", &id).send().await
        }
        A::StopStudio => {
            let id = t.studio(ws, ce, &fresh("studio")).await["id"].as_str().unwrap().to_string();
            crate::lifecycle::running(t, ws, &id).await;
            req(action).param("id", &id).send().await
        }
        A::SetMember => {
            req(action)
                .param("userId", &fresh("user"))
                .body(json!({"role": "view"}))
                .send()
                .await
        }
        A::RemoveMember => {
            let target = fresh("user");
            t.req(A::SetMember)
                .user("owner")
                .param("ws", ws)
                .param("userId", &target)
                .body(json!({"role": "view"}))
                .send()
                .await
                .ok(200);
            req(action).param("userId", &target).send().await
        }
        A::CreateComputeEnv => {
            req(action)
                .body(json!({"name": "q", "region": "us-east-1",
                    "jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/q",
                    "maxCpus": 4, "maxMemoryMiB": 8192, "workDir": format!("s3://work-bucket/x/{ws}")}))
                .send()
                .await
        }
        A::GetComputeEnv => req(action).param("ceId", ce).send().await,
        A::DeleteComputeEnv => {
            let id = t.compute_env(ws, json!({})).await;
            req(action).param("ceId", &id).send().await
        }
        A::CreateDataLink => {
            req(action)
                .body(json!({"name": "d", "uri": "s3://data-bucket/x", "region": "us-east-1"}))
                .send()
                .await
        }
        A::GetDataLink | A::DeleteDataLink => {
            let id = t.data_link(ws, "d", "s3://data-bucket/x", "us-east-1").await;
            req(action).param("linkId", &id).send().await
        }
        A::AddStudio => {
            req(action)
                .body(json!({"name": fresh("studio"), "computeEnvId": ce, "template": {"kind": "jupyter"}}))
                .send()
                .await
        }
        A::GetStudio | A::UpdateStudio | A::DeleteStudio => {
            let id = t.studio(ws, ce, &fresh("studio")).await["id"]
                .as_str()
                .unwrap()
                .to_string();
            req(action)
                .param("id", &id)
                .body(json!({"description": fresh("d")}))
                .send()
                .await
        }
        other => panic!("{other:?} is not workspace-scoped"),
    }
}

#[tokio::test]
async fn every_workspace_endpoint_enforces_the_role_table() {
    let t = TestApp::new().await;
    let fx = t.fixtures().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({"jobQueue": fx.queue_arn})).await;
    let matrix = [
        (A::ListMembers, Need::Read),
        (A::SetMember, Need::Administer),
        (A::RemoveMember, Need::Administer),
        (A::ListComputeEnvs, Need::Read),
        (A::CreateComputeEnv, Need::Administer),
        (A::GetComputeEnv, Need::Read),
        (A::DeleteComputeEnv, Need::Administer),
        (A::ListDataLinks, Need::Read),
        (A::CreateDataLink, Need::Administer),
        (A::GetDataLink, Need::Read),
        (A::DeleteDataLink, Need::Administer),
        (A::ListStudios, Need::Read),
        (A::AddStudio, Need::Operate),
        (A::GetStudio, Need::Read),
        (A::UpdateStudio, Need::Operate),
        (A::DeleteStudio, Need::Operate),
        (A::StartStudio, Need::Operate),
        (A::StopStudio, Need::Operate),
        (A::ListCheckpoints, Need::Read),
        (A::ListMounts, Need::Read),
    ];
    let mut checked = 0;
    for (action, need) in matrix {
        for role in ROLES {
            let r = attempt(&t, &ws, &ce, action, Some(role)).await;
            if allowed(role, need) {
                assert!(
                    (200..300).contains(&r.status),
                    "{action:?} as {role}: {}",
                    r.json
                );
            } else {
                assert_eq!(r.status, 403, "{action:?} as {role}: {}", r.json);
                assert_eq!(r.json["error"]["code"], "forbidden");
            }
            checked += 1;
        }
        let r = attempt(&t, &ws, &ce, action, Some("stranger")).await;
        assert_eq!(r.status, 404, "{action:?} as non-member: {}", r.json);
        assert_eq!(r.json["error"]["message"], "workspace not found");
        let r = attempt(&t, &ws, &ce, action, None).await;
        assert_eq!(r.status, 401, "{action:?} without claims: {}", r.json);
        checked += 2;
    }
    assert_eq!(checked, 20 * 8);
}

#[tokio::test]
async fn a_workspace_that_does_not_exist_looks_like_one_you_cannot_see() {
    let t = TestApp::new().await;
    for ws in ["ws-0123456789abcdef0123456789abcdef", "not-an-id"] {
        let r = t
            .req(A::ListStudios)
            .user("owner")
            .param("ws", ws)
            .send()
            .await;
        assert_eq!(r.status, 404, "{}", r.json);
    }
}
