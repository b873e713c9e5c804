//! `studios-local serve PORT` runs the API on 127.0.0.1 against the emulator the
//! environment points at (AWS_ENDPOINT_URL): demo data created, AWS Batch simulated,
//! the table stream followed (status events printed), the reconciler every minute.
//! `studios-local token SUB [NAME]` prints a signed development token.
//! infra/run-local.sh wires both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use studios_local::demo;
use studios_local::local::{mint_token, Local};
use studios_local::simulate::{local_stack, Simulation};
use studios_relay::cutoff::IdleCutoff;
use studios_shared::config::ConnectKey;
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
    // Connect as on AWS: the relay as its own process, behind an idle cutoff like the
    // load balancer's; connect URLs point at it.
    let connect = listen("STUDIOS_CONNECT_PORT").await?;
    let mut relay = start_relay(&config.relay_key, connect).await?;
    config
        .relay_tunnel_addr
        .get_or_insert(format!("tcp://{}", relay.tunnels));
    config
        .connect_url_pattern
        .get_or_insert(connect_pattern(relay.connect));
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
        "Connect: http://<studio>.localhost:{}/ (studio-relay, process {}, behind an idle cutoff of {} s like the load balancer's)",
        relay.connect.port(),
        relay.process.id().unwrap_or_default(),
        relay.idle.as_secs()
    );
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
        relay: Some(relay.connect),
    });
    let ended: Result<(), Box<dyn std::error::Error>> = tokio::select! {
        r = local.run(listener) => r.map_err(Into::into),
        _ = tokio::signal::ctrl_c() => {
            println!("stopping");
            Ok(())
        }
        status = relay.process.wait() => Err(format!("the connect relay ended ({status:?})").into()),
    };
    // Session containers do not end with this process by themselves.
    studios_local::containers::remove_all();
    ended
}

/// The local run's connect URLs: each studio its own origin, `http://<studio>.localhost:<port>/`
/// (browsers resolve `*.localhost` to the loopback; docs/security.md, "Browser origins").
fn connect_pattern(relay: SocketAddr) -> String {
    format!(
        "http://{{studioId}}.{}:{}/",
        LOCAL_CONNECT_DOMAIN,
        relay.port()
    )
}

/// The local run's connect domain.
const LOCAL_CONNECT_DOMAIN: &str = "localhost";

async fn listen(port_setting: &str) -> Result<tokio::net::TcpListener, String> {
    let port = std::env::var(port_setting).unwrap_or_default();
    let port = if port.trim().is_empty() {
        "0"
    } else {
        port.trim()
    };
    tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e} (set {port_setting})"))
}

/// The local run's connect path (docs/agent.md, "The connect relay").
struct RelayRun {
    /// `studio-relay`, stopped with this process.
    process: tokio::process::Child,
    /// Where browsers connect, and where sessions open their tunnels: each an idle
    /// cutoff in front of one of the relay's ports.
    connect: SocketAddr,
    tunnels: SocketAddr,
    idle: Duration,
}

/// Starts `studio-relay` (`STUDIOS_RELAY_BIN`, default beside this binary) on two free
/// ports with the relay-token key's public point, and in front of each port an idle
/// cutoff of `STUDIOS_LOCAL_IDLE_CUTOFF_SECONDS` (350, the NLB's on TLS listeners):
/// browsers' on `connect`, the tunnels' on a free port.
async fn start_relay(
    key: &ConnectKey,
    connect: tokio::net::TcpListener,
) -> Result<RelayRun, Box<dyn std::error::Error>> {
    use base64::Engine;
    use studios_shared::connect::Signer;
    use tokio::io::AsyncBufReadExt;
    let ConnectKey::Local(pkcs8) = key else {
        return Err("the local run's relay needs a local relay-token key (RELAY_TOKEN_KEY)".into());
    };
    let point = studios_shared::connect::LocalSigner::from_pkcs8(pkcs8)?
        .public_key()
        .await?;
    let idle = match std::env::var("STUDIOS_LOCAL_IDLE_CUTOFF_SECONDS") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u64>() {
            Ok(s) if s > 0 => Duration::from_secs(s),
            _ => {
                return Err(format!(
                "STUDIOS_LOCAL_IDLE_CUTOFF_SECONDS '{v}' must be a whole number of seconds above 0"
            )
                .into())
            }
        },
        _ => Duration::from_secs(350),
    };
    let bin = match std::env::var_os("STUDIOS_RELAY_BIN") {
        Some(b) if !b.is_empty() => PathBuf::from(b),
        _ => std::env::current_exe()?.with_file_name("studio-relay"),
    };
    let mut command = tokio::process::Command::new(&bin);
    command
        .env(
            "RELAY_PUBLIC_KEY",
            base64::engine::general_purpose::STANDARD.encode(point),
        )
        .env("RELAY_PUBLIC_ADDR", "127.0.0.1:0")
        .env("RELAY_TUNNEL_ADDR", "127.0.0.1:0")
        .env("RELAY_CONNECT_DOMAIN", LOCAL_CONNECT_DOMAIN)
        .env_remove("RELAY_TOKEN_KEY_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(2) only, between fork and exec: the relay ends with this process
    // even if it is killed without a chance to stop it.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut process = command.spawn().map_err(|e| {
        format!(
            "cannot start the connect relay {}: {e} (infra/run-local.sh builds it)",
            bin.display()
        )
    })?;
    let mut lines =
        tokio::io::BufReader::new(process.stdout.take().ok_or("no relay stdout")?).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| "the connect relay did not start within 30 s")??
        .unwrap_or_default();
    let addr = |name: &str| -> Option<SocketAddr> {
        line.split(name)
            .nth(1)?
            .split([',', ' '])
            .find(|w| !w.is_empty())?
            .parse()
            .ok()
    };
    let (Some(public), Some(tunnel_port)) = (addr("public "), addr("tunnels ")) else {
        return Err(format!("the connect relay said '{line}', not where it listens").into());
    };
    // Nothing else is written there; read on so that it never blocks.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let tunnels = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let run = RelayRun {
        process,
        connect: connect.local_addr()?,
        tunnels: tunnels.local_addr()?,
        idle,
    };
    tokio::spawn(IdleCutoff::new(public, idle).serve(connect));
    tokio::spawn(IdleCutoff::new(tunnel_port, idle).serve(tunnels));
    Ok(run)
}
