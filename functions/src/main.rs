//! One bootstrap binary for every function: SAM gives each function its own handler name
//! (`_HANDLER`), role and scaling; this binary serves what that name selects — an API
//! action, the Batch event consumer, the table-stream consumer (status events and
//! clean-up) or the reconciler.
//! Configuration and AWS clients are built once here, at cold start.

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use lambda_http::{service_fn, Error, Request};
use lambda_runtime::LambdaEvent;
use serde_json::{json, Value};
use studios_shared::events::change_from_record;
use studios_shared::http::{handle, Action};
use studios_shared::{consumers, App, Config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    studios_shared::telemetry::init();
    let handler = std::env::var("_HANDLER").unwrap_or_default();
    let config = Config::from_env()?;
    let app = App::from_env(config).await;
    let app = &app;
    match handler.as_str() {
        consumers::BATCH_EVENTS_HANDLER => {
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
                // An error makes Lambda retry, then the on-failure destination keeps it.
                let applied = consumers::on_batch_event(app, &event.payload).await?;
                Ok::<_, Error>(json!({ "applied": format!("{applied:?}") }))
            }))
            .await
        }
        consumers::TABLE_STREAM_HANDLER => {
            lambda_runtime::run(service_fn(
                move |event: LambdaEvent<StreamEvent>| async move {
                    let mut changes = Vec::new();
                    for record in event.payload.records {
                        let c = record.change;
                        if let Some(change) =
                            change_from_record(c.keys, Some(c.old_image), Some(c.new_image))?
                        {
                            changes.push(change);
                        }
                    }
                    let report = consumers::on_table_changes(app, &changes).await?;
                    Ok::<_, Error>(json!({
                        "published": report.published,
                        "purged": report.purged,
                        "dataDeleted": report.data_deleted,
                        "locksDeleted": report.locks_deleted,
                    }))
                },
            ))
            .await
        }
        studios_shared::cleanup::CLEANUP_HANDLER => {
            // SQS, one message per invocation (BatchSize 1); a failed step is reported as
            // the batch's failure, so SQS retries it, then the clean-up dead-letter queue.
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
                let mut failures = Vec::new();
                let records = event.payload["Records"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for record in records {
                    let id = record["messageId"].as_str().unwrap_or_default().to_string();
                    let task = record["body"]
                        .as_str()
                        .and_then(|b| serde_json::from_str(b).ok());
                    let Some(task) = task else {
                        tracing::error!(
                            message = id,
                            "not a clean-up task or stop deadline; dropped"
                        );
                        continue;
                    };
                    if let Err(e) = consumers::run_queued(app, &task).await {
                        tracing::warn!(message = id, error = %e, "clean-up step failed; retried");
                        failures.push(json!({ "itemIdentifier": id }));
                    }
                }
                Ok::<_, Error>(json!({ "batchItemFailures": failures }))
            }))
            .await
        }
        consumers::RECONCILE_HANDLER => {
            lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
                let report = consumers::reconcile(app).await?;
                Ok::<_, Error>(json!({
                    "checked": report.checked,
                    "changed": report.changed,
                    "unknown": report.unknown,
                }))
            }))
            .await
        }
        studios_shared::http::UNROUTED_HANDLER => {
            lambda_http::run(service_fn(move |req: Request| async move {
                let id = studios_shared::http::request_id(&req);
                let (method, path) = (req.method().to_string(), req.uri().path().to_string());
                Ok::<_, std::convert::Infallible>(studios_shared::http::unrouted(
                    &method, &path, &id,
                ))
            }))
            .await
        }
        name => {
            let action = Action::from_handler(name).ok_or_else(|| {
                format!("unknown handler '{name}' (set by the function's Handler)")
            })?;
            lambda_http::run(service_fn(move |req: Request| async move {
                Ok::<_, std::convert::Infallible>(handle(app, action, req).await)
            }))
            .await
        }
    }
}
