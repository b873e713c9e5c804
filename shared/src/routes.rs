//! The route table: every API action, its handler (Lambda function) name, method and
//! path. template.yaml uses the same names and paths (a test compares them), the local
//! run matches requests against it, and the API document is built from it.

/// Every API action; each is its own Lambda function (handler name) and route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    ListWorkspaces,
    CreateWorkspace,
    ListMembers,
    SetMember,
    RemoveMember,
    ListComputeEnvs,
    CreateComputeEnv,
    GetComputeEnv,
    DeleteComputeEnv,
    ListDataLinks,
    CreateDataLink,
    GetDataLink,
    DeleteDataLink,
    ListTemplates,
    ListStudios,
    AddStudio,
    GetStudio,
    UpdateStudio,
    DeleteStudio,
    StartStudio,
    StopStudio,
    ListCheckpoints,
    RenameCheckpoint,
    CloneStudio,
    ConnectStudio,
    ListMounts,
    AgentReport,
    GetOpenApi,
}

/// (action, handler name, method, path) — template.yaml uses the same names and paths.
#[rustfmt::skip]
pub const ROUTES: &[(Action, &str, &str, &str)] = &[
    (Action::ListWorkspaces, "list-workspaces", "GET", "/workspaces"),
    (Action::CreateWorkspace, "create-workspace", "POST", "/workspaces"),
    (Action::ListMembers, "list-members", "GET", "/workspaces/{ws}/members"),
    (Action::SetMember, "set-member", "PUT", "/workspaces/{ws}/members/{userId}"),
    (Action::RemoveMember, "remove-member", "DELETE", "/workspaces/{ws}/members/{userId}"),
    (Action::ListComputeEnvs, "list-compute-envs", "GET", "/workspaces/{ws}/compute-envs"),
    (Action::CreateComputeEnv, "create-compute-env", "POST", "/workspaces/{ws}/compute-envs"),
    (Action::GetComputeEnv, "get-compute-env", "GET", "/workspaces/{ws}/compute-envs/{ceId}"),
    (Action::DeleteComputeEnv, "delete-compute-env", "DELETE", "/workspaces/{ws}/compute-envs/{ceId}"),
    (Action::ListDataLinks, "list-data-links", "GET", "/workspaces/{ws}/data-links"),
    (Action::CreateDataLink, "create-data-link", "POST", "/workspaces/{ws}/data-links"),
    (Action::GetDataLink, "get-data-link", "GET", "/workspaces/{ws}/data-links/{linkId}"),
    (Action::DeleteDataLink, "delete-data-link", "DELETE", "/workspaces/{ws}/data-links/{linkId}"),
    (Action::ListTemplates, "list-templates", "GET", "/templates"),
    (Action::ListStudios, "list-studios", "GET", "/workspaces/{ws}/studios"),
    (Action::AddStudio, "add-studio", "POST", "/workspaces/{ws}/studios"),
    (Action::GetStudio, "get-studio", "GET", "/workspaces/{ws}/studios/{id}"),
    (Action::UpdateStudio, "update-studio", "PATCH", "/workspaces/{ws}/studios/{id}"),
    (Action::DeleteStudio, "delete-studio", "DELETE", "/workspaces/{ws}/studios/{id}"),
    (Action::StartStudio, "start-studio", "POST", "/workspaces/{ws}/studios/{id}/start"),
    (Action::StopStudio, "stop-studio", "POST", "/workspaces/{ws}/studios/{id}/stop"),
    (Action::ConnectStudio, "connect-studio", "POST", "/workspaces/{ws}/studios/{id}/connect"),
    (Action::CloneStudio, "clone-studio", "POST", "/workspaces/{ws}/studios/{id}/clone"),
    (Action::ListCheckpoints, "list-checkpoints", "GET", "/workspaces/{ws}/studios/{id}/checkpoints"),
    (Action::RenameCheckpoint, "rename-checkpoint", "PATCH", "/workspaces/{ws}/studios/{id}/checkpoints/{cpId}"),
    (Action::ListMounts, "list-mounts", "GET", "/workspaces/{ws}/mounts"),
    (Action::AgentReport, "agent-report", "POST", "/agent/report"),
    (Action::GetOpenApi, "get-openapi", "GET", "/openapi.json"),
];

/// Routes without the JWT authorizer: their caller proves itself otherwise (a session's
/// agent, by its session's credential), or there is nothing to protect (the API
/// document).
pub const UNAUTHORIZED_ROUTES: &[Action] = &[Action::AgentReport, Action::GetOpenApi];

impl Action {
    pub fn from_handler(name: &str) -> Option<Action> {
        ROUTES.iter().find(|r| r.1 == name).map(|r| r.0)
    }

    fn entry(self) -> &'static (Action, &'static str, &'static str, &'static str) {
        ROUTES
            .iter()
            .find(|r| r.0 == self)
            .expect("every action has a route")
    }

    pub fn handler_name(self) -> &'static str {
        self.entry().1
    }

    pub fn method(self) -> &'static str {
        self.entry().2
    }

    pub fn path(self) -> &'static str {
        self.entry().3
    }

    /// Matches a concrete path against the route table (for the local API stand-in).
    pub fn route(method: &str, path: &str) -> Option<(Action, Vec<(String, String)>)> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        ROUTES.iter().find_map(|(action, _, m, template)| {
            if *m != method {
                return None;
            }
            let pattern: Vec<&str> = template.split('/').collect();
            if pattern.len() != parts.len() {
                return None;
            }
            let mut params = Vec::new();
            for (p, actual) in pattern.iter().zip(&parts) {
                match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if !actual.is_empty() => {
                        params.push((name.to_string(), actual.to_string()))
                    }
                    None if p == actual => {}
                    _ => return None,
                }
            }
            Some((*action, params))
        })
    }
}

impl Action {
    /// The methods the route table serves at a concrete path (for 405 + `Allow`).
    pub fn allowed_methods(path: &str) -> Vec<&'static str> {
        let mut methods: Vec<&'static str> = Vec::new();
        for (action, _, method, _) in ROUTES {
            let here = Action::route(method, path).is_some_and(|(a, _)| a == *action);
            if here && !methods.contains(method) {
                methods.push(method);
            }
        }
        methods
    }
}
