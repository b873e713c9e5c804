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
//!
//! A `DATA#<st>` item tracks the checkpoint data saved by studio `<st>` (its prefix) and
//! the studios whose history points into it (`dependents`: the studio itself and its
//! clones). When the set empties, the stream consumer deletes the data.

use super::*;
use crate::domain::lifecycle::Session;
use crate::domain::locks::{self, parse_intent, LockItem};
use crate::domain::now;
use crate::domain::search::StudioFilter;
use crate::error::{Error, Missing, Result};
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

fn pk(ws: &str) -> String {
    format!("WS#{ws}")
}

fn sk(key: &Key) -> String {
    match key {
        Key::Workspace => META.to_string(),
        Key::Member(u) => format!("MEMBER#{u}"),
        Key::ComputeEnv(id) => format!("CE#{id}"),
        Key::DataLink(id) => format!("DL#{id}"),
        Key::Studio(id) => format!("STUDIO#{id}"),
        Key::Lock(path) => format!("LOCK#{path}"),
        Key::Checkpoint(st, cp) => format!("CP#{st}#{cp}"),
    }
}

fn data_sk(studio_id: &str) -> String {
    format!("DATA#{studio_id}")
}

fn checkpoint_name_sk(studio_id: &str, name: &str) -> String {
    format!("CPNAME#{studio_id}#{}", name.to_lowercase())
}

fn name_claim_sk(name: &str) -> String {
    format!("STUDIONAME#{}", name.to_lowercase())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(ws: &str, sk: String) -> Item {
    HashMap::from([("PK".to_string(), s(pk(ws))), ("SK".to_string(), s(sk))])
}

fn to_item<T: Serialize>(ws: &str, sk: String, value: &T) -> Result<Item> {
    let mut item: Item = serde_dynamo::to_item(value).map_err(Error::internal)?;
    item.extend(key(ws, sk));
    Ok(item)
}

fn from_item<T: DeserializeOwned>(item: &Item) -> Result<T> {
    serde_dynamo::from_item(item.clone()).map_err(Error::internal)
}

fn item_str<'a>(item: &'a Item, attr: &str) -> Option<&'a str> {
    item.get(attr)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn item_u64(item: &Item, attr: &str) -> Option<u64> {
    item.get(attr)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
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
}

fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    base.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

/// Attributes that exist only for the studio list's filter expression.
fn studio_item(studio: &Studio) -> Result<Item> {
    let mut item = to_item(
        &studio.workspace_id,
        sk(&Key::Studio(studio.id.clone())),
        studio,
    )?;
    item.insert("nameLower".into(), s(studio.config.name.to_lowercase()));
    item.insert("authorLower".into(), s(studio.author.name.to_lowercase()));
    item.insert(
        "computeEnvLower".into(),
        s(studio.compute_env.name.to_lowercase()),
    );
    // Sparse index of studios in session: what the reconciler walks.
    if studio.session.is_some() {
        item.insert("GSI1PK".into(), s(SESSIONS));
        item.insert(
            "GSI1SK".into(),
            s(format!("{}#{}", studio.workspace_id, studio.id)),
        );
    }
    Ok(item)
}

fn encode_cursor(last: &Item) -> Option<String> {
    let sk = item_str(last, "SK")?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk))
}

/// Longest cursor accepted: the sort keys of lists are a prefix and our ids (< 100
/// bytes); anything longer was not made here (and could exceed DynamoDB's key limit).
const MAX_CURSOR: usize = 256;

/// The sort key a cursor continues after; it must belong to the list (`prefix`) and look
/// like one of its keys (a prefix and id characters), whatever a client sends.
fn decode_cursor(cursor: &str, prefix: &str) -> Result<String> {
    Some(cursor)
        .filter(|c| c.len() <= MAX_CURSOR)
        .and_then(|c| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|sk| {
            sk.strip_prefix(prefix).is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'#')
            })
        })
        .ok_or_else(|| {
            Error::invalid(
                "cursor",
                "is not a cursor returned by this list; start again without it",
            )
        })
}

/// A condition or filter expression with its attribute names and values.
struct Expr {
    condition: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// The studio is still the version that was read and in one of `statuses`.
    fn studio_unchanged(version: u64, statuses: &[StudioStatus]) -> Expr {
        let mut values = HashMap::from([(":version".to_string(), n(version))]);
        let mut placeholders = Vec::new();
        for (i, status) in statuses.iter().enumerate() {
            placeholders.push(format!(":s{i}"));
            values.insert(format!(":s{i}"), s(status.as_str()));
        }
        Expr {
            condition: format!(
                "#version = :version AND #status IN ({})",
                placeholders.join(", ")
            ),
            names: HashMap::from([
                ("#version".to_string(), "version".to_string()),
                ("#status".to_string(), "status".to_string()),
            ]),
            values,
        }
    }
}

