//! The API document (OpenAPI 3.1), served at `GET /openapi.json` and committed as
//! docs/openapi.json. It is derived, not written: paths and methods from the route table
//! (`http::ROUTES`), bodies from the request types the handlers parse
//! (`domain::validate`), responses from the types they serialize (`views`). What a
//! derive cannot say — which body and answer each route has, its query parameters, the
//! statuses it can return — is one exhaustive `match` below, so a new action does not
//! compile without its entry.

use crate::agents::{AgentReply, AgentReportInput, ReportedState};
use crate::domain::lifecycle::BatchStatus;
use crate::domain::validate::*;
use crate::domain::*;
use crate::routes::{Action, ROUTES, UNAUTHORIZED_ROUTES};
use crate::views::*;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(components(schemas(
    // requests
    WorkspaceInput, MemberInput, ComputeEnvInput, DataLinkInput, StudioInput, StudioPatch,
    StartInput, CloneInput, CheckpointPatch, TemplateInput, MountInput, ResourcesInput,
    AgentReportInput, ReportedState,
    // responses
    WorkspaceList, WorkspaceSummary, WorkspaceView, Workspace, MemberList, MemberView,
    ComputeEnvList, ComputeEnv, DataLinkList, DataLink, TemplateList, TemplateEntry,
    StudioPage, StudioView, ComputeEnvRef, ConnectedUser, SessionView, RestoreFrom,
    ConnectLink, CheckpointPage, Checkpoint, CheckpointStatus, MountList, MountHolder,
    StudioRef, AgentReply, ErrorBody, ErrorDetail,
    // shared parts
    Role, StudioStatus, BatchStatus, TemplateKind, Template, Resources, Mount, Access,
    Parent, UserRef,
)))]
struct Components;

/// What one route takes and answers, beyond its path.
struct Operation {
    summary: &'static str,
    /// Request body schema and whether it is required.
    body: Option<(&'static str, bool)>,
    /// Success status and its body schema (`None`: no body).
    success: &'static [(u16, Option<&'static str>)],
    query: &'static [Query],
    /// The route can answer 409 (a state conflict: docs/api.md lists the codes).
    conflicts: bool,
}

#[derive(Clone, Copy)]
enum Query {
    Limit,
    Cursor,
    Search,
    AutoStart,
    Force,
}

