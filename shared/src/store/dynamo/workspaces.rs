//! Workspaces and members (an owner always remains).

use super::*;

#[async_trait]
impl WorkspaceStore for DynamoStore {
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

    async fn create_workspace(&self, workspace: &Workspace, owner: &Member) -> Result<()> {
        let mut ws_item = to_item(&workspace.id, META.into(), workspace)?;
        ws_item.insert("ownerCount".into(), n(1));
        let mut tx = Tx::default();
        tx.push(self.put(ws_item, "attribute_not_exists(PK)")?, |_| {
            Error::from(Conflict::IdTaken { kind: "workspace" })
        });
        tx.push(
            self.put(member_item(owner)?, "attribute_not_exists(PK)")?,
            |_| Conflict::IdTaken { kind: "member" }.into(),
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
            |_| Error::from(Conflict::ConcurrentUpdate(Changed::Member)),
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
            Error::from(Conflict::ConcurrentUpdate(Changed::Member))
        });
        if m.role == Role::Owner {
            self.push_owner_count(&mut tx, &m.workspace_id, -1)?;
        }
        self.transact(tx).await
    }

    async fn check_role(&self, guard: &RoleGuard) -> Result<()> {
        let mut tx = Tx::default();
        self.push_guard(&mut tx, guard)?;
        self.transact(tx).await
    }
}

impl DynamoStore {
    /// Owner count kept on the workspace item: the last owner can never go.
    pub(super) fn push_owner_count(&self, tx: &mut Tx, ws: &str, delta: i32) -> Result<()> {
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
            |_| Error::from(Conflict::LastOwner { removing: false }),
        );
        Ok(())
    }
}