/// `FilterExpression` for a studio search.
fn studio_filter(f: &StudioFilter) -> Option<Expr> {
    if f.is_empty() {
        return None;
    }
    let mut clauses = Vec::new();
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    for (i, word) in f.text.iter().enumerate() {
        clauses.push(format!("contains(nameLower, :t{i})"));
        values.insert(format!(":t{i}"), s(word));
    }
    if let Some(author) = &f.author {
        names.insert("#author".into(), "author".into());
        names.insert("#id".into(), "id".into());
        clauses.push("(#author.#id = :author OR contains(authorLower, :author))".into());
        values.insert(":author".into(), s(author));
    }
    if let Some(ce) = &f.compute_env {
        names.insert("#ce".into(), "computeEnv".into());
        names.insert("#id".into(), "id".into());
        clauses.push("(#ce.#id = :ce OR contains(computeEnvLower, :ce))".into());
        values.insert(":ce".into(), s(ce));
    }
    if let Some(status) = f.status {
        names.insert("#status".into(), "status".into());
        clauses.push("#status = :status".into());
        values.insert(":status".into(), s(status.as_str()));
    }
    Some(Expr {
        condition: clauses.join(" AND "),
        names,
        values,
    })
}

#[async_trait]
impl Store for DynamoStore {
    async fn fetch(&self, ws: &str, keys: &[Key]) -> Result<Fetched> {
        let mut wanted: Vec<Item> = Vec::new();
        for k in keys {
            let item = key(ws, sk(k));
            if !wanted.contains(&item) {
                wanted.push(item);
            }
        }
        let mut fetched = Fetched::default();
        let mut found: Vec<Item> = Vec::new();
        // BatchGetItem takes 100 keys; UnprocessedKeys come back only under throttling.
        for chunk in wanted.chunks(100) {
            let mut pending = Some(chunk.to_vec());
            for attempt in 0.. {
                let Some(keys) = pending.take().filter(|k| !k.is_empty()) else {
                    break;
                };
                if attempt == 5 {
                    return Err(Error::Throttled);
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(build_err)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                    found.extend(items.iter().cloned());
                }
                pending = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .map(|k| k.keys().to_vec());
            }
        }
        for item in &found {
            let Some(sort) = item_str(item, "SK") else {
                continue;
            };
            if sort == META {
                fetched.workspace = Some(WorkspaceRecord {
                    workspace: from_item(item)?,
                    owner_count: item_u64(item, "ownerCount").unwrap_or(0) as u32,
                });
            } else if let Some(id) = sort.strip_prefix("MEMBER#") {
                fetched.members.insert(id.to_string(), from_item(item)?);
            } else if let Some(id) = sort.strip_prefix("CE#") {
                fetched
                    .compute_envs
                    .insert(id.to_string(), from_item(item)?);
            } else if let Some(id) = sort.strip_prefix("DL#") {
                fetched.data_links.insert(id.to_string(), from_item(item)?);
            } else if let Some(id) = sort.strip_prefix("STUDIO#") {
                fetched.studios.insert(id.to_string(), from_item(item)?);
            } else if let Some(path) = sort.strip_prefix("LOCK#") {
                if let Ok(path) = S3Prefix::parse(path) {
                    fetched.locks.insert(path, lock_state(item));
                }
            } else if sort.starts_with("CP#") {
                let cp: Checkpoint = from_item(item)?;
                fetched.checkpoints.insert(cp.id.clone(), cp);
            }
        }
        Ok(fetched)
    }

    async fn memberships(&self, user_id: &str) -> Result<Vec<Member>> {
        self.query_index(format!("USER#{user_id}"))
            .await?
            .iter()
            .map(from_item)
            .collect()
    }

    async fn list_members(&self, ws: &str) -> Result<Vec<Member>> {
        self.list(ws, "MEMBER#").await
    }

    async fn list_compute_envs(&self, ws: &str) -> Result<Vec<ComputeEnv>> {
        self.list(ws, "CE#").await
    }

    async fn list_data_links(&self, ws: &str) -> Result<Vec<DataLink>> {
        self.list(ws, "DL#").await
    }

