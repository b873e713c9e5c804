//! `studios`: the Studios HTTP API from a terminal or a script (docs/cli.md).

mod api;
mod config;
mod output;

use api::{segment, Api, Failure, Result};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use output::Format;
use serde_json::{json, Value};
use std::io::{IsTerminal, Read};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "studios", version, about = "Interactive analysis sessions on AWS Batch: the Studios API from a terminal", long_about = None)]
struct Cli {
    /// The API's URL (else the one `studios login` saved).
    #[arg(long, global = true, value_name = "URL", env = "STUDIOS_API_URL")]
    api_url: Option<String>,
    /// Workspace id or name (else the one `studios login` saved).
    #[arg(
        short,
        long,
        global = true,
        value_name = "WORKSPACE",
        env = "STUDIOS_WORKSPACE"
    )]
    workspace: Option<String>,
    /// How to print results: a table for people, or the API's JSON for programs.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Save the API URL and a token (read from STUDIOS_TOKEN or stdin) after checking them.
    Login,
    /// Forget the saved token.
    Logout,
    /// Your workspaces and your role in each.
    Workspaces,
    /// The templates this deployment offers.
    Templates,
    /// List studios, newest first.
    List {
        /// Words of the name; `author:`, `computeEnv:`, `status:` filters.
        #[arg(long)]
        search: Option<String>,
        /// At most this many (all pages are read up to it).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show a studio.
    View { studio: String },
    /// Add a studio.
    Add(AddArgs),
    /// Start a studio's session.
    Start {
        studio: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop a studio's session (it saves a checkpoint).
    Stop {
        studio: String,
        /// End a studio stuck in `stopping` (docs/api.md).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Start as new: a new studio from a studio's checkpoint.
    Clone(CloneArgs),
    /// A connect link to a running studio (printed, or opened in the browser).
    Connect {
        studio: String,
        /// Open it with the desktop's browser (xdg-open / open).
        #[arg(long)]
        open: bool,
    },
    /// A studio's checkpoints.
    #[command(subcommand)]
    Checkpoints(CheckpointCommand),
    /// Delete a stopped studio.
    Delete { studio: String },
    /// Data paths held by running sessions.
    Mounts,
    /// Print a shell completion script (e.g. `studios completions bash > ~/.local/share/bash-completion/completions/studios`).
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// List a studio's checkpoints, newest first.
    List { studio: String },
    /// Rename a checkpoint.
    Rename {
        studio: String,
        /// Checkpoint id or name.
        checkpoint: String,
        name: String,
    },
}

#[derive(Args)]
struct WaitArgs {
    /// Wait until the studio is running (start) or stopped (stop); progress on stderr.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (exit code 4).
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    timeout: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum TemplateKind {
    Jupyter,
    Rstudio,
    Vscode,
    Xpra,
}

#[derive(Args)]
struct SessionArgs {
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// CPUs (default 2).
    #[arg(long)]
    cpus: Option<u32>,
    /// GPUs (default 0).
    #[arg(long)]
    gpus: Option<u32>,
    /// Memory in MiB (default 8192).
    #[arg(long, value_name = "MIB")]
    memory: Option<u32>,
    /// Data to mount: a data link (id or name) or an s3:// URI; repeatable.
    #[arg(long = "mount", value_name = "DATA_LINK_OR_URI")]
    mounts: Vec<String>,
    /// Start it as well.
    #[arg(long)]
    start: bool,
    #[command(flatten)]
    wait: WaitArgs,
}

impl SessionArgs {
    /// How to wait for a studio added or cloned with `--start` (not at all without it).
    fn started_wait(&self) -> Option<&WaitArgs> {
        self.start.then_some(&self.wait)
    }
}

#[derive(Args)]
struct AddArgs {
    #[arg(long)]
    name: String,
    /// Compute environment id or name (default: the workspace's only one).
    #[arg(long)]
    compute_env: Option<String>,
    /// A template of this deployment.
    #[arg(
        long,
        value_enum,
        conflicts_with = "image",
        required_unless_present = "image"
    )]
    template: Option<TemplateKind>,
    /// A custom image (with the studio agent as its entrypoint).
    #[arg(long)]
    image: Option<String>,
    /// A conda package (match spec such as `numpy>=1.26`); repeatable.
    #[arg(long = "conda", value_name = "SPEC")]
    conda_packages: Vec<String>,
    #[command(flatten)]
    session: SessionArgs,
}

#[derive(Args)]
struct CloneArgs {
    /// The studio to start from.
    studio: String,
    /// The new studio's name.
    #[arg(long)]
    name: String,
    /// Checkpoint id or name (default: the studio's latest).
    #[arg(long)]
    checkpoint: Option<String>,
    #[command(flatten)]
    session: SessionArgs,
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(failure) = runtime.block_on(run(cli)) {
        eprintln!("error: {}", failure.message());
        std::process::exit(failure.exit_code());
    }
}

/// Settings from flags, the environment and the config file, in that order.
struct Context {
    api: Api,
    workspace: Option<String>,
    format: Format,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Cli {
    /// `--api-url` or `STUDIOS_API_URL` (clap reads both; an empty one counts as unset).
    fn api_url(&self) -> Option<String> {
        self.api_url.clone().filter(|v| !v.is_empty())
    }

    /// `--workspace` or `STUDIOS_WORKSPACE` (an empty one counts as unset).
    fn workspace(&self) -> Option<String> {
        self.workspace.clone().filter(|v| !v.is_empty())
    }
}

fn context(cli: &Cli) -> Result<Context> {
    let saved = config::load()?;
    let api_url = cli.api_url().or(saved.api_url).ok_or_else(|| {
        Failure::Usage(
            "no API URL: pass --api-url, set STUDIOS_API_URL or run `studios login`".into(),
        )
    })?;
    let token = env("STUDIOS_TOKEN").or(saved.token).ok_or_else(|| {
        Failure::Usage("no token: set STUDIOS_TOKEN or run `studios login`".into())
    })?;
    Ok(Context {
        api: Api::new(&api_url, &token)?,
        workspace: cli.workspace().or(saved.workspace),
        format: cli.output,
    })
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Login => return login(&cli).await,
        Command::Logout => {
            match config::remove()? {
                Some(path) => eprintln!("removed {}", path.display()),
                None => eprintln!("not logged in"),
            }
            return Ok(());
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "studios",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        _ => {}
    }
    let cx = context(&cli)?;
    let api = &cx.api;
    let f = output::Style::choose(cx.format, std::io::stdout().is_terminal());
    match &cli.command {
        Command::Login | Command::Logout | Command::Completions { .. } => unreachable!(),
        Command::Workspaces => output::workspaces(f, &api.get("/workspaces").await?),
        Command::Templates => output::templates(f, &api.get("/templates").await?),
        Command::List { search, limit } => {
            let ws = workspace(&cx).await?;
            let studios = list_studios(api, &ws, search.as_deref(), *limit).await?;
            output::studio_list(f, &studios);
        }
        Command::View { studio } => {
            let ws = workspace(&cx).await?;
            output::studio(f, &find_studio(api, &ws, studio).await?);
        }
        Command::Add(args) => {
            let ws = workspace(&cx).await?;
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
            finish(api, f, &ws, studio, args.session.started_wait(), "running").await?;
        }
        Command::Start { studio, wait } => {
            let ws = workspace(&cx).await?;
            let id = studio_id(api, &ws, studio).await?;
            let started = api.post(&studio_path(&ws, &id, "/start"), None).await?;
            finish(api, f, &ws, started, Some(wait), "running").await?;
        }
        Command::Stop {
            studio,
            force,
            wait,
        } => {
            let ws = workspace(&cx).await?;
            let id = studio_id(api, &ws, studio).await?;
            let query = if *force { "?force=true" } else { "" };
            let stopping = api
                .post(&studio_path(&ws, &id, &format!("/stop{query}")), None)
                .await?;
            finish(api, f, &ws, stopping, Some(wait), "stopped").await?;
        }
        Command::Clone(args) => {
            let ws = workspace(&cx).await?;
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
            finish(api, f, &ws, clone, args.session.started_wait(), "running").await?;
        }
        Command::Connect { studio, open } => {
            let ws = workspace(&cx).await?;
            let id = studio_id(api, &ws, studio).await?;
            let link = api.post(&studio_path(&ws, &id, "/connect"), None).await?;
            let url = link["url"].as_str().unwrap_or_default().to_string();
            if *open {
                open_in_browser(&url)?;
            }
            output::connect(f, &link);
        }
        Command::Checkpoints(CheckpointCommand::List { studio }) => {
            let ws = workspace(&cx).await?;
            let id = studio_id(api, &ws, studio).await?;
            output::checkpoints(f, &list_checkpoints(api, &ws, &id).await?);
        }
        Command::Checkpoints(CheckpointCommand::Rename {
            studio,
            checkpoint,
            name,
        }) => {
            let ws = workspace(&cx).await?;
            let id = studio_id(api, &ws, studio).await?;
            let cp = checkpoint_id(api, &ws, &id, checkpoint).await?;
            let path = studio_path(&ws, &id, &format!("/checkpoints/{}", segment(&cp)));
            let renamed = api.patch(&path, json!({"name": name})).await?;
            output::checkpoints(f, &[renamed]);
        }
        Command::Delete { studio } => {
            let ws = workspace(&cx).await?;
            let id = studio_id(api, &ws, studio).await?;
            api.delete(&studio_path(&ws, &id, "")).await?;
            output::deleted(f, &id);
        }
        Command::Mounts => {
            let ws = workspace(&cx).await?;
            output::mounts(
                f,
                &api.get(&format!("/workspaces/{}/mounts", segment(&ws)))
                    .await?,
            );
        }
    }
    Ok(())
}

async fn login(cli: &Cli) -> Result<()> {
    let saved = config::load()?;
    let api_url = cli
        .api_url()
        .or(saved.api_url)
        .ok_or_else(|| Failure::Usage("pass --api-url (the stack's ApiUrl output)".into()))?;
    let token = match env("STUDIOS_TOKEN") {
        Some(t) => t,
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("paste your token, then Enter:");
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::Usage(format!("reading the token from stdin: {e}")))?;
            text.lines().next().unwrap_or_default().trim().to_string()
        }
    };
    if token.is_empty() {
        return Err(Failure::Usage(
            "no token on stdin or in STUDIOS_TOKEN".into(),
        ));
    }
    let api = Api::new(&api_url, &token)?;
    let list = api.get("/workspaces").await?;
    let count = list["workspaces"].as_array().map_or(0, Vec::len);
    let settings = config::Settings {
        api_url: Some(api_url.clone()),
        token: Some(token),
        workspace: cli.workspace().or(saved.workspace),
    };
    let path = config::save(&settings)?;
    eprintln!(
        "logged in to {api_url} ({count} workspace{}); saved to {} (mode 600)",
        if count == 1 { "" } else { "s" },
        path.display()
    );
    Ok(())
}