fn operation(action: Action) -> Operation {
    use Action::*;
    let op = |summary, body, success, query, conflicts| Operation {
        summary,
        body,
        success,
        query,
        conflicts,
    };
    const STUDIO: &[(u16, Option<&str>)] = &[(200, Some("StudioView"))];
    const STUDIO_ACCEPTED: &[(u16, Option<&str>)] = &[(202, Some("StudioView"))];
    const ADDED: &[(u16, Option<&str>)] = &[(201, Some("StudioView")), (202, Some("StudioView"))];
    const DELETED: &[(u16, Option<&str>)] = &[(204, None)];
    match action {
        ListWorkspaces => op(
            "The caller's workspaces",
            None,
            &[(200, Some("WorkspaceList"))],
            &[],
            false,
        ),
        CreateWorkspace => op(
            "Create a workspace (platform admins)",
            Some(("WorkspaceInput", true)),
            &[(201, Some("WorkspaceView"))],
            &[],
            false,
        ),
        ListMembers => op(
            "A workspace's members",
            None,
            &[(200, Some("MemberList"))],
            &[],
            false,
        ),
        SetMember => op(
            "Add a member or change a role",
            Some(("MemberInput", true)),
            &[(200, Some("MemberView"))],
            &[],
            true,
        ),
        RemoveMember => op("Remove a member", None, DELETED, &[], true),
        ListComputeEnvs => op(
            "Compute environments",
            None,
            &[(200, Some("ComputeEnvList"))],
            &[],
            false,
        ),
        CreateComputeEnv => op(
            "Add a compute environment",
            Some(("ComputeEnvInput", true)),
            &[(201, Some("ComputeEnv"))],
            &[],
            true,
        ),
        GetComputeEnv => op(
            "A compute environment",
            None,
            &[(200, Some("ComputeEnv"))],
            &[],
            false,
        ),
        DeleteComputeEnv => op(
            "Delete a compute environment no studio uses",
            None,
            DELETED,
            &[],
            true,
        ),
        ListDataLinks => op(
            "Data links",
            None,
            &[(200, Some("DataLinkList"))],
            &[],
            false,
        ),
        CreateDataLink => op(
            "Add a data link",
            Some(("DataLinkInput", true)),
            &[(201, Some("DataLink"))],
            &[],
            true,
        ),
        GetDataLink => op("A data link", None, &[(200, Some("DataLink"))], &[], false),
        DeleteDataLink => op("Delete a data link", None, DELETED, &[], true),
        ListTemplates => op(
            "The templates this stack offers",
            None,
            &[(200, Some("TemplateList"))],
            &[],
            false,
        ),
        ListStudios => op(
            "Studios, newest first",
            None,
            &[(200, Some("StudioPage"))],
            &[Query::Search, Query::Limit, Query::Cursor],
            false,
        ),
        AddStudio => op(
            "Add a studio (and start it with autoStart=true)",
            Some(("StudioInput", true)),
            ADDED,
            &[Query::AutoStart],
            true,
        ),
        GetStudio => op("A studio", None, STUDIO, &[], false),
        UpdateStudio => op(
            "Change a stopped studio",
            Some(("StudioPatch", true)),
            STUDIO,
            &[],
            true,
        ),
        DeleteStudio => op("Delete a stopped studio", None, DELETED, &[], true),
        StartStudio => op(
            "Start a session",
            Some(("StartInput", false)),
            STUDIO_ACCEPTED,
            &[],
            true,
        ),
        StopStudio => op(
            "Stop the session (it saves a checkpoint)",
            None,
            STUDIO_ACCEPTED,
            &[Query::Force],
            true,
        ),
        ConnectStudio => op(
            "A connect link to a running studio",
            None,
            &[(200, Some("ConnectLink"))],
            &[],
            true,
        ),
        CloneStudio => op(
            "Start as new: a new studio from a checkpoint",
            Some(("CloneInput", true)),
            ADDED,
            &[Query::AutoStart],
            true,
        ),
        ListCheckpoints => op(
            "A studio's checkpoints, newest first",
            None,
            &[(200, Some("CheckpointPage"))],
            &[Query::Limit, Query::Cursor],
            false,
        ),
        RenameCheckpoint => op(
            "Rename a checkpoint",
            Some(("CheckpointPatch", true)),
            &[(200, Some("Checkpoint"))],
            &[],
            true,
        ),
        ListMounts => op(
            "Paths held by running sessions",
            None,
            &[(200, Some("MountList"))],
            &[],
            false,
        ),
        AgentReport => op(
            "A session agent's report (its session's credential, not a user's token)",
            Some(("AgentReportInput", true)),
            &[(200, Some("AgentReply"))],
            &[],
            false,
        ),
        GetOpenApi => op("This document", None, &[(200, None)], &[], false),
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn query_parameter(q: Query) -> Value {
    let (name, schema, description) = match q {
        Query::Limit => (
            "limit",
            json!({"type": "integer", "minimum": 1, "maximum": crate::access::MAX_PAGE, "default": crate::access::DEFAULT_PAGE}),
            "Page size.",
        ),
        Query::Cursor => (
            "cursor",
            json!({"type": "string", "minLength": 1, "maxLength": 256}),
            "`nextCursor` of the previous page.",
        ),
        Query::Search => (
            "search",
            json!({"type": "string", "maxLength": 256}),
            "Words of the name; `author:`, `computeEnv:`, `status:` filters.",
        ),
        Query::AutoStart => (
            "autoStart",
            json!({"type": "boolean"}),
            "Start it too (202).",
        ),
        Query::Force => (
            "force",
            json!({"type": "boolean"}),
            "End a studio stuck in `stopping` (docs/api.md).",
        ),
    };
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema_ref("ErrorBody")}},
    })
}

