//! The key layout (table in `mod.rs`) and item conversion.

use super::*;

pub(super) fn pk(ws: &str) -> String {
    format!("WS#{ws}")
}

pub(super) fn sk(key: &Key) -> String {
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

/// The item that ties a job queue to the one workspace whose sessions it runs: a
/// partition of its own, outside every workspace's.
pub(super) fn queue_claim_key(job_queue: &str) -> Item {
    HashMap::from([
        ("PK".to_string(), s(format!("QUEUE#{job_queue}"))),
        ("SK".to_string(), s("#CLAIM")),
    ])
}

pub(super) fn data_sk(studio_id: &str) -> String {
    format!("DATA#{studio_id}")
}

pub(super) fn checkpoint_name_sk(studio_id: &str, name: &str) -> String {
    format!("CPNAME#{studio_id}#{}", name.to_lowercase())
}

pub(super) fn name_claim_sk(name: &str) -> String {
    format!("STUDIONAME#{}", name.to_lowercase())
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn key(ws: &str, sk: String) -> Item {
    HashMap::from([("PK".to_string(), s(pk(ws))), ("SK".to_string(), s(sk))])
}

pub(super) fn to_item<T: Serialize>(ws: &str, sk: String, value: &T) -> Result<Item> {
    let mut item: Item = serde_dynamo::to_item(value).map_err(Error::internal)?;
    item.extend(key(ws, sk));
    Ok(item)
}

pub(super) fn from_item<T: DeserializeOwned>(item: &Item) -> Result<T> {
    serde_dynamo::from_item(item.clone()).map_err(Error::internal)
}

pub(super) fn item_str<'a>(item: &'a Item, attr: &str) -> Option<&'a str> {
    item.get(attr)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub(super) fn item_u64(item: &Item, attr: &str) -> Option<u64> {
    item.get(attr)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// Attributes that exist only for the studio list's filter expression.
pub(super) fn studio_item(studio: &Studio) -> Result<Item> {
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

pub(super) fn encode_cursor(last: &Item) -> Option<String> {
    let sk = item_str(last, "SK")?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk))
}

/// Longest cursor accepted: the sort keys of lists are a prefix and our ids (< 100
/// bytes); anything longer was not made here (and could exceed DynamoDB's key limit).
pub(super) const MAX_CURSOR: usize = 256;

/// The sort key a cursor continues after; it must belong to the list (`prefix`) and look
/// like one of its keys (a prefix and id characters), whatever a client sends.
pub(super) fn decode_cursor(cursor: &str, prefix: &str) -> Result<String> {
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

/// A checkpoint record and the claim of its name.
pub(super) fn checkpoint_items(cp: &Checkpoint) -> Result<(Item, Item)> {
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

pub(super) fn member_item(m: &Member) -> Result<Item> {
    let mut item = to_item(&m.workspace_id, sk(&Key::Member(m.user_id.clone())), m)?;
    item.insert("GSI1PK".into(), s(format!("USER#{}", m.user_id)));
    item.insert("GSI1SK".into(), s(pk(&m.workspace_id)));
    Ok(item)
}

/// A lock item as read.
pub(super) fn lock_state(item: &Item) -> LockState {
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
