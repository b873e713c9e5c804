//! Races forced with a barrier: every contender finishes its read before any writes, so
//! the conditional write alone must decide (docs/architecture.md: do not hope threads collide).

use async_trait::async_trait;
use serde_json::json;
use std::sync::Arc;
use studios_integration_tests::{TestApp, A};
use studios_shared::domain::search::StudioFilter;
use studios_shared::domain::*;
use studios_shared::store::*;
use studios_shared::{App, Result};
use tokio::sync::{Barrier, Notify};

/// Delegates to the real store, holding studio creations, deletions and session starts
/// until all contenders arrive.
pub struct BarrierStore {
    pub inner: Arc<dyn Store>,
    pub barrier: Barrier,
    /// Member writes by this user wait until another user's member write is done.
    pub hold_member_writes_of: Option<(String, Arc<Notify>)>,
}

impl BarrierStore {
    fn new(inner: Arc<dyn Store>, contenders: usize) -> BarrierStore {
        BarrierStore {
            inner,
            barrier: Barrier::new(contenders),
            hold_member_writes_of: None,
        }
    }

    async fn member_write<F: std::future::Future<Output = Result<()>>>(
        &self,
        by: &str,
        write: F,
    ) -> Result<()> {
        let Some((held, gate)) = &self.hold_member_writes_of else {
            return write.await;
        };
        if held == by {
            gate.notified().await;
            return write.await;
        }
        let result = write.await;
        gate.notify_one();
        result
    }
}

#[async_trait]
impl Reads for BarrierStore {
    async fn fetch(&self, ws: &str, keys: &[Key]) -> Result<Fetched> {
        self.inner.fetch(ws, keys).await
    }
}

// The ports it changes: member writes and studio writes wait; the others forward.
#[async_trait]
impl WorkspaceStore for BarrierStore {
    async fn memberships(&self, u: &str) -> Result<Vec<Member>> {
        self.inner.memberships(u).await
    }
    async fn list_members(&self, ws: &str) -> Result<Vec<Member>> {
        self.inner.list_members(ws).await
    }
    async fn create_workspace(&self, w: &Workspace, o: &Member) -> Result<()> {
        self.inner.create_workspace(w, o).await
    }
    async fn put_member(&self, g: &RoleGuard, c: &MemberChange) -> Result<()> {
        self.member_write(&g.user_id, self.inner.put_member(g, c))
            .await
    }
    async fn remove_member(&self, g: &RoleGuard, m: &Member) -> Result<()> {
        self.member_write(&g.user_id, self.inner.remove_member(g, m))
            .await
    }
    async fn check_role(&self, g: &RoleGuard) -> Result<()> {
        self.inner.check_role(g).await
    }
}

#[async_trait]
impl CatalogStore for BarrierStore {
    async fn list_compute_envs(&self, ws: &str) -> Result<Vec<ComputeEnv>> {
        self.inner.list_compute_envs(ws).await
    }
    async fn list_data_links(&self, ws: &str) -> Result<Vec<DataLink>> {
        self.inner.list_data_links(ws).await
    }
    async fn create_compute_env(&self, g: &RoleGuard, ce: &ComputeEnv) -> Result<()> {
        self.inner.create_compute_env(g, ce).await
    }
    async fn delete_compute_env(&self, g: &RoleGuard, ce: &ComputeEnv) -> Result<()> {
        self.inner.delete_compute_env(g, ce).await
    }
    async fn create_data_link(&self, g: &RoleGuard, l: &DataLink) -> Result<()> {
        self.inner.create_data_link(g, l).await
    }
    async fn delete_data_link(&self, g: &RoleGuard, id: &str) -> Result<()> {
        self.inner.delete_data_link(g, id).await
    }
}