fn path_item(action: Action, path: &str) -> Value {
    let op = operation(action);
    let open = UNAUTHORIZED_ROUTES.contains(&action);
    let mut parameters: Vec<Value> = path
        .split('/')
        .filter_map(|p| p.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}))
        .collect();
    parameters.extend(op.query.iter().map(|q| query_parameter(*q)));
    let mut responses = Map::new();
    for (status, schema) in op.success {
        let mut r = json!({"description": "Success."});
        if let Some(schema) = schema {
            r["content"] = json!({"application/json": {"schema": schema_ref(schema)}});
        } else if action == Action::GetOpenApi {
            r["content"] = json!({"application/json": {"schema": {"type": "object"}}});
        }
        responses.insert(status.to_string(), r);
    }
    let has_input = op.body.is_some() || !op.query.is_empty() || !parameters.is_empty();
    if has_input {
        responses.insert("400".into(), error_response("Bad input: `field` names it."));
    }
    if action != Action::GetOpenApi {
        responses.insert(
            "401".into(),
            json!({
                "description": if open { "Not this session's credential." } else { "No valid token (API Gateway answers `{\"message\": \"Unauthorized\"}`)." },
                "content": {"application/json": {"schema": {"oneOf": [
                    schema_ref("ErrorBody"),
                    {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
                ]}}},
            }),
        );
    }
    if !open && path.contains('{') || action == Action::CreateWorkspace {
        responses.insert(
            "403".into(),
            error_response("A member without the permission (or not a platform admin)."),
        );
    }
    if path.contains('{') {
        responses.insert(
            "404".into(),
            error_response("Absent, or in a workspace you are not in."),
        );
    }
    if op.conflicts {
        responses.insert(
            "409".into(),
            error_response("A state conflict (`code` says which: docs/api.md)."),
        );
    }
    if op.body.is_some() {
        responses.insert("415".into(), error_response("The body is not JSON."));
    }
    if action != Action::GetOpenApi {
        responses.insert(
            "500".into(),
            error_response("Our fault; the message quotes the request id."),
        );
        responses.insert(
            "503".into(),
            error_response("Throttled; retry after `Retry-After` seconds."),
        );
    }
    let mut operation = json!({
        "operationId": action.handler_name(),
        "summary": op.summary,
        "responses": responses,
    });
    if !parameters.is_empty() {
        operation["parameters"] = Value::Array(parameters);
    }
    if let Some((schema, required)) = op.body {
        operation["requestBody"] = json!({
            "required": required,
            "content": {"application/json": {"schema": schema_ref(schema)}},
        });
    }
    if action == Action::GetOpenApi {
        operation["security"] = json!([]);
    } else if open {
        operation["security"] = json!([{"agentToken": []}]);
    }
    operation
}

/// The whole document.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(Components::openapi()).expect("serializable");
    doc["info"] = json!({
        "title": "Studios API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Interactive analysis sessions on AWS Batch: workspaces, studios, sessions, checkpoints. Every request but `/agent/report` and `/openapi.json` carries a user's JWT (`Authorization: Bearer …`). Rules the schemas cannot say (uniqueness, roles, states) are in docs/api.md.",
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    });
    doc["security"] = json!([{"bearer": []}]);
    doc["components"]["securitySchemes"] = json!({
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "A token of the stack's identity provider (the JWT authorizer checks it)."},
        "agentToken": {"type": "http", "scheme": "bearer",
            "description": "A session's `STUDIO_AGENT_TOKEN` (docs/agent.md)."},
    });
    let mut paths = Map::new();
    for (action, _, method, path) in ROUTES {
        let item = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        item[method.to_ascii_lowercase()] = path_item(*action, path);
    }
    doc["paths"] = Value::Object(paths);
    doc
}