    async fn list_studios(
        &self,
        ws: &str,
        filter: &StudioFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Studio>> {
        let mut start = match cursor {
            Some(c) => Some(key(ws, decode_cursor(c, "STUDIO#")?)),
            None => None,
        };
        let expr = studio_filter(filter);
        // Unfiltered: one query of limit+1 tells whether another page exists.
        // Filtered: DynamoDB's Limit counts items read before the filter, so read in
        // larger pages until the page is full, bounded so a rare match costs few reads.
        let page_size = if expr.is_some() { 200 } else { limit + 1 };
        let max_queries = if expr.is_some() { 10 } else { 1 };
        let mut matched: Vec<Item> = Vec::new();
        let mut exhausted = false;
        for _ in 0..max_queries {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(":pk", s(pk(ws)))
                .expression_attribute_values(":prefix", s("STUDIO#"))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(page_size as i32)
                .set_exclusive_start_key(start.take());
            if let Some(f) = &expr {
                q = q
                    .filter_expression(&f.condition)
                    .set_expression_attribute_names((!f.names.is_empty()).then(|| f.names.clone()));
                for (k, v) in &f.values {
                    q = q.expression_attribute_values(k, v.clone());
                }
            }
            let out = q.send().await.map_err(sdk_error)?;
            matched.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => {
                    exhausted = true;
                    break;
                }
            }
            if matched.len() > limit {
                break;
            }
        }
        let more = matched.len() > limit || !exhausted;
        let next_cursor = if matched.len() > limit {
            matched.truncate(limit);
            matched.last().and_then(encode_cursor)
        } else if more {
            // Filtered and not exhausted: continue after the last item read, not matched.
            start.as_ref().and_then(encode_cursor)
        } else {
            None
        };
        let items = matched.iter().map(from_item).collect::<Result<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn create_workspace(&self, workspace: &Workspace, owner: &Member) -> Result<()> {
        let mut ws_item = to_item(&workspace.id, META.into(), workspace)?;
        ws_item.insert("ownerCount".into(), n(1));
        let mut tx = Tx::default();
        tx.push(self.put(ws_item, "attribute_not_exists(PK)")?, |_| {
            Error::conflict("workspace_exists", "a workspace with this id exists")
        });
        tx.push(
            self.put(member_item(owner)?, "attribute_not_exists(PK)")?,
            |_| Error::conflict("member_exists", "the member exists"),
        );
        self.transact(tx).await
    }

    async fn put_member(&self, guard: &RoleGuard, change: &MemberChange) -> Result<()> {
        let m = &change.member;
        let mut tx = Tx::default();
        // One transaction cannot touch an item twice: when callers change their own role,
        // the put's condition on the previous role is the role check.
        if guard.user_id != m.user_id {
            self.push_guard(&mut tx, guard)?;
        }
        let condition = match change.previous_role {
            None => "attribute_not_exists(PK)".to_string(),
            Some(_) => "#role = :previous".to_string(),
        };
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(member_item(m)?))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(previous) = change.previous_role {
            put = put
                .expression_attribute_names("#role", "role")
                .expression_attribute_values(":previous", s(previous.as_str()));
        }
        tx.push(
            TransactWriteItem::builder()
                .put(put.build().map_err(build_err)?)
                .build(),
            |_| {
                Error::conflict(
                    "concurrent_update",
                    "the member was changed by someone else meanwhile; read it again and retry",
                )
            },
        );
        let was_owner = change.previous_role == Some(Role::Owner);
        let is_owner = m.role == Role::Owner;
        if was_owner != is_owner {
            self.push_owner_count(&mut tx, &m.workspace_id, if is_owner { 1 } else { -1 })?;
        }
        self.transact(tx).await
    }

