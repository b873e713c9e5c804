//! API Gateway (HTTP API, payload 2.0) in, JSON out: which use case an action runs
//! (`dispatch`). Reading a request — caller, parameters, strict JSON bodies — is
//! `request`; writing a response and **the one mapping from `Error` to a status code** is
//! `response`; the request API Gateway delivers, built for the local run and the tests,
//! is `fixture` (feature `local`).

#[cfg(any(test, feature = "local"))]
mod fixture;
mod request;
mod response;

use crate::domain::validate::*;
use crate::domain::{Studio, StudioStatus};
use crate::error::{Error, Missing, Result};
pub use crate::routes::*;
use crate::service::{self, App, StudioQuery};
use crate::{checkpoints, sessions, views};
#[cfg(any(test, feature = "local"))]
pub use fixture::ApiGatewayEvent;
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, Response};
use request::*;
pub use request::{body, caller, optional_body, request_id};
pub use response::error_response;
use response::*;

/// Handler name of the stack's catch-all (`$default`) route's function.
pub const UNROUTED_HANDLER: &str = "unrouted";

/// What the stack's catch-all route (`$default`) and the local run answer for a
/// request no route takes: 405 with `Allow` for a known path, else 404.
pub fn unrouted(method: &str, path: &str, request_id: &str) -> Response<Body> {
    let allow = Action::allowed_methods(path);
    let err = if allow.is_empty() {
        Error::NotFound(Missing::Route)
    } else {
        Error::MethodNotAllowed {
            method: method.to_string(),
            allow: allow.join(", "),
        }
    };
    error_response(&err, request_id)
}

/// Serves one request of `action`. Never fails: errors become JSON error responses.
pub async fn handle(app: &App, action: Action, req: Request) -> Response<Body> {
    let request_id = request_id(&req);
    let result = match json_content_type(&req) {
        Ok(()) => dispatch(app, action, &req).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(response) => response,
        Err(err) => error_response(&err, &request_id),
    }
}

