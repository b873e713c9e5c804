//! `studio-relay`: the connect relay (see lib.rs). Settings: `RELAY_PUBLIC_ADDR`
//! (browsers; default 0.0.0.0:8080), `RELAY_TUNNEL_ADDR` (sessions; default
//! 0.0.0.0:8081), and the control plane's key: `CONNECT_SIGNING_KEY_ID` (KMS; the public
//! key is read once) or `CONNECT_PUBLIC_KEY` (base64 of the P-256 point).

use base64::Engine;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let env = |k: &str, d: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| d.to_string())
    };
    let point = match (
        std::env::var("CONNECT_SIGNING_KEY_ID"),
        std::env::var("CONNECT_PUBLIC_KEY"),
    ) {
        (Ok(id), _) if !id.is_empty() => {
            let sdk = aws_config::load_from_env().await;
            let out = aws_sdk_kms::Client::new(&sdk)
                .get_public_key()
                .key_id(id)
                .send()
                .await?;
            let spki = out
                .public_key()
                .ok_or("KMS returned no public key")?
                .as_ref()
                .to_vec();
            spki.get(spki.len().saturating_sub(65)..)
                .ok_or("not a P-256 key")?
                .to_vec()
        }
        (_, Ok(b64)) if !b64.is_empty() => {
            base64::engine::general_purpose::STANDARD.decode(b64.trim())?
        }
        _ => return Err("set CONNECT_SIGNING_KEY_ID or CONNECT_PUBLIC_KEY".into()),
    };
    if point.len() != 65 || point[0] != 4 {
        return Err("the connect key is not a P-256 point".into());
    }
    let relay = studios_relay::Relay::new(point);
    let public = tokio::net::TcpListener::bind(env("RELAY_PUBLIC_ADDR", "0.0.0.0:8080")).await?;
    let tunnels = tokio::net::TcpListener::bind(env("RELAY_TUNNEL_ADDR", "0.0.0.0:8081")).await?;
    tracing::info!(public = %public.local_addr()?, tunnels = %tunnels.local_addr()?, "relay listening");
    tokio::select! {
        _ = relay.clone().serve_public(public) => {},
        _ = relay.serve_tunnels(tunnels) => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    Ok(())
}
