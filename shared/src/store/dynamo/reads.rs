//! The one consistent multi-item read every action starts with.

use super::*;

#[async_trait]
impl Reads for DynamoStore {
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
            } else if sort.starts_with("CP#") {
                let cp: Checkpoint = from_item(item)?;
                fetched.checkpoints.insert(cp.id.clone(), cp);
            }
        }
        Ok(fetched)
    }
}
