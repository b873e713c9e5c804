//! The studio agent as a process against the emulated S3 (run with infra/test.sh): a
//! stand-in IDE, checkpoints saved on SIGTERM and on a stop through the channel,
//! restored in the next session, corrupt ones refused with their reason.

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, StatusCode};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use studios_agent::objects::{Objects, S3Objects, S3Uri};
use studios_agent::proxy::{full, serve};
use tokio::process::{Child, Command};

const BUCKET: &str = "agent-tests";
const IDE: &str = "python3 -m http.server {port} --bind 127.0.0.1 --directory {workspace}";

async fn objects() -> S3Objects {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "these tests need the local AWS emulator: run them with infra/test.sh"
    );
    let sdk = aws_config::load_from_env().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let _ = s3.create_bucket().bucket(BUCKET).send().await;
    S3Objects::new(&sdk)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Session {
    child: Child,
    port: u16,
}

/// Starts the agent for studio `studio`'s checkpoint `save` (restoring `restore`).
fn start(
    studio: &str,
    workspace: &Path,
    save: &str,
    restore: Option<&str>,
    extra: &[(&str, String)],
) -> Session {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_studio-agent"));
    cmd.env("STUDIO_ID", studio)
        .env("WORKSPACE_ID", "ws-test")
        .env(
            "CHECKPOINT_SAVE_URI",
            format!("s3://{BUCKET}/work/.studios/{studio}/checkpoints/{save}/"),
        )
        .env("CHECKPOINT_RESTORE_URI", restore.unwrap_or_default())
        .env("STUDIO_TEMPLATE", "custom")
        .env("STUDIO_IDE_COMMAND", IDE)
        .env("STUDIO_WORKSPACE_DIR", workspace)
        .env("STUDIO_AGENT_ADDR", format!("127.0.0.1:{port}"))
        .env_remove("STUDIO_API_URL")
        .env_remove("STUDIO_AGENT_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Session {
        child: cmd.spawn().expect("the agent starts"),
        port,
    }
}

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "localhost")
        .body(http_body_util::Empty::<Bytes>::new())
        .ok()?;
    let res = send.send_request(req).await.ok()?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Waits until the agent says the IDE is ready.
async fn ready(s: &Session) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some((200, _)) = get(s.port, "/_studio/health").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the agent never became ready");
}

/// SIGTERM (as TerminateJob sends), then the exit code and what the agent logged.
async fn terminate(mut s: Session) -> (i32, String) {
    let pid = s.child.id().unwrap() as i32;
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    exit(&mut s).await
}

async fn exit(s: &mut Session) -> (i32, String) {
    let out = tokio::time::timeout(Duration::from_secs(30), async {
        let status = s.child.wait().await.unwrap();
        let mut log = String::new();
        if let Some(mut err) = s.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            err.read_to_string(&mut log).await.unwrap();
        }
        (status.code().unwrap_or(-1), log)
    })
    .await;
    out.expect("the agent exits within AWS Batch's 30 s")
}

fn checkpoint(studio: &str, cp: &str) -> String {
    format!("s3://{BUCKET}/work/.studios/{studio}/checkpoints/{cp}/")
}

async fn manifest(objects: &S3Objects, studio: &str, cp: &str) -> Option<Bytes> {
    let uri = S3Uri::parse(&format!("{}manifest.json", checkpoint(studio, cp))).unwrap();
    objects.get(&uri, u64::MAX).await.unwrap()
}

fn unique(name: &str) -> String {
    format!("st-{name}-{}", std::process::id())
}

