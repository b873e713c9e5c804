//! What AWS Batch runs for a session: the job's image, resources and environment (the
//! job contract of docs/api.md), including what its agent needs to check connect links
//! and to reach the connect relay.

use crate::access::App;
use crate::compute::{JobSpec, TAG_ATTEMPT, TAG_STUDIO, TAG_WORKSPACE};
use crate::domain::lifecycle::Session;
use crate::domain::*;
use crate::error::{Error, Result};
use serde_json::{json, Value};

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
    let mounts: Vec<Value> = studio
        .config
        .mounts
        .iter()
        .map(|m| json!({"uri": m.uri, "mountPath": m.mount_path, "access": m.access}))
        .collect();
    let r = studio.config.resources;
    let mut environment = vec![
        ("STUDIO_ID".into(), studio.id.clone()),
        ("WORKSPACE_ID".into(), studio.workspace_id.clone()),
        (
            "CHECKPOINT_RESTORE_URI".into(),
            session
                .restore_uri
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or_default(),
        ),
        ("CHECKPOINT_SAVE_URI".into(), session.save_uri.to_string()),
        ("STUDIO_MOUNTS".into(), Value::from(mounts).to_string()),
        (
            "CONDA_PACKAGES".into(),
            json!(studio.config.conda_packages).to_string(),
        ),
        (
            "STUDIO_TEMPLATE".into(),
            match &studio.config.template {
                Template::Kind { kind } => kind.as_str().to_string(),
                Template::Image { .. } => "custom".to_string(),
            },
        ),
        (
            "STUDIO_BASE_PATH".into(),
            app.config
                .connect_url(&studio.workspace_id, &studio.id)
                .map_or_else(|| "/".to_string(), |u| url_path(&u)),
        ),
        // The agent needs the region for S3 and its channel; with IMDS blocked it has
        // no other way to learn it (docs/deploy.md).
        ("AWS_REGION".into(), studio.compute_env.region.clone()),
        (
            "AWS_DEFAULT_REGION".into(),
            studio.compute_env.region.clone(),
        ),
    ];
    environment.push(("STUDIO_ATTEMPT_ID".into(), session.attempt_id.clone()));
    if let Some(channel) = &session.agent_channel {
        environment.push(("STUDIO_AGENT_TOKEN".into(), channel.token.clone()));
        if let Some(url) = &channel.api_url {
            environment.push(("STUDIO_API_URL".into(), url.clone()));
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
            "STUDIO_CONNECT_PUBLIC_KEY".into(),
            base64::engine::general_purpose::STANDARD.encode(point),
        ),
        ("STUDIO_CONNECT_URL".into(), url),
    ];
    // The session's tunnel to the connect relay: its address and the session's token,
    // signed with the relay's own key (a start can never mint a connect link).
    if let (Some(addr), Some(session), Some(signer)) =
        (&app.config.relay_tunnel_addr, &studio.session, &app.relay)
    {
        let now = chrono::Utc::now().timestamp();
        let claims = crate::connect::RelayClaims {
            aud: "relay",
            st: studio.id.clone(),
            att: session.attempt_id.clone(),
            iat: now,
            exp: now + crate::connect::RELAY_TOKEN_SECONDS,
        };
        let token = crate::connect::sign_claims(signer.as_ref(), &claims).await?;
        env.push(("STUDIO_RELAY_ADDR".into(), addr.clone()));
        env.push(("STUDIO_RELAY_TOKEN".into(), token));
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
