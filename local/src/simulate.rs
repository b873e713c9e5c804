//! The rest of the stack around the emulator, for the local run: AWS Batch moving jobs
//! through their states, the table stream feeding the status-event publisher, and the
//! scheduled reconciler.

use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::json;
use std::sync::Arc;
use studios_shared::App;

use std::collections::HashMap;
use std::path::PathBuf;
use studios_shared::compute::{job_state_change_event, Compute, JobSpec, SubmitError};
use studios_shared::consumers;
use studios_shared::events::{change_from_record, Change};
use tokio::sync::mpsc;

/// Reads a table's change stream from the start, as the stream's Lambda trigger would.
pub struct StreamReader {
    streams: aws_sdk_dynamodbstreams::Client,
    dynamo: aws_sdk_dynamodb::Client,
    table: String,
    iterator: Option<String>,
}

impl StreamReader {
    pub fn new(sdk: &aws_config::SdkConfig, table: &str) -> Self {
        StreamReader {
            streams: aws_sdk_dynamodbstreams::Client::new(sdk),
            dynamo: aws_sdk_dynamodb::Client::new(sdk),
            table: table.to_string(),
            iterator: None,
        }
    }

    /// The changes since the last call.
    pub async fn next_changes(
        &mut self,
    ) -> Result<Vec<Change>, Box<dyn std::error::Error + Send + Sync>> {
        if self.iterator.is_none() {
            let table = self
                .dynamo
                .describe_table()
                .table_name(&self.table)
                .send()
                .await?;
            let arn = table
                .table()
                .and_then(|t| t.latest_stream_arn())
                .ok_or("the table has no stream")?
                .to_string();
            let stream = self
                .streams
                .describe_stream()
                .stream_arn(&arn)
                .send()
                .await?;
            let shard = stream
                .stream_description()
                .and_then(|d| d.shards().first())
                .and_then(|s| s.shard_id())
                .ok_or("the stream has no shard")?
                .to_string();
            self.iterator = self
                .streams
                .get_shard_iterator()
                .stream_arn(&arn)
                .shard_id(shard)
                .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
                .send()
                .await?
                .shard_iterator()
                .map(String::from);
        }
        let mut changes = Vec::new();
        while let Some(iterator) = self.iterator.clone() {
            let out = self
                .streams
                .get_records()
                .shard_iterator(iterator)
                .send()
                .await?;
            self.iterator = out.next_shard_iterator().map(String::from);
            if out.records().is_empty() {
                break;
            }
            for record in out.records() {
                let Some(r) = record.dynamodb() else { continue };
                let item = |m: Option<
                    &HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>,
                >| { m.map(|m| serde_dynamo::Item::from(m.clone())) };
                let Some(keys) = item(r.keys()) else { continue };
                if let Some(change) =
                    change_from_record(keys, item(r.old_image()), item(r.new_image()))?
                {
                    changes.push(change);
                }
            }
        }
        Ok(changes)
    }
}

enum Simulate {
    /// The job and the resources it was submitted with (the emulator's DescribeJobs
    /// shows the definition's, not the job's overrides).
    Submitted(String, crate::containers::Resources),
    Terminated(String),
}

/// AWS Batch as the local run offers it: jobs are submitted to the emulator, then moved
/// through RUNNABLE → STARTING → RUNNING a second apart; a running job is the real studio
/// agent as a process (no container) with its own workspace directory, against the
/// emulated S3. Its exit ends the job (0: SUCCEEDED, else FAILED); TerminateJob sends it
/// SIGTERM (SIGKILL 30 s later), as Batch does. Each move is made in the emulator first,
/// so DescribeJobs (and so the reconciler) agrees with the events delivered.
pub struct LocalBatch {
    inner: Arc<dyn Compute>,
    tx: mpsc::UnboundedSender<Simulate>,
}

