//! DynamoDB adapter: one table, single-table design (key schema in docs/storage.md).
//!
//! | item               | PK        | SK                    | GSI1PK      | GSI1SK    |
//! |--------------------|-----------|-----------------------|-------------|-----------|
//! | workspace          | WS#<ws>   | #META                 |             |           |
//! | member             | WS#<ws>   | MEMBER#<user>         | USER#<user> | WS#<ws>   |
//! | compute env        | WS#<ws>   | CE#<ce>               |             |           |
//! | data link          | WS#<ws>   | DL#<dl>               |             |           |
//! | studio             | WS#<ws>   | STUDIO#<st>           |             |           |
//! | studio name claim  | WS#<ws>   | STUDIONAME#<lower>    |             |           |
//! | studio in session  | (studio)  | (studio)              | SESSIONS    | <ws>#<st> |
//! | mount lock         | WS#<ws>   | LOCK#<s3 prefix>      |             |           |
//! | checkpoint         | WS#<ws>   | CP#<st>#<cp>          |             |           |
//! | checkpoint name    | WS#<ws>   | CPNAME#<st>#<lower>   |             |           |
//! | checkpoint data    | WS#<ws>   | DATA#<st>             |             |           |
//! | job queue claim    | QUEUE#<arn> | #CLAIM              |             |           |
//!
//! A `DATA#<st>` item tracks the checkpoint data saved by studio `<st>` (its prefix) and
//! the studios whose history points into it (`dependents`: the studio itself and its
//! clones). When the set empties, the stream consumer deletes the data.
//!
//! A `QUEUE#<arn>` item ties a job queue to the workspace whose compute environments use
//! it (`ws`, and their ids in `ces`): another workspace may take the queue only once `ces`
//! is gone, so sessions of two workspaces never share a queue's hosts.

use super::*;
use crate::clock::now;
use crate::domain::lifecycle::Session;
use crate::domain::locks::{self, parse_intent, LockItem};
use crate::domain::search::StudioFilter;
use crate::error::{Changed, Conflict, Error, LockHolder, Missing, Result};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, DeleteRequest,
    GlobalSecondaryIndex, KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType,
    Put, PutRequest, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, StreamSpecification,
    StreamViewType, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

mod catalog;
mod checkpoints;
mod keys;
mod mount_locks;
mod reads;
mod stream;
mod studios;
mod table;
mod workspaces;

use keys::*;
pub use stream::change_from_record;
pub use table::create_table;

type Item = HashMap<String, AttributeValue>;

const GSI1: &str = "GSI1";

const META: &str = "#META";

const SESSIONS: &str = "SESSIONS";

/// Retries of a transaction cancelled by a conflicting transaction or throttling.
const TX_ATTEMPTS: u32 = 4;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }
}

/// Maps a failed condition of one transaction item (with the item as it was, if any) to
/// the caller-facing error.
type OnFail = Box<dyn Fn(Option<&Item>) -> Error + Send + Sync>;

/// A `TransactWriteItems` under construction: each item carries its failure meaning.
#[derive(Default)]
struct Tx {
    items: Vec<TransactWriteItem>,
    on_fail: Vec<OnFail>,
}

impl Tx {
    fn push(
        &mut self,
        item: TransactWriteItem,
        on_fail: impl Fn(Option<&Item>) -> Error + Send + Sync + 'static,
    ) {
        self.items.push(item);
        self.on_fail.push(Box::new(on_fail));
    }
}

/// Expression values for a role condition: `#role IN (:r0, :r1, ...)`.
fn role_condition(roles: &[Role]) -> (String, Vec<(String, AttributeValue)>) {
    let names: Vec<String> = (0..roles.len()).map(|i| format!(":r{i}")).collect();
    let values = names
        .iter()
        .zip(roles)
        .map(|(n, r)| (n.clone(), s(r.as_str())))
        .collect();
    (
        format!("attribute_exists(PK) AND #role IN ({})", names.join(", ")),
        values,
    )
}

fn build_err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::internal(e)
}

/// SDK errors that mean "try again later" become `Throttled`; the rest are internal.
/// Whether a conditional single-item write applied: a failed condition is an answer,
/// not an error.
fn applied<T, E>(result: std::result::Result<T, SdkError<E>>) -> Result<bool>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(se))
            if se.err().code() == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(sdk_error(e)),
    }
}

