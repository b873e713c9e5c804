//! A contract between the mount-lock rules and the table: one generated sequence of
//! session starts and ends is replayed against the in-memory model of the rules
//! (`domain::locks::LockTable`) and against the real path (the API, the DynamoDB
//! adapter's conditional transactions on the emulator, Batch events ending sessions).
//! Every start must succeed or be refused (409 `mount_locked`) in both alike, and the
//! paths `GET …/mounts` shows must be the ones the model holds.

use crate::lifecycle::{setup, start, studio_with_mount};
use serde_json::Value;
use std::collections::BTreeSet;
use studios_integration_tests::{TestApp, A};
use studios_shared::domain::locks::{plan, LockItem, LockTable};
use studios_shared::domain::S3Prefix;

/// Nested and disjoint paths: parents, children, siblings, a deep one.
const PATHS: [&str; 6] = [
    "s3://data-bucket/a/",
    "s3://data-bucket/a/b/",
    "s3://data-bucket/a/b/c/",
    "s3://data-bucket/a/e/",
    "s3://data-bucket/d/",
    "s3://data-bucket/d/f/g/",
];

/// xorshift64: the sequence is generated, and the same on every run.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test]
async fn the_lock_model_and_the_table_agree_on_a_generated_sequence() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    // Two studios per path, so a path also collides with itself.
    let mut studios: Vec<(String, S3Prefix)> = Vec::new();
    for (i, path) in PATHS.iter().enumerate() {
        for copy in 0..2 {
            let id = studio_with_mount(&t, &s, &format!("contract {i}.{copy}"), path).await;
            studios.push((id, S3Prefix::parse(path).unwrap()));
        }
    }
    let mut model = LockTable::default();
    // Running sessions: studio index, its job, its lock plan.
    let mut running: Vec<(usize, Value, Vec<LockItem>)> = Vec::new();
    let (mut seed, mut refused, mut ended) = (0x5EED_1234_ABCD_0001u64, 0, 0);
    for step in 0..36 {
        let k = (next(&mut seed) % studios.len() as u64) as usize;
        let (id, path) = &studios[k];
        if let Some(at) = running.iter().position(|(i, _, _)| *i == k) {
            // The session ends: its job's terminal event releases its locks.
            let (_, studio, items) = running.remove(at);
            let job = t.job(studio["session"]["jobId"].as_str().unwrap()).await;
            let status = if next(&mut seed).is_multiple_of(2) {
                "SUCCEEDED"
            } else {
                "FAILED"
            };
            t.deliver(&t.job_event(&job, status, true, None, None))
                .await;
            model.release(id, &items);
            ended += 1;
            continue;
        }
        let items = plan(
            id,
            &format!("attempt-{step}"),
            "n",
            std::slice::from_ref(path),
        );
        let expected = model.acquire(id, &items);
        let resp = start(&t, &s.ws, id).await;
        match expected {
            Ok(()) => {
                let studio = resp.ok(202);
                running.push((k, studio, items));
            }
            Err(blocked) => {
                let (code, message) = resp.err(409);
                assert_eq!(code, "mount_locked", "step {step}: {path} ({message})");
                assert!(message.starts_with(path.as_str()), "{message}");
                assert!(path.overlaps(&blocked));
                refused += 1;
            }
        }
        // What the table holds is what the model holds.
        let held: BTreeSet<String> = t
            .req(A::ListMounts)
            .user("view")
            .param("ws", &s.ws)
            .send()
            .await
            .ok(200)["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["uri"].as_str().unwrap().to_string())
            .collect();
        let want: BTreeSet<String> = running
            .iter()
            .map(|(i, _, _)| studios[*i].1.to_string())
            .collect();
        assert_eq!(held, want, "step {step}");
    }
    // The sequence exercised both answers and both kinds of step.
    assert!(
        refused >= 3 && ended >= 3 && !running.is_empty(),
        "{refused} {ended}"
    );
}
