//! `studio-relay`: the connect relay (see lib.rs). Settings: `RELAY_PUBLIC_ADDR`
//! (browsers; default 0.0.0.0:8080), `RELAY_TUNNEL_ADDR` (sessions; default
//! 0.0.0.0:8081), and the public key of the control plane's relay-token key:
//! `RELAY_TOKEN_KEY_ID` (a KMS key; its public key is read once, at start) or
//! `RELAY_PUBLIC_KEY` (base64 of the P-256 point; the local run); `RELAY_CONNECT_DOMAIN`
//! (required), the connect domain: a browser's request is routed by its `Host`,
//! `<studio id>.<RELAY_CONNECT_DOMAIN>` (`localhost` in the local run). `RELAY_MAX_CONNECTIONS`
//! caps the connections of both ports together (default
//! `studios_relay::DEFAULT_MAX_CONNECTIONS`; over it a connection is closed at once). Once listening it
//! prints `studio-relay listening: public <addr>, tunnels <addr>` on stdout (the local
//! run reads the ports it got from there); logs go to stderr.

use base64::Engine;
use std::io::Write;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let point = match (env("RELAY_TOKEN_KEY_ID"), env("RELAY_PUBLIC_KEY")) {
        (Some(id), _) => {
            let sdk = aws_config::load_from_env().await;
            let out = aws_sdk_kms::Client::new(&sdk)
                .get_public_key()
                .key_id(id.trim())
                .send()
                .await
                .map_err(|e| format!("RELAY_TOKEN_KEY_ID: kms:GetPublicKey failed: {e}"))?;
            let spki = out
                .public_key()
                .ok_or("RELAY_TOKEN_KEY_ID: KMS returned no public key")?;
            studios_protocol::claims::point_of_spki(spki.as_ref())
                .ok_or("the relay-token key is not a P-256 key")?
        }
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("RELAY_PUBLIC_KEY is not base64: {e}"))?,
        (None, None) => return Err("set RELAY_TOKEN_KEY_ID or RELAY_PUBLIC_KEY".into()),
    };
    if !studios_protocol::claims::is_point(&point) {
        return Err("the relay-token key is not a P-256 key".into());
    }
    let max_connections = match env("RELAY_MAX_CONNECTIONS") {
        None => studios_relay::DEFAULT_MAX_CONNECTIONS,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("RELAY_MAX_CONNECTIONS '{v}' is not a positive whole number"))?,
    };
    let domain = env("RELAY_CONNECT_DOMAIN").ok_or(
        "set RELAY_CONNECT_DOMAIN (browsers reach studio st-… at st-….<RELAY_CONNECT_DOMAIN>)",
    )?;
    let relay = studios_relay::Relay::with_max_connections(point, &domain, max_connections);
    let public = bind(
        env("RELAY_PUBLIC_ADDR"),
        "RELAY_PUBLIC_ADDR",
        "0.0.0.0:8080",
    )
    .await?;
    let tunnels = bind(
        env("RELAY_TUNNEL_ADDR"),
        "RELAY_TUNNEL_ADDR",
        "0.0.0.0:8081",
    )
    .await?;
    let (public_addr, tunnel_addr) = (public.local_addr()?, tunnels.local_addr()?);
    tracing::info!(public = %public_addr, tunnels = %tunnel_addr, "relay listening");
    println!("studio-relay listening: public {public_addr}, tunnels {tunnel_addr}");
    std::io::stdout().flush()?;
    tokio::select! {
        _ = relay.clone().serve_public(public) => {},
        _ = relay.serve_tunnels(tunnels) => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    Ok(())
}

async fn bind(
    set: Option<String>,
    name: &str,
    default: &str,
) -> Result<tokio::net::TcpListener, String> {
    let addr = set.unwrap_or_else(|| default.to_string());
    tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("{name}: cannot listen on {addr}: {e}"))
}
