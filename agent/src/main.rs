//! `studio-agent`: the entrypoint of a session container (docs/agent.md).
//!
//! 1. restore `CHECKPOINT_RESTORE_URI` into the workspace (checked chunk by chunk);
//! 2. start the template's IDE on loopback and serve the agent's port in front of it;
//! 3. report `ready` once the IDE answers, then activity, over the session's channel;
//! 4. snapshot every `STUDIO_SNAPSHOT_SECONDS`; on a stop request (channel) or SIGTERM,
//!    stop the IDE, save the final delta and the manifest, and exit 0.
//!
//! Exit codes: 0 saved and stopped; 1 the IDE ended (saved first); 2 bad settings;
//! 3 the checkpoint could not be restored; 4 the final save failed; 5 the conda
//! environment could not be created; 6 an S3 mount failed.

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, StatusCode};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use studios_agent::channel::{Channel, Report};
use studios_agent::checkpoint::{self, rfc3339, Index, Layout};
use studios_agent::config::Config;
use studios_agent::objects::{Objects, S3Objects};
use studios_agent::proxy::{self, full, Target};
use studios_agent::{conda, ide, mounts};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Mutex;

struct Shared {
    ready: AtomicBool,
    last_activity: AtomicI64,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match Config::from_env() {
        Ok(config) => run(config).await,
        Err(e) => {
            tracing::error!("{e}");
            2
        }
    };
    std::process::exit(code);
}

struct Session {
    /// Whether the IDE was reported ready (the state the report after a save gives).
    ready: AtomicBool,
    config: Config,
    objects: Arc<dyn Objects>,
    channel: Option<Channel>,
    layout: Layout,
}

impl Session {
    async fn report(&self, report: Report) -> Option<studios_agent::channel::Reply> {
        let channel = self.channel.as_ref()?;
        match channel.report(&report).await {
            Ok(reply) => Some(reply),
            Err(e) => {
                tracing::warn!(error = %e, "report not delivered");
                None
            }
        }
    }

    async fn fail(&self, code: i32, reason: String) -> i32 {
        self.fail_saved(code, reason, None).await
    }

    /// The session's end with its reason, and the manifest it saved (if it saved).
    async fn fail_saved(&self, code: i32, reason: String, manifest: Option<String>) -> i32 {
        tracing::error!(reason, "session ends");
        self.report(Report::failed(reason).with_manifest(manifest))
            .await;
        code
    }
}

