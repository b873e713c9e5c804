//! API Gateway (HTTP API, payload 2.0) in, JSON out. The route table, request parsing,
//! and the one mapping from `Error` to a status code live here.

use crate::domain::validate::*;
use crate::domain::{Studio, StudioStatus};
use crate::error::{Error, Missing, Result};
pub use crate::routes::*;
use crate::service::{self, App, Caller, StudioQuery};
use crate::{checkpoints, sessions, views};
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
#[cfg(any(test, feature = "local"))]
use serde_json::json;
use serde_json::Value;

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

/// The id a 500 quotes: Lambda's request id, else API Gateway's (`requestContext.requestId`).
pub fn request_id(req: &Request) -> String {
    req.lambda_context_ref()
        .map(|c| c.request_id.clone())
        .filter(|id| !id.is_empty())
        .or_else(|| match req.request_context_ref() {
            Some(lambda_http::request::RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
            _ => None,
        })
        .unwrap_or_default()
}

/// A request with a body must say it is JSON (`application/json`, any `+json` type, with
/// parameters such as `charset` or not); one without a Content-Type is read as JSON.
fn json_content_type(req: &Request) -> Result<()> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default();
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        let shown: String = text.chars().take(100).collect();
        Err(Error::UnsupportedMediaType(format!("'{shown}'")))
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

/// The caller from API Gateway's JWT authorizer: `sub`, with a display name from the
/// first non-empty of `name`, `email`, `cognito:username` (Cognito ID tokens) and
/// `username` (Cognito access tokens), else the subject itself.
pub fn caller(req: &Request) -> Result<Caller> {
    let claims = req
        .request_context_ref()
        .and_then(|c| c.authorizer())
        .and_then(|a| a.jwt.as_ref())
        .map(|jwt| &jwt.claims)
        .ok_or(Error::Unauthenticated)?;
    let id = claims
        .get("sub")
        .filter(|s| !s.is_empty())
        .ok_or(Error::Unauthenticated)?;
    let name = ["name", "email", "cognito:username", "username"]
        .iter()
        .find_map(|k| claims.get(*k).filter(|v| !v.is_empty()))
        .unwrap_or(id);
    Ok(Caller {
        id: id.clone(),
        name: name.clone(),
        api_url: api_url(req),
    })
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

/// The API's URL as the request reached it: `https://<domainName>[/<stage>]`.
fn api_url(req: &Request) -> Option<String> {
    let lambda_http::request::RequestContext::ApiGatewayV2(c) = req.request_context_ref()? else {
        return None;
    };
    let domain = c.domain_name.as_deref().filter(|d| !d.is_empty())?;
    let scheme = if domain == "localhost" || domain.starts_with("127.0.0.1") {
        "http"
    } else {
        "https"
    };
    Some(
        match c
            .stage
            .as_deref()
            .filter(|s| !s.is_empty() && *s != "$default")
        {
            Some(stage) => format!("{scheme}://{domain}/{stage}"),
            None => format!("{scheme}://{domain}"),
        },
    )
}

fn path_param<'a>(req: &'a Request, name: &str) -> Result<&'a str> {
    req.path_parameters_ref()
        .and_then(|p| p.first(name))
        .ok_or(Error::NotFound(Missing::Route))
}

fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
}

/// A JSON body that may be absent.
pub fn optional_body<T: DeserializeOwned>(req: &Request) -> Result<Option<T>> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    body(req).map(Some)
}

/// Parses a JSON body; the error names the offending field (`resources.cpus`) and rule.
pub fn body<T: DeserializeOwned>(req: &Request) -> Result<T> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid("body", "a JSON object is required"));
    }
    let value: Value = serde_json::from_slice::<StrictJson>(bytes)
        .map(|v| v.0)
        .map_err(|e| {
            Error::invalid(
                "body",
                format!("is not valid JSON: {}", strip_position(&e.to_string())),
            )
        })?;
    if !value.is_object() {
        return Err(Error::invalid("body", "must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = strip_position(&e.into_inner().to_string());
        // serde reports a missing field at its parent; name the field itself.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            let full = if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            return Error::invalid(full, "is required");
        }
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        Error::invalid(field, message)
    })
}

/// JSON whose objects have no key twice (serde_json keeps the last one silently; a
/// client sending `{"role": "view", "role": "owner"}` should hear about it).
struct StrictJson(Value);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(serde::de::Error::custom(format!(
                    "the key \"{shown}\" appears twice in one object"
                )));
            }
            let StrictJson(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Result<Response<Body>> {
    let body = serde_json::to_string(value).map_err(Error::internal)?;
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .map_err(Error::internal)
}

fn ok<T: serde::Serialize>(value: &T) -> Result<Response<Body>> {
    json_response(StatusCode::OK, value)
}

fn created<T: serde::Serialize>(value: &T) -> Result<Response<Body>> {
    json_response(StatusCode::CREATED, value)
}

fn no_content() -> Result<Response<Body>> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::Empty)
        .map_err(Error::internal)
}

