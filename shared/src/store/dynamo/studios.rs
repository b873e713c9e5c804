//! Studios: names claimed per workspace, versioned writes, sessions.

use super::*;

/// A condition or filter expression with its attribute names and values.
pub(super) struct Expr {
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
pub(super) fn studio_filter(f: &StudioFilter) -> Option<Expr> {
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

/// Why a conditional studio write failed, from the studio as it is now.
pub(super) fn studio_changed(old: Option<&Item>) -> Error {
    let Some(item) = old else {
        return Error::NotFound(Missing::Studio);
    };
    let status = item_str(item, "status").unwrap_or("changed").to_string();
    Conflict::ConcurrentUpdate(Changed::Studio { status }).into()
}

#[async_trait]
impl StudioStore for DynamoStore {
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
            |_| Conflict::IdTaken { kind: "studio" }.into(),
        );
        self.push_name_claim(&mut tx, studio)?;
        let update = self.count_studio(ws, &studio.compute_env.id, 1)?;
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
        let update = self.count_studio(ws, &studio.compute_env.id, -1)?;
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
                let status = item_str(item, "status")
                    .and_then(StudioStatus::parse)
                    .map_or("no longer running", StudioStatus::as_str);
                Error::from(Conflict::NotRunning {
                    studio: name.to_string(),
                    status,
                })
            },
        );
        self.transact(tx).await
    }
}

impl DynamoStore {
    /// Counts a studio in (`+1`) or out (`-1`) of its compute environment, which must
    /// exist: the count is what lets a compute environment be deleted only when unused.
    fn count_studio(&self, ws: &str, ce_id: &str, delta: i32) -> Result<Update> {
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(ws, sk(&Key::ComputeEnv(ce_id.to_string())))))
            .update_expression("ADD studioCount :delta")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":delta", n(delta))
            .build()
            .map_err(build_err)
    }

    /// Names are unique per workspace, case-insensitively: a claim item per name.
    pub(super) fn push_name_claim(&self, tx: &mut Tx, studio: &Studio) -> Result<()> {
        let mut item = key(&studio.workspace_id, name_claim_sk(&studio.config.name));
        item.insert("studioId".into(), s(&studio.id));
        let name = studio.config.name.clone();
        tx.push(self.put(item, "attribute_not_exists(PK)")?, move |_| {
            Error::from(Conflict::NameTaken { name: name.clone() })
        });
        Ok(())
    }

    pub(super) fn push_name_release(&self, tx: &mut Tx, studio: &Studio) -> Result<()> {
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
}