#[async_trait::async_trait]
impl Compute for LocalBatch {
    async fn queue_platform(
        &self,
        queue: &str,
    ) -> studios_shared::Result<studios_shared::compute::QueuePlatform> {
        self.inner.queue_platform(queue).await
    }
    async fn submit(&self, job: &JobSpec) -> Result<String, SubmitError> {
        let id = self.inner.submit(job).await?;
        let resources = crate::containers::Resources {
            vcpus: job.vcpus,
            memory_mib: job.memory_mib,
            gpus: job.gpus,
        };
        let _ = self.tx.send(Simulate::Submitted(id.clone(), resources));
        Ok(id)
    }
    async fn terminate(&self, job_id: &str, reason: &str) -> studios_shared::Result<()> {
        self.inner.terminate(job_id, reason).await?;
        let _ = self.tx.send(Simulate::Terminated(job_id.to_string()));
        Ok(())
    }
    async fn describe(
        &self,
        ids: &[String],
    ) -> studios_shared::Result<Vec<studios_shared::domain::lifecycle::JobReport>> {
        self.inner.describe(ids).await
    }
    async fn find_by_name(
        &self,
        queue: &str,
        name: &str,
    ) -> studios_shared::Result<Option<studios_shared::domain::lifecycle::JobReport>> {
        self.inner.find_by_name(queue, name).await
    }
}

/// How the local run treats AWS Batch jobs.
#[derive(Clone, Debug)]
pub struct Simulation {
    /// The studio agent binary a running job runs (`STUDIOS_AGENT_BIN`; infra/run-local.sh
    /// builds it). `None`: running jobs run nothing and end only when terminated
    /// (`STUDIOS_AGENT_BIN=none`: the soak benchmark measures the control plane alone).
    pub agent: Option<PathBuf>,
    /// False when `STUDIOS_AGENT_BIN=none`.
    pub run_agents: bool,
    /// Where sessions get their workspace directories and agent logs
    /// (`STUDIOS_LOCAL_SESSIONS_DIR`, default a directory under the system's temp dir).
    pub sessions_dir: PathBuf,
    /// Move submitted jobs through their states and deliver their events
    /// (`STUDIOS_LOCAL_SIMULATE_JOBS`, default true). Off: jobs stay SUBMITTED until
    /// events are delivered by hand (`POST /_local/batch-events`).
    pub enabled: bool,
    /// Between two states (`STUDIOS_LOCAL_JOB_DELAY_MS`, default 1000).
    pub step: std::time::Duration,
    /// How a running job runs (`STUDIOS_LOCAL_SESSIONS`): `process` (default: the agent
    /// as a process of this machine) or `container` (the studio's image under Docker,
    /// configured from its job definition as AWS Batch on EC2 runs it: containers.rs).
    pub containers: bool,
    /// Host paths the session containers see read-only at the same path
    /// (`STUDIOS_LOCAL_CONTAINER_VOLUMES`, `:`-separated): the local run's conda channel
    /// and stand-in tools, which AWS sessions get from their registries instead.
    pub container_volumes: Vec<PathBuf>,
}

/// What the local run gives a session container beyond its job's environment: where
/// the emulated AWS is and the local stand-ins for conda-forge and mount-s3 (on AWS the
/// job's role, the region's endpoints and the image's own tools).
const CONTAINER_PASSTHROUGH: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_EC2_METADATA_DISABLED",
    "STUDIO_CONDA_CHANNELS",
    "STUDIO_CONDA_COMMAND",
    "STUDIO_MOUNT_COMMAND",
    "STUDIO_RELAY_PING_SECONDS",
];

impl Simulation {
    pub fn from_env() -> Result<Simulation, String> {
        Simulation::from_lookup(|name| std::env::var(name).ok())
    }