/// The workspace's id, from an id or a name of one of the caller's workspaces.
async fn workspace(cx: &Context) -> Result<String> {
    let wanted = cx.workspace.clone().ok_or_else(|| {
        Failure::Usage("no workspace: pass --workspace, set STUDIOS_WORKSPACE or `studios login --workspace …`".into())
    })?;
    if is_id("ws-", &wanted) {
        return Ok(wanted);
    }
    let list = cx.api.get("/workspaces").await?;
    let all = list["workspaces"].as_array().cloned().unwrap_or_default();
    pick(&all, &wanted, "name")
        .ok_or_else(|| Failure::Usage(format!("you are not a member of a workspace '{wanted}'")))
}

/// The id of the entry whose id is `wanted`, or whose `name_field` equals it (case
/// ignored) if exactly one does.
fn pick(items: &[Value], wanted: &str, name_field: &str) -> Option<String> {
    let id = |v: &Value| v["id"].as_str().map(str::to_string);
    if let Some(hit) = items.iter().find(|v| v["id"] == wanted) {
        return id(hit);
    }
    let named: Vec<&Value> = items
        .iter()
        .filter(|v| {
            v[name_field]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(wanted))
        })
        .collect();
    match named.as_slice() {
        [one] => id(one),
        _ => None,
    }
}