async fn run(config: Config) -> i32 {
    let layout = match Layout::from_save_uri(&config.save_uri) {
        Ok(l) => l,
        Err(e) => return fail_early(&config, 2, e).await,
    };
    let mut relay_tokens = None;
    let channel = match (&config.api_url, &config.agent_token) {
        (Some(url), Some(token)) => match Channel::new(url, token) {
            Ok(c) if config.relay.is_some() => {
                let (c, tokens) = c.with_relay_tokens();
                relay_tokens = Some(tokens);
                Some(c)
            }
            Ok(c) => Some(c),
            Err(e) => return fail_early(&config, 2, e).await,
        },
        _ if config.relay.is_some() => {
            let why = "STUDIO_RELAY_ADDR is set but there is no channel (STUDIO_API_URL, STUDIO_AGENT_TOKEN) to get relay tokens from";
            return fail_early(&config, 2, why.to_string()).await;
        }
        _ => {
            tracing::warn!("STUDIO_API_URL or STUDIO_AGENT_TOKEN not set: no channel to the control plane (stops arrive as SIGTERM only)");
            None
        }
    };
    let sdk = aws_config::load_from_env().await;
    let session = Session {
        ready: AtomicBool::new(false),
        objects: Arc::new(S3Objects::new(&sdk)),
        channel,
        layout,
        config,
    };
    let config = &session.config;
    let mut sigterm = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => return session.fail(2, format!("cannot watch SIGTERM: {e}")).await,
    };
    if let Err(e) = std::fs::create_dir_all(&config.workspace) {
        return session
            .fail(
                2,
                format!(
                    "cannot create the workspace {}: {e}",
                    config.workspace.display()
                ),
            )
            .await;
    }

    // 1. Restore (a SIGTERM now ends the session without a checkpoint: nothing
    // complete to save).
    let index = match &config.restore_uri {
        None => Index::default(),
        Some(uri) => {
            session
                .report(Report::starting("restoring the checkpoint"))
                .await;
            let source = checkpoint::Source {
                uri,
                manifest_sha256: config.restore_sha256.as_deref(),
            };
            let restore = checkpoint::restore(session.objects.clone(), &source, &config.workspace);
            tokio::select! {
                r = restore => match r {
                    Ok((index, stats)) => {
                        tracing::info!(files = stats.files, bytes = stats.bytes, ms = stats.elapsed.as_millis() as u64, "checkpoint restored");
                        index
                    }
                    Err(e) => return session.fail(3, e).await,
                },
                _ = sigterm.recv() => {
                    tracing::warn!("SIGTERM while restoring: ending without a checkpoint");
                    return 0;
                }
            }
        }
    };
    let index = Arc::new(Mutex::new(index));

    // The conda environment (restored with the checkpoint when the specs are the same),
    // then the S3 mounts; a failure of either ends the session with its message.
    let env_plan = conda::plan(
        &config.conda_packages,
        &config.conda_channels,
        &config.workspace,
    );
    if let Some(plan) = &env_plan {
        let detail = format!("installing {} conda packages", plan.specs.len());
        session.report(Report::starting(detail)).await;
        match conda::ensure(&config.conda_command, plan).await {
            Ok(conda::Outcome::Reused) => tracing::info!(
                key = plan.key,
                "conda environment restored with the checkpoint"
            ),
            Ok(conda::Outcome::Created(took)) => tracing::info!(
                key = plan.key,
                ms = took.as_millis() as u64,
                "conda environment created"
            ),
            // Nothing was followed or removed; the checkpoint is not one to restore, nor
            // to save again as the newest.
            Err(conda::Failure::Unsafe(reason)) => return session.fail(3, reason).await,
            Err(conda::Failure::Failed(reason)) => {
                return save_and_end(&session, &index, 5, Some(reason)).await
            }
        }
    }
    // Who the IDE runs as, and the session's runtime directory (its sockets, the
    // mounts' logs): made before the mounts, which belong to that user.
    let ide_user = match ide::resolve_user(&config.template, config.ide_user.as_deref()) {
        Ok(u) => u,
        Err(e) => return session.fail(2, e).await,
    };
    let runtime = match ide::runtime(
        &config.runtime_root,
        &checkpoint::hex(&rand_bytes()[..8]),
        ide_user.as_ref(),
    ) {
        Ok(r) => r,
        Err(e) => return session.fail(2, e).await,
    };
    if !config.mounts.is_empty() {
        let options = mounts::Options {
            log_directory: Some(runtime.logs.join("mount-s3")),
            owner: ide_user.as_ref().map(|u| (u.uid, u.gid)),
        };
        let planned = match mounts::plan(&config.mounts, &config.workspace, &options) {
            Ok(p) => p,
            Err(reason) => return session.fail(2, reason).await,
        };
        session
            .report(Report::starting(format!(
                "mounting {} S3 paths",
                planned.len()
            )))
            .await;
        if let Err(reason) =
            mounts::mount_all(&config.mount_command, &config.workspace, &planned).await
        {
            return save_and_end(&session, &index, 6, Some(reason)).await;
        }
    }
    if let Some(user) = &ide_user {
        match ide::chown_workspace(&config.workspace, user) {
            Ok(n) => tracing::info!(
                user = user.name,
                files = n,
                "workspace given to the IDE's user"
            ),
            Err(reason) => return save_and_end(&session, &index, 2, Some(reason)).await,
        }
    }

    // 2. The IDE, and the agent's port in front of it.
    let ide_port = match free_port() {
        Ok(p) => p,
        Err(e) => return session.fail(2, e).await,
    };
    let ide_token = checkpoint::hex(&rand_bytes());
    let agent_env: Vec<(String, String)> = std::env::vars().collect();
    let activation = env_plan
        .iter()
        .flat_map(|p| conda::activation(&p.prefix))
        .collect::<Vec<_>>();
    let plan = match ide::plan(&ide::Inputs {
        template: &config.template,
        command: config.ide_command.as_deref(),
        port: ide_port,
        base_path: &config.base_path,
        workspace: &config.workspace,
        token: &ide_token,
        socket_dir: &runtime.sockets,
        user: ide_user.as_ref(),
        env: &agent_env,
        activation: &activation,
        https: config
            .connect_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
    }) {
        Ok(p) => p,
        Err(e) => return session.fail(2, e).await,
    };
    if let Err(e) = ide::write_files(&plan) {
        return session.fail(2, e).await;
    }
    let mut command = tokio::process::Command::new(&plan.program);
    command
        .args(&plan.args)
        .current_dir(&config.workspace)
        .envs(plan.env.iter().cloned())
        // The agent's own secrets stay with the agent (the IDE's terminals see the rest).
        .env_remove(studios_protocol::env::STUDIO_AGENT_TOKEN)
        .kill_on_drop(true);
    if let Some(user) = &plan.run_as {
        command.uid(user.uid).gid(user.gid);
    }
    // A session of its own (and so a process group): the stop reaches everything the IDE
    // started, also what it put in other process groups (Xpra's Xvfb).
    // SAFETY: setsid(2) between fork and exec, async-signal-safe; no memory is touched.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    tracing::info!(program = plan.program, upstream = %plan.upstream, user = plan.run_as.as_ref().map(|u| u.name.as_str()), "starting the IDE");
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return session
                .fail(2, format!("cannot start the IDE ({}): {e}", plan.program))
                .await
        }
    };
    let ide_session = child.id().map(|pid| pid as i32);
    let headers: Vec<(HeaderName, HeaderValue)> = plan
        .headers
        .iter()
        .filter_map(|(n, v)| {
            Some((
                HeaderName::from_bytes(n.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
    let target = Target {
        upstream: plan.upstream.clone(),
        strip_prefix: plan.strip_base_path.then(|| config.base_path.clone()),
        headers: headers.clone(),
    };
    let shared = Arc::new(Shared {
        ready: AtomicBool::new(false),
        last_activity: AtomicI64::new(0),
    });
    let listener = match tokio::net::TcpListener::bind(&config.listen).await {
        Ok(l) => l,
        Err(e) => {
            return session
                .fail(2, format!("cannot listen on {}: {e}", config.listen))
                .await
        }
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, base = config.base_path, "agent listening");
        println!(
            "studio-agent listening on http://{addr}{}",
            config.base_path
        );
        // Browsers reach the session through the relay: an outbound tunnel to this port.
        if let (Some(relay), Some(tokens)) = (&config.relay, relay_tokens.take()) {
            match studios_agent::tunnel::Relay::with_tokens(relay, tokens) {
                Ok(tunnel) => {
                    tracing::info!(relay, "tunnel to the connect relay");
                    let local = std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()));
                    tokio::spawn(tunnel.run(local));
                }
                Err(e) => return session.fail(2, e).await,
            }
        }
    }
    let gate = config.connect_public_key.clone().map(|point| {
        Arc::new(studios_agent::auth::Gate::new(
            point,
            &config.studio_id,
            config.attempt_id.as_deref(),
            &config.base_path,
            config.connect_url.as_deref(),
        ))
    });
    if gate.is_none() {
        tracing::warn!("STUDIO_CONNECT_PUBLIC_KEY not set: the agent's port checks nobody");
    }
    {
        let (shared, target, gate) = (shared.clone(), target.clone(), gate.clone());
        let health = format!("{}_studio/health", config.base_path);
        tokio::spawn(proxy::serve(listener, move |req: Request<Incoming>| {
            let (shared, target, health, gate) =
                (shared.clone(), target.clone(), health.clone(), gate.clone());
            async move {
                let mut req = req;
                let path = req.uri().path();
                if path == health || path == "/_studio/health" {
                    let ready = shared.ready.load(Ordering::Relaxed);
                    let body = serde_json::json!({"ready": ready}).to_string();
                    let status = if ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    return full(status, "application/json", body);
                }
                if let Some(gate) = &gate {
                    use studios_agent::auth::Decision;
                    let cookies = req
                        .headers()
                        .get(hyper::header::COOKIE)
                        .and_then(|v| v.to_str().ok());
                    match gate.decide(req.uri().path(), req.uri().query(), cookies, unix_now()) {
                        Decision::Forward { .. } => {
                            let origin = req
                                .headers()
                                .get(hyper::header::ORIGIN)
                                .and_then(|v| v.to_str().ok());
                            let upgrade = req.headers().contains_key(hyper::header::UPGRADE);
                            if !gate.origin_allowed(req.method().as_str(), upgrade, origin) {
                                let body = serde_json::json!({"message": "this request comes from another origin than the studio's own"}).to_string();
                                return full(StatusCode::FORBIDDEN, "application/json", body);
                            }
                            // The agent's own cookie stays with the agent.
                            let rest = req
                                .headers()
                                .get(hyper::header::COOKIE)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|c| gate.strip_cookie(c));
                            match rest.and_then(|c| hyper::header::HeaderValue::from_str(&c).ok()) {
                                Some(c) => {
                                    req.headers_mut().insert(hyper::header::COOKIE, c);
                                }
                                None => {
                                    req.headers_mut().remove(hyper::header::COOKIE);
                                }
                            }
                        }
                        Decision::Enter {
                            set_cookie,
                            location,
                        } => {
                            let mut r = full(StatusCode::FOUND, "text/plain", "");
                            if let (Ok(c), Ok(l)) = (
                                hyper::header::HeaderValue::from_str(&set_cookie),
                                hyper::header::HeaderValue::from_str(&location),
                            ) {
                                r.headers_mut().insert(hyper::header::SET_COOKIE, c);
                                r.headers_mut().insert(hyper::header::LOCATION, l);
                            }
                            return r;
                        }
                        Decision::Refuse { status, message } => {
                            let status =
                                StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
                            let body = serde_json::json!({"message": message}).to_string();
                            return full(status, "application/json", body);
                        }
                    }
                }
                shared.last_activity.store(unix_now(), Ordering::Relaxed);
                proxy::forward(req, &target).await
            }
        }));
    }

    // 3. Ready once the IDE answers.
    let deadline = tokio::time::Instant::now() + config.ide_start_timeout;
    loop {
        tokio::select! {
            status = child.wait() => {
                let reason = format!("the IDE exited before it was ready ({})", describe(status));
                end_ide_session(ide_session);
                return save_and_end(&session, &index, 1, Some(reason)).await;
            }
            _ = sigterm.recv() => return save_and_end(&session, &index, 0, None).await,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                if proxy::probe(&target.upstream, &config.base_path, &headers).await {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    stop_ide(&mut child).await;
                    let reason = format!("the IDE did not answer within {} s", config.ide_start_timeout.as_secs());
                    return save_and_end(&session, &index, 1, Some(reason)).await;
                }
            }
        }
    }
    shared.ready.store(true, Ordering::Relaxed);
    session.ready.store(true, Ordering::Relaxed);
    tracing::info!("IDE ready");
    let mut every = Duration::from_secs(15);
    if let Some(reply) = session.report(Report::ready(None, vec![])).await {
        every = Some(reply.report_seconds)
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(every);
        if reply.stop_requested {
            stop_ide(&mut child).await;
            return save_and_end(&session, &index, 0, None).await;
        }
    }

    // 4. Supervise: reports, snapshots, the end.
    let mut next_report = tokio::time::Instant::now() + every;
    let mut next_snapshot = tokio::time::Instant::now() + config.snapshot_every;
    let mut snapshot: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            status = child.wait() => {
                let reason = format!("the IDE exited ({})", describe(status));
                end_ide_session(ide_session);
                return save_and_end(&session, &index, 1, Some(reason)).await;
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: saving");
                stop_ide(&mut child).await;
                return save_and_end(&session, &index, 0, None).await;
            }
            _ = tokio::time::sleep_until(next_report), if session.channel.is_some() => {
                let last = shared.last_activity.load(Ordering::Relaxed);
                let report = Report::ready(
                    (last > 0).then(|| rfc3339(last)),
                    gate.as_ref().map(|g| g.users(unix_now())).unwrap_or_default(),
                );
                if let Some(reply) = session.report(report).await {
                    if let (Some(gate), false) = (&gate, reply.revoked_users.is_empty()) {
                        tracing::info!(users = ?reply.revoked_users, "access revoked");
                        gate.revoke(&reply.revoked_users);
                    }
                    if reply.stop_requested {
                        tracing::info!("stop requested: saving");
                        stop_ide(&mut child).await;
                        return save_and_end(&session, &index, 0, None).await;
                    }
                    every = Some(reply.report_seconds)
                        .filter(|s| *s > 0)
                        .map(Duration::from_secs)
                        .unwrap_or(every);
                }
                next_report = tokio::time::Instant::now() + every;
            }
            _ = tokio::time::sleep_until(next_snapshot) => {
                next_snapshot = tokio::time::Instant::now() + config.snapshot_every;
                if snapshot.as_ref().is_none_or(|h| h.is_finished()) {
                    let (objects, workspace, layout, exclude, index) = (
                        session.objects.clone(),
                        config.workspace.clone(),
                        session.layout.clone(),
                        config.excluded(),
                        index.clone(),
                    );
                    snapshot = Some(tokio::spawn(async move {
                        let mut index = index.lock().await;
                        match checkpoint::snapshot(objects, &workspace, &layout, &mut index, &exclude).await {
                            Ok((_, s)) => tracing::info!(uploaded = s.transferred_bytes, read = s.read_bytes, ms = s.elapsed.as_millis() as u64, "snapshot"),
                            Err(e) => tracing::warn!(error = %e, "snapshot failed (the final save uploads what it missed)"),
                        }
                    }));
                }
            }
        }
    }
}