    /// Same as `from_env` over any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Simulation, String> {
        let enabled = match get("STUDIOS_LOCAL_SIMULATE_JOBS").as_deref().map(str::trim) {
            None | Some("") | Some("true") | Some("1") => true,
            Some("false") | Some("0") => false,
            Some(other) => {
                return Err(format!(
                    "STUDIOS_LOCAL_SIMULATE_JOBS must be true or false, not '{other}'"
                ))
            }
        };
        let step = match get("STUDIOS_LOCAL_JOB_DELAY_MS") {
            None => 1000,
            Some(v) => v.trim().parse().map_err(|_| {
                format!(
                    "STUDIOS_LOCAL_JOB_DELAY_MS must be a whole number of milliseconds, not '{v}'"
                )
            })?,
        };
        let sessions_dir = get("STUDIOS_LOCAL_SESSIONS_DIR")
            .filter(|d| !d.trim().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!("studios-local-{}", std::process::id()))
            });
        let containers = match get("STUDIOS_LOCAL_SESSIONS").as_deref().map(str::trim) {
            None | Some("") | Some("process") => false,
            Some("container") => true,
            Some(other) => {
                return Err(format!(
                    "STUDIOS_LOCAL_SESSIONS must be process or container, not '{other}'"
                ))
            }
        };
        let container_volumes = get("STUDIOS_LOCAL_CONTAINER_VOLUMES")
            .unwrap_or_default()
            .split(':')
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(Simulation {
            containers,
            container_volumes,
            enabled,
            step: std::time::Duration::from_millis(step),
            agent: get("STUDIOS_AGENT_BIN")
                .filter(|b| !b.trim().is_empty() && b.trim() != "none")
                .map(PathBuf::from),
            run_agents: get("STUDIOS_AGENT_BIN").as_deref().map(str::trim) != Some("none"),
            sessions_dir,
        })
    }
}

/// The agents the local run started, by job (to stop them). Browsers reach them
/// through the connect relay (their tunnels), not by address.
#[derive(Default)]
struct Agents {
    jobs: std::sync::Mutex<HashMap<String, u32>>,
}

/// What a stand-in IDE runs for a template whose IDE is not installed here (RStudio
/// Server is not installable from the registries the local run uses; code-server and
/// Xpra are, by infra/run-local.sh): a static file server on the workspace.
const STAND_IN_IDE: &str = "python3 -m http.server {port} --bind 127.0.0.1 --directory {workspace}";

/// The program a template's IDE needs (agent/src/ide.rs), when the local run can have it.
fn ide_program(template: &str) -> Option<&'static str> {
    match template {
        "jupyter" => Some("jupyter"),
        "vscode" => Some("code-server"),
        "xpra" => Some("xpra"),
        _ => None,
    }
}

/// Whether `program` is on `path` (a `PATH` value) as an executable file.
fn on_path(program: &str, path: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Whether a session of `template` runs the stand-in IDE: its own is not installed.
fn stands_in(template: &str, path: &str) -> bool {
    !ide_program(template).is_some_and(|p| on_path(p, path))
}

/// Where a session runs on this machine: its directory (log, environment file), the
/// agent's port, the agent binary and its log.
struct Place<'a> {
    dir: &'a std::path::Path,
    port: u16,
    agent: &'a std::path::Path,
    log: Option<std::fs::File>,
}

struct Simulator {
    app: App,
    step: std::time::Duration,
    batch: aws_sdk_batch::Client,
    agent: Option<PathBuf>,
    sessions_dir: PathBuf,
    containers: bool,
    container_volumes: Vec<PathBuf>,
    agents: Arc<Agents>,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    endpoint: String,
}

impl Simulator {
    async fn job(&self, id: &str) -> Option<aws_sdk_batch::types::JobDetail> {
        let out = self.batch.describe_jobs().jobs(id).send().await.ok()?;
        out.jobs().first().cloned()
    }

    /// Moves the emulated job, then tells the consumer, as EventBridge would.
    async fn advance(&self, id: &str, status: &str) {
        self.set_status(id, json!({"jobId": id, "status": status}))
            .await;
        self.deliver(id, status, None, None).await;
    }