    async fn remove_member(&self, guard: &RoleGuard, m: &Member) -> Result<()> {
        let mut tx = Tx::default();
        if guard.user_id != m.user_id {
            self.push_guard(&mut tx, guard)?;
        }
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                &m.workspace_id,
                sk(&Key::Member(m.user_id.clone())),
            )))
            .condition_expression("#role = :previous")
            .expression_attribute_names("#role", "role")
            .expression_attribute_values(":previous", s(m.role.as_str()))
            .build()
            .map_err(build_err)?;
        tx.push(TransactWriteItem::builder().delete(delete).build(), |_| {
            Error::conflict(
                "concurrent_update",
                "the member was changed by someone else meanwhile; read it again and retry",
            )
        });
        if m.role == Role::Owner {
            self.push_owner_count(&mut tx, &m.workspace_id, -1)?;
        }
        self.transact(tx).await
    }

    async fn delete_empty_lock(&self, ws: &str, sort_key: &str) -> Result<bool> {
        if !sort_key.starts_with("LOCK#") {
            return Ok(false);
        }
        self.delete_if(
            key(ws, sort_key.to_string()),
            "attribute_exists(PK) AND attribute_not_exists(holderAttempt) AND attribute_not_exists(intents)",
        )
        .await
    }

    async fn check_role(&self, guard: &RoleGuard) -> Result<()> {
        let mut tx = Tx::default();
        self.push_guard(&mut tx, guard)?;
        self.transact(tx).await
    }

    async fn create_compute_env(&self, guard: &RoleGuard, ce: &ComputeEnv) -> Result<()> {
        let mut item = to_item(&ce.workspace_id, sk(&Key::ComputeEnv(ce.id.clone())), ce)?;
        item.insert("studioCount".into(), n(0));
        let mut tx = Tx::default();
        self.push_guard(&mut tx, guard)?;
        tx.push(self.put(item, "attribute_not_exists(PK)")?, |_| {
            Error::conflict("exists", "a compute environment with this id exists")
        });
        self.transact(tx).await
    }

    async fn delete_compute_env(&self, guard: &RoleGuard, ce_id: &str) -> Result<()> {
        let mut tx = Tx::default();
        self.push_guard(&mut tx, guard)?;
        // The studio count is kept by studio add/delete in the same transactions, so this
        // condition cannot race with a studio being added.
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                &guard.workspace_id,
                sk(&Key::ComputeEnv(ce_id.to_string())),
            )))
            .condition_expression("attribute_exists(PK) AND studioCount = :zero")
            .expression_attribute_values(":zero", n(0))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        tx.push(
            TransactWriteItem::builder().delete(delete).build(),
            |old| match old {
                None => Error::NotFound(Missing::ComputeEnv),
                Some(item) => {
                    let count = item_u64(item, "studioCount").unwrap_or(0);
                    let name = item_str(item, "name").unwrap_or_default();
                    Error::conflict(
                        "compute_env_in_use",
                        format!("compute environment '{name}' is used by {count} studio(s); delete them first"),
                    )
                }
            },
        );
        self.transact(tx).await
    }

    async fn create_data_link(&self, guard: &RoleGuard, link: &DataLink) -> Result<()> {
        let item = to_item(
            &link.workspace_id,
            sk(&Key::DataLink(link.id.clone())),
            link,
        )?;
        let mut tx = Tx::default();
        self.push_guard(&mut tx, guard)?;
        tx.push(self.put(item, "attribute_not_exists(PK)")?, |_| {
            Error::conflict("exists", "a data link with this id exists")
        });
        self.transact(tx).await
    }

    async fn delete_data_link(&self, guard: &RoleGuard, link_id: &str) -> Result<()> {
        let mut tx = Tx::default();
        self.push_guard(&mut tx, guard)?;
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                &guard.workspace_id,
                sk(&Key::DataLink(link_id.to_string())),
            )))
            .condition_expression("attribute_exists(PK)")
            .build()
            .map_err(build_err)?;
        tx.push(TransactWriteItem::builder().delete(delete).build(), |_| {
            Error::NotFound(Missing::DataLink)
        });
        self.transact(tx).await
    }

    async fn create_studio(
        &self,
        guard: &RoleGuard,
        studio: &Studio,
        lineage: Option<&Lineage<'_>>,
    ) -> Result<()> {
        let ws = &studio.workspace_id;
        let mut tx = Tx::default();
        self.push_guard(&mut tx, guard)?;
        tx.push(
            self.put(studio_item(studio)?, "attribute_not_exists(PK)")?,
            |_| Error::conflict("exists", "a studio with this id exists"),
        );
        self.push_name_claim(&mut tx, studio)?;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                ws,
                sk(&Key::ComputeEnv(studio.compute_env.id.clone())),
            )))
            .update_expression("ADD studioCount :one")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(build_err)?;
        tx.push(TransactWriteItem::builder().update(update).build(), |_| {
            Error::invalid(
                "computeEnvId",
                "the compute environment was deleted meanwhile",
            )
        });
        if let Some(session) = &studio.session {
            self.push_lock_acquire(&mut tx, studio, session)?;
        }
        if let Some(lineage) = lineage {
            // The source must still exist: its history is what the clone depends on
            // (checked before the data it points into, so a deleted source is a 404).
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(key(ws, sk(&Key::Studio(lineage.source_id.into())))))
                .condition_expression("attribute_exists(PK)")
                .build()
                .map_err(build_err)?;
            tx.push(
                TransactWriteItem::builder().condition_check(check).build(),
                |_| Error::NotFound(Missing::Studio),
            );
        }
        self.push_data_tracking(&mut tx, studio)?;
        if tx.items.len() > MAX_TX_ITEMS {
            // Only an add-and-start with (nearly) the most mount-lock items gets here.
            let locks = studio
                .session
                .as_ref()
                .map_or(0, |s| Self::lock_plan(studio, s).len());
            return Err(Error::invalid(
                "mounts",
                format!(
                    "these mounts need {locks} mount-lock items: with the new studio's own items that is more than one transaction holds ({MAX_TX_ITEMS}); add the studio without autoStart, then start it"
                ),
            ));
        }
        let Some(lineage) = lineage else {
            return self.transact(tx).await;
        };
        // The newest inherited checkpoints go into the transaction; a history too long
        // for it is written first (records of a studio that does not exist yet are
        // invisible) and removed again if the transaction fails.
        let room = MAX_TX_ITEMS.saturating_sub(tx.items.len()) / 2;
        let split = lineage.history.len().saturating_sub(room);
        let (early, late) = lineage.history.split_at(split);
        for cp in late {
            self.push_checkpoint(&mut tx, cp)?;
        }
        let mut early_keys = Vec::new();
        let mut puts = Vec::new();
        for cp in early {
            let (record, claim) = checkpoint_items(cp)?;
            early_keys.push(key(ws, item_str(&record, "SK").unwrap_or_default().into()));
            early_keys.push(key(ws, item_str(&claim, "SK").unwrap_or_default().into()));
            puts.extend([record, claim]);
        }
        if !puts.is_empty() {
            // These records are written outside the guarded transaction: check the
            // caller's role first, so that a caller without it leaves nothing behind.
            self.check_role(guard).await?;
        }
        self.batch_put(puts).await?;
        let result = self.transact(tx).await;
        if result.is_err() && !early_keys.is_empty() {
            if let Err(e) = self.batch_delete(early_keys).await {
                tracing::warn!(studio = studio.id, error = %e, "unreferenced history records left");
            }
        }
        result
    }

    async fn write_studio(&self, w: &StudioWrite<'_>) -> Result<()> {
        let (old, new) = (w.old, w.new);
        let mut tx = Tx::default();
        if let Some(guard) = w.guard {
            self.push_guard(&mut tx, guard)?;
        }
        let cond = Expr::studio_unchanged(old.version, w.expect);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(studio_item(new)?))
            .condition_expression(cond.condition)
            .set_expression_attribute_names(Some(cond.names))
            .set_expression_attribute_values(Some(cond.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        tx.push(
            TransactWriteItem::builder().put(put).build(),
            studio_changed,
        );
        if old.config.name.to_lowercase() != new.config.name.to_lowercase() {
            self.push_name_release(&mut tx, old)?;
            self.push_name_claim(&mut tx, new)?;
        }
        let attempt = |s: &Option<Session>| s.as_ref().map(|s| s.attempt_id.clone());
        if attempt(&old.session) != attempt(&new.session) {
            if let Some(ended) = &old.session {
                self.push_lock_release(&mut tx, old, ended)?;
            }
            if let Some(started) = &new.session {
                self.push_lock_acquire(&mut tx, new, started)?;
            }
        }
        if let Some(cp) = w.checkpoint {
            self.push_checkpoint(&mut tx, cp)?;
        }
        self.transact(tx).await
    }

    async fn record_job(&self, studio: &Studio, attempt_id: &str, job_id: &str) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(
                &studio.workspace_id,
                sk(&Key::Studio(studio.id.clone())),
            )))
            .update_expression("SET #session.jobId = :job, #version = #version + :one")
            .condition_expression(
                "#session.attemptId = :attempt AND (attribute_not_exists(#session.jobId) OR attribute_type(#session.jobId, :null))",
            )
            .expression_attribute_names("#session", "session")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":job", s(job_id))
            .expression_attribute_values(":attempt", s(attempt_id))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":null", s("NULL"))
            .send()
            .await;
        // Not applied: the session already ended, or an event recorded the job first.
        applied(result).map(|_| ())
    }

    async fn record_agent(
        &self,
        studio: &Studio,
        attempt_id: &str,
        agent: &crate::domain::lifecycle::AgentState,
    ) -> Result<bool> {
        let value = serde_dynamo::to_attribute_value(agent).map_err(Error::internal)?;
        // Versioned, so a concurrent full write of the studio (an event, a stop) is
        // re-decided on a fresh read instead of dropping the report.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(
                &studio.workspace_id,
                sk(&Key::Studio(studio.id.clone())),
            )))
            .update_expression("SET #session.#agent = :agent, #version = #version + :one")
            .condition_expression("#session.attemptId = :attempt")
            .expression_attribute_names("#session", "session")
            .expression_attribute_names("#agent", "agent")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":agent", value)
            .expression_attribute_values(":attempt", s(attempt_id))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        applied(result)
    }

    async fn list_mounts(&self, ws: &str) -> Result<Vec<HeldMount>> {
        let items = self.query_all(ws, "LOCK#").await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let holder = lock_state(item).holder?;
                Some(HeldMount {
                    holder,
                    since: item_str(item, "since").unwrap_or_default().to_string(),
                })
            })
            .collect())
    }

    async fn active_studios(&self) -> Result<Vec<Studio>> {
        self.query_index(SESSIONS.to_string())
            .await?
            .iter()
            .map(from_item)
            .collect()
    }

    async fn delete_studio(&self, guard: &RoleGuard, studio: &Studio) -> Result<()> {
        let ws = &studio.workspace_id;
        let mut tx = Tx::default();
        self.push_guard(&mut tx, guard)?;
        let cond = Expr::studio_unchanged(studio.version, &StudioStatus::at_rest());
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(ws, sk(&Key::Studio(studio.id.clone())))))
            .condition_expression(cond.condition)
            .set_expression_attribute_names(Some(cond.names))
            .set_expression_attribute_values(Some(cond.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        tx.push(
            TransactWriteItem::builder().delete(delete).build(),
            studio_changed,
        );
        self.push_name_release(&mut tx, studio)?;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                ws,
                sk(&Key::ComputeEnv(studio.compute_env.id.clone())),
            )))
            .update_expression("ADD studioCount :minus")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":minus", n(-1))
            .build()
            .map_err(build_err)?;
        tx.push(TransactWriteItem::builder().update(update).build(), |_| {
            Error::internal("compute environment of a studio is missing")
        });
        for origin in std::iter::once(&studio.id).chain(&studio.data_origins) {
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(ws, data_sk(origin))))
                .update_expression("DELETE dependents :me")
                .expression_attribute_values(":me", AttributeValue::Ss(vec![studio.id.clone()]))
                .build()
                .map_err(build_err)?;
            tx.push(TransactWriteItem::builder().update(update).build(), |_| {
                Error::internal("unconditional dependent release failed")
            });
        }
        self.transact(tx).await
    }

    async fn list_checkpoints(
        &self,
        ws: &str,
        studio_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Checkpoint>> {
        let prefix = format!("CP#{studio_id}#");
        let start = match cursor {
            Some(c) => Some(key(ws, decode_cursor(c, &prefix)?)),
            None => None,
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(pk(ws)))
            .expression_attribute_values(":prefix", s(&prefix))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(limit as i32 + 1)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk_error)?;
        let mut items = out.items().to_vec();
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().and_then(encode_cursor)
        } else {
            None
        };
        let items = items.iter().map(from_item).collect::<Result<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn history(&self, ws: &str, studio_id: &str) -> Result<Vec<Checkpoint>> {
        self.list(ws, &format!("CP#{studio_id}#")).await
    }

    async fn rename_checkpoint(
        &self,
        guard: &RoleGuard,
        cp: &Checkpoint,
        name: &str,
    ) -> Result<()> {
        let ws = &cp.workspace_id;
        let mut tx = Tx::default();
        self.push_guard(&mut tx, guard)?;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                ws,
                sk(&Key::Checkpoint(cp.studio_id.clone(), cp.id.clone())),
            )))
            .update_expression("SET #name = :new")
            .condition_expression("#name = :old")
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":new", s(name))
            .expression_attribute_values(":old", s(&cp.name))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        tx.push(
            TransactWriteItem::builder().update(update).build(),
            |old| match old {
                None => Error::NotFound(Missing::Checkpoint),
                Some(_) => Error::conflict(
                    "concurrent_update",
                    "the checkpoint was renamed by someone else meanwhile; read it again and retry",
                ),
            },
        );
        if cp.name.to_lowercase() != name.to_lowercase() {
            let release = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(ws, checkpoint_name_sk(&cp.studio_id, &cp.name))))
                .condition_expression("checkpointId = :id")
                .expression_attribute_values(":id", s(&cp.id))
                .build()
                .map_err(build_err)?;
            tx.push(TransactWriteItem::builder().delete(release).build(), |_| {
                Error::internal("checkpoint name claim missing or held by another checkpoint")
            });
            let mut claim = key(ws, checkpoint_name_sk(&cp.studio_id, name));
            claim.insert("checkpointId".into(), s(&cp.id));
            let taken = name.to_string();
            tx.push(self.put(claim, "attribute_not_exists(PK)")?, move |_| {
                Error::conflict(
                    "checkpoint_name_taken",
                    format!("another checkpoint of this studio is named '{taken}'"),
                )
            });
        }
        self.transact(tx).await
    }

    async fn record_connection(
        &self,
        guard: &RoleGuard,
        studio: &Studio,
        attempt_id: &str,
        user_id: &str,
        connection: &Connection,
    ) -> Result<()> {
        let mut tx = Tx::default();
        self.push_guard(&mut tx, guard)?;
        let entry = serde_dynamo::to_attribute_value(connection).map_err(Error::internal)?;
        // Not versioned: connecting must not conflict with the session's own progress.
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                &studio.workspace_id,
                sk(&Key::Studio(studio.id.clone())),
            )))
            .update_expression("SET connectedUsers.#user = :entry")
            .condition_expression("#status = :running AND #session.attemptId = :attempt")
            .expression_attribute_names("#user", user_id)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#session", "session")
            .expression_attribute_values(":entry", entry)
            .expression_attribute_values(":running", s(StudioStatus::Running.as_str()))
            .expression_attribute_values(":attempt", s(attempt_id))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        let name = studio.config.name.clone();
        tx.push(
            TransactWriteItem::builder().update(update).build(),
            move |old| {
                let Some(item) = old else {
                    return Error::NotFound(Missing::Studio);
                };
                let status = item_str(item, "status").unwrap_or("no longer running");
                Error::conflict(
                    "studio_not_running",
                    format!("studio '{name}' is {status}; connect once it is running"),
                )
            },
        );
        self.transact(tx).await
    }

    async fn purge_checkpoints(&self, ws: &str, studio_id: &str) -> Result<usize> {
        let (records, names) = (format!("CP#{studio_id}#"), format!("CPNAME#{studio_id}#"));
        let (records, claims) =
            tokio::try_join!(self.query_all(ws, &records), self.query_all(ws, &names))?;
        let keys: Vec<Item> = records
            .iter()
            .chain(&claims)
            .filter_map(|i| Some(key(ws, item_str(i, "SK")?.to_string())))
            .collect();
        self.batch_delete(keys).await?;
        Ok(records.len())
    }

    async fn release_data(&self, ws: &str, studio_id: &str) -> Result<bool> {
        // Deleted, or already gone: no studio can register as a dependent again, since
        // that needs the item to exist with dependents.
        self.delete_if(
            key(ws, data_sk(studio_id)),
            "attribute_not_exists(dependents)",
        )
        .await
    }
}