/// The one place an `Error` becomes a status code. Internal details go to the log only.
pub fn error_response(err: &Error, request_id: &str) -> Response<Body> {
    let (status, code, message, field) = match err {
        Error::Invalid { field, message } => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{field}: {message}"),
            Some(field.as_str()),
        ),
        Error::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in: the request carries no identity".to_string(),
            None,
        ),
        Error::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone(), None),
        Error::NotFound(what) => (
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
            None,
        ),
        Error::Conflict(c) => (StatusCode::CONFLICT, c.code(), c.to_string(), None),
        Error::UnsupportedMediaType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            err.to_string(),
            None,
        ),
        Error::MethodNotAllowed { .. } => (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            err.to_string(),
            None,
        ),
        Error::Throttled => (
            StatusCode::SERVICE_UNAVAILABLE,
            "throttled",
            err.to_string(),
            None,
        ),
        Error::Internal(source) => {
            // The whole cause chain, readable, for the log only.
            let mut chain = source.to_string();
            let mut cause = source.source();
            while let Some(c) = cause {
                chain.push_str(": ");
                chain.push_str(&c.to_string());
                cause = c.source();
            }
            tracing::error!(request_id, error = %chain, "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("something went wrong on our side; quote request id '{request_id}' when reporting it"),
                None,
            )
        }
    };
    let error = crate::views::ErrorBody {
        error: crate::views::ErrorDetail {
            code: code.to_string(),
            message,
            field: field.map(str::to_string),
        },
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json");
    if matches!(err, Error::Throttled) {
        builder = builder.header(header::RETRY_AFTER, "1");
    }
    if let Error::MethodNotAllowed { allow, .. } = err {
        builder = builder.header(header::ALLOW, allow.as_str());
    }
    builder
        .body(Body::from(
            serde_json::to_string(&error).unwrap_or_default(),
        ))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

#[cfg(any(test, feature = "local"))]
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds the request API Gateway (HTTP API, payload 2.0, JWT authorizer) would deliver,
/// through lambda_http's own event parsing. Used by the local API stand-in and the tests,
/// so both exercise exactly the production request path (feature `local`).
#[cfg(any(test, feature = "local"))]
pub struct ApiGatewayEvent<'a> {
    pub action: Action,
    pub path: &'a str,
    pub path_params: &'a [(String, String)],
    pub query: &'a [(String, String)],
    /// JWT claims as API Gateway passes them (a string map); `None`: no authorizer result.
    pub claims: Option<&'a [(String, String)]>,
    pub body: Option<&'a str>,
    /// The request's Content-Type header, if it had one.
    pub content_type: Option<&'a str>,
    /// The Authorization header, passed on to routes without the JWT authorizer.
    pub authorization: Option<&'a str>,
    pub request_id: &'a str,
}

#[cfg(any(test, feature = "local"))]
impl ApiGatewayEvent<'_> {
    pub fn to_json(&self) -> Value {
        let map = |pairs: &[(String, String)]| -> Value {
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let route_key = format!("{} {}", self.action.method(), self.action.path());
        let raw_query = self
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut context = json!({
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": self.action.method(),
                "path": self.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "studios-local",
            },
            "requestId": self.request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0,
        });
        if let Some(claims) = self.claims {
            context["authorizer"] = json!({ "jwt": { "claims": map(claims), "scopes": null } });
        }
        let mut headers = json!({});
        if let Some(ct) = self.content_type {
            headers["content-type"] = json!(ct);
        }
        if let Some(auth) = self.authorization {
            headers["authorization"] = json!(auth);
        }
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": self.path,
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": context,
            "isBase64Encoded": false,
        });
        if !self.query.is_empty() {
            event["queryStringParameters"] = map(self.query);
        }
        if !self.path_params.is_empty() {
            event["pathParameters"] = map(self.path_params);
        }
        if let Some(body) = self.body {
            event["body"] = json!(body);
        }
        event
    }

    pub fn to_request(&self) -> Result<Request> {
        // lambda_http rebuilds the URI from rawPath and rawQueryString and panics on an
        // invalid one: refuse such paths here instead.
        if self.path.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(Error::NotFound(Missing::Route));
        }
        lambda_http::request::from_str(&self.to_json().to_string()).map_err(Error::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let template = include_str!("../../template.yaml");
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
