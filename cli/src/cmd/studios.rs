//! Studios: list, view, add, start, stop, clone, connect, delete, and `--wait`.

use super::checkpoints::checkpoint_id;
use super::workspaces::workspace;
use super::{all_pages, env, is_id, pick, Context};
use crate::api::{segment, Api, Failure, Result};
use crate::output;
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct WaitArgs {
    /// Wait until the studio is running (start) or stopped (stop); progress on stderr.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds (exit code 4).
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TemplateKind {
    Jupyter,
    Rstudio,
    Vscode,
    Xpra,
}

#[derive(Args)]
pub struct SessionArgs {
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// CPUs (default 2).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// GPUs (default 0).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// Memory in MiB (default 8192).
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u32>,
    /// Data to mount: a data link (id or name) or an s3:// URI; repeatable.
    #[arg(long = "mount", value_name = "DATA_LINK_OR_URI")]
    pub mounts: Vec<String>,
    /// Start it as well.
    #[arg(long)]
    pub start: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

impl SessionArgs {
    /// How to wait for a studio added or cloned with `--start` (not at all without it).
    fn started_wait(&self) -> Option<&WaitArgs> {
        self.start.then_some(&self.wait)
    }
}

#[derive(Args)]
pub struct AddArgs {
    #[arg(long)]
    pub name: String,
    /// Compute environment id or name (default: the workspace's only one).
    #[arg(long)]
    pub compute_env: Option<String>,
    /// A template of this deployment.
    #[arg(
        long,
        value_enum,
        conflicts_with = "image",
        required_unless_present = "image"
    )]
    pub template: Option<TemplateKind>,
    /// A custom image (with the studio agent as its entrypoint).
    #[arg(long)]
    pub image: Option<String>,
    /// A conda package (match spec such as `numpy>=1.26`); repeatable.
    #[arg(long = "conda", value_name = "SPEC")]
    pub conda_packages: Vec<String>,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Args)]