#[async_trait]
impl StudioStore for BarrierStore {
    async fn list_studios(
        &self,
        ws: &str,
        f: &StudioFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Studio>> {
        self.inner.list_studios(ws, f, limit, cursor).await
    }
    async fn create_studio(
        &self,
        g: &RoleGuard,
        s: &Studio,
        l: Option<&Lineage<'_>>,
    ) -> Result<()> {
        self.barrier.wait().await;
        self.inner.create_studio(g, s, l).await
    }
    async fn write_studio(&self, w: &StudioWrite<'_>) -> Result<()> {
        if w.old.session.is_none() && w.new.session.is_some() {
            self.barrier.wait().await;
        }
        self.inner.write_studio(w).await
    }
    async fn record_job(&self, s: &Studio, attempt: &str, job: &str) -> Result<()> {
        self.inner.record_job(s, attempt, job).await
    }
    async fn record_agent(
        &self,
        s: &Studio,
        attempt: &str,
        agent: &studios_shared::domain::lifecycle::AgentState,
    ) -> Result<bool> {
        self.inner.record_agent(s, attempt, agent).await
    }
    async fn record_connection(
        &self,
        g: &RoleGuard,
        s: &Studio,
        attempt: &str,
        user: &str,
        c: &Connection,
    ) -> Result<()> {
        self.inner.record_connection(g, s, attempt, user, c).await
    }
    async fn active_studios(&self) -> Result<Vec<Studio>> {
        self.inner.active_studios().await
    }
    async fn delete_studio(&self, g: &RoleGuard, s: &Studio) -> Result<()> {
        self.barrier.wait().await;
        self.inner.delete_studio(g, s).await
    }
}

#[async_trait]
impl LockStore for BarrierStore {
    async fn list_mounts(&self, ws: &str) -> Result<Vec<HeldMount>> {
        self.inner.list_mounts(ws).await
    }
    async fn delete_empty_lock(&self, ws: &str, sk: &str) -> Result<bool> {
        self.inner.delete_empty_lock(ws, sk).await
    }
}

#[async_trait]
impl CheckpointStore for BarrierStore {
    async fn list_checkpoints(
        &self,
        ws: &str,
        id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Checkpoint>> {
        self.inner.list_checkpoints(ws, id, limit, cursor).await
    }
    async fn history(&self, ws: &str, id: &str) -> Result<Vec<Checkpoint>> {
        self.inner.history(ws, id).await
    }
    async fn rename_checkpoint(&self, g: &RoleGuard, cp: &Checkpoint, name: &str) -> Result<()> {
        self.inner.rename_checkpoint(g, cp, name).await
    }
    async fn purge_checkpoints(&self, ws: &str, id: &str) -> Result<usize> {
        self.inner.purge_checkpoints(ws, id).await
    }
    async fn release_data(&self, ws: &str, id: &str) -> Result<bool> {
        self.inner.release_data(ws, id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_adds_of_one_name_have_exactly_one_winner() {
    const CONTENDERS: usize = 8;
    let mut t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    let ce = t.compute_env(&ws, json!({})).await;
    let real = t.app.store.clone();
    for round in 0..5 {
        t.app = App {
            store: Arc::new(BarrierStore::new(real.clone(), CONTENDERS)),
            ..t.app.clone()
        };
        let name = format!("contested-{round}");
        let results = futures::future::join_all((0..CONTENDERS).map(|_| {
            t.req(A::AddStudio)
                .user("maintain")
                .param("ws", &ws)
                .body(json!({"name": name, "computeEnvId": ce, "template": {"kind": "jupyter"}}))
                .send()
        }))
        .await;
        let winners = results.iter().filter(|r| r.status == 201).count();
        let losers: Vec<_> = results.iter().filter(|r| r.status == 409).collect();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        assert_eq!(losers.len(), CONTENDERS - 1, "round {round}: {results:?}");
        for l in losers {
            assert_eq!(l.json["error"]["code"], "name_taken");
        }
    }
    t.app.store = real;
    let page = t
        .req(A::ListStudios)
        .user("view")
        .param("ws", &ws)
        .send()
        .await
        .ok(200);
    assert_eq!(page["studios"].as_array().unwrap().len(), 5);
    // Every studio counted once on its compute environment: exactly 5 deletes free it.
    let (_, m) = t
        .req(A::DeleteComputeEnv)
        .user("admin")
        .param("ws", &ws)
        .param("ceId", &ce)
        .send()
        .await
        .err(409);
    assert!(m.contains("used by 5 studio"), "{m}");
}

/// 50 rounds of 8 concurrent starts of different studios whose mounts all conflict:
/// exactly one wins each round, the others get 409 naming it, and once the winner's job
/// ends no lock is left.
async fn contested_starts(paths: [&str; 8]) {
    use crate::lifecycle::{get, on_studio, setup, start};
    let mut t = TestApp::new().await;
    let s = setup(&t).await;
    let mut ids = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        ids.push(
            crate::lifecycle::studio_with_mount(&t, &s, &format!("contender-{i}"), path).await,
        );
    }
    let real = t.app.store.clone();
    for round in 0..50 {
        t.app = App {
            store: Arc::new(BarrierStore::new(real.clone(), ids.len())),
            ..t.app.clone()
        };
        let results = futures::future::join_all(ids.iter().map(|id| start(&t, &s.ws, id))).await;
        t.app.store = real.clone();
        let winners: Vec<usize> = (0..ids.len())
            .filter(|&i| results[i].status == 202)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let w = winners[0];
        for (i, r) in results.iter().enumerate().filter(|(i, _)| *i != w) {
            assert_eq!(r.status, 409, "round {round}: {r:?}");
            assert_eq!(r.json["error"]["code"], "mount_locked");
            let message = r.json["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&ids[w]) && message.contains(&format!("'contender-{w}'")),
                "round {round}, loser {i}: {message}"
            );
        }
        // The winner runs and is stopped: its locks go when its job ends.
        let job_id = results[w].json["session"]["jobId"]
            .as_str()
            .unwrap()
            .to_string();
        let job = t.job(&job_id).await;
        t.deliver(&t.job_event(&job, "RUNNING", true, None, None))
            .await;
        on_studio(&t, A::StopStudio, "maintain", &s.ws, &ids[w])
            .await
            .ok(202);
        assert!(!t.live_locks(&s.ws).await.is_empty(), "held while stopping");
        let ended = t.job_event(&job, "FAILED", true, Some("stopped"), Some(143));
        t.deliver(&ended).await;
        assert_eq!(get(&t, &s.ws, &ids[w]).await["status"], "stopped");
        assert!(t.live_locks(&s.ws).await.is_empty(), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_on_one_path_have_one_winner_per_round() {
    contested_starts(["s3://data-bucket/shared/"; 8]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_on_overlapping_prefixes_have_one_winner_per_round() {
    contested_starts([
        "s3://data-bucket/",
        "s3://data-bucket/a/",
        "s3://data-bucket/a/b/",
        "s3://data-bucket/a/b/c/",
        "s3://data-bucket/a/b/c/d/",
        "s3://data-bucket/a/b/c/d/e/",
        "s3://data-bucket/a/b/c/d/e/f/",
        "S3://data-bucket//a/b/c/d/e/f/g",
    ])
    .await;
}

/// A clone and a delete of its source, both having read before either writes: either
/// the clone loses (404) or it wins and the source's data stays for it. Never a clone
/// whose inherited checkpoint data was deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clone_racing_the_deletion_of_its_source_never_loses_its_data() {
    use crate::lifecycle::{on_studio, running, setup, studio_with_mount};
    let mut t = TestApp::new().await;
    let s = setup(&t).await;
    let real = t.app.store.clone();
    let mut outcomes = std::collections::BTreeSet::new();
    for round in 0..8 {
        let parent =
            studio_with_mount(&t, &s, &format!("parent-{round}"), "s3://data-bucket/r/").await;
        let job = running(&t, &s.ws, &parent).await;
        on_studio(&t, A::StopStudio, "maintain", &s.ws, &parent)
            .await
            .ok(202);
        let save = studios_integration_tests::save_uri(&job);
        t.write_manifest(&save).await;
        t.deliver(&t.job_event(&job, "FAILED", true, None, Some(143)))
            .await;
        t.app = App {
            store: Arc::new(BarrierStore::new(real.clone(), 2)),
            ..t.app.clone()
        };
        let clone = t
            .req(A::CloneStudio)
            .user("maintain")
            .param("ws", &s.ws)
            .param("id", &parent)
            .body(json!({"name": format!("clone-{round}"), "mounts": []}))
            .send();
        let delete = on_studio(&t, A::DeleteStudio, "maintain", &s.ws, &parent);
        let (clone, delete) = tokio::join!(clone, delete);
        t.app = App {
            store: real.clone(),
            ..t.app.clone()
        };
        assert_eq!(delete.status, 204, "{}", delete.json);
        t.process_stream().await;
        let key = save.strip_prefix("s3://work-bucket/").unwrap().to_string() + "manifest.json";
        let data_kept =
            t.s3.head_object()
                .bucket("work-bucket")
                .key(&key)
                .send()
                .await
                .is_ok();
        match clone.status {
            201 => {
                assert!(
                    data_kept,
                    "round {round}: the clone's inherited data was deleted"
                );
                outcomes.insert("clone first");
            }
            404 => {
                assert!(
                    !data_kept,
                    "round {round}: nothing depends on the data any more"
                );
                outcomes.insert("delete first");
            }
            other => panic!("round {round}: clone answered {other}: {}", clone.json),
        }
    }
    println!("outcomes seen: {outcomes:?}");
}

/// An owner demoted while changing another owner: its write re-checks that it is still
/// an owner (not just an admin), so the other owner keeps the role.
#[tokio::test]
async fn an_owner_demoted_meanwhile_cannot_change_another_owner() {
    let mut t = TestApp::new().await;
    let ws = t.workspace_with_roles().await;
    for user in ["owner-b", "owner-c"] {
        t.req(A::SetMember)
            .user("owner")
            .param("ws", &ws)
            .param("userId", user)
            .body(json!({"role": "owner"}))
            .send()
            .await
            .ok(200);
    }
    let gate = Arc::new(Notify::new());
    let real = t.app.store.clone();
    t.app = App {
        store: Arc::new(BarrierStore {
            hold_member_writes_of: Some(("owner-b".into(), gate)),
            ..BarrierStore::new(real.clone(), 1)
        }),
        ..t.app.clone()
    };
    // owner-b reads (still an owner) and wants owner-c demoted; its write waits until
    // owner has made owner-b an admin.
    let demote_c = t
        .req(A::SetMember)
        .user("owner-b")
        .param("ws", &ws)
        .param("userId", "owner-c")
        .body(json!({"role": "maintain"}))
        .send();
    let demote_b = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        t.req(A::SetMember)
            .user("owner")
            .param("ws", &ws)
            .param("userId", "owner-b")
            .body(json!({"role": "admin"}))
            .send()
            .await
    };
    let (demote_c, demote_b) = tokio::join!(demote_c, demote_b);
    demote_b.ok(200);
    let (code, message) = demote_c.err(403);
    assert_eq!(code, "forbidden", "{message}");
    t.app.store = real;
    let members = t
        .req(A::ListMembers)
        .user("owner")
        .param("ws", &ws)
        .send()
        .await
        .ok(200);
    let role_of = |u: &str| {
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["userId"] == u)
            .map(|m| m["role"].clone())
    };
    assert_eq!(role_of("owner-c"), Some(json!("owner")));
    assert_eq!(role_of("owner-b"), Some(json!("admin")));
}