/// The final save (after a snapshot in flight, which holds the index), then the end.
async fn save_and_end(
    session: &Session,
    index: &Arc<Mutex<Index>>,
    code: i32,
    failure: Option<String>,
) -> i32 {
    let config = &session.config;
    let mut index = index.lock().await;
    let saved = checkpoint::save(
        session.objects.clone(),
        &config.workspace,
        &session.layout,
        &mut index,
        &config.excluded(),
    )
    .await;
    match (saved, failure) {
        (Ok(s), failure) => {
            tracing::info!(
                files = s.files,
                uploaded = s.transferred_bytes,
                ms = s.elapsed.as_millis() as u64,
                "checkpoint saved"
            );
            // The manifest's hash goes with the checkpoint's record (docs/security.md).
            match failure {
                Some(reason) => session.fail_saved(code, reason, s.manifest_sha256).await,
                None => {
                    let state = if session.ready.load(Ordering::Relaxed) {
                        Report::ready(None, vec![])
                    } else {
                        Report::starting("saved the checkpoint")
                    };
                    session.report(state.with_manifest(s.manifest_sha256)).await;
                    code
                }
            }
        }
        (Err(e), failure) => {
            let reason = match failure {
                Some(f) => format!("{f}; the checkpoint was not saved: {e}"),
                None => format!("the checkpoint was not saved: {e}"),
            };
            session.fail(4, reason).await
        }
    }
}