fn studio_path(ws: &str, id: &str, rest: &str) -> String {
    format!("/workspaces/{}/studios/{}{rest}", segment(ws), segment(id))
}

/// Whether `s` has the shape of an id (`<prefix>` and 32 hex digits): it is used as one
/// without a look-up (the action itself answers 404 if there is no such item).
fn is_id(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 32
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
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
async fn studio_id(api: &Api, ws: &str, wanted: &str) -> Result<String> {
    if is_id("st-", wanted) {
        return Ok(wanted.to_string());
    }
    let studio = find_studio(api, ws, wanted).await?;
    Ok(studio["id"].as_str().unwrap_or_default().to_string())
}

/// Every page of a list (its items under `key`), up to `limit` items.
async fn all_pages(
    api: &Api,
    path: &str,
    query: Vec<String>,
    key: &str,
    limit: usize,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = query.clone();
        q.push(format!("limit={}", (limit - out.len()).clamp(1, 100)));
        if let Some(c) = &cursor {
            q.push(format!("cursor={}", segment(c)));
        }
        let page = api.get(&format!("{path}?{}", q.join("&"))).await?;
        out.extend(page[key].as_array().cloned().unwrap_or_default());
        cursor = match page["nextCursor"].as_str() {
            Some(c) if out.len() < limit => Some(c.to_string()),
            _ => return Ok(out),
        };
    }
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

async fn list_checkpoints(api: &Api, ws: &str, id: &str) -> Result<Vec<Value>> {
    all_pages(
        api,
        &studio_path(ws, id, "/checkpoints"),
        vec![],
        "checkpoints",
        usize::MAX,
    )
    .await
}

async fn checkpoint_id(api: &Api, ws: &str, studio: &str, wanted: &str) -> Result<String> {
    let all = list_checkpoints(api, ws, studio).await?;
    pick(&all, wanted, "name").ok_or_else(|| {
        Failure::Usage(format!(
            "the studio has no checkpoint '{wanted}' (an id or a name)"
        ))
    })
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
    api: &Api,
    f: output::Style,
    ws: &str,
    studio: Value,
    wait: Option<&WaitArgs>,
    target: &str,
) -> Result<()> {
    let studio = match wait.filter(|w| w.wait) {
        Some(w) => wait_for(api, ws, studio, target, Duration::from_secs(w.timeout)).await?,
        None => studio,
    };
    output::studio(f, &studio);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn names_and_ids_are_picked_unambiguously() {
        let items = vec![
            json!({"id": "st-1", "name": "QC"}),
            json!({"id": "st-2", "name": "qc copy"}),
            json!({"id": "st-3", "name": "Twin"}),
            json!({"id": "st-4", "name": "twin"}),
        ];
        assert_eq!(pick(&items, "st-2", "name").as_deref(), Some("st-2"));
        assert_eq!(pick(&items, "qc", "name").as_deref(), Some("st-1"));
        assert_eq!(
            pick(&items, "twin", "name"),
            None,
            "two studios are named so"
        );
        assert_eq!(pick(&items, "nothing", "name"), None);
    }

    #[test]
    fn ids_are_recognised_by_their_shape() {
        assert!(is_id("st-", "st-019ac4b0f1e37d21a6b3c0d9e8f7a655"));
        assert!(!is_id("st-", "st-019AC4B0F1E37D21A6B3C0D9E8F7A655"));
        assert!(!is_id("st-", "st-short"));
        assert!(!is_id("st-", "ws-019ac4b0f1e37d21a6b3c0d9e8f7a655"));
        assert!(!is_id("st-", "RNA-seq QC"));
    }

    #[test]
    fn api_url_and_workspace_fall_back_to_the_environment() {
        // One test: it sets the process environment.
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied()).unwrap();
        std::env::set_var("STUDIOS_API_URL", "http://from-env");
        std::env::set_var("STUDIOS_WORKSPACE", "genomics");
        let cli = parse(&["studios", "workspaces"]);
        assert_eq!(cli.api_url().as_deref(), Some("http://from-env"));
        assert_eq!(cli.workspace().as_deref(), Some("genomics"));
        let cli = parse(&[
            "studios",
            "-w",
            "demo",
            "--api-url",
            "http://flag",
            "mounts",
        ]);
        assert_eq!(cli.api_url().as_deref(), Some("http://flag"));
        assert_eq!(cli.workspace().as_deref(), Some("demo"));
        std::env::set_var("STUDIOS_API_URL", "");
        std::env::remove_var("STUDIOS_WORKSPACE");
        let cli = parse(&["studios", "workspaces"]);
        assert_eq!(cli.api_url(), None, "an empty variable counts as unset");
        assert_eq!(cli.workspace(), None);
        std::env::remove_var("STUDIOS_API_URL");
    }

    #[test]
    fn template_and_image_exclude_each_other() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert!(parse(&["studios", "add", "--name", "a", "--template", "jupyter"]).is_ok());
        assert!(parse(&["studios", "add", "--name", "a", "--image", "x"]).is_ok());
        assert!(parse(&["studios", "add", "--name", "a"]).is_err());
        assert!(parse(&[
            "studios",
            "add",
            "--name",
            "a",
            "--template",
            "jupyter",
            "--image",
            "x"
        ])
        .is_err());
    }
}
