//! What AWS Batch runs for a session: the job's image, resources and environment (the
//! job contract of docs/api.md), including what its agent needs to check connect links
//! and to reach the connect relay.

use crate::access::App;
use crate::compute::{JobSpec, TAG_ATTEMPT, TAG_STUDIO, TAG_WORKSPACE};
use crate::domain::lifecycle::Session;
use crate::domain::*;
use crate::error::{Error, Result};
use serde_json::json;
use studios_protocol::env::{self, Mount};

/// What AWS Batch runs for a session (docs/api.md, the job environment).
pub fn job_spec(app: &App, studio: &Studio, session: &Session) -> Result<JobSpec> {
    let image = match &studio.config.template {
        Template::Kind { kind } => app
            .config
            .template_images
            .get(kind)
            .cloned()
            .ok_or_else(|| Error::internal(format!("no image configured for {kind:?}")))?,
        Template::Image { image } => image.clone(),
    };
    let mounts: Vec<Mount> = studio
        .config
        .mounts
        .iter()
        .map(|m| Mount {
            uri: m.uri.to_string(),
            mount_path: m.mount_path.clone(),
            access: access_name(m.access),
        })
        .collect();
    let r = studio.config.resources;
    let mut environment = vec![
        (env::STUDIO_ID.into(), studio.id.clone()),
        (env::WORKSPACE_ID.into(), studio.workspace_id.clone()),
        (
            env::CHECKPOINT_RESTORE_URI.into(),
            session
                .restore_uri
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or_default(),
        ),
        (
            env::CHECKPOINT_RESTORE_SHA256.into(),
            session.restore_sha256.clone().unwrap_or_default(),
        ),
        (
            env::CHECKPOINT_SAVE_URI.into(),
            session.save_uri.to_string(),
        ),
        (env::STUDIO_MOUNTS.into(), Mount::encode_all(&mounts)),
        (
            env::CONDA_PACKAGES.into(),
            json!(studio.config.conda_packages).to_string(),
        ),
        (
            env::STUDIO_TEMPLATE.into(),
            match &studio.config.template {
                Template::Kind { kind } => kind.as_str().to_string(),
                Template::Image { .. } => "custom".to_string(),
            },
        ),
        (
            env::STUDIO_BASE_PATH.into(),
            app.config
                .connect_url(&studio.workspace_id, &studio.id)
                .map_or_else(|| "/".to_string(), |u| url_path(&u)),
        ),
        // The agent needs the region for S3 and its channel; with IMDS blocked it has
        // no other way to learn it (docs/deploy.md).
        (env::AWS_REGION.into(), studio.compute_env.region.clone()),
        (
            env::AWS_DEFAULT_REGION.into(),
            studio.compute_env.region.clone(),
        ),
    ];
    environment.push((env::STUDIO_ATTEMPT_ID.into(), session.attempt_id.clone()));
    if let Some(channel) = &session.agent_channel {
        environment.push((env::STUDIO_AGENT_TOKEN.into(), channel.token.clone()));
        if let Some(url) = &channel.api_url {
            environment.push((env::STUDIO_API_URL.into(), url.clone()));
        }
    }
    Ok(JobSpec {
        name: session.job_name.clone(),
        queue: studio.compute_env.job_queue.clone(),
        image,
        vcpus: r.cpus,
        memory_mib: r.memory_mib,
        gpus: r.gpus,
        environment,
        job_role_arn: studio.compute_env.job_role_arn.clone(),
        fuse: !studio.config.mounts.is_empty(),
        tags: vec![
            (TAG_WORKSPACE.into(), studio.workspace_id.clone()),
            (TAG_STUDIO.into(), studio.id.clone()),
            (TAG_ATTEMPT.into(), session.attempt_id.clone()),
        ],
    })
}

/// An access's name on the wire (serde's: `read-only`, `read-write`).
fn access_name(access: Access) -> String {
    json!(access).as_str().unwrap_or_default().to_string()
}

/// What a session needs to check connect links: the public key (base64 of the P-256
/// point) and the studio's connect URL (its scheme decides the cookie's `Secure`).
pub(crate) async fn connect_environment(
    app: &App,
    studio: &Studio,
) -> Result<Vec<(String, String)>> {
    use base64::Engine;
    let (Some(signer), Some(url)) = (
        &app.connect,
        app.config.connect_url(&studio.workspace_id, &studio.id),
    ) else {
        return Ok(vec![]);
    };
    let point = signer.public_key().await?;
    let mut env = vec![
        (
            env::STUDIO_CONNECT_PUBLIC_KEY.into(),
            base64::engine::general_purpose::STANDARD.encode(point),
        ),
        (env::STUDIO_CONNECT_URL.into(), url),
    ];
    // The session's tunnel to the connect relay: only its address. The token the
    // relay asks for comes over the agent channel, short-lived, while the session is
    // live (agents.rs), so the job's environment holds no relay credential.
    if let (Some(addr), Some(_)) = (&app.config.relay_tunnel_addr, &app.relay) {
        env.push((env::STUDIO_RELAY_ADDR.into(), addr.clone()));
    }
    Ok(env)
}

/// The path of a URL (`https://h/connect/st-1/` → `/connect/st-1/`), always ending in `/`.
fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let mut path = rest
        .find('/')
        .map_or("/".to_string(), |i| rest[i..].to_string());
    if let Some(q) = path.find(['?', '#']) {
        path.truncate(q);
    }
    if !path.ends_with('/') {
        path.push('/');
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_have_their_wire_names() {
        assert_eq!(access_name(Access::ReadOnly), "read-only");
        assert_eq!(access_name(Access::ReadWrite), "read-write");
    }

    #[test]
    fn base_paths_come_from_the_connect_url() {
        assert_eq!(
            url_path("https://h.example/connect/st-1/"),
            "/connect/st-1/"
        );
        assert_eq!(url_path("https://st-1.h.example"), "/");
        assert_eq!(
            url_path("http://127.0.0.1:3000/connect/st-1?x=1"),
            "/connect/st-1/"
        );
    }
}
