//! Configuration, read once at cold start from the environment; fails fast and says what
//! is missing.

pub use crate::domain::validate::StackLimits;
use crate::domain::TemplateKind;
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct Config {
    /// DynamoDB table (`TABLE_NAME`).
    pub table_name: String,
    /// JWT subjects allowed to create workspaces (`PLATFORM_ADMINS`, comma-separated).
    pub platform_admins: Vec<String>,
    /// Container image per template (`TEMPLATE_IMAGE_JUPYTER`, `_RSTUDIO`, `_VSCODE`, `_XPRA`).
    pub template_images: HashMap<TemplateKind, String>,
    /// The stack's event bus for status events (`EVENT_BUS_NAME`).
    pub event_bus: String,
    /// How long the reconciler waits before judging a session whose job Batch does not
    /// list — never submitted, or vanished (`SUBMIT_GRACE_SECONDS`, default 600).
    pub submit_grace_seconds: u64,
    /// How long a session may stay `starting` (its job SUBMITTED, RUNNABLE or STARTING:
    /// no capacity, a GPU job on a CPU queue) before the reconciler cancels it
    /// (`START_DEADLINE_SECONDS`, default 3600).
    pub start_deadline_seconds: u64,
    /// How long a studio must have been `stopping` before a stop may force it
    /// (`FORCE_STOP_AFTER_SECONDS`, default 900).
    pub force_stop_after_seconds: u64,
    /// Where users connect to a running studio (`CONNECT_URL_PATTERN`): a URL with
    /// `{studioId}` (and optionally `{workspaceId}`) in it, e.g.
    /// `https://{studioId}.connect.example.org/`, each studio its own origin (the stack
    /// derives it from its `ConnectDomain`; docs/security.md). Unset: nothing can reach a session, and connect says so.
    pub connect_url_pattern: Option<String>,
    /// Every session job's name starts with this and `-` (`JOB_NAME_PREFIX`, default
    /// `studios`; the stack derives it from its id): the stack's EventBridge rule
    /// matches Batch events by it, and the consumer ignores jobs without it.
    pub job_name_prefix: String,
    /// What the stack may use (`JOB_QUEUE_ARNS`, `CHECKPOINT_BUCKETS`, `WRITE_BUCKETS`,
    /// comma-separated; the stack's parameters): a compute environment must stay within
    /// them. Unset (`None`): anything (the local run and tests).
    pub stack_limits: StackLimits,
    /// The clean-up queue (`CLEANUP_QUEUE_URL`): released checkpoint data is deleted by
    /// its worker. Unset: deleted at once where it is released (the local run).
    pub cleanup_queue_url: Option<String>,
    /// Registries custom images may come from (`IMAGE_REGISTRIES`, comma-separated, e.g.
    /// `123456789012.dkr.ecr.eu-west-1.amazonaws.com,docker.io`). Unset or empty: any.
    pub image_registries: Option<Vec<String>>,
    /// Job definitions: name prefix (`JOB_DEFINITION_PREFIX`, default `studios`) and
    /// the session containers' role (`JOB_ROLE_ARN`, optional).
    pub job_definitions: crate::compute::JobDefinitions,
    /// The sessions' agents and their channel (docs/agent.md).
    pub agent: AgentSettings,
    /// The key connect links are signed with (docs/api.md, "Connect links").
    pub connect_key: ConnectKey,
    /// The key sessions' relay tokens are signed with (`RELAY_TOKEN_KEY_ID` on AWS,
    /// `RELAY_TOKEN_KEY` locally): its own key, so that the functions that start
    /// sessions can sign relay tokens but never connect links (docs/iam.md).
    pub relay_key: ConnectKey,
    /// Where sessions open their tunnel to the connect relay (`RELAY_TUNNEL_ADDR`,
    /// `tls://host:port` or `tcp://host:port`); unset: no relay.
    pub relay_tunnel_addr: Option<String>,
}

