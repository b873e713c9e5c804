//! The Batch event consumer over AWS's documented `Batch Job State Change` example
//! (tests/api/fixtures): real events may carry no job tags (the documented example's
//! `tags` holds only `resourceArn`), so a studio's job is recognised by its name and
//! queue alone.

use crate::lifecycle::{get, setup, started, studio_with_mount};
use serde_json::{json, Value};
use studios_integration_tests::TestApp;
use studios_shared::sessions::Applied;

fn documented_example() -> Value {
    serde_json::from_str(include_str!("fixtures/batch-job-state-change.json"))
        .expect("the fixture is JSON")
}

#[tokio::test]
async fn the_documented_example_is_parsed_and_ignored_as_a_foreign_job() {
    let t = TestApp::new().await;
    let event = documented_example();
    assert_eq!(event["detail"]["tags"].as_object().unwrap().len(), 1);
    assert_eq!(t.deliver(&event).await, Applied::UnknownStudio);
    for status in ["RUNNING", "SUCCEEDED", "FAILED"] {
        let mut e = event.clone();
        e["detail"]["status"] = json!(status);
        assert_eq!(t.deliver(&e).await, Applied::UnknownStudio, "{status}");
    }
}

#[tokio::test]
async fn the_documented_example_with_our_job_name_moves_the_studio() {
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "tagless", "s3://data-bucket/tagless/").await;
    let (_, job) = started(&t, &s.ws, &id).await;

    // The documented event, about our job: its name, id and queue; no job tags at all.
    let ours = |status: &str| {
        let mut e = documented_example();
        e["detail"]["jobName"] = json!(job.job_name());
        e["detail"]["jobId"] = json!(job.job_id());
        e["detail"]["jobQueue"] = json!(s.fx.queue_arn);
        e["detail"]["jobDefinition"] = json!(job.job_definition());
        e["detail"]["status"] = json!(status);
        e
    };
    // Another stack's job (other prefix, same ids) and a job on another queue: ignored.
    let mut other_stack = ours("RUNNING");
    let renamed = job
        .job_name()
        .unwrap()
        .replacen("studios-test-", "studios-other-", 1);
    other_stack["detail"]["jobName"] = json!(renamed);
    assert_eq!(t.deliver(&other_stack).await, Applied::UnknownStudio);
    let mut other_queue = ours("RUNNING");
    other_queue["detail"]["jobQueue"] =
        json!("arn:aws:batch:us-east-1:123456789012:job-queue/someone-elses");
    assert!(matches!(t.deliver(&other_queue).await, Applied::Ignored(_)));
    // A look-alike job (our name and queue copied) that runs another job definition.
    let mut look_alike = ours("RUNNING");
    look_alike["detail"]["jobDefinition"] =
        json!("arn:aws:batch:us-east-1:123456789012:job-definition/first-run-job-definition:1");
    assert_eq!(
        t.deliver(&look_alike).await,
        Applied::Ignored("the job does not use this stack's job definitions")
    );
    assert_eq!(get(&t, &s.ws, &id).await["status"], "starting");

    assert_eq!(t.deliver(&ours("RUNNABLE")).await, Applied::Changed);
    let mut running = ours("RUNNING");
    running["detail"]["startedAt"] = json!(1_641_944_300_058u64);
    assert_eq!(t.deliver(&running).await, Applied::Changed);
    assert_eq!(get(&t, &s.ws, &id).await["status"], "running");
    // A duplicate is a no-op.
    assert!(matches!(t.deliver(&running).await, Applied::Ignored(_)));

    let mut failed = ours("FAILED");
    failed["detail"]["startedAt"] = json!(1_641_944_300_058u64);
    failed["detail"]["statusReason"] = json!("Essential container in task exited");
    failed["detail"]["container"]["exitCode"] = json!(1);
    assert_eq!(t.deliver(&failed).await, Applied::Changed);
    let studio = get(&t, &s.ws, &id).await;
    assert_eq!(studio["status"], "errored");
    assert_eq!(
        studio["statusReason"],
        "Essential container in task exited; exit code 1"
    );
    assert!(t.live_locks(&s.ws).await.is_empty());
}
