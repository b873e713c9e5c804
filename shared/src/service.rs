//! One function per API action. Each reads at most once (one `fetch`, or concurrent
//! requests), decides with the domain rules, and writes at most once (one transaction
//! whose first item re-checks the caller's role).

use crate::access::*;
pub use crate::access::{App, Caller};
use crate::clock::{new_id, now};
use crate::domain::ids::IdKind;
use crate::domain::search::parse_search;
use crate::domain::transitions;
use crate::domain::validate::{self, *};
use crate::domain::*;
use crate::error::{Conflict, Error, Missing, Result};
use crate::store::*;

// ---- workspaces and members ----

pub async fn list_workspaces(app: &App, caller: &Caller) -> Result<Vec<Member>> {
    app.store.memberships(&caller.id).await
}

pub async fn create_workspace(
    app: &App,
    caller: &Caller,
    input: WorkspaceInput,
) -> Result<(Workspace, Member)> {
    if !app.config.platform_admins.contains(&caller.id) {
        return Err(Error::Forbidden(
            "only platform administrators can create workspaces".into(),
        ));
    }
    let now = now();
    let workspace = Workspace {
        id: new_id(IdKind::Workspace),
        name: validate::name("name", &input.name, MAX_NAME)?,
        description: validate::description("description", input.description.as_deref())?,
        created_at: now.clone(),
        created_by: caller.user_ref(),
    };
    let owner = Member {
        workspace_id: workspace.id.clone(),
        workspace_name: workspace.name.clone(),
        user_id: caller.id.clone(),
        name: Some(caller.name.clone()),
        role: Role::Owner,
        updated_at: now,
        updated_by: caller.id.clone(),
    };
    app.store.create_workspace(&workspace, &owner).await?;
    Ok((workspace, owner))
}

pub async fn list_members(app: &App, caller: &Caller, ws: &str) -> Result<Vec<Member>> {
    let ws = workspace_id(ws)?;
    // The member list itself answers whether the caller belongs: one query.
    let members = app.store.list_members(ws).await?;
    if !members.iter().any(|m| m.user_id == caller.id) {
        return Err(Error::NotFound(Missing::Workspace));
    }
    Ok(members)
}

fn user_id(value: &str) -> Result<&str> {
    if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
        return Err(Error::invalid(
            "userId",
            "must be the user's identity-provider subject (1 to 256 characters)",
        ));
    }
    Ok(value)
}

/// Owner-only: granting owner, and changing or removing an owner.
/// The permission a member change needs: changing an owner, or making one, is for
/// owners. Returned so that the write re-checks that same permission (a concurrently
/// demoted owner must not change an owner on the strength of its earlier read).
fn check_owner_rules(
    caller_role: Role,
    target: Option<Role>,
    new: Option<Role>,
) -> Result<Permission> {
    let touches_owner = target == Some(Role::Owner) || new == Some(Role::Owner);
    if !touches_owner {
        return Ok(Permission::Administer);
    }
    if !caller_role.allows(Permission::GrantOwner) {
        return Err(Error::Forbidden(
            "only owners can grant the owner role or change an owner".into(),
        ));
    }
    Ok(Permission::GrantOwner)
}