async fn fail_early(config: &Config, code: i32, reason: String) -> i32 {
    tracing::error!(reason, "session ends");
    if let (Some(url), Some(token)) = (&config.api_url, &config.agent_token) {
        if let Ok(channel) = Channel::new(url, token) {
            let _ = channel.report(&Report::failed(reason)).await;
        }
    }
    code
}

/// SIGTERM to every process of the IDE's session, SIGKILL to what is left of it once
/// the IDE has ended or after 5 s.
async fn stop_ide(child: &mut tokio::process::Child) {
    let sid = child.id().map(|pid| pid as i32);
    if let Some(sid) = sid {
        ide::signal_session(sid, libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    } else {
        let _ = child.kill().await;
    }
    end_ide_session(sid);
}

/// What the IDE started and left behind when it ended (SIGKILL).
fn end_ide_session(sid: Option<i32>) {
    if let Some(sid) = sid {
        let left = ide::signal_session(sid, libc::SIGKILL);
        if left > 0 {
            tracing::info!(processes = left, "ended what the IDE left running");
        }
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port for the IDE: {e}"))
}

/// Randomness for the IDE's token (a failure here must not leave a guessable token).
fn rand_bytes() -> [u8; 32] {
    let mut buf = [0u8; 32];
    aws_lc_rs::rand::fill(&mut buf).expect("the system's random source");
    buf
}