async fn dispatch(app: &App, action: Action, req: &Request) -> Result<Response<Body>> {
    use Action::*;
    // The agent channel has no user: its session's credential is checked instead.
    let caller = match action {
        AgentReport => return agent_report(app, req).await,
        GetOpenApi => return openapi_document(),
        _ => caller(req)?,
    };
    let c = &caller;
    let ws = || path_param(req, "ws");
    match action {
        ListWorkspaces => {
            let members = service::list_workspaces(app, c).await?;
            let workspaces = members
                .iter()
                .map(|m| views::WorkspaceSummary {
                    id: m.workspace_id.clone(),
                    name: m.workspace_name.clone(),
                    role: m.role,
                })
                .collect();
            ok(&views::WorkspaceList { workspaces })
        }
        CreateWorkspace => {
            let (workspace, owner) = service::create_workspace(app, c, body(req)?).await?;
            created(&views::WorkspaceView {
                workspace,
                role: owner.role,
            })
        }
        ListMembers => {
            let members = service::list_members(app, c, ws()?).await?;
            ok(&views::MemberList {
                members: members.iter().map(views::MemberView::from).collect(),
            })
        }
        SetMember => {
            let m =
                service::set_member(app, c, ws()?, path_param(req, "userId")?, body(req)?).await?;
            ok(&views::MemberView::from(&m))
        }
        RemoveMember => {
            service::remove_member(app, c, ws()?, path_param(req, "userId")?).await?;
            no_content()
        }
        ListComputeEnvs => {
            let compute_envs = service::list_compute_envs(app, c, ws()?).await?;
            ok(&views::ComputeEnvList { compute_envs })
        }
        CreateComputeEnv => created(
            &service::create_compute_env(app, c, ws()?, body::<ComputeEnvInput>(req)?).await?,
        ),
        GetComputeEnv => {
            ok(&service::get_compute_env(app, c, ws()?, path_param(req, "ceId")?).await?)
        }
        DeleteComputeEnv => {
            service::delete_compute_env(app, c, ws()?, path_param(req, "ceId")?).await?;
            no_content()
        }
        ListDataLinks => {
            let data_links = service::list_data_links(app, c, ws()?).await?;
            ok(&views::DataLinkList { data_links })
        }
        CreateDataLink => {
            created(&service::create_data_link(app, c, ws()?, body::<DataLinkInput>(req)?).await?)
        }
        GetDataLink => {
            ok(&service::get_data_link(app, c, ws()?, path_param(req, "linkId")?).await?)
        }
        DeleteDataLink => {
            service::delete_data_link(app, c, ws()?, path_param(req, "linkId")?).await?;
            no_content()
        }
        ListTemplates => {
            let templates = service::templates(app)
                .into_iter()
                .map(|(kind, image)| views::TemplateEntry { kind, image })
                .collect();
            ok(&views::TemplateList { templates })
        }
        ListStudios => {
            let query = StudioQuery {
                search: query_param(req, "search"),
                limit: query_param(req, "limit"),
                cursor: query_param(req, "cursor"),
            };
            let page = service::list_studios(app, c, ws()?, query).await?;
            let studios = page
                .items
                .iter()
                .map(|s| studio_view(app, s, &[]))
                .collect();
            ok(&views::StudioPage {
                studios,
                next_cursor: page.next_cursor,
            })
        }
        AddStudio => {
            let auto_start = auto_start(req)?.unwrap_or(false);
            let input: StudioInput = body(req)?;
            let (studio, warnings) = service::add_studio(app, c, ws()?, input, auto_start).await?;
            added(app, &studio, &warnings, auto_start)
        }
        CloneStudio => {
            let input: CloneInput = body(req)?;
            let auto_start = match (auto_start(req)?, input.auto_start) {
                (Some(q), Some(b)) if q != b => {
                    return Err(Error::invalid(
                        "autoStart",
                        "the query parameter and the body disagree",
                    ))
                }
                (q, b) => q.or(b).unwrap_or(false),
            };
            let id = path_param(req, "id")?;
            let (studio, warnings) =
                checkpoints::clone_studio(app, c, ws()?, id, input, auto_start).await?;
            added(app, &studio, &warnings, auto_start)
        }
        ConnectStudio => {
            let (_, url) = sessions::connect_studio(app, c, ws()?, path_param(req, "id")?).await?;
            ok(&views::ConnectLink { url })
        }
        StartStudio => {
            let input: StartInput = optional_body(req)?.unwrap_or_default();
            let studio =
                sessions::start_studio(app, c, ws()?, path_param(req, "id")?, input).await?;
            json_response(StatusCode::ACCEPTED, &studio_view(app, &studio, &[]))
        }
        StopStudio => {
            let force = match query_param(req, "force") {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => return Err(Error::invalid("force", "must be true or false")),
            };
            let id = path_param(req, "id")?;
            let studio = sessions::stop_studio(app, c, ws()?, id, force).await?;
            json_response(StatusCode::ACCEPTED, &studio_view(app, &studio, &[]))
        }
        ListCheckpoints => {
            let id = path_param(req, "id")?;
            let (limit, cursor) = (query_param(req, "limit"), query_param(req, "cursor"));
            let page = checkpoints::list_checkpoints(app, c, ws()?, id, limit, cursor).await?;
            ok(&views::CheckpointPage {
                checkpoints: page.items,
                next_cursor: page.next_cursor,
            })
        }
        RenameCheckpoint => {
            let (id, cp) = (path_param(req, "id")?, path_param(req, "cpId")?);
            let patch: CheckpointPatch = body(req)?;
            let renamed = checkpoints::rename_checkpoint(app, c, ws()?, id, cp, patch).await?;
            ok(&renamed)
        }
        AgentReport => agent_report(app, req).await,
        GetOpenApi => openapi_document(),
        ListMounts => {
            let held = sessions::list_mounts(app, c, ws()?).await?;
            ok(&views::MountList {
                mounts: held.iter().map(views::MountHolder::from).collect(),
            })
        }
        GetStudio => {
            let studio = service::get_studio(app, c, ws()?, path_param(req, "id")?).await?;
            ok(&studio_view(app, &studio, &[]))
        }
        UpdateStudio => {
            let patch: StudioPatch = body(req)?;
            let (studio, warnings) =
                service::update_studio(app, c, ws()?, path_param(req, "id")?, patch).await?;
            ok(&studio_view(app, &studio, &warnings))
        }
        DeleteStudio => {
            service::delete_studio(app, c, ws()?, path_param(req, "id")?).await?;
            no_content()
        }
    }
}