/// At most this many items per `TransactWriteItems`.
const MAX_TX_ITEMS: usize = 100;
/// At most this many requests per `BatchWriteItem`.
const MAX_BATCH_WRITE: usize = 25;

/// A checkpoint record and the claim of its name.
fn checkpoint_items(cp: &Checkpoint) -> Result<(Item, Item)> {
    let record = to_item(
        &cp.workspace_id,
        sk(&Key::Checkpoint(cp.studio_id.clone(), cp.id.clone())),
        cp,
    )?;
    let mut claim = key(
        &cp.workspace_id,
        checkpoint_name_sk(&cp.studio_id, &cp.name),
    );
    claim.insert("checkpointId".into(), s(&cp.id));
    Ok((record, claim))
}

/// Why a conditional studio write failed, from the studio as it is now.
fn studio_changed(old: Option<&Item>) -> Error {
    let Some(item) = old else {
        return Error::NotFound(Missing::Studio);
    };
    let status = item_str(item, "status").unwrap_or("changed");
    Error::conflict(
        "concurrent_update",
        format!("the studio changed meanwhile (it is now {status}); read it again and retry"),
    )
}

fn member_item(m: &Member) -> Result<Item> {
    let mut item = to_item(&m.workspace_id, sk(&Key::Member(m.user_id.clone())), m)?;
    item.insert("GSI1PK".into(), s(format!("USER#{}", m.user_id)));
    item.insert("GSI1SK".into(), s(pk(&m.workspace_id)));
    Ok(item)
}