    async fn set_status(&self, id: &str, body: serde_json::Value) {
        let body = body.to_string();
        let request = hyper::Request::post(format!("{}/_studios/batch/job-status", self.endpoint))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)));
        if let Ok(request) = request {
            if let Err(e) = self.http.request(request).await {
                tracing::warn!(error = %e, job = id, "could not move the emulated job");
            }
        }
    }

    async fn deliver(&self, id: &str, status: &str, reason: Option<&str>, exit: Option<i32>) {
        let Some(job) = self.job(id).await else {
            return;
        };
        let started = job.started_at().is_some();
        let event = job_state_change_event(&job, status, started, reason, exit);
        if let Err(e) = consumers::on_batch_event(&self.app, &event).await {
            tracing::warn!(error = %e, job = id, "event not applied (the reconciler will)");
        }
    }

    async fn submitted(&self, id: String, resources: crate::containers::Resources) {
        // Batch itself sends no event for SUBMITTED; the simulation does, harmlessly, so
        // the whole sequence can be watched.
        self.deliver(&id, "SUBMITTED", None, None).await;
        for status in ["RUNNABLE", "STARTING", "RUNNING"] {
            tokio::time::sleep(self.step).await;
            match self
                .job(&id)
                .await
                .and_then(|j| j.status().map(|s| s.as_str().to_string()))
            {
                Some(s) if s == "FAILED" || s == "SUCCEEDED" => return,
                _ => self.advance(&id, status).await,
            }
        }
        self.run_agent(&id, resources).await;
    }

    /// Runs the session: the studio agent with the job's environment, until it exits.
    async fn run_agent(&self, id: &str, resources: crate::containers::Resources) {
        let Some(binary) = &self.agent else {
            return;
        };
        let Some(job) = self.job(id).await else {
            return;
        };
        let env: Vec<(String, String)> = job
            .container()
            .map(|c| c.environment())
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| Some((kv.name()?.to_string(), kv.value()?.to_string())))
            .collect();
        let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let dir = self.sessions_dir.join(id);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port());
        let (Ok(port), Ok(())) = (port, std::fs::create_dir_all(&dir)) else {
            tracing::warn!(job = id, "no port or directory for the session");
            return;
        };
        let log = std::fs::File::create(dir.join("agent.log"));
        if self.containers {
            let code = self
                .run_container(
                    id,
                    &job,
                    resources,
                    Place {
                        dir: &dir,
                        port,
                        agent: binary,
                        log: log.ok(),
                    },
                )
                .await;
            return self.job_ended(id, code).await;
        }
        let mut command = tokio::process::Command::new(binary);
        command
            .envs(env.iter().cloned())
            .env("STUDIO_WORKSPACE_DIR", dir.join("workspace"))
            .env("STUDIO_AGENT_ADDR", format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Ok(log) = log {
            command.stderr(log);
        }
        let template = var("STUDIO_TEMPLATE").unwrap_or_default();
        if stands_in(&template, &std::env::var("PATH").unwrap_or_default()) {
            command.env("STUDIO_IDE_COMMAND", STAND_IN_IDE);
        }
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, binary = %binary.display(), "the studio agent did not start");
                let reason = format!("the studio agent did not start: {e}");
                self.end_job(id, "FAILED", &reason, 127).await;
                return;
            }
        };
        if let (Some(pid), Ok(mut jobs)) = (child.id(), self.agents.jobs.lock()) {
            jobs.insert(id.to_string(), pid);
        }
        let status = child.wait().await;
        if let Ok(mut jobs) = self.agents.jobs.lock() {
            jobs.remove(id);
        }
        let code = status.ok().and_then(|s| s.code()).unwrap_or(137);
        self.job_ended(id, code).await;
    }

    /// The session's container: the job definition as registered (read back from the
    /// emulated Batch, as Batch would run it) and the job's overrides; its exit code, or
    /// 127 if it could not run (the job then fails with the reason).
    async fn run_container(
        &self,
        id: &str,
        job: &aws_sdk_batch::types::JobDetail,
        resources: crate::containers::Resources,
        place: Place<'_>,
    ) -> i32 {
        let Place {
            dir,
            port,
            agent,
            log,
        } = place;
        let definition = match job.job_definition() {
            Some(arn) => self
                .batch
                .describe_job_definitions()
                .job_definitions(arn)
                .send()
                .await
                .ok()
                .and_then(|out| out.job_definitions().first().cloned()),
            None => None,
        };
        // Batch places a job on an instance with the vCPUs it asks for; Docker refuses
        // more than this machine has, so the local run caps the CPUs at its own.
        let host = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let resources = crate::containers::Resources {
            vcpus: resources.vcpus.min(host),
            ..resources
        };
        let run = definition.as_ref().and_then(|d| {
            crate::containers::container_run(
                id,
                d.container_properties()?,
                job.container(),
                Some(resources),
            )
        });
        let Some(mut run) = run else {
            self.end_job(id, "FAILED", "the job definition has no container", 127)
                .await;
            return -1;
        };
        run.environment
            .push(("STUDIO_AGENT_ADDR".into(), format!("127.0.0.1:{port}")));
        for name in CONTAINER_PASSTHROUGH {
            if let Ok(value) = std::env::var(name) {
                run.environment.push((name.to_string(), value));
            }
        }
        for volume in &self.container_volumes {
            run.args.push("--volume".into());
            run.args.push(format!("{0}:{0}:ro", volume.display()));
        }
        crate::containers::register(id);
        let code = crate::containers::run(&run, dir, Some(agent), log).await;
        crate::containers::unregister(id);
        match code {
            Ok(code) => code,
            Err(reason) => {
                tracing::warn!(job = id, reason, "the session's container did not run");
                self.end_job(id, "FAILED", &reason, 127).await;
                -1
            }
        }
    }

    /// The job's container exited with `code` (-1: already ended with its reason).
    async fn job_ended(&self, id: &str, code: i32) {
        if code == -1 {
            return;
        }
        let terminated = self
            .job(id)
            .await
            .and_then(|j| j.status().map(|s| s.as_str().to_string()))
            .is_some_and(|s| s == "FAILED" || s == "SUCCEEDED");
        if terminated {
            // TerminateJob already failed it in Batch: the event comes once the
            // container is gone (its checkpoint saved).
            let reason = self
                .job(id)
                .await
                .and_then(|j| j.status_reason().map(String::from));
            self.deliver(id, "FAILED", reason.as_deref(), Some(code))
                .await;
        } else if code == 0 {
            self.end_job(id, "SUCCEEDED", "Essential container in task exited", 0)
                .await;
        } else {
            self.end_job(id, "FAILED", "Essential container in task exited", code)
                .await;
        }
    }

    async fn end_job(&self, id: &str, status: &str, reason: &str, code: i32) {
        self.set_status(
            id,
            json!({"jobId": id, "status": status, "reason": reason, "exitCode": code}),
        )
        .await;
        self.deliver(id, status, Some(reason), Some(code)).await;
    }

    /// TerminateJob: SIGTERM to the session's agent (it saves and exits; its exit
    /// delivers the event), SIGKILL 30 s later, as Batch does. A job that never ran
    /// ends at once.
    async fn terminated(&self, id: String) {
        if crate::containers::is_running(&id) {
            // `docker stop`: SIGTERM through the init process, SIGKILL 30 s later; the
            // container's exit ends the job (run_container).
            if let Err(e) = crate::containers::stop(&id).await {
                tracing::warn!(job = id, error = e, "docker stop failed");
            }
            return;
        }
        let pid = self
            .agents
            .jobs
            .lock()
            .ok()
            .and_then(|j| j.get(&id).copied());
        let Some(pid) = pid else {
            let reason = self
                .job(&id)
                .await
                .and_then(|j| j.status_reason().map(String::from));
            self.deliver(&id, "FAILED", reason.as_deref(), None).await;
            return;
        };
        signal(pid, libc::SIGTERM);
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        let still = self
            .agents
            .jobs
            .lock()
            .ok()
            .and_then(|j| j.get(&id).copied());
        if still == Some(pid) {
            tracing::warn!(
                job = id,
                "the agent did not exit 30 s after SIGTERM: SIGKILL"
            );
            signal(pid, libc::SIGKILL);
        }
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child this process started; no memory is involved.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Wires the local stack: `app` with its Batch simulated (unless `simulation` is off),
/// the table-stream consumer following the stream (status events printed to stdout as a
/// customer's rule would receive them), and the reconciler every minute. Returns the app
/// to serve.
pub fn local_stack(sdk: &aws_config::SdkConfig, app: App, simulation: Simulation) -> App {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = if simulation.enabled {
        App {
            compute: Arc::new(LocalBatch {
                inner: app.compute.clone(),
                tx,
            }),
            ..app
        }
    } else {
        app
    };
    let simulator = Arc::new(Simulator {
        app: app.clone(),
        step: simulation.step,
        batch: aws_sdk_batch::Client::new(sdk),
        agent: simulation.agent.clone(),
        sessions_dir: simulation.sessions_dir.clone(),
        containers: simulation.containers,
        container_volumes: simulation.container_volumes.clone(),
        agents: Arc::new(Agents::default()),
        http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
        endpoint: sdk
            .endpoint_url()
            .unwrap_or("http://127.0.0.1")
            .trim_end_matches('/')
            .to_string(),
    });
    tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            let sim = simulator.clone();
            tokio::spawn(async move {
                match cmd {
                    Simulate::Submitted(id, resources) => sim.submitted(id, resources).await,
                    Simulate::Terminated(id) => sim.terminated(id).await,
                }
            });
        }
    });
    let publisher = app.clone();
    let mut reader = StreamReader::new(sdk, &app.config.table_name);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            match reader.next_changes().await {
                Ok(changes) => {
                    for event in changes
                        .iter()
                        .filter_map(studios_shared::events::events_for)
                    {
                        println!(
                            "event  {}  {}",
                            event.detail_type,
                            serde_json::json!({
                                "source": studios_shared::events::SOURCE,
                                "detail-type": event.detail_type,
                                "detail": event.detail,
                            })
                        );
                    }
                    if let Err(e) = consumers::on_table_changes(&publisher, &changes).await {
                        tracing::warn!(error = %e, "table changes not processed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "stream not read"),
            }
        }
    });
    let reconciler = app.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            if let Err(e) = consumers::reconcile(&reconciler).await {
                tracing::warn!(error = %e, "reconcile failed");
            }
        }
    });
    app
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_string())
    }

    #[test]
    fn simulation_settings_default_and_validate() {
        let d = Simulation::from_lookup(lookup(&[])).unwrap();
        assert!(d.enabled);
        assert_eq!(d.step, std::time::Duration::from_millis(1000));
        let off = Simulation::from_lookup(lookup(&[
            ("STUDIOS_LOCAL_SIMULATE_JOBS", "false"),
            ("STUDIOS_LOCAL_JOB_DELAY_MS", "250"),
        ]))
        .unwrap();
        assert!(!off.enabled);
        assert_eq!(off.step, std::time::Duration::from_millis(250));
        let bad = Simulation::from_lookup(lookup(&[("STUDIOS_LOCAL_SIMULATE_JOBS", "maybe")]));
        assert!(bad.unwrap_err().contains("true or false"));
        let bad = Simulation::from_lookup(lookup(&[("STUDIOS_LOCAL_JOB_DELAY_MS", "1s")]));
        assert!(bad.unwrap_err().contains("milliseconds"));
    }

    #[test]
    fn a_template_stands_in_only_where_its_ide_is_not_installed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("stands-in-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("code-server");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Present but not executable: not installed.
        std::fs::write(dir.join("xpra"), "").unwrap();
        let path = format!("/nonexistent:{}", dir.display());
        assert!(!stands_in("vscode", &path));
        assert!(stands_in("xpra", &path));
        assert!(stands_in("jupyter", &path));
        // RStudio Server is never installed here.
        assert!(stands_in("rstudio", &path));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