pub struct CloneArgs {
    /// The studio to start from.
    pub studio: String,
    /// The new studio's name.
    #[arg(long)]
    pub name: String,
    /// Checkpoint id or name (default: the studio's latest).
    #[arg(long)]
    pub checkpoint: Option<String>,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `studios list`.
pub async fn list(cx: &Context, search: Option<&str>, limit: usize) -> Result<()> {
    let ws = workspace(cx).await?;
    let studios = list_studios(&cx.api, &ws, search, limit).await?;
    output::studio_list(cx.style, &studios);
    Ok(())
}

/// `studios view`.
pub async fn view(cx: &Context, studio: &str) -> Result<()> {
    let ws = workspace(cx).await?;
    output::studio(cx.style, &find_studio(&cx.api, &ws, studio).await?);
    Ok(())
}

/// `studios add`.
pub async fn add(cx: &Context, args: &AddArgs) -> Result<()> {
    let api = &cx.api;
    let ws = workspace(cx).await?;
    let ce = compute_env(api, &ws, args.compute_env.as_deref()).await?;
    let template = match (&args.template, &args.image) {
        (Some(kind), _) => json!({"kind": kind.to_possible_value().unwrap().get_name()}),
        (None, Some(image)) => json!({"image": image}),
        (None, None) => unreachable!("clap requires one"),
    };
    let mut body = json!({"name": args.name, "computeEnvId": ce, "template": template});
    if !args.conda_packages.is_empty() {
        body["condaPackages"] = json!(args.conda_packages);
    }
    session_fields(api, &ws, &args.session, &mut body).await?;
    let query = if args.session.start {
        "?autoStart=true"
    } else {
        ""
    };
    let studio = api
        .post(
            &format!("/workspaces/{}/studios{query}", segment(&ws)),
            Some(body),
        )
        .await?;
    finish(cx, &ws, studio, args.session.started_wait(), "running").await
}

/// `studios start`.
pub async fn start(cx: &Context, studio: &str, wait: &WaitArgs) -> Result<()> {
    let ws = workspace(cx).await?;
    let id = studio_id(&cx.api, &ws, studio).await?;
    let started = cx.api.post(&studio_path(&ws, &id, "/start"), None).await?;
    finish(cx, &ws, started, Some(wait), "running").await
}

/// `studios stop`.
pub async fn stop(cx: &Context, studio: &str, force: bool, wait: &WaitArgs) -> Result<()> {
    let ws = workspace(cx).await?;
    let id = studio_id(&cx.api, &ws, studio).await?;
    let query = if force { "?force=true" } else { "" };
    let stopping = cx
        .api
        .post(&studio_path(&ws, &id, &format!("/stop{query}")), None)
        .await?;
    finish(cx, &ws, stopping, Some(wait), "stopped").await
}

/// `studios clone`.
pub async fn clone(cx: &Context, args: &CloneArgs) -> Result<()> {
    let api = &cx.api;
    let ws = workspace(cx).await?;
    let id = studio_id(api, &ws, &args.studio).await?;
    let mut body = json!({"name": args.name});
    if let Some(cp) = &args.checkpoint {
        body["checkpointId"] = json!(checkpoint_id(api, &ws, &id, cp).await?);
    }
    session_fields(api, &ws, &args.session, &mut body).await?;
    if args.session.start {
        body["autoStart"] = json!(true);
    }
    let clone = api
        .post(&studio_path(&ws, &id, "/clone"), Some(body))
        .await?;
    finish(cx, &ws, clone, args.session.started_wait(), "running").await
}

/// `studios connect`.
pub async fn connect(cx: &Context, studio: &str, open: bool) -> Result<()> {
    let ws = workspace(cx).await?;
    let id = studio_id(&cx.api, &ws, studio).await?;
    let link = cx
        .api
        .post(&studio_path(&ws, &id, "/connect"), None)
        .await?;
    let url = link["url"].as_str().unwrap_or_default().to_string();
    if open {
        open_in_browser(&url)?;
    }
    output::connect(cx.style, &link);
    Ok(())
}

/// `studios delete`.
pub async fn delete(cx: &Context, studio: &str) -> Result<()> {
    let ws = workspace(cx).await?;
    let id = studio_id(&cx.api, &ws, studio).await?;
    cx.api.delete(&studio_path(&ws, &id, "")).await?;
    output::deleted(cx.style, &id);
    Ok(())
}

pub fn studio_path(ws: &str, id: &str, rest: &str) -> String {
    format!("/workspaces/{}/studios/{}{rest}", segment(ws), segment(id))
}

/// A studio by id (one GET), else by its exact name (one search).
async fn find_studio(api: &Api, ws: &str, wanted: &str) -> Result<Value> {
    if is_id("st-", wanted) {
        return api.get(&studio_path(ws, wanted, "")).await;
    }
    let search = format!("\"{}\"", wanted.replace('"', ""));
    let found = list_studios(api, ws, Some(&search), 1000).await?;
    let id = pick(&found, wanted, "name").ok_or_else(|| {
        Failure::Usage(format!(
            "no studio '{wanted}' (an id or a name) in this workspace"
        ))
    })?;
    Ok(found
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap_or_default())
}

/// A studio's id: an id as given (no request), a name looked up.
pub async fn studio_id(api: &Api, ws: &str, wanted: &str) -> Result<String> {
    if is_id("st-", wanted) {
        return Ok(wanted.to_string());
    }
    let studio = find_studio(api, ws, wanted).await?;
    Ok(studio["id"].as_str().unwrap_or_default().to_string())
}

async fn list_studios(
    api: &Api,
    ws: &str,
    search: Option<&str>,
    limit: usize,
) -> Result<Vec<Value>> {
    let query = search
        .map(|s| format!("search={}", segment(s)))
        .into_iter()
        .collect();
    all_pages(
        api,
        &format!("/workspaces/{}/studios", segment(ws)),
        query,
        "studios",
        limit,
    )
    .await
}

/// A compute environment's id from an id or name; without one, the workspace's only one.
async fn compute_env(api: &Api, ws: &str, wanted: Option<&str>) -> Result<String> {
    let list = api
        .get(&format!("/workspaces/{}/compute-envs", segment(ws)))
        .await?;
    let all = list["computeEnvs"].as_array().cloned().unwrap_or_default();
    match wanted {
        Some(w) => pick(&all, w, "name").ok_or_else(|| {
            Failure::Usage(format!("no compute environment '{w}' in this workspace"))
        }),
        None => match all.as_slice() {
            [one] => Ok(one["id"].as_str().unwrap_or_default().to_string()),
            _ => Err(Failure::Usage(format!(
                "the workspace has {} compute environments: pick one with --compute-env",
                all.len()
            ))),
        },
    }
}

/// Description, resources and mounts of add and clone.
async fn session_fields(api: &Api, ws: &str, args: &SessionArgs, body: &mut Value) -> Result<()> {
    if let Some(d) = &args.description {
        body["description"] = json!(d);
    }
    let mut resources = serde_json::Map::new();
    for (key, value) in [
        ("cpus", args.cpus),
        ("gpus", args.gpus),
        ("memoryMiB", args.memory),
    ] {
        if let Some(v) = value {
            resources.insert(key.into(), json!(v));
        }
    }
    if !resources.is_empty() {
        body["resources"] = Value::Object(resources);
    }
    if !args.mounts.is_empty() {
        let mut links: Option<Vec<Value>> = None;
        let mut mounts = Vec::new();
        for m in &args.mounts {
            if m.to_ascii_lowercase().starts_with("s3://") {
                mounts.push(json!({"uri": m}));
                continue;
            }
            if links.is_none() {
                let list = api
                    .get(&format!("/workspaces/{}/data-links", segment(ws)))
                    .await?;
                links = Some(list["dataLinks"].as_array().cloned().unwrap_or_default());
            }
            let id = pick(links.as_deref().unwrap_or_default(), m, "name").ok_or_else(|| {
                Failure::Usage(format!(
                    "no data link '{m}' in this workspace (or pass an s3:// URI)"
                ))
            })?;
            mounts.push(json!({"dataLinkId": id}));
        }
        body["mounts"] = json!(mounts);
    }
    Ok(())
}

/// Prints the studio an action returned; with `--wait`, first follows it until
/// `target` (progress on stderr).
async fn finish(
    cx: &Context,
    ws: &str,
    studio: Value,
    wait: Option<&WaitArgs>,
    target: &str,
) -> Result<()> {
    let studio = match wait.filter(|w| w.wait) {
        Some(w) => wait_for(&cx.api, ws, studio, target, Duration::from_secs(w.timeout)).await?,
        None => studio,
    };
    output::studio(cx.style, &studio);
    Ok(())
}

async fn wait_for(
    api: &Api,
    ws: &str,
    mut studio: Value,
    target: &str,
    timeout: Duration,
) -> Result<Value> {
    let interval = Duration::from_millis(
        env("STUDIOS_WAIT_INTERVAL_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
    );
    let id = studio["id"].as_str().unwrap_or_default().to_string();
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let status = studio["status"].as_str().unwrap_or_default().to_string();
        let detail = studio["session"]["progress"]
            .as_str()
            .or(studio["session"]["jobStatus"].as_str())
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let line = format!("{status}{detail}");
        if line != last {
            eprintln!("[{:>4}s] {id}: {line}", started.elapsed().as_secs());
            last = line;
        }
        if status == target {
            return Ok(studio);
        }
        let settled = matches!(status.as_str(), "errored" | "stopped" | "running");
        if settled {
            let reason = studio["statusReason"].as_str().unwrap_or("no reason given");
            return Err(Failure::Outcome(format!(
                "studio {id} is {status}, not {target}: {reason}"
            )));
        }
        if started.elapsed() >= timeout {
            return Err(Failure::Timeout(format!(
                "studio {id} is still {status} after {} s (--timeout)",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(interval).await;
        studio = api.get(&studio_path(ws, &id, "")).await?;
    }
}

fn open_in_browser(url: &str) -> Result<()> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url)
        .status()
        .map_err(|e| {
            Failure::Usage(format!(
                "cannot run {opener}: {e} (the link is printed below)"
            ))
        })
        .map(|_| ())
}
