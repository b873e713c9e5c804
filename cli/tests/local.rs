//! The `studios` command against the local run (`infra/run-local.sh` on a free port,
//! with its emulator and session agents): every command a user has, as a user runs it.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The local run; its process group is stopped when dropped.
struct Stack(std::process::Child);

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn start_stack(port: u16) -> Stack {
    use std::os::unix::process::CommandExt;
    let mut stack = Stack(
        Command::new("infra/run-local.sh")
            .current_dir(root())
            .env("STUDIOS_PORT", port.to_string())
            .env("STUDIOS_LOCAL_JOB_DELAY_MS", "100")
            .env_remove("AWS_ENDPOINT_URL")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("infra/run-local.sh starts"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = stack.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("ready") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(300))
        .expect("the local run is ready");
    stack
}

struct Cli {
    config: PathBuf,
    api_url: String,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "failed: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

impl Cli {
    fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_studios"));
        cmd.args(args)
            .env("STUDIOS_CONFIG", &self.config)
            .env("STUDIOS_WAIT_INTERVAL_MS", "200")
            .env_remove("STUDIOS_TOKEN")
            .env_remove("STUDIOS_API_URL")
            .env_remove("STUDIOS_WORKSPACE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[], None)
    }
}

fn token(user: &str) -> String {
    let out = Command::new("infra/run-local.sh")
        .args(["token", user])
        .current_dir(root())
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn every_command_against_the_local_run() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _stack = start_stack(port);
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        config: dir.path().join("studios/config.json"),
        api_url: format!("http://127.0.0.1:{port}"),
    };
    let bob = token("bob");

    // Login: the token comes on stdin, is checked, saved 0600 and never printed.
    let login = cli.run_with(
        &["login", "--api-url", &cli.api_url, "--workspace", "demo"],
        &[],
        Some(&format!("{bob}\n")),
    );
    assert_eq!(login.code, 0, "{}", login.stderr);
    assert!(login.stderr.contains("logged in to"), "{}", login.stderr);
    assert!(!login.stdout.contains(&bob) && !login.stderr.contains(&bob));
    assert_eq!(mode(&cli.config), 0o600);

    let workspaces = cli.run(&["workspaces", "-o", "json"]).json();
    let demo = workspaces["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "demo")
        .expect("demo");
    assert_eq!(demo["role"], "maintain");
    // Into a pipe, a table is tab-separated rows without the header line.
    let table = cli.run(&["workspaces"]);
    assert!(
        !table.stdout.starts_with("ID") && table.stdout.contains("\tdemo\tmaintain\n"),
        "{}",
        table.stdout
    );
    assert!(cli.run(&["templates"]).stdout.contains("vscode"));

    // Add, with a data link by name, resources and a conda package.
    let added = cli
        .run(&[
            "add",
            "--name",
            "cli qc",
            "--template",
            "vscode",
            "--mount",
            "reads",
            "--cpus",
            "2",
            "--memory",
            "4096",
            "--conda",
            "qc-tools",
            "-o",
            "json",
        ])
        .json();
    let id = added["id"].as_str().unwrap().to_string();
    assert_eq!(added["status"], "stopped");
    assert_eq!(added["mounts"][0]["name"], "reads");
    assert_eq!(added["resources"]["memoryMiB"], 4096);
    let listed = cli.run(&["list", "--search", "cli", "-o", "json"]).json();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == id.as_str()));
    assert!(cli.run(&["list"]).stdout.contains("cli qc"));
    // By name or by id.
    assert_eq!(
        cli.run(&["view", "cli qc", "-o", "json"]).json()["id"],
        id.as_str()
    );
    let view = cli.run(&["view", &id]);
    assert!(
        view.stdout.contains("\nstatus\tstopped\n"),
        "{}",
        view.stdout
    );

    // Start and wait: progress on stderr, the running studio on stdout.
    let started = cli.run(&[
        "start",
        "cli qc",
        "--wait",
        "--timeout",
        "120",
        "-o",
        "json",
    ]);
    let studio = started.json();
    assert_eq!(studio["status"], "running");
    assert!(started.stderr.contains("starting"), "{}", started.stderr);
    assert!(started.stderr.contains("running"), "{}", started.stderr);

    let url = cli.run(&["connect", "cli qc"]);
    assert_eq!(url.code, 0, "{}", url.stderr);
    // The connect relay's address (its own process and port, as on AWS), not the API's:
    // the studio's own origin.
    let link = url.stdout.trim();
    assert!(
        link.starts_with(&format!("http://{id}.localhost:"))
            && link.contains("/?studio_token=")
            && !link.starts_with(&format!("{}/", cli.api_url)),
        "{link}"
    );
    let mounts = cli.run(&["mounts", "-o", "json"]).json();
    assert_eq!(mounts["mounts"][0]["studio"]["id"], id.as_str());

    // A conflict: the API's message and code, exit code 6.
    cli.run(&[
        "add",
        "--name",
        "cli twin",
        "--template",
        "vscode",
        "--mount",
        "reads",
    ]);
    let locked = cli.run(&["start", "cli twin"]);
    assert_eq!(locked.code, 6, "{}", locked.stderr);
    assert!(
        locked.stderr.contains("(mount_locked)"),
        "{}",
        locked.stderr
    );
    assert!(
        locked.stderr.contains("cli qc"),
        "names the holder: {}",
        locked.stderr
    );

    // Stop and wait: the agent saves a checkpoint.
    let stopped = cli
        .run(&["stop", "cli qc", "--wait", "--timeout", "120", "-o", "json"])
        .json();
    assert_eq!(stopped["status"], "stopped");
    let checkpoints = cli
        .run(&["checkpoints", "list", "cli qc", "-o", "json"])
        .json();
    assert_eq!(checkpoints[0]["name"], "checkpoint-1");
    assert_eq!(checkpoints[0]["status"], "finalized");
    let renamed = cli
        .run(&[
            "checkpoints",
            "rename",
            "cli qc",
            "checkpoint-1",
            "after qc",
            "-o",
            "json",
        ])
        .json();
    assert_eq!(renamed[0]["name"], "after qc");

    // Clone from the checkpoint by its name, started and waited for.
    let clone = cli
        .run(&[
            "clone",
            "cli qc",
            "--name",
            "cli clone",
            "--checkpoint",
            "after qc",
            "--start",
            "--wait",
            "--timeout",
            "120",
            "-o",
            "json",
        ])
        .json();
    assert_eq!(clone["status"], "running");
    assert_eq!(clone["parent"]["studioId"], id.as_str());
    let stopped = cli
        .run(&["stop", "cli clone", "--wait", "-o", "json"])
        .json();
    assert_eq!(stopped["status"], "stopped");
    let deleted = cli.run(&["delete", "cli clone"]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert!(deleted.stdout.starts_with("deleted "), "{}", deleted.stdout);
    let gone = cli.run(&["view", "cli clone"]);
    assert_eq!(gone.code, 2);
    assert!(
        gone.stderr.contains("no studio 'cli clone'"),
        "{}",
        gone.stderr
    );

    // A bad token: a clear message and exit code 5, whatever the saved one is.
    let refused = cli.run_with(&["workspaces"], &[("STUDIOS_TOKEN", "not-a-token")], None);
    assert_eq!(refused.code, 5, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("not authenticated"),
        "{}",
        refused.stderr
    );
    // A 403: the API's words, exit code 1 (carol may connect, not operate).
    let carol = token("carol");
    let forbidden = cli.run_with(
        &["stop", "cli qc"],
        &[("STUDIOS_TOKEN", carol.as_str())],
        None,
    );
    assert_eq!(forbidden.code, 1, "{}", forbidden.stderr);
    assert!(
        forbidden.stderr.contains("(forbidden)"),
        "{}",
        forbidden.stderr
    );

    let completions = cli.run(&["completions", "bash"]);
    assert!(
        completions.stdout.contains("_studios"),
        "bash completion script"
    );

    // A config others can read is refused; logout removes it.
    std::fs::set_permissions(&cli.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shared = cli.run(&["workspaces"]);
    assert_eq!(shared.code, 2);
    assert!(shared.stderr.contains("chmod 600"), "{}", shared.stderr);
    std::fs::set_permissions(&cli.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(cli.run(&["logout"]).code, 0);
    assert!(!cli.config.exists());
    let anonymous = cli.run(&["workspaces"]);
    assert_eq!(anonymous.code, 2);
    assert!(
        anonymous.stderr.contains("studios login"),
        "{}",
        anonymous.stderr
    );
}