impl DynamoStore {
    /// Names are unique per workspace, case-insensitively: a claim item per name.
    fn push_name_claim(&self, tx: &mut Tx, studio: &Studio) -> Result<()> {
        let mut item = key(&studio.workspace_id, name_claim_sk(&studio.config.name));
        item.insert("studioId".into(), s(&studio.id));
        let name = studio.config.name.clone();
        tx.push(self.put(item, "attribute_not_exists(PK)")?, move |_| {
            Error::conflict(
                "name_taken",
                format!("a studio named '{name}' already exists in this workspace"),
            )
        });
        Ok(())
    }

    fn push_name_release(&self, tx: &mut Tx, studio: &Studio) -> Result<()> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                &studio.workspace_id,
                name_claim_sk(&studio.config.name),
            )))
            .condition_expression("studioId = :id")
            .expression_attribute_values(":id", s(&studio.id))
            .build()
            .map_err(build_err)?;
        tx.push(TransactWriteItem::builder().delete(delete).build(), |_| {
            Error::internal("studio name claim missing or held by another studio")
        });
        Ok(())
    }

    /// Owner count kept on the workspace item: the last owner can never go.
    fn push_owner_count(&self, tx: &mut Tx, ws: &str, delta: i32) -> Result<()> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(ws, META.into())))
            .update_expression("ADD ownerCount :delta")
            .expression_attribute_values(":delta", n(delta));
        update = if delta < 0 {
            update
                .condition_expression("ownerCount > :one")
                .expression_attribute_values(":one", n(1))
        } else {
            update.condition_expression("attribute_exists(PK)")
        };
        tx.push(
            TransactWriteItem::builder()
                .update(update.build().map_err(build_err)?)
                .build(),
            |_| {
                Error::conflict(
                    "last_owner",
                    "a workspace must keep at least one owner; make someone else owner first",
                )
            },
        );
        Ok(())
    }
}