pub async fn set_member(
    app: &App,
    caller: &Caller,
    ws: &str,
    target: &str,
    input: MemberInput,
) -> Result<Member> {
    let ws = workspace_id(ws)?;
    let target = user_id(target)?;
    let fetched = app
        .store
        .fetch(
            ws,
            &[
                Key::Workspace,
                Key::Member(caller.id.clone()),
                Key::Member(target.to_string()),
            ],
        )
        .await?;
    let me = authorize(&fetched.members, caller, Permission::Administer)?;
    let role = Role::parse(&input.role).ok_or_else(|| {
        Error::invalid(
            "role",
            format!(
                "unknown role '{}'; expected one of view, connect, launch, maintain, admin, owner",
                input.role
            ),
        )
    })?;
    let name = match &input.name {
        Some(n) => Some(validate::name("name", n, MAX_NAME)?),
        None => None,
    };
    let existing = fetched.members.get(target);
    let needed = check_owner_rules(me.role, existing.map(|m| m.role), Some(role))?;
    let workspace = fetched
        .workspace
        .ok_or(Error::NotFound(Missing::Workspace))?;
    if existing.is_some_and(|m| m.role == Role::Owner)
        && role != Role::Owner
        && workspace.owner_count <= 1
    {
        return Err(Conflict::LastOwner { removing: false }.into());
    }
    let name = name
        .or_else(|| existing.and_then(|m| m.name.clone()))
        .or_else(|| (target == caller.id).then(|| caller.name.clone()));
    if let Some(current) = existing {
        if current.role == role && current.name == name {
            return Ok(current.clone());
        }
    }
    let member = Member {
        workspace_id: ws.to_string(),
        workspace_name: workspace.workspace.name,
        user_id: target.to_string(),
        name,
        role,
        updated_at: now(),
        updated_by: caller.id.clone(),
    };
    let change = MemberChange {
        member,
        previous_role: existing.map(|m| m.role),
    };
    app.store
        .put_member(&guard(ws, caller, needed), &change)
        .await?;
    Ok(change.member)
}

pub async fn remove_member(app: &App, caller: &Caller, ws: &str, target: &str) -> Result<()> {
    let ws = workspace_id(ws)?;
    let target = user_id(target)?;
    let fetched = app
        .store
        .fetch(
            ws,
            &[
                Key::Workspace,
                Key::Member(caller.id.clone()),
                Key::Member(target.to_string()),
            ],
        )
        .await?;
    let me = authorize(&fetched.members, caller, Permission::Administer)?;
    let existing = fetched
        .members
        .get(target)
        .ok_or(Error::NotFound(Missing::Member))?;
    let needed = check_owner_rules(me.role, Some(existing.role), None)?;
    let owners = fetched.workspace.map(|w| w.owner_count).unwrap_or(0);
    if existing.role == Role::Owner && owners <= 1 {
        return Err(Conflict::LastOwner { removing: true }.into());
    }
    app.store
        .remove_member(&guard(ws, caller, needed), existing)
        .await
}

pub use crate::catalog::*;

// ---- templates ----

pub fn templates(app: &App) -> Vec<(TemplateKind, String)> {
    TemplateKind::ALL
        .into_iter()
        .filter_map(|k| app.config.template_images.get(&k).map(|i| (k, i.clone())))
        .collect()
}

// ---- studios ----

pub struct StudioQuery<'a> {
    pub search: Option<&'a str>,
    pub limit: Option<&'a str>,
    pub cursor: Option<&'a str>,
}

pub async fn list_studios(
    app: &App,
    caller: &Caller,
    ws: &str,
    query: StudioQuery<'_>,
) -> Result<Page<Studio>> {
    let ws = workspace_id(ws)?;
    let filter = parse_search(query.search.unwrap_or_default())
        .map_err(|rule| Error::invalid("search", rule))?;
    let limit = page_limit(query.limit)?;
    readable(
        app,
        caller,
        ws,
        app.store.list_studios(ws, &filter, limit, query.cursor),
    )
    .await
}

