//! `studios-local serve PORT` runs the API on 127.0.0.1 against the emulator the
//! environment points at (AWS_ENDPOINT_URL): demo data created, AWS Batch simulated,
//! the table stream followed (status events printed), the reconciler every minute.
//! `studios-local token SUB [NAME]` prints a signed development token.
//! infra/run-local.sh wires both.

use std::sync::Arc;
use studios_functions::demo;
use studios_functions::local::{mint_token, Local};
use studios_functions::simulate::{local_stack, Simulation};
use studios_shared::store::dynamo::create_table;
use studios_shared::{App, Config};

fn secret() -> Result<String, String> {
    std::env::var("STUDIOS_LOCAL_JWT_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "STUDIOS_LOCAL_JWT_SECRET must be set".to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("token") => {
            let sub = args.get(1).ok_or("usage: studios-local token SUB [NAME]")?;
            // Demo users get their display name without asking.
            let name = args
                .get(2)
                .map(String::as_str)
                .or_else(|| demo::USERS.iter().find(|u| u.0 == sub).map(|u| u.1));
            println!("{}", mint_token(&secret()?, sub, name));
            Ok(())
        }
        Some("serve") => serve(args.get(1).map(String::as_str).unwrap_or("0")).await,
        _ => Err("usage: studios-local serve [PORT] | studios-local token SUB [NAME]".into()),
    }
}

async fn serve(port: &str) -> Result<(), Box<dyn std::error::Error>> {
    studios_shared::telemetry::init();
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e} (set STUDIOS_PORT)"))?;
    let addr = listener.local_addr()?;
    let mut config = Config::from_env()?;
    // Connect links are signed with a key made now (on AWS: the stack's KMS key).
    if config.connect_key == studios_shared::config::ConnectKey::None {
        config.connect_key = studios_shared::config::ConnectKey::Local(
            studios_shared::connect::LocalSigner::generate()?,
        );
    }
    // Relay tokens have their own key (docs/iam.md), made now as well.
    if config.relay_key == studios_shared::config::ConnectKey::None {
        config.relay_key = studios_shared::config::ConnectKey::Local(
            studios_shared::connect::LocalSigner::generate()?,
        );
    }
    // The connect relay, in process: sessions open their tunnels to it, and the API's
    // `/connect/<studio>/` route forwards browsers to it. It checks relay tokens.
    let point = match &config.relay_key {
        studios_shared::config::ConnectKey::Local(pkcs8) => {
            use studios_shared::connect::Signer;
            Some(
                studios_shared::connect::LocalSigner::from_pkcs8(pkcs8)?
                    .public_key()
                    .await?,
            )
        }
        _ => None,
    };
    let mut relay_public = None;
    if let Some(point) = point {
        let relay = studios_relay::Relay::new(point);
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let tunnels = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        relay_public = Some(public.local_addr()?);
        config
            .relay_tunnel_addr
            .get_or_insert(format!("tcp://{}", tunnels.local_addr()?));
        tokio::spawn(relay.clone().serve_public(public));
        tokio::spawn(relay.serve_tunnels(tunnels));
    }
    // Sessions' agents report to this API.
    config
        .agent
        .api_url
        .get_or_insert_with(|| format!("http://{addr}"));
    let mut simulation = Simulation::from_env()?;
    if simulation.agent.is_none() && simulation.run_agents {
        // Built beside this binary (infra/run-local.sh builds both).
        let beside = std::env::current_exe()?.with_file_name("studio-agent");
        simulation.agent = beside.exists().then_some(beside);
    }
    let queue = std::env::var("STUDIOS_LOCAL_QUEUE")
        .map_err(|_| "STUDIOS_LOCAL_QUEUE (the emulated job queue ARN) must be set")?;
    let sdk = aws_config::load_from_env().await;
    // A fresh emulator has no table or bus: create them (existing ones are kept).
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    if let Err(e) = create_table(&dynamo, &config.table_name).await {
        tracing::info!(error = %e, "table not created (it may exist already)");
    }
    let bus = aws_sdk_eventbridge::Client::new(&sdk)
        .create_event_bus()
        .name(&config.event_bus)
        .send()
        .await;
    if let Err(e) = bus {
        tracing::info!(error = %e, "event bus not created (it may exist already)");
    }
    let agent = simulation.agent.clone();
    let app = local_stack(&sdk, App::from_sdk(&sdk, config), simulation.clone());
    let ws = demo::bootstrap(&app, &queue).await?;
    let secret = secret()?;
    println!();
    println!("Studios API: http://{addr}   (JWT secret: STUDIOS_LOCAL_JWT_SECRET={secret})");
    println!(
        "Demo workspace '{}' ({ws}): tokens, valid 12 h:",
        demo::WORKSPACE
    );
    for (sub, name, role) in demo::USERS {
        let var = sub.to_uppercase();
        println!(
            "  export {var}={}   # {name}, {role}",
            mint_token(&secret, sub, Some(name))
        );
    }
    println!("Try:  curl -s -H \"Authorization: Bearer $ALICE\" http://{addr}/workspaces");
    println!(
        "AWS Batch: {}; replay events with POST http://{addr}/_local/batch-events",
        if simulation.enabled {
            format!(
                "simulated, {} ms per state; sessions run {}",
                simulation.step.as_millis(),
                agent
                    .as_ref()
                    .map_or("nothing (no studio-agent binary)".to_string(), |a| a
                        .display()
                        .to_string())
            )
        } else {
            "not simulated (STUDIOS_LOCAL_SIMULATE_JOBS=false)".into()
        }
    );
    let ready_ms = std::env::var("STUDIOS_LOCAL_STARTED_MS")
        .ok()
        .and_then(|v| v.parse::<u128>().ok())
        .and_then(|started| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_millis();
            now.checked_sub(started)
        });
    match ready_ms {
        Some(ms) => println!("ready in {ms} ms"),
        None => println!("ready"),
    }
    let local = Arc::new(Local {
        app,
        secret,
        batch: Some(aws_sdk_batch::Client::new(&sdk)),
        relay: relay_public,
    });
    tokio::select! {
        r = local.run(listener) => r?,
        _ = tokio::signal::ctrl_c() => println!("stopping"),
    }
    Ok(())
}