/// A lock item as read.
fn lock_state(item: &Item) -> LockState {
    let path = item_str(item, "uri").and_then(|u| S3Prefix::parse(u).ok());
    let holder = match (item_str(item, "holderStudioId"), path) {
        (Some(id), Some(path)) => Some(Holder {
            studio_id: id.to_string(),
            studio_name: item_str(item, "holderName").unwrap_or_default().to_string(),
            path,
        }),
        _ => None,
    };
    let intents = item
        .get("intents")
        .and_then(|v| v.as_ss().ok())
        .map(|entries| entries.iter().filter_map(|e| parse_intent(e)).collect())
        .unwrap_or_default();
    LockState { holder, intents }
}

/// The 409 for a lock that could not be taken, from the item that blocked it.
fn lock_conflict(requested: &S3Prefix, old: Option<&Item>) -> Error {
    let state = old.map(lock_state).unwrap_or_default();
    let message = match state.holder.as_ref().or(state.intents.first()) {
        Some(h) if &h.path == requested => format!(
            "{requested} is mounted by running studio '{}' ({}); stop it first",
            h.studio_name, h.studio_id
        ),
        Some(h) => format!(
            "{requested} overlaps {}, mounted by running studio '{}' ({}); stop it first",
            h.path, h.studio_name, h.studio_id
        ),
        None => format!("{requested} is mounted by another running studio"),
    };
    Error::conflict("mount_locked", message)
}

impl DynamoStore {
    fn lock_plan(studio: &Studio, session: &Session) -> Vec<LockItem> {
        locks::plan(
            &studio.id,
            &session.attempt_id,
            &session.studio_name,
            &session.locked_paths,
        )
    }