fn sdk_error<E>(err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let busy = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ServiceError(se) => matches!(
            se.err().code(),
            Some(
                "ThrottlingException"
                    | "ProvisionedThroughputExceededException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
            )
        ),
        _ => false,
    };
    if busy {
        tracing::warn!(error = %aws_smithy_types::error::display::DisplayErrorContext(&err), "DynamoDB busy");
        Error::Throttled
    } else {
        Error::internal(err)
    }
}

fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    base.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

/// At most this many items per `TransactWriteItems`.
const MAX_TX_ITEMS: usize = 100;

/// At most this many requests per `BatchWriteItem`.
const MAX_BATCH_WRITE: usize = 25;

impl DynamoStore {
    fn guard_item(&self, guard: &RoleGuard) -> Result<TransactWriteItem> {
        let (cond, values) = role_condition(&guard.roles);
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                &guard.workspace_id,
                sk(&Key::Member(guard.user_id.clone())),
            )))
            .condition_expression(cond)
            .expression_attribute_names("#role", "role")
            .set_expression_attribute_values(Some(values.into_iter().collect()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// The caller's role re-checked: not a member any more → 404, demoted → 403.
    fn push_guard(&self, tx: &mut Tx, guard: &RoleGuard) -> Result<()> {
        tx.push(self.guard_item(guard)?, |old| match old {
            Some(_) => Error::Forbidden("your role no longer allows this".into()),
            None => Error::NotFound(Missing::Workspace),
        });
        Ok(())
    }

    fn put(&self, item: Item, condition: &str) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Runs the transaction; retries conflicts and throttling a bounded number of times.
    /// On a failed condition, the first failing item (in push order) explains the failure,
    /// so a role check pushed first wins over everything after it.
    async fn transact(&self, tx: Tx) -> Result<()> {
        let mut delay = Duration::from_millis(25);
        for attempt in 1..=TX_ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(tx.items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            if let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) =
                err.as_service_error()
            {
                let reasons = cancel.cancellation_reasons();
                if let Some((i, reason)) = reasons
                    .iter()
                    .enumerate()
                    .find(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                {
                    return Err((tx.on_fail[i])(reason.item()));
                }
                let retryable = reasons.iter().any(|r| {
                    matches!(
                        r.code(),
                        Some(
                            "TransactionConflict"
                                | "ThrottlingError"
                                | "ProvisionedThroughputExceeded"
                        )
                    )
                });
                if retryable && attempt < TX_ATTEMPTS {
                    tokio::time::sleep(delay + jitter(delay)).await;
                    delay *= 2;
                    continue;
                }
                if retryable {
                    return Err(Error::Throttled);
                }
                return Err(Error::internal(err));
            }
            if matches!(
                err.as_service_error(),
                Some(TransactWriteItemsError::TransactionInProgressException(_))
            ) && attempt < TX_ATTEMPTS
            {
                tokio::time::sleep(delay).await;
                delay *= 2;
                continue;
            }
            return Err(sdk_error(err));
        }
        Err(Error::Throttled)
    }

    /// Every page of a query (`query` builds it; the start key is added per page).
    async fn all_pages(
        &self,
        query: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = query()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(items),
            }
        }
    }

    /// Every item of the workspace whose sort key starts with `prefix` (consistent).
    async fn query_all(&self, ws: &str, prefix: &str) -> Result<Vec<Item>> {
        self.all_pages(|| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(":pk", s(pk(ws)))
                .expression_attribute_values(":prefix", s(prefix))
                .consistent_read(true)
        })
        .await
    }

    /// Every item of GSI1 under `pk` (eventually consistent, as GSIs are).
    async fn query_index(&self, pk: String) -> Result<Vec<Item>> {
        self.all_pages(|| {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("GSI1PK = :pk")
                .expression_attribute_values(":pk", s(pk.clone()))
        })
        .await
    }

    async fn list<T: DeserializeOwned>(&self, ws: &str, prefix: &str) -> Result<Vec<T>> {
        self.query_all(ws, prefix)
            .await?
            .iter()
            .map(from_item)
            .collect()
    }

    /// Deletes an item if `condition` holds; whether it did (a failed condition is not an
    /// error).
    async fn delete_if(&self, k: Item, condition: &str) -> Result<bool> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(k))
            .condition_expression(condition)
            .send()
            .await;
        applied(result)
    }

    /// `BatchWriteItem` puts, 25 at a time, retrying what comes back unprocessed.
    async fn batch_put(&self, items: Vec<Item>) -> Result<()> {
        let requests = items
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|p| WriteRequest::builder().put_request(p).build())
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(build_err)?;
        self.batch_write(requests).await
    }

    async fn batch_delete(&self, keys: Vec<Item>) -> Result<()> {
        let requests = keys
            .into_iter()
            .map(|k| {
                DeleteRequest::builder()
                    .set_key(Some(k))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(build_err)?;
        self.batch_write(requests).await
    }

    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<()> {
        for chunk in requests.chunks(MAX_BATCH_WRITE) {
            let mut pending = chunk.to_vec();
            for attempt in 0.. {
                if pending.is_empty() {
                    break;
                }
                if attempt == 5 {
                    return Err(Error::Throttled);
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                pending = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn studios_round_trip_through_items() {
        let studio = Studio {
            id: "st-1".into(),
            workspace_id: "ws-1".into(),
            config: StudioConfig {
                name: "s".into(),
                description: String::new(),
                template: Template::Kind {
                    kind: TemplateKind::Jupyter,
                },
                conda_packages: vec!["numpy>=1".into()],
                resources: Resources::default(),
                mounts: vec![Mount {
                    uri: S3Prefix::parse("s3://rw-bucket/a").unwrap(),
                    name: "a".into(),
                    mount_path: "/workspace/data/a".into(),
                    access: Access::ReadWrite,
                    data_link_id: None,
                }],
            },
            compute_env: ComputeEnvSnapshot {
                id: "ce-1".into(),
                name: "cpu".into(),
                region: "us-east-1".into(),
                job_queue: "arn:aws:batch:us-east-1:123456789012:job-queue/q".into(),
                gpu_enabled: false,
                max_cpus: 8,
                max_memory_mib: 16384,
                allowed_write_buckets: vec!["rw-bucket".into()],
                work_dir: S3Prefix::parse("s3://work-bucket/w").unwrap(),
                job_role_arn: None,
            },
            status: StudioStatus::Stopped,
            status_reason: None,
            status_updated_at: now(),
            author: UserRef {
                id: "u".into(),
                name: "U".into(),
            },
            created_at: now(),
            updated_at: now(),
            last_started_at: None,
            parent: None,
            connected_users: [(
                "u-2".to_string(),
                Connection {
                    name: "Bo".into(),
                    last_seen_at: now(),
                },
            )]
            .into(),
            version: 7,
            session: None,
            status_actor: None,
            latest_checkpoint: None,
            recorded_checkpoint: None,
            checkpoint_count: 0,
            data_origins: vec!["st-0".into()],
        };
        let item = studio_item(&studio).unwrap();
        assert_eq!(item_str(&item, "SK"), Some("STUDIO#st-1"));
        assert_eq!(item_str(&item, "nameLower"), Some("s"));
        let back: Studio = from_item(&item).unwrap();
        assert_eq!(back, studio);
    }

    #[test]
    fn cursors_round_trip_and_reject_foreign_keys() {
        let item = key("ws-1", "STUDIO#st-9".into());
        let cursor = encode_cursor(&item).unwrap();
        assert_eq!(decode_cursor(&cursor, "STUDIO#").unwrap(), "STUDIO#st-9");
        assert!(decode_cursor("not base64!", "STUDIO#").is_err());
        let member = encode_cursor(&key("ws-1", "MEMBER#x".into())).unwrap();
        assert!(decode_cursor(&member, "STUDIO#").is_err());
        // Tampered: a huge key (DynamoDB refuses keys over 1,024 bytes) or odd characters.
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let huge = b64(&format!("STUDIO#{}", "a".repeat(1500)));
        assert!(decode_cursor(&huge, "STUDIO#").is_err());
        assert!(decode_cursor(&b64("STUDIO#a b\u{0}"), "STUDIO#").is_err());
        assert!(decode_cursor(&b64("STUDIO#"), "STUDIO#").is_err());
    }
}