/// A studio as returned; its share link is shown while it runs.
fn studio_view(app: &App, studio: &Studio, warnings: &[String]) -> views::StudioView {
    let url = (studio.status == StudioStatus::Running)
        .then(|| app.config.connect_url(&studio.workspace_id, &studio.id))
        .flatten();
    views::StudioView::of(studio, warnings, url)
}

/// 201 for an added studio, 202 if it is starting too.
fn added(app: &App, studio: &Studio, warnings: &[String], started: bool) -> Result<Response<Body>> {
    let status = if started {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    json_response(status, &studio_view(app, studio, warnings))
}

fn auto_start(req: &Request) -> Result<Option<bool>> {
    match query_param(req, "autoStart") {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(Error::invalid("autoStart", "must be true or false")),
    }
}

async fn agent_report(app: &App, req: &Request) -> Result<Response<Body>> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(Error::Unauthenticated)?;
    let reply = crate::agents::agent_report(app, token.trim(), body(req)?).await?;
    ok(&reply)
}

/// `GET /openapi.json`: built once per process.
fn openapi_document() -> Result<Response<Body>> {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = TEXT.get_or_init(crate::openapi::document_text);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(text.as_str()))
        .map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// (handler, method, path) of every HTTP API route in template.yaml, and the
    /// handler of every function.
    fn template_routes(template: &str) -> (Vec<(String, String, String)>, Vec<String>) {
        let mut routes = Vec::new();
        let mut handlers = Vec::new();
        for block in template.split("Type: AWS::Serverless::Function").skip(1) {
            let field =
                |line: &str, key: &str| line.trim().strip_prefix(key).map(|v| v.trim().to_string());
            let handler = block
                .lines()
                .find_map(|l| field(l, "Handler:"))
                .expect("every function has a Handler");
            let methods: Vec<String> = block.lines().filter_map(|l| field(l, "Method:")).collect();
            let paths: Vec<String> = block.lines().filter_map(|l| field(l, "Path:")).collect();
            assert_eq!(methods.len(), paths.len(), "{handler}: Method/Path pairs");
            for (m, p) in methods.into_iter().zip(paths) {
                routes.push((handler.clone(), m, p));
            }
            handlers.push(handler);
        }
        (routes, handlers)
    }

    #[test]
    fn template_yaml_routes_are_exactly_the_served_routes() {
        let template = include_str!("../../../template.yaml");
        let (mut in_template, handlers) = template_routes(template);
        let mut served: Vec<(String, String, String)> = ROUTES
            .iter()
            .map(|(_, h, m, p)| (h.to_string(), m.to_string(), p.to_string()))
            .collect();
        in_template.sort();
        served.sort();
        assert_eq!(in_template, served, "template.yaml and ROUTES differ");
        // Every other function is one of the event handlers, each exactly once.
        let mut others: Vec<&str> = handlers
            .iter()
            .map(String::as_str)
            .filter(|h| Action::from_handler(h).is_none())
            .collect();
        others.sort();
        let mut expected = crate::consumers::EVENT_HANDLERS.to_vec();
        expected.push(UNROUTED_HANDLER);
        expected.push(crate::cleanup::CLEANUP_HANDLER);
        expected.sort();
        assert_eq!(others, expected);
        assert_eq!(handlers.len(), ROUTES.len() + expected.len());
        // One build for all: SAM shares an artifact only between identical build settings.
        let metadata =
            "Metadata: {BuildMethod: rust-cargolambda, BuildProperties: {Binary: bootstrap}}";
        assert_eq!(template.matches(metadata).count(), handlers.len());
    }

    #[test]
    fn template_routes_are_parsed_from_function_blocks() {
        let yaml = "  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: get-x\n      Events:\n        Api:\n          Properties:\n            Method: GET\n            Path: /x/{id}\n  G:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: reconcile\n";
        let (routes, handlers) = template_routes(yaml);
        assert_eq!(
            routes,
            vec![("get-x".into(), "GET".into(), "/x/{id}".into())]
        );
        assert_eq!(handlers, ["get-x", "reconcile"]);
    }

    #[test]
    fn routes_match_concrete_paths() {
        let (action, params) = Action::route("GET", "/workspaces/ws-1/studios/st-2").unwrap();
        assert_eq!(action, Action::GetStudio);
        assert_eq!(
            params,
            vec![
                ("ws".to_string(), "ws-1".to_string()),
                ("id".to_string(), "st-2".to_string())
            ]
        );
        assert_eq!(
            Action::route("POST", "/workspaces").unwrap().0,
            Action::CreateWorkspace
        );
        assert!(Action::route("PUT", "/workspaces").is_none());
        assert!(Action::route("GET", "/workspaces//studios").is_none());
        for (action, handler, ..) in ROUTES {
            assert_eq!(Action::from_handler(handler), Some(*action));
        }
    }

    #[test]
    fn known_paths_with_other_methods_are_405_with_allow() {
        let r = unrouted("DELETE", "/workspaces", "req-9");
        assert_eq!(r.status().as_u16(), 405);
        assert_eq!(r.headers()["allow"], "GET, POST");
        let body: Value = serde_json::from_slice(r.body().as_ref()).unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
        let r = unrouted("PUT", "/workspaces/ws-1/studios/st-1", "req-9");
        assert_eq!(r.headers()["allow"], "GET, PATCH, DELETE");
        let r = unrouted("GET", "/nowhere", "req-9");
        assert_eq!(r.status().as_u16(), 404);
        assert!(!r.headers().contains_key("allow"));
    }

    #[test]
    fn the_request_id_comes_from_api_gateway_without_a_lambda_context() {
        let event = ApiGatewayEvent {
            action: Action::ListWorkspaces,
            path: "/workspaces",
            path_params: &[],
            query: &[],
            claims: None,
            body: None,
            content_type: None,
            authorization: None,
            request_id: "Jq3xQhb1IAMEb2g=",
        };
        let req = event.to_request().unwrap();
        assert_eq!(request_id(&req), "Jq3xQhb1IAMEb2g=");
    }

    #[test]
    fn errors_map_to_statuses_with_safe_messages() {
        let cases = [
            (
                Error::invalid("name", "is required"),
                400,
                "invalid_request",
            ),
            (Error::Unauthenticated, 401, "unauthenticated"),
            (Error::Forbidden("no".into()), 403, "forbidden"),
            (Error::NotFound(Missing::Studio), 404, "not_found"),
            (
                Error::from(crate::error::Conflict::NameTaken { name: "x".into() }),
                409,
                "name_taken",
            ),
            (Error::Throttled, 503, "throttled"),
            (Error::internal("table xyz is gone"), 500, "internal_error"),
        ];
        for (err, status, code) in cases {
            let r = error_response(&err, "req-1");
            assert_eq!(r.status().as_u16(), status);
            let body: Value = serde_json::from_slice(r.body().as_ref()).unwrap();
            assert_eq!(body["error"]["code"], code);
            assert!(!body["error"]["message"].as_str().unwrap().contains("xyz"));
            assert_eq!(r.headers().contains_key("retry-after"), status == 503);
        }
    }
}
