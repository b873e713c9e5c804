//! Table stream records (as DynamoDB Streams gives them, from Lambda's event or from
//! GetRecords) read as the changes they mean, by the key layout of `mod.rs`.

use super::*;

/// The change a stream record describes (keys and images as DynamoDB Streams gives them,
/// from Lambda's event or from GetRecords). Records of other items mean nothing here.
pub fn change_from_record(
    keys: serde_dynamo::Item,
    old: Option<serde_dynamo::Item>,
    new: Option<serde_dynamo::Item>,
) -> Result<Option<Change>> {
    #[derive(serde::Deserialize)]
    struct Keys {
        #[serde(rename = "PK")]
        pk: String,
        #[serde(rename = "SK")]
        sk: String,
    }
    let keys: Keys = serde_dynamo::from_item(keys).map_err(Error::internal)?;
    let present = |i: Option<serde_dynamo::Item>| i.filter(|i| !i.is_empty());
    let (old, new) = (present(old), present(new));
    if keys.sk.starts_with("STUDIO#") {
        let parse = |i: Option<serde_dynamo::Item>| -> Result<Option<Box<Studio>>> {
            i.map(|i| {
                serde_dynamo::from_item(i)
                    .map(Box::new)
                    .map_err(Error::internal)
            })
            .transpose()
        };
        return Ok(Some(Change::Studio {
            old: parse(old)?,
            new: parse(new)?,
        }));
    }
    if keys.sk.starts_with("LOCK#") {
        // Releasing removes the intent from the set (DynamoDB drops an empty set); an
        // item left with neither holder nor intents is deleted by the stream consumer.
        let empty = new
            .as_ref()
            .is_some_and(|i| !i.contains_key("holderAttempt") && !i.contains_key("intents"));
        return Ok(empty.then(|| Change::LockEmptied {
            workspace_id: keys.pk.trim_start_matches("WS#").to_string(),
            sort_key: keys.sk.clone(),
        }));
    }
    if let Some(studio_id) = keys.sk.strip_prefix("DATA#") {
        // Released when the dependents set empties (DynamoDB drops an empty set).
        let had = |i: &Option<serde_dynamo::Item>| {
            i.as_ref().is_some_and(|i| i.contains_key("dependents"))
        };
        if let Some(item) = new.as_ref().filter(|_| !had(&new) && had(&old)) {
            let prefix = match item.get("prefix") {
                Some(serde_dynamo::AttributeValue::S(p)) => S3Prefix::parse(p).ok(),
                _ => None,
            };
            return Ok(Some(Change::DataReleased {
                workspace_id: keys.pk.trim_start_matches("WS#").to_string(),
                studio_id: studio_id.to_string(),
                prefix,
            }));
        }
        return Ok(None);
    }
    if keys.sk.starts_with("CP#") && old.is_none() {
        if let Some(new) = new {
            let cp: Checkpoint = serde_dynamo::from_item(new).map_err(Error::internal)?;
            return Ok(Some(Change::CheckpointAdded(Box::new(cp))));
        }
    }
    Ok(None)
}
