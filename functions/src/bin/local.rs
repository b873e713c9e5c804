//! `studios-local serve` runs the API on 127.0.0.1 against the emulator the environment
//! points at (AWS_ENDPOINT_URL), with AWS Batch simulated, status events published from
//! the table stream and the reconciler every minute; `studios-local token SUB [NAME]`
//! prints a signed development token. infra/run-local.sh wires both.

use std::sync::Arc;
use studios_functions::local::{mint_token, Local};
use studios_functions::simulate::local_stack;
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
            println!(
                "{}",
                mint_token(&secret()?, sub, args.get(2).map(String::as_str))
            );
            Ok(())
        }
        Some("serve") => serve(args.get(1).map(String::as_str).unwrap_or("0")).await,
        _ => Err("usage: studios-local serve [PORT] | studios-local token SUB [NAME]".into()),
    }
}

async fn serve(port: &str) -> Result<(), Box<dyn std::error::Error>> {
    studios_shared::telemetry::init();
    let config = Config::from_env()?;
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
    let app = local_stack(&sdk, App::from_sdk(&sdk, config));
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e} (set STUDIOS_PORT)"))?;
    let addr = listener.local_addr()?;
    println!("Studios API listening on http://{addr}");
    let local = Arc::new(Local {
        app,
        secret: secret()?,
    });
    tokio::select! {
        r = local.run(listener) => r?,
        _ = tokio::signal::ctrl_c() => println!("stopping"),
    }
    Ok(())
}