pub async fn add_studio(
    app: &App,
    caller: &Caller,
    ws: &str,
    input: StudioInput,
    auto_start: bool,
) -> Result<(Studio, Vec<String>)> {
    let ws = workspace_id(ws)?;
    let mut keys = vec![
        Key::Member(caller.id.clone()),
        Key::ComputeEnv(input.compute_env_id.clone()),
    ];
    keys.extend(input.data_link_ids().into_iter().map(Key::DataLink));
    let has_mounts = input.mounts.as_ref().is_some_and(|m| !m.is_empty());
    let (fetched, held) = read_with_mounts(app, ws, &keys, has_mounts).await?;
    authorize(&fetched.members, caller, Permission::OperateStudios)?;
    let ce = fetched
        .compute_envs
        .get(&input.compute_env_id)
        .map(ComputeEnvSnapshot::from)
        .ok_or_else(|| {
            Error::invalid(
                "computeEnvId",
                format!(
                    "no compute environment '{}' in this workspace",
                    input.compute_env_id
                ),
            )
        })?;
    let draft = ConfigDraft {
        name: &input.name,
        description: input.description.as_deref(),
        template: &input.template,
        conda_packages: input.conda_packages.as_deref().unwrap_or_default(),
        resources: input.resources.unwrap_or_default(),
        base_resources: Resources::default(),
        mounts: input.mounts.as_deref().unwrap_or_default(),
    };
    let (config, mut warnings) = studio_config(draft, &ce, &fetched.data_links)?;
    validate::image_allowed(&config.template, &app.config.image_registries)?;
    let id = new_id(IdKind::Studio);
    warnings.extend(held_mount_warnings(&config.mounts, &held, &id));
    let studio = Studio::new(id, ws, config, ce, caller.user_ref(), &now());
    let guard = guard(ws, caller, Permission::OperateStudios);
    if !auto_start {
        app.store.create_studio(&guard, &studio, None).await?;
        return Ok((studio, warnings));
    }
    // Add and start: created already starting, its locks taken in the same write.
    let started = crate::sessions::begin(app, &studio, caller)?;
    app.store.create_studio(&guard, &started, None).await?;
    let studio = crate::sessions::submit(app, started, StudioStatus::Stopped).await?;
    Ok((studio, warnings))
}

pub async fn get_studio(app: &App, caller: &Caller, ws: &str, id: &str) -> Result<Studio> {
    authorized_studio(app, caller, ws, id, Permission::Read).await
}

pub async fn update_studio(
    app: &App,
    caller: &Caller,
    ws: &str,
    id: &str,
    patch: StudioPatch,
) -> Result<(Studio, Vec<String>)> {
    let ws = workspace_id(ws)?;
    let mut keys = vec![Key::Member(caller.id.clone()), Key::Studio(id.to_string())];
    keys.extend(patch.data_link_ids().into_iter().map(Key::DataLink));
    let (fetched, held) = read_with_mounts(app, ws, &keys, patch.mounts.is_some()).await?;
    authorize(&fetched.members, caller, Permission::OperateStudios)?;
    let current = fetched
        .studios
        .get(id)
        .ok_or(Error::NotFound(Missing::Studio))?;
    if patch.compute_env_id.is_some() {
        return Err(Error::invalid(
            "computeEnvId",
            "cannot be changed; add a new studio on the other compute environment",
        ));
    }
    if current.parent.is_some() {
        if patch.template.is_some() {
            return Err(fixed_for_clone("template"));
        }
        if patch.conda_packages.is_some() {
            return Err(fixed_for_clone("condaPackages"));
        }
    }
    transitions::require_at_rest(current, "update")?;
    let changes = ConfigChanges {
        name: patch.name.as_deref(),
        description: patch.description.as_deref(),
        template: patch.template.as_ref(),
        conda_packages: patch.conda_packages.as_deref(),
        resources: patch.resources,
        mounts: patch.mounts.as_deref(),
    };
    let (config, mut warnings) = changed_config(current, changes, &fetched.data_links)?;
    validate::image_allowed(&config.template, &app.config.image_registries)?;
    warnings.extend(held_mount_warnings(&config.mounts, &held, &current.id));
    if config == current.config {
        return Ok((current.clone(), warnings));
    }
    let mut updated = current.clone();
    updated.config = config;
    updated.updated_at = now();
    updated.version += 1;
    app.store
        .write_studio(&StudioWrite {
            guard: Some(&guard(ws, caller, Permission::OperateStudios)),
            old: current,
            new: &updated,
            expect: &StudioStatus::at_rest(),
            checkpoint: None,
        })
        .await?;
    Ok((updated, warnings))
}

pub async fn delete_studio(app: &App, caller: &Caller, ws: &str, id: &str) -> Result<()> {
    let studio = authorized_studio(app, caller, ws, id, Permission::OperateStudios).await?;
    transitions::require_at_rest(&studio, "delete")?;
    let guard = guard(&studio.workspace_id, caller, Permission::OperateStudios);
    app.store.delete_studio(&guard, &studio).await
}
