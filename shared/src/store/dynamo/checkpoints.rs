//! Checkpoint records, their names, and the tracking of checkpoint data.

use super::*;

#[async_trait]
impl CheckpointStore for DynamoStore {
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
                Some(_) => Conflict::ConcurrentUpdate(Changed::Checkpoint).into(),
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
                Error::from(Conflict::CheckpointNameTaken {
                    name: Some(taken.clone()),
                })
            });
        }
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

impl DynamoStore {
    /// One checkpoint per session (its id is fixed at start), with a unique name.
    pub(super) fn push_checkpoint(&self, tx: &mut Tx, cp: &Checkpoint) -> Result<()> {
        let (record, claim) = checkpoint_items(cp)?;
        tx.push(self.put(record, "attribute_not_exists(PK)")?, |_| {
            Error::from(Conflict::CheckpointRecorded)
        });
        tx.push(self.put(claim, "attribute_not_exists(PK)")?, |_| {
            Error::from(Conflict::CheckpointNameTaken { name: None })
        });
        Ok(())
    }

    /// A new studio depends on the data its own sessions will save (tracked from now
    /// on) and on the data its inherited history points into.
    pub(super) fn push_data_tracking(&self, tx: &mut Tx, studio: &Studio) -> Result<()> {
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
                    Error::from(Conflict::CheckpointDataGone {
                        origin: origin.clone(),
                    })
                },
            );
        }
        Ok(())
    }
}
