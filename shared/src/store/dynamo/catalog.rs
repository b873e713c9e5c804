//! Compute environments and data links.

use super::*;

#[async_trait]
impl CatalogStore for DynamoStore {
    async fn list_compute_envs(&self, ws: &str) -> Result<Vec<ComputeEnv>> {
        self.list(ws, "CE#").await
    }

    async fn list_data_links(&self, ws: &str) -> Result<Vec<DataLink>> {
        self.list(ws, "DL#").await
    }

    async fn create_compute_env(&self, guard: &RoleGuard, ce: &ComputeEnv) -> Result<()> {
        let mut item = to_item(&ce.workspace_id, sk(&Key::ComputeEnv(ce.id.clone())), ce)?;
        item.insert("studioCount".into(), n(0));
        let mut tx = Tx::default();
        self.push_guard(&mut tx, guard)?;
        tx.push(self.put(item, "attribute_not_exists(PK)")?, |_| {
            Error::from(Conflict::IdTaken {
                kind: "compute environment",
            })
        });
        // The queue serves this workspace only: its claim names the workspace and the
        // compute environments on it, and is free once that set is empty (DynamoDB drops
        // an emptied set), docs/security.md "Hosts".
        let claim = Update::builder()
            .table_name(&self.table)
            .set_key(Some(queue_claim_key(&ce.job_queue)))
            .update_expression("SET ws = :ws ADD ces :ce")
            .condition_expression("attribute_not_exists(ces) OR ws = :ws")
            .expression_attribute_values(":ws", s(&ce.workspace_id))
            .expression_attribute_values(":ce", AttributeValue::Ss(vec![ce.id.clone()]))
            .build()
            .map_err(build_err)?;
        tx.push(TransactWriteItem::builder().update(claim).build(), |_| {
            Error::invalid(
                "jobQueue",
                "the queue runs another workspace's sessions: each workspace needs a job queue (and compute environment) of its own, so that sessions of different workspaces never share an EC2 host",
            )
        });
        self.transact(tx).await
    }

    async fn delete_compute_env(&self, guard: &RoleGuard, ce: &ComputeEnv) -> Result<()> {
        let ce_id = &ce.id;
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
                    Error::from(Conflict::ComputeEnvInUse {
                        name: name.to_string(),
                        studios: count,
                    })
                }
            },
        );
        let release = Update::builder()
            .table_name(&self.table)
            .set_key(Some(queue_claim_key(&ce.job_queue)))
            .update_expression("DELETE ces :ce")
            .expression_attribute_values(":ce", AttributeValue::Ss(vec![ce_id.clone()]))
            .build()
            .map_err(build_err)?;
        tx.push(TransactWriteItem::builder().update(release).build(), |_| {
            Error::internal("unconditional queue release failed")
        });
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
            Error::from(Conflict::IdTaken { kind: "data link" })
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
}