/// Where the connect-link signing key is.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ConnectKey {
    /// No key: connect answers the plain URL and sessions check nothing (tests).
    #[default]
    None,
    /// A P-256 PKCS#8 key, base64 (`CONNECT_SIGNING_KEY`; the local run makes one).
    Local(String),
    /// The stack's KMS key (`CONNECT_SIGNING_KEY_ID`).
    Kms(String),
}

/// How the control plane talks with session agents.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// The API's base URL as sessions reach it (`AGENT_API_URL`); unset: the URL the
    /// start request came in on (API Gateway's domain and stage).
    pub api_url: Option<String>,
    /// How often an agent reports (`AGENT_REPORT_SECONDS`, default 15).
    pub report_seconds: u64,
    /// How long a stop waits for the agent to save and exit before TerminateJob
    /// (`STOP_GRACE_SECONDS`, default 120).
    pub stop_grace_seconds: u64,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            api_url: None,
            report_seconds: 15,
            stop_grace_seconds: 120,
        }
    }
}

impl Config {
    /// A running studio's connect (share) link; `None` when the stack has no way for a
    /// browser to reach a session: sessions listen only on their own loopback and open
    /// no inbound port, so without the relay's tunnel (`RELAY_TUNNEL_ADDR`) no URL works.
    pub fn connect_url(&self, workspace_id: &str, studio_id: &str) -> Option<String> {
        self.relay_tunnel_addr.as_ref()?;
        self.connect_url_pattern.as_ref().map(|p| {
            p.replace("{workspaceId}", workspace_id)
                .replace("{studioId}", studio_id)
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: environment variable {name} {problem}")]
pub struct ConfigError {
    pub name: String,
    pub problem: &'static str,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Same as `from_env` over any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let required = |name: &str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| ConfigError {
                    name: name.to_string(),
                    problem: "must be set",
                })
        };
        let platform_admins = get("PLATFORM_ADMINS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let mut template_images = HashMap::new();
        for kind in TemplateKind::ALL {
            let name = format!("TEMPLATE_IMAGE_{}", kind.as_str().to_uppercase());
            template_images.insert(kind, required(&name)?);
        }
        let seconds = |name: &str, default: u64| match get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| ConfigError {
                name: name.into(),
                problem: "must be a whole number of seconds",
            }),
        };
        let submit_grace_seconds = seconds("SUBMIT_GRACE_SECONDS", 600)?;
        let start_deadline_seconds = seconds("START_DEADLINE_SECONDS", 3600)?;
        let force_stop_after_seconds = seconds("FORCE_STOP_AFTER_SECONDS", 900)?;
        let table_name = required("TABLE_NAME")?;
        let event_bus = required("EVENT_BUS_NAME")?;
        let connect_url_pattern = get("CONNECT_URL_PATTERN").filter(|p| !p.trim().is_empty());
        if connect_url_pattern.as_ref().is_some_and(|p| {
            !p.contains("{studioId}") || !(p.starts_with("https://") || p.starts_with("http://"))
        }) {
            return Err(ConfigError {
                name: "CONNECT_URL_PATTERN".into(),
                problem: "must be an http(s) URL containing {studioId}",
            });
        }
        let prefix = get("JOB_DEFINITION_PREFIX")
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| "studios".into());
        // Batch names are at most 128 characters: the prefix, "-" and 16 hex digits.
        if prefix.len() > 111
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError {
                name: "JOB_DEFINITION_PREFIX".into(),
                problem: "must be up to 111 letters, digits, '-' or '_' (job definition names are at most 128)",
            });
        }
        let job_name_prefix = get("JOB_NAME_PREFIX")
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| "studios".into());
        let max = crate::domain::lifecycle::MAX_JOB_NAME_PREFIX;
        if job_name_prefix.len() > max
            || !job_name_prefix.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !job_name_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError {
                name: "JOB_NAME_PREFIX".into(),
                problem: "must be up to 23 letters, digits, '-' or '_', starting with a letter or digit (job names are at most 128)",
            });
        }
        let list = |name: &str| {
            get(name).map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
        };
        let stack_limits = StackLimits {
            job_queues: list("JOB_QUEUE_ARNS"),
            checkpoint_buckets: list("CHECKPOINT_BUCKETS"),
            write_buckets: list("WRITE_BUCKETS"),
            session_role_path: get("SESSION_ROLE_PATH").filter(|p| !p.trim().is_empty()),
        };
        let image_registries = list("IMAGE_REGISTRIES").filter(|l| !l.is_empty());
        let agent = AgentSettings {
            api_url: get("AGENT_API_URL")
                .map(|u| u.trim().trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty()),
            report_seconds: seconds("AGENT_REPORT_SECONDS", 15)?.max(1),
            stop_grace_seconds: seconds("STOP_GRACE_SECONDS", 120)?,
        };
        let key = |kms: &str, local: &str| match (
            get(kms).filter(|v| !v.trim().is_empty()),
            get(local).filter(|v| !v.trim().is_empty()),
        ) {
            (Some(id), _) => ConnectKey::Kms(id.trim().to_string()),
            (None, Some(key)) => ConnectKey::Local(key),
            (None, None) => ConnectKey::None,
        };
        let connect_key = key("CONNECT_SIGNING_KEY_ID", "CONNECT_SIGNING_KEY");
        let relay_key = key("RELAY_TOKEN_KEY_ID", "RELAY_TOKEN_KEY");
        Ok(Config {
            relay_key,
            relay_tunnel_addr: get("RELAY_TUNNEL_ADDR").filter(|v| !v.trim().is_empty()),
            connect_key,
            agent,
            image_registries,
            cleanup_queue_url: get("CLEANUP_QUEUE_URL").filter(|u| !u.trim().is_empty()),
            stack_limits,
            job_name_prefix,
            job_definitions: crate::compute::JobDefinitions {
                prefix,
                job_role_arn: get("JOB_ROLE_ARN").filter(|r| !r.trim().is_empty()),
            },
            connect_url_pattern,
            table_name,
            platform_admins,
            template_images,
            event_bus,
            submit_grace_seconds,
            start_deadline_seconds,
            force_stop_after_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const IMAGES: [(&str, &str); 4] = [
        ("TEMPLATE_IMAGE_JUPYTER", "j:1"),
        ("TEMPLATE_IMAGE_RSTUDIO", "r:1"),
        ("TEMPLATE_IMAGE_VSCODE", "v:1"),
        ("TEMPLATE_IMAGE_XPRA", "x:1"),
    ];

    #[test]
    fn reads_admins_and_images() {
        let mut pairs = IMAGES.to_vec();
        pairs.extend([
            ("TABLE_NAME", "t"),
            ("RELAY_TUNNEL_ADDR", "tls://relay.example.org:8443"),
            ("PLATFORM_ADMINS", " a, b ,,"),
            ("EVENT_BUS_NAME", "bus"),
            (
                "CONNECT_URL_PATTERN",
                "https://s.example.org/{workspaceId}/{studioId}/",
            ),
        ]);
        let c = Config::from_lookup(env(&pairs)).unwrap();
        assert_eq!(c.platform_admins, vec!["a", "b"]);
        assert_eq!(c.template_images[&TemplateKind::Xpra], "x:1");
        assert_eq!(c.submit_grace_seconds, 600);
        assert_eq!(
            c.connect_url("ws-1", "st-2").as_deref(),
            Some("https://s.example.org/ws-1/st-2/")
        );
    }

    #[test]
    fn names_the_missing_variable() {
        let err = Config::from_lookup(env(&IMAGES)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration: environment variable TABLE_NAME must be set"
        );
        let mut pairs = IMAGES.to_vec();
        pairs.extend([
            ("TABLE_NAME", "t"),
            ("EVENT_BUS_NAME", "bus"),
            ("CONNECT_URL_PATTERN", "https://s.example.org/"),
        ]);
        let err = Config::from_lookup(env(&pairs)).unwrap_err();
        assert!(err.to_string().contains("{studioId}"), "{err}");
    }
}
