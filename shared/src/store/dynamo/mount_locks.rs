//! Mount locks: taken and released inside the studio transactions.

use super::*;

/// The 409 for a lock that could not be taken, from the item that blocked it.
pub(super) fn lock_conflict(requested: &S3Prefix, old: Option<&Item>) -> Error {
    let state = old.map(lock_state).unwrap_or_default();
    let blocker = state.holder.as_ref().or(state.intents.first());
    Conflict::MountLocked {
        requested: requested.to_string(),
        holder: blocker.map(|h| LockHolder {
            studio_id: h.studio_id.clone(),
            studio_name: h.studio_name.clone(),
            path: h.path.to_string(),
        }),
    }
    .into()
}

#[async_trait]
impl LockStore for DynamoStore {
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
}

impl DynamoStore {
    pub(super) fn lock_plan(studio: &Studio, session: &Session) -> Vec<LockItem> {
        locks::plan(
            &studio.id,
            &session.attempt_id,
            &session.studio_name,
            &session.locked_paths,
        )
    }

    /// Takes every lock of `session`: held paths must be free of holders and intents,
    /// ancestors free of holders.
    pub(super) fn push_lock_acquire(
        &self,
        tx: &mut Tx,
        studio: &Studio,
        session: &Session,
    ) -> Result<()> {
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
    pub(super) fn push_lock_release(
        &self,
        tx: &mut Tx,
        studio: &Studio,
        session: &Session,
    ) -> Result<()> {
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
}