#[tokio::test]
async fn sigterm_without_notice_saves_a_checkpoint_the_next_session_restores() {
    let objects = objects().await;
    let studio = unique("sigterm");
    let one = tempfile::tempdir().unwrap();
    let s = start(&studio, one.path(), "cp-1", None, &[]);
    ready(&s).await;
    // The IDE answers through the agent's port.
    std::fs::create_dir_all(one.path().join("results")).unwrap();
    std::fs::write(one.path().join("results/qc.txt"), "QC passed").unwrap();
    let (status, listing) = get(s.port, "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(listing.contains("results/"), "{listing}");
    let (code, log) = terminate(s).await;
    assert_eq!(code, 0, "{log}");
    assert!(manifest(&objects, &studio, "cp-1").await.is_some(), "{log}");

    // The next session restores it before its IDE starts.
    let two = tempfile::tempdir().unwrap();
    let cp1 = checkpoint(&studio, "cp-1");
    let s = start(&studio, two.path(), "cp-2", Some(&cp1), &[]);
    ready(&s).await;
    assert_eq!(
        std::fs::read_to_string(two.path().join("results/qc.txt")).unwrap(),
        "QC passed"
    );
    let (code, log) = terminate(s).await;
    assert_eq!(code, 0, "{log}");
    // Nothing changed: the second checkpoint points at the first one's chunk.
    let m2 = manifest(&objects, &studio, "cp-2").await.unwrap();
    let m1 = manifest(&objects, &studio, "cp-1").await.unwrap();
    let chunks = |m: &Bytes| {
        let v: serde_json::Value = serde_json::from_slice(m).unwrap();
        v["files"][0]["chunks"].clone()
    };
    assert_eq!(chunks(&m1), chunks(&m2));
}

#[tokio::test]
async fn a_corrupt_checkpoint_ends_the_session_with_its_reason_on_the_channel() {
    let objects = objects().await;
    let studio = unique("corrupt");
    let dir = tempfile::tempdir().unwrap();
    let s = start(&studio, dir.path(), "cp-1", None, &[]);
    ready(&s).await;
    std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
    assert_eq!(terminate(s).await.0, 0);
    // Damage the chunk the manifest names.
    let m: serde_json::Value =
        serde_json::from_slice(&manifest(&objects, &studio, "cp-1").await.unwrap()).unwrap();
    let chunk = S3Uri::parse(m["files"][0]["chunks"][0]["uri"].as_str().unwrap()).unwrap();
    objects
        .put(&chunk, Bytes::from_static(b"jello"))
        .await
        .unwrap();

    let channel = Channel::start(|_| false).await;
    let fresh = tempfile::tempdir().unwrap();
    let mut s = start(
        &studio,
        fresh.path(),
        "cp-2",
        Some(&checkpoint(&studio, "cp-1")),
        &channel.env(),
    );
    let (code, log) = exit(&mut s).await;
    assert_eq!(code, 3, "{log}");
    let reason = channel.failure();
    assert!(
        reason.contains("is corrupt: a.txt: chunk 0 has checksum"),
        "{reason}"
    );
    // No checkpoint from a session that never had the data.
    assert!(manifest(&objects, &studio, "cp-2").await.is_none());
}

#[tokio::test]
async fn a_stop_through_the_channel_saves_and_exits_cleanly() {
    let objects = objects().await;
    let studio = unique("channel");
    let dir = tempfile::tempdir().unwrap();
    // The control plane says "stop" from the third report on.
    let channel = Channel::start(|n| n >= 3).await;
    let mut extra = channel.env();
    extra.push(("STUDIO_SNAPSHOT_SECONDS", "1".into()));
    let mut s = start(&studio, dir.path(), "cp-1", None, &extra);
    ready(&s).await;
    std::fs::write(dir.path().join("notes.txt"), "saved on stop").unwrap();
    let (code, log) = exit(&mut s).await;
    assert_eq!(code, 0, "{log}");
    let reports = channel.reports();
    assert_eq!(reports[0]["state"], "ready", "{reports:?}");
    assert!(reports.len() >= 3);
    let m: serde_json::Value =
        serde_json::from_slice(&manifest(&objects, &studio, "cp-1").await.unwrap()).unwrap();
    assert!(m["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["path"] == "notes.txt"));
}

#[tokio::test]
async fn an_ide_that_dies_ends_the_session_with_a_reason() {
    objects().await;
    let studio = unique("ide-dies");
    let dir = tempfile::tempdir().unwrap();
    let channel = Channel::start(|_| false).await;
    let mut extra = channel.env();
    extra.push(("STUDIO_IDE_COMMAND", "exit 7".into()));
    let mut s = start(&studio, dir.path(), "cp-1", None, &extra);
    let (code, log) = exit(&mut s).await;
    assert_eq!(code, 1, "{log}");
    let reason = channel.failure();
    assert!(
        reason.contains("the IDE exited before it was ready (exit status: 7)"),
        "{reason}"
    );
}

/// A session saves a workspace holding `.studio/conda -> <a directory standing for />`
/// and reports its manifest's hash; the next session, with conda packages, restores it
/// (the hash matches), refuses to clean environments through the link, ends errored with
/// the reason, saves nothing, and the directory standing for `/` is as it was.
#[tokio::test]
async fn a_restored_conda_link_to_the_root_ends_the_session_and_deletes_nothing() {
    use sha2::Digest;
    let objects = objects().await;
    let studio = unique("conda-root");
    let fake_root = tempfile::tempdir().unwrap();
    for f in ["etc/passwd", "bin/sh"] {
        let p = fake_root.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"keep").unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let channel = Channel::start(|_| false).await;
    let s = start(&studio, dir.path(), "cp-1", None, &channel.env());
    ready(&s).await;
    std::fs::create_dir_all(dir.path().join(".studio")).unwrap();
    std::os::unix::fs::symlink(fake_root.path(), dir.path().join(".studio/conda")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let (code, log) = terminate(s).await;
    assert_eq!(code, 0, "{log}");
    let saved = manifest(&objects, &studio, "cp-1").await.unwrap();
    let sha: String = sha2::Sha256::digest(&saved)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let reported: Vec<String> = channel
        .reports()
        .iter()
        .filter_map(|r| r["manifestSha256"].as_str().map(String::from))
        .collect();
    assert_eq!(reported.len(), 1, "one report after the save: {reported:?}");
    assert_eq!(reported[0], sha, "the save's report names its manifest");

    let channel = Channel::start(|_| false).await;
    let mut extra = channel.env();
    extra.push(("CONDA_PACKAGES", r#"["numpy"]"#.into()));
    extra.push(("STUDIO_CONDA_COMMAND", "true".into()));
    extra.push(("CHECKPOINT_RESTORE_SHA256", sha));
    let fresh = tempfile::tempdir().unwrap();
    let mut s = start(
        &studio,
        fresh.path(),
        "cp-2",
        Some(&checkpoint(&studio, "cp-1")),
        &extra,
    );
    let (code, log) = exit(&mut s).await;
    assert_eq!(code, 3, "{log}");
    let reason = channel.failure();
    assert!(
        reason.contains(".studio/conda is a symbolic link: not followed"),
        "{reason}"
    );
    assert!(manifest(&objects, &studio, "cp-2").await.is_none());
    for f in ["etc/passwd", "bin/sh"] {
        assert_eq!(std::fs::read(fake_root.path().join(f)).unwrap(), b"keep");
    }
    assert_eq!(
        std::fs::read(fresh.path().join("notes.txt")).unwrap(),
        b"mine"
    );
}

/// A stand-in for the control plane's `POST /agent/report`: records reports, answers
/// `stopRequested` as `stop(n)` says for the n-th report.
struct Channel {
    port: u16,
    reports: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Channel {
    async fn start(stop: fn(usize) -> bool) -> Channel {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reports = Arc::new(Mutex::new(Vec::new()));
        let seen = reports.clone();
        tokio::spawn(serve(listener, move |req: Request<Incoming>| {
            let seen = seen.clone();
            async move {
                let auth = req.headers().get("authorization").cloned();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                if auth.as_ref().and_then(|a| a.to_str().ok()) != Some("Bearer test-credential") {
                    return full(StatusCode::UNAUTHORIZED, "application/json", "{}");
                }
                let n = {
                    let mut all = seen.lock().unwrap();
                    all.push(serde_json::from_slice(&body).unwrap());
                    all.len()
                };
                let reply = serde_json::json!({"stopRequested": stop(n), "reportSeconds": 1});
                full(StatusCode::OK, "application/json", reply.to_string())
            }
        }));
        Channel { port, reports }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STUDIO_API_URL", format!("http://127.0.0.1:{}", self.port)),
            ("STUDIO_AGENT_TOKEN", "test-credential".into()),
        ]
    }

    fn reports(&self) -> Vec<serde_json::Value> {
        self.reports.lock().unwrap().clone()
    }

    /// The reason of the agent's failure report.
    fn failure(&self) -> String {
        self.reports()
            .iter()
            .find(|r| r["state"] == "failed")
            .and_then(|r| r["reason"].as_str().map(String::from))
            .expect("a failure report")
    }
}

/// The repository root and its venv (infra/lib.sh's), for the conda stand-in tools.
fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn venv_python() -> String {
    let venv = std::env::var("STUDIOS_VENV")
        .unwrap_or_else(|_| root().join(".venv").display().to_string());
    format!("{venv}/bin/python")
}

/// A local channel with `plot-helper` (needs `qc-tools`), and an installer that logs
/// each call to `calls` before running the rattler-based stand-in for micromamba.
fn conda_fixture(dir: &Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let channel = dir.join("channel");
    let out = std::process::Command::new(venv_python())
        .arg(root().join("infra/conda-channel.py"))
        .arg(&channel)
        .args(["qc-tools=1.0", "plot-helper=0.3:qc-tools"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = dir.join("calls.log");
    let installer = dir.join("installer.sh");
    std::fs::write(
        &installer,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} {} \"$@\"\n",
            calls.display(),
            venv_python(),
            root().join("infra/conda-create.py").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&installer, std::fs::Permissions::from_mode(0o755)).unwrap();
    (channel.display().to_string(), installer, calls)
}

fn calls(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_conda_environment_is_made_once_then_restored_on_restart_and_in_a_clone() {
    objects().await;
    let studio = unique("conda");
    let fixture = tempfile::tempdir().unwrap();
    let (channel, installer, log) = conda_fixture(fixture.path());
    // The "IDE" proves the environment is active for it: it runs plot-helper first.
    let ide = format!("plot-helper > {{workspace}}/ide-saw.txt && {IDE}");
    let env = |extra: &[(&'static str, String)]| {
        let mut v = vec![
            ("CONDA_PACKAGES", r#"["plot-helper=0.3"]"#.to_string()),
            ("STUDIO_CONDA_CHANNELS", channel.clone()),
            ("STUDIO_CONDA_COMMAND", installer.display().to_string()),
            ("STUDIO_IDE_COMMAND", ide.clone()),
        ];
        v.extend(extra.iter().cloned());
        v
    };

    let one = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let s = start(&studio, one.path(), "cp-1", None, &env(&[]));
    ready(&s).await;
    let created = started.elapsed();
    assert_eq!(calls(&log), 1, "one solve and install");
    assert_eq!(
        std::fs::read_to_string(one.path().join("ide-saw.txt")).unwrap(),
        "plot-helper 0.3\n"
    );
    assert_eq!(terminate(s).await.0, 0);

    // A restart restores the environment with the checkpoint: no second solve.
    let two = tempfile::tempdir().unwrap();
    let cp1 = checkpoint(&studio, "cp-1");
    let started = Instant::now();
    let s = start(&studio, two.path(), "cp-2", Some(&cp1), &env(&[]));
    ready(&s).await;
    let restarted = started.elapsed();
    assert_eq!(calls(&log), 1, "restored, not installed again");
    assert_eq!(terminate(s).await.0, 0);

    // A clone (another studio) starting from that checkpoint: the same.
    let clone = unique("conda-clone");
    let three = tempfile::tempdir().unwrap();
    let s = start(&clone, three.path(), "cp-1", Some(&cp1), &env(&[]));
    ready(&s).await;
    assert_eq!(calls(&log), 1, "the clone restored it too");
    assert_eq!(terminate(s).await.0, 0);
    println!(
        "conda environment: first start to ready {:?} (created), restart to ready {:?} (restored)",
        created, restarted
    );

    // Other specs: a new environment, and the old one is not carried on.
    let four = tempfile::tempdir().unwrap();
    let other = [
        ("CONDA_PACKAGES", r#"["qc-tools"]"#.to_string()),
        ("STUDIO_CONDA_CHANNELS", channel.clone()),
        ("STUDIO_CONDA_COMMAND", installer.display().to_string()),
        (
            "STUDIO_IDE_COMMAND",
            format!("qc-tools > {{workspace}}/ide-saw.txt && {IDE}"),
        ),
    ];
    let s = start(
        &clone,
        four.path(),
        "cp-2",
        Some(&checkpoint(&clone, "cp-1")),
        &other,
    );
    ready(&s).await;
    assert_eq!(calls(&log), 2);
    let envs: Vec<_> = std::fs::read_dir(four.path().join(".studio/conda"))
        .unwrap()
        .collect();
    assert_eq!(envs.len(), 1);
    assert_eq!(terminate(s).await.0, 0);
}

#[tokio::test]
async fn a_spec_that_cannot_be_solved_ends_the_session_with_the_solvers_message() {
    objects().await;
    let studio = unique("bad-spec");
    let fixture = tempfile::tempdir().unwrap();
    let (channel_dir, installer, _) = conda_fixture(fixture.path());
    let channel = Channel::start(|_| false).await;
    let mut extra = channel.env();
    extra.push(("CONDA_PACKAGES", r#"["plot-helper>=2"]"#.into()));
    extra.push(("STUDIO_CONDA_CHANNELS", channel_dir));
    extra.push(("STUDIO_CONDA_COMMAND", installer.display().to_string()));
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(&studio, dir.path(), "cp-1", None, &extra);
    let (code, log) = exit(&mut s).await;
    assert_eq!(code, 5, "{log}");
    let reports = channel.reports();
    assert!(reports
        .iter()
        .any(|r| r["state"] == "starting" && r["detail"] == "installing 1 conda packages"));
    let reason = channel.failure();
    assert!(
        reason.starts_with("the conda environment could not be created: error: Cannot solve the request because of: No candidates were found for plot-helper >=2"),
        "{reason}"
    );
}

#[tokio::test]
async fn mounts_come_before_the_ide_and_a_failing_one_ends_the_session() {
    objects().await;
    let fixture = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let path = fixture.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    };
    // A stand-in for mount-s3 that records its arguments in the directory it "mounts".
    let good = script(
        "mount-ok.sh",
        "mkdir -p \"$2\" && echo \"$@\" > \"$2/ARGS\"",
    );
    let mounts = r#"[{"uri": "s3://data/reads/", "mountPath": "/workspace/data/reads", "access": "read-only"},
                     {"uri": "s3://scratch/out/", "mountPath": "/workspace/data/out", "access": "read-write"}]"#;
    let studio = unique("mounts");
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        ("STUDIO_MOUNTS", mounts.to_string()),
        ("STUDIO_MOUNT_COMMAND", good),
    ];
    let s = start(&studio, dir.path(), "cp-1", None, &extra);
    ready(&s).await;
    let args = |rel: &str| std::fs::read_to_string(dir.path().join(rel)).unwrap();
    // mount-s3 logs into the session's runtime directory (no syslog in a container).
    assert!(args("data/reads/ARGS").contains("--prefix=reads/ --read-only --log-directory=/"));
    assert!(args("data/out/ARGS")
        .contains("--prefix=out/ --allow-overwrite --allow-delete --log-directory=/"));
    assert!(args("data/out/ARGS").trim_end().ends_with("/logs/mount-s3"));
    assert_eq!(terminate(s).await.0, 0);
    // Mounted data is not part of the checkpoint.
    let m = manifest(&objects().await, &studio, "cp-1").await.unwrap();
    assert!(!String::from_utf8_lossy(&m).contains("ARGS"));

    let bad = script(
        "mount-fails.sh",
        "echo 'Error: Failed to create mount process' >&2; echo 'Caused by: bucket scratch does not exist' >&2; exit 1",
    );
    let channel = Channel::start(|_| false).await;
    let mut extra = channel.env();
    extra.push(("STUDIO_MOUNTS", mounts.to_string()));
    extra.push(("STUDIO_MOUNT_COMMAND", bad));
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(&unique("bad-mount"), dir.path(), "cp-1", None, &extra);
    let (code, log) = exit(&mut s).await;
    assert_eq!(code, 6, "{log}");
    let reason = channel.failure();
    assert!(
        reason.contains("cannot mount s3://data/reads/ at ")
            && reason.ends_with(
                "Error: Failed to create mount process | Caused by: bucket scratch does not exist"
            ),
        "{reason}"
    );
}