    /// Takes every lock of `session`: held paths must be free of holders and intents,
    /// ancestors free of holders.
    fn push_lock_acquire(&self, tx: &mut Tx, studio: &Studio, session: &Session) -> Result<()> {
        let now = now();
        for item in Self::lock_plan(studio, session) {
            let mut update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(
                    &studio.workspace_id,
                    sk(&Key::Lock(item.path.clone())),
                )))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .expression_attribute_values(":uri", s(item.path.as_str()));
            let mut set = vec!["uri = :uri".to_string()];
            if item.hold {
                set.extend([
                    "holderStudioId = :sid".to_string(),
                    "holderAttempt = :att".to_string(),
                    "holderName = :name".to_string(),
                    "since = :now".to_string(),
                ]);
                update = update
                    .expression_attribute_values(":sid", s(&studio.id))
                    .expression_attribute_values(":att", s(&session.attempt_id))
                    .expression_attribute_values(":name", s(&session.studio_name))
                    .expression_attribute_values(":now", s(&now))
                    .condition_expression(
                        "attribute_not_exists(holderAttempt) AND attribute_not_exists(intents)",
                    );
            } else {
                update = update.condition_expression("attribute_not_exists(holderAttempt)");
            }
            let mut expression = format!("SET {}", set.join(", "));
            if !item.intents.is_empty() {
                expression.push_str(" ADD intents :intents");
                update = update.expression_attribute_values(
                    ":intents",
                    AttributeValue::Ss(item.intents.clone()),
                );
            }
            let requested = if item.hold {
                item.path.clone()
            } else {
                item.intents
                    .first()
                    .and_then(|e| parse_intent(e))
                    .map(|h| h.path)
                    .unwrap_or_else(|| item.path.clone())
            };
            tx.push(
                TransactWriteItem::builder()
                    .update(
                        update
                            .update_expression(expression)
                            .build()
                            .map_err(build_err)?,
                    )
                    .build(),
                move |old| lock_conflict(&requested, old),
            );
        }
        Ok(())
    }

    /// Releases `session`'s locks. Held paths are deleted only if this attempt still holds
    /// them; intents are removed from sets (idempotent).
    fn push_lock_release(&self, tx: &mut Tx, studio: &Studio, session: &Session) -> Result<()> {
        for item in Self::lock_plan(studio, session) {
            let k = key(&studio.workspace_id, sk(&Key::Lock(item.path.clone())));
            if item.hold {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(k))
                    .condition_expression("holderAttempt = :att")
                    .expression_attribute_values(":att", s(&session.attempt_id))
                    .build()
                    .map_err(build_err)?;
                let path = item.path.clone();
                tx.push(
                    TransactWriteItem::builder().delete(delete).build(),
                    move |_| {
                        Error::internal(format!(
                            "mount lock {path} is not held by the ending session"
                        ))
                    },
                );
            } else {
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(k))
                    .update_expression("DELETE intents :intents")
                    .expression_attribute_values(
                        ":intents",
                        AttributeValue::Ss(item.intents.clone()),
                    )
                    .build()
                    .map_err(build_err)?;
                tx.push(TransactWriteItem::builder().update(update).build(), |_| {
                    Error::internal("unconditional intent release failed")
                });
            }
        }
        Ok(())
    }

    /// One checkpoint per session (its id is fixed at start), with a unique name.
    fn push_checkpoint(&self, tx: &mut Tx, cp: &Checkpoint) -> Result<()> {
        let (record, claim) = checkpoint_items(cp)?;
        tx.push(self.put(record, "attribute_not_exists(PK)")?, |_| {
            Error::conflict("checkpoint_exists", "the checkpoint was already recorded")
        });
        tx.push(self.put(claim, "attribute_not_exists(PK)")?, |_| {
            Error::conflict("checkpoint_name_taken", "the checkpoint name is taken")
        });
        Ok(())
    }

    /// A new studio depends on the data its own sessions will save (tracked from now
    /// on) and on the data its inherited history points into.
    fn push_data_tracking(&self, tx: &mut Tx, studio: &Studio) -> Result<()> {
        let me = AttributeValue::Ss(vec![studio.id.clone()]);
        let own = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(&studio.workspace_id, data_sk(&studio.id))))
            .update_expression("SET #prefix = :prefix ADD dependents :me")
            .expression_attribute_names("#prefix", "prefix")
            .expression_attribute_values(":prefix", s(studio.data_prefix().as_str()))
            .expression_attribute_values(":me", me.clone())
            .build()
            .map_err(build_err)?;
        tx.push(TransactWriteItem::builder().update(own).build(), |_| {
            Error::internal("unconditional data tracking failed")
        });
        for origin in &studio.data_origins {
            let add = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(&studio.workspace_id, data_sk(origin))))
                .update_expression("ADD dependents :me")
                .condition_expression("attribute_exists(dependents)")
                .expression_attribute_values(":me", me.clone())
                .build()
                .map_err(build_err)?;
            let origin = origin.clone();
            tx.push(
                TransactWriteItem::builder().update(add).build(),
                move |_| {
                    Error::conflict(
                        "checkpoint_data_gone",
                        format!(
                            "the checkpoint data saved by studio {origin} was deleted meanwhile"
                        ),
                    )
                },
            );
        }
        Ok(())
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

/// Creates the table (same schema as template.yaml) and waits until it is active.
pub async fn create_table(client: &Client, table: &str) -> Result<()> {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build_err)
    };
    let schema = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(build_err)
    };
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(GSI1)
        .key_schema(schema("GSI1PK", KeyType::Hash)?)
        .key_schema(schema("GSI1SK", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(build_err)?;
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("PK")?)
        .attribute_definitions(attr("SK")?)
        .attribute_definitions(attr("GSI1PK")?)
        .attribute_definitions(attr("GSI1SK")?)
        .key_schema(schema("PK", KeyType::Hash)?)
        .key_schema(schema("SK", KeyType::Range)?)
        .global_secondary_indexes(gsi)
        // Status events are published from the change stream (events.rs).
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(build_err)?,
        )
        .send()
        .await
        .map_err(sdk_error)?;
    for _ in 0..60 {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(sdk_error)?;
        let active = out
            .table()
            .and_then(|t| t.table_status())
            .map(|s| s.as_str())
            == Some("ACTIVE");
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(Error::internal(format!(
        "table {table} did not become active"
    )))
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
