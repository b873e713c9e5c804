//! `studios`: the Studios HTTP API from a terminal or a script (docs/cli.md).

mod api;
mod cmd;
mod config;
mod output;

use api::Result;
use clap::{CommandFactory, Parser, Subcommand};
use cmd::checkpoints::CheckpointCommand;
use cmd::studios::{AddArgs, CloneArgs, WaitArgs};
use output::Format;

#[derive(Parser)]
#[command(name = "studios", version, about = "Interactive analysis sessions on AWS Batch: the Studios API from a terminal", long_about = None)]
pub struct Cli {
    /// The API's URL (else the one `studios login` saved).
    #[arg(long, global = true, value_name = "URL", env = "STUDIOS_API_URL")]
    pub api_url: Option<String>,
    /// Workspace id or name (else the one `studios login` saved).
    #[arg(
        short,
        long,
        global = true,
        value_name = "WORKSPACE",
        env = "STUDIOS_WORKSPACE"
    )]
    pub workspace: Option<String>,
    /// How to print results: a table for people, or the API's JSON for programs.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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

impl Cli {
    /// `--api-url` or `STUDIOS_API_URL` (clap reads both; an empty one counts as unset).
    pub fn api_url(&self) -> Option<String> {
        self.api_url.clone().filter(|v| !v.is_empty())
    }

    /// `--workspace` or `STUDIOS_WORKSPACE` (an empty one counts as unset).
    pub fn workspace(&self) -> Option<String> {
        self.workspace.clone().filter(|v| !v.is_empty())
    }
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Login => return cmd::auth::login(&cli).await,
        Command::Logout => return cmd::auth::logout(),
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
    let cx = &cmd::context(&cli)?;
    match &cli.command {
        Command::Login | Command::Logout | Command::Completions { .. } => unreachable!(),
        Command::Workspaces => cmd::workspaces::list(cx).await,
        Command::Templates => cmd::templates::list(cx).await,
        Command::List { search, limit } => cmd::studios::list(cx, search.as_deref(), *limit).await,
        Command::View { studio } => cmd::studios::view(cx, studio).await,
        Command::Add(args) => cmd::studios::add(cx, args).await,
        Command::Start { studio, wait } => cmd::studios::start(cx, studio, wait).await,
        Command::Stop {
            studio,
            force,
            wait,
        } => cmd::studios::stop(cx, studio, *force, wait).await,
        Command::Clone(args) => cmd::studios::clone(cx, args).await,
        Command::Connect { studio, open } => cmd::studios::connect(cx, studio, *open).await,
        Command::Checkpoints(command) => cmd::checkpoints::run(cx, command).await,
        Command::Delete { studio } => cmd::studios::delete(cx, studio).await,
        Command::Mounts => cmd::mounts::list(cx).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
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
