//! README's walkthroughs, exactly as written, against the local run started the way
//! README says (`infra/run-local.sh`, on a free port): the curl one, then the one with
//! the `studios` command. Every line marked `# → X` must print X (`…` matches anything),
//! and nothing else may print.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The shell block between the `<!-- {name}:start -->` and `:end` markers of README.md.
fn walkthrough(name: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find(&format!("<!-- {name}:start -->"))
        .expect("start marker");
    let end = readme
        .find(&format!("<!-- {name}:end -->"))
        .expect("end marker");
    let block = &readme[start..end];
    let open = block.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let close = block[open..].find("```").expect("closed block") + open;
    block[open..close].to_string()
}

/// Whether `actual` matches `expected`, where `…` stands for any text.
fn matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split('…').collect();
    let mut rest = actual;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    rest.is_empty()
}

/// The local run; stopped (the whole process group) when dropped.
struct Stack(std::process::Child);

impl Drop for Stack {
    fn drop(&mut self) {
        // The script, the server and the emulator share one process group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    use std::os::unix::process::CommandExt;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let started = Instant::now();
    let mut stack = Stack(
        Command::new("infra/run-local.sh")
            .current_dir(root())
            .env("STUDIOS_PORT", &port)
            .env("STUDIOS_LOCAL_JOB_DELAY_MS", "300")
            .env_remove("AWS_ENDPOINT_URL")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("infra/run-local.sh starts"),
    );
    let console = Arc::new(Mutex::new(Vec::<String>::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stdout = stack.0.stdout.take().unwrap();
    let lines = console.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("ready") {
                let _ = ready_tx.send(line.clone());
            }
            lines.lock().unwrap().push(line);
        }
    });
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(300))
        .unwrap_or_else(|_| panic!("not ready: {:?}", console.lock().unwrap()));
    println!(
        "{ready} (this test: {:?} incl. the build check)",
        started.elapsed()
    );
    assert!(console
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("  export CAROL=")));

    for name in ["walkthrough", "cli-walkthrough"] {
        run_block(name, &port);
    }

    // The console showed the status events a customer's rule would get.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let printed = console.lock().unwrap().join("\n");
        let stopped = printed.contains("\"previousStatus\":\"stopping\",\"status\":\"stopped\"");
        if stopped && printed.contains("event  Checkpoint Recorded") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status events not printed:\n{printed}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs one README block; its output must be what its `# →` comments say.
fn run_block(name: &str, port: &str) {
    let script = walkthrough(name);
    let expected: Vec<&str> = script
        .lines()
        .filter_map(|l| l.split_once("# → ").map(|(_, e)| e.trim_end()))
        .collect();
    assert!(expected.len() >= 10, "the walkthrough shows its results");
    // `studios login` saves its settings here, not in the user's home.
    let config = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .args(["180", "bash", "-e", "-o", "pipefail", "-c", &script])
        .current_dir(root())
        .env("STUDIOS_PORT", port)
        .env("STUDIOS_CONFIG", config.path().join("config.json"))
        .env("STUDIOS_WAIT_INTERVAL_MS", "500")
        .env_remove("STUDIOS_TOKEN")
        .env_remove("STUDIOS_WORKSPACE")
        .env_remove("STUDIOS_API_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let actual: Vec<&str> = stdout.lines().collect();
    assert_eq!(actual.len(), expected.len(), "printed:\n{stdout}");
    for (e, a) in expected.iter().zip(&actual) {
        assert!(matches(e, a), "expected `{e}`, printed `{a}`");
    }
}

#[test]
fn wildcards_match_any_text() {
    assert!(matches(
        "http://st-….localhost:…/",
        "http://st-1.localhost:3000/"
    ));
    assert!(matches("204", "204"));
    assert!(!matches("204", "2040"));
    assert!(!matches("a…c", "abd"));
    assert!(matches("…", "anything"));
}