/// The document as served and committed: pretty JSON with a final newline.
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("serializable");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        &doc["components"]["schemas"][name]
    }

    #[test]
    fn committed_document_is_the_generated_one() {
        let committed = include_str!("../../docs/openapi.json");
        assert!(
            committed == document_text(),
            "docs/openapi.json is stale: run infra/openapi.sh to write it"
        );
    }

    #[test]
    fn every_route_is_documented_once_with_its_method() {
        let doc = document();
        for (action, handler, method, path) in ROUTES {
            let op = &doc["paths"][*path][method.to_ascii_lowercase()];
            assert_eq!(op["operationId"], *handler, "{action:?}");
        }
        let count: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(count, ROUTES.len());
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(
                schema(&doc, name).is_object(),
                "{name} is referenced but not defined"
            );
        }
    }

    #[test]
    fn limits_are_the_ones_the_parser_enforces() {
        let doc = document();
        let studio = &schema(&doc, "StudioInput")["properties"];
        assert_eq!(studio["name"]["maxLength"], MAX_NAME);
        assert_eq!(studio["description"]["maxLength"], MAX_DESCRIPTION);
        assert_eq!(studio["mounts"]["maxItems"], MAX_LOCK_ITEMS);
        assert_eq!(studio["condaPackages"]["maxItems"], MAX_CONDA_PACKAGES);
        assert_eq!(
            studio["condaPackages"]["items"]["maxLength"],
            MAX_CONDA_SPEC
        );
        for name in ["StudioPatch", "StartInput", "CloneInput"] {
            assert_eq!(
                schema(&doc, name)["properties"]["mounts"]["maxItems"],
                MAX_LOCK_ITEMS
            );
        }
        let ce = &schema(&doc, "ComputeEnvInput")["properties"];
        assert_eq!(ce["allowedWriteBuckets"]["maxItems"], MAX_WRITE_BUCKETS);
        assert_eq!(ce["maxMemoryMiB"]["minimum"], MIN_MEMORY_MIB);
        let resources = &schema(&doc, "ResourcesInput")["properties"];
        assert_eq!(resources["gpus"]["maximum"], MAX_GPUS);
        assert_eq!(resources["memoryMiB"]["minimum"], MIN_MEMORY_MIB);
        assert_eq!(
            schema(&doc, "DataLinkInput")["properties"]["uri"]["maxLength"],
            MAX_MOUNT_URI
        );
        for name in [
            "WorkspaceInput",
            "CheckpointPatch",
            "CloneInput",
            "DataLinkInput",
        ] {
            assert_eq!(
                schema(&doc, name)["properties"]["name"]["maxLength"],
                MAX_NAME,
                "{name}"
            );
        }
    }

    #[test]
    fn request_bodies_reject_unknown_fields_and_clone_cannot_set_what_it_keeps() {
        let doc = document();
        for name in [
            "StudioInput",
            "StudioPatch",
            "StartInput",
            "CloneInput",
            "ComputeEnvInput",
        ] {
            assert_eq!(schema(&doc, name)["additionalProperties"], false, "{name}");
        }
        let clone = &schema(&doc, "CloneInput")["properties"];
        for kept in ["template", "computeEnvId", "condaPackages", "parent"] {
            assert!(clone.get(kept).is_none(), "{kept}");
        }
    }

    #[test]
    fn only_the_agent_channel_and_this_document_are_open() {
        let doc = document();
        for (action, _, method, path) in ROUTES {
            let op = &doc["paths"][*path][method.to_ascii_lowercase()];
            match action {
                Action::GetOpenApi => assert_eq!(op["security"], json!([])),
                Action::AgentReport => assert_eq!(op["security"], json!([{"agentToken": []}])),
                _ => assert!(op.get("security").is_none(), "{action:?} inherits bearer"),
            }
        }
        assert_eq!(doc["security"], json!([{"bearer": []}]));
    }

    #[test]
    fn a_studio_view_has_every_field_docs_api_lists() {
        let doc = document();
        let required = schema(&doc, "StudioView")["required"]
            .as_array()
            .unwrap()
            .clone();
        for field in [
            "id",
            "workspaceId",
            "name",
            "description",
            "template",
            "condaPackages",
            "computeEnv",
            "resources",
            "mounts",
            "status",
            "statusReason",
            "statusUpdatedAt",
            "author",
            "createdAt",
            "updatedAt",
            "lastStartedAt",
            "parent",
            "connectedUsers",
            "session",
            "restoreFrom",
            "url",
            "warnings",
        ] {
            assert!(required.contains(&json!(field)), "{field}");
        }
    }
}
