//! Which IDE a template runs and how (docs/agent.md, "The IDE"). Every IDE is reachable
//! only through the agent: JupyterLab on a loopback port with a token the agent adds to
//! each request, code-server and Xpra on a unix socket in a directory only the IDE's user
//! can enter (the agent is root), RStudio on a loopback port with `--auth-none=1` (it
//! has neither a socket nor a header the agent could add). `STUDIO_IDE_COMMAND`
//! replaces the template's command (custom images must set it): `{port}`, `{basePath}`,
//! `{workspace}` and `{token}` are filled in, and it runs with `/bin/sh -c` on a
//! loopback port.

use crate::upstream::Upstream;
use std::ffi::CString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub program: String,
    pub args: Vec<String>,
    /// Set in the IDE's environment (over the agent's own).
    pub env: Vec<(String, String)>,
    /// Where the proxy reaches the IDE.
    pub upstream: Upstream,
    /// Added by the proxy to every request it forwards (the IDE's own credentials,
    /// which the browser never sees; the scheme the browser used).
    pub headers: Vec<(String, String)>,
    /// Whether the IDE wants paths without the base path (it serves at `/`).
    pub strip_base_path: bool,
    /// Who the IDE runs as (`None`: the agent's own user). RStudio's server starts as
    /// root and runs the R sessions as its `--server-user` itself.
    pub run_as: Option<User>,
    /// Written before the IDE starts (RStudio's `Renviron.site`).
    pub files: Vec<Block>,
}

/// A block of lines the agent owns in a file it shares with the image (between two
/// marker lines, replaced at every start, the rest of the file kept).
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub path: PathBuf,
    pub lines: Vec<String>,
}

/// A user of the image, for the IDE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// What the plan is made from.
pub struct Inputs<'a> {
    pub template: &'a str,
    /// `STUDIO_IDE_COMMAND`.
    pub command: Option<&'a str>,
    /// A free loopback port (for the IDEs that listen on one).
    pub port: u16,
    pub base_path: &'a str,
    pub workspace: &'a Path,
    /// A fresh random secret for this session.
    pub token: &'a str,
    /// The session's private socket directory (0700, owned by the IDE's user).
    pub socket_dir: &'a Path,
    pub user: Option<&'a User>,
    /// The agent's own environment (what the job got).
    pub env: &'a [(String, String)],
    /// The conda environment's activation (conda::activation), if any.
    pub activation: &'a [(String, String)],
    /// Whether browsers reach the studio over https (`STUDIO_CONNECT_URL`).
    pub https: bool,
}

/// The non-root user each template's upstream image has (jupyter/docker-stacks' `jovyan`,
/// code-server's `coder`, rocker's `rstudio`); Xpra's image has none.
pub fn default_user(template: &str) -> Option<&'static str> {
    match template {
        "jupyter" => Some("jovyan"),
        "vscode" => Some("coder"),
        "rstudio" => Some("rstudio"),
        _ => None,
    }
}

/// The IDE's user: `STUDIO_IDE_USER` if set (`root` or the agent's own name: no switch;
/// a name the image lacks is an error), else the template's usual user when the image
/// has it, else none (the IDE runs as the agent).
pub fn resolve_user(template: &str, setting: Option<&str>) -> Result<Option<User>, String> {
    let own = unsafe { libc::geteuid() };
    let pick = |name: &str| lookup_user(name).filter(|u| u.uid != own);
    match setting.map(str::trim).filter(|s| !s.is_empty()) {
        Some(name) => match lookup_user(name) {
            Some(u) if u.uid == own => Ok(None),
            Some(u) => Ok(Some(u)),
            None => Err(format!(
                "STUDIO_IDE_USER '{name}' is not a user of this image (/etc/passwd)"
            )),
        },
        None => Ok(default_user(template).and_then(pick)),
    }
}

/// getpwnam(3): the user's ids and home.
pub fn lookup_user(name: &str) -> Option<User> {
    let c = CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16384];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into `pwd` and `buf`, both alive and sized as passed.
    let rc = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: on success pw_dir points into `buf`, a NUL-terminated string.
    let home = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) }
        .to_string_lossy()
        .into_owned();
    Some(User {
        name: name.to_string(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        home: PathBuf::from(home),
    })
}

/// `CUDA_VISIBLE_DEVICES` for the GPUs ECS assigned the job. A session with mounts runs
/// privileged and so sees every GPU of the host; ECS names the job's own in
/// `NVIDIA_VISIBLE_DEVICES` (their UUIDs, which CUDA accepts), and CUDA programs then
/// use only those. This keeps programs from using another job's GPU by accident; a
/// root process that wants another GPU can still open it (docs/agent.md).
pub fn gpu_env(env: &[(String, String)]) -> Option<(String, String)> {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim());
    if get("CUDA_VISIBLE_DEVICES").is_some() {
        return None;
    }
    let devices = get("NVIDIA_VISIBLE_DEVICES")?;
    match devices {
        "" | "all" | "none" | "void" => None,
        list => Some(("CUDA_VISIBLE_DEVICES".into(), list.to_string())),
    }
}

/// RStudio's R sessions do not inherit rserver's environment: R reads
/// `$R_HOME/etc/Renviron.site` at startup (rocker's own init writes the container's
/// environment there). The job's AWS settings (the task role's credentials endpoint,
/// the region), the conda environment, HOME/USER and the GPUs go there.
pub fn renviron_lines(inputs: &Inputs, ide_env: &[(String, String)]) -> Vec<String> {
    let mut vars: Vec<(String, String)> = inputs
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("AWS_") || k == "NVIDIA_VISIBLE_DEVICES")
        .cloned()
        .collect();
    for (k, v) in ide_env {
        vars.retain(|(n, _)| n != k);
        vars.push((k.clone(), v.clone()));
    }
    vars.sort();
    vars.iter()
        .filter_map(|(k, v)| renviron_line(k, v))
        .collect()
}

/// `NAME='value'`. R expands `${…}` in Renviron values and has no escape for quotes, so
/// a value with `'`, `$`, `\` or a line break is left out (with a warning).
fn renviron_line(name: &str, value: &str) -> Option<String> {
    if value.contains(['\'', '$', '\\', '\n', '\r']) {
        tracing::warn!(
            name,
            "not written to Renviron.site: its value has a quote, $, \\ or a line break"
        );
        return None;
    }
    Some(format!("{name}='{value}'"))
}

/// What the IDE gets in its environment: the conda environment, its user's HOME and
/// USER, the GPUs.
fn ide_env(inputs: &Inputs) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = inputs.activation.to_vec();
    if let Some(u) = inputs.user {
        env.push(("HOME".into(), u.home.display().to_string()));
        env.push(("USER".into(), u.name.clone()));
        env.push(("LOGNAME".into(), u.name.clone()));
    }
    env.extend(gpu_env(inputs.env));
    env
}

pub fn plan(inputs: &Inputs) -> Result<Plan, String> {
    let ws = inputs.workspace.display().to_string();
    let port = inputs.port;
    let token = inputs.token;
    let fill = |s: &str| {
        s.replace("{port}", &port.to_string())
            .replace("{basePath}", inputs.base_path)
            .replace("{workspace}", &ws)
            .replace("{token}", token)
    };
    let loopback = Upstream::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
    let mut env = ide_env(inputs);
    let jupyter_token = vec![("authorization".to_string(), format!("token {token}"))];
    if let Some(command) = inputs.command {
        env.push(("STUDIO_IDE_TOKEN".into(), token.to_string()));
        return Ok(Plan {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), fill(command)],
            env,
            upstream: loopback,
            headers: if inputs.template == "jupyter" {
                jupyter_token
            } else {
                vec![]
            },
            strip_base_path: matches!(inputs.template, "vscode" | "xpra" | "rstudio"),
            run_as: inputs.user.cloned(),
            files: vec![],
        });
    }
    let strs = |v: &[&str]| v.iter().map(|s| fill(s)).collect::<Vec<_>>();
    let socket = |name: &str| inputs.socket_dir.join(name);
    Ok(match inputs.template {
        "jupyter" => Plan {
            program: "jupyter".into(),
            args: strs(&[
                "lab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                "--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                "--ServerApp.base_url={basePath}",
                "--ServerApp.root_dir={workspace}",
                "--IdentityProvider.token={token}",
                "--ServerApp.allow_remote_access=True",
                // Saving writes the file in place. Atomic writing copies the old file to
                // `.~<name>` beside it, overwrites, deletes the copy, and on a failed
                // write renames the copy back: in an S3 mount every save uploads and
                // deletes an extra object, and the rename-back is refused (Mountpoint
                // has no rename; docs/agent.md).
                "--FileContentsManager.use_atomic_writing=False",
                // Images whose IDE runs as root (no `jovyan`): the container is the
                // boundary.
                "--allow-root",
            ]),
            env,
            upstream: loopback,
            headers: jupyter_token,
            strip_base_path: false,
            run_as: inputs.user.cloned(),
            files: vec![],
        },
        "rstudio" => {
            let user = inputs.user.map(|u| u.name.clone()).ok_or(
                "the rstudio template needs a non-root user for the R sessions (rocker's `rstudio`, or STUDIO_IDE_USER)",
            )?;
            let r_home = inputs
                .env
                .iter()
                .find(|(k, _)| k == "R_HOME")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "/usr/local/lib/R".into());
            let lines = renviron_lines(inputs, &env);
            Plan {
                program: "/usr/lib/rstudio-server/bin/rserver".into(),
                args: vec![
                    "--server-daemonize=0".into(),
                    // rserver starts as root and runs the R sessions as this user; with
                    // --auth-none it takes the session user from USER (rocker's /init
                    // sets both; rocker-versioned PR #99).
                    format!("--server-user={user}"),
                    "--auth-none=1".into(),
                    // Only the agent in front of it: no sign-in, so loopback only.
                    "--www-address=127.0.0.1".into(),
                    format!("--www-port={port}"),
                    // The path the browser sees, for RStudio's redirects and cookies.
                    format!("--www-root-path={}", inputs.base_path),
                ],
                env,
                upstream: loopback,
                // RStudio builds absolute redirects from the scheme it is told.
                headers: vec![(
                    "x-forwarded-proto".into(),
                    if inputs.https { "https" } else { "http" }.into(),
                )],
                strip_base_path: true,
                run_as: None,
                files: vec![Block {
                    path: Path::new(&r_home).join("etc/Renviron.site"),
                    lines,
                }],
            }
        }
        "vscode" => {
            let path = socket("code-server.sock");
            Plan {
                program: "code-server".into(),
                args: vec![
                    // A unix socket only the IDE's user (and root) can reach, in place
                    // of a port: code-server's own sign-in is off, the socket's
                    // directory is the guard.
                    format!("--socket={}", path.display()),
                    "--socket-mode=600".into(),
                    "--auth=none".into(),
                    "--disable-telemetry".into(),
                    "--disable-update-check".into(),
                    "--disable-workspace-trust".into(),
                    "--ignore-last-opened".into(),
                    ws.clone(),
                ],
                env,
                upstream: Upstream::Unix(path),
                headers: vec![],
                strip_base_path: true,
                run_as: inputs.user.cloned(),
                files: vec![],
            }
        }
        "xpra" => {
            let path = socket("xpra.sock");
            Plan {
                program: "xpra".into(),
                args: vec![
                    "start".into(),
                    "--daemon=no".into(),
                    // No display number: Xpra has Xvfb pick a free one (-displayfd),
                    // which skips every display whose socket is taken — under host
                    // networking the X sockets of all containers share one abstract
                    // namespace, so two sessions on a host get different displays.
                    // The HTML5 client and its WebSocket over a unix socket only the
                    // IDE's user can reach; no TCP port.
                    format!("--bind={}", path.display()),
                    format!("--socket-dir={}", inputs.socket_dir.display()),
                    "--socket-permissions=600".into(),
                    "--html=on".into(),
                    // What a browser-only session has no use for (and what would need
                    // a system bus, a sound server or a printer the image lacks).
                    "--mdns=no".into(),
                    "--pulseaudio=no".into(),
                    "--speaker=off".into(),
                    "--microphone=off".into(),
                    "--webcam=no".into(),
                    "--printing=no".into(),
                    "--notifications=no".into(),
                    "--dbus-launch=".into(),
                    "--dbus-proxy=no".into(),
                    "--dbus-control=no".into(),
                    "--systemd-run=no".into(),
                    "--opengl=no".into(),
                    format!("--chdir={ws}"),
                    "--start=xterm".into(),
                ],
                env,
                upstream: Upstream::Unix(path),
                headers: vec![],
                strip_base_path: true,
                run_as: inputs.user.cloned(),
                files: vec![],
            }
        }
        other => {
            return Err(format!(
                "template '{other}' has no built-in IDE: a custom image sets STUDIO_IDE_COMMAND (docs/agent.md)"
            ))
        }
    })
}

const BEGIN: &str = "# >>> studio agent: this session's environment (rewritten at every start)";
const END: &str = "# <<< studio agent";

/// `existing` with the agent's block replaced by `lines` (appended if it had none:
/// later lines win in Renviron files).
pub fn with_block(existing: &str, lines: &[String]) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in existing.lines() {
        if line == BEGIN {
            inside = true;
        } else if line == END && inside {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(BEGIN);
    out.push('\n');
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// Writes the plan's blocks.
pub fn write_files(plan: &Plan) -> Result<(), String> {
    for block in &plan.files {
        let existing = std::fs::read_to_string(&block.path).unwrap_or_default();
        if let Some(dir) = block.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(&block.path, with_block(&existing, &block.lines))
            .map_err(|e| format!("cannot write {}: {e}", block.path.display()))?;
    }
    Ok(())
}

/// The session's runtime directory (outside the workspace, so never checkpointed): a
/// fresh `studio-<random>` under `root`, 0711 (others may pass, not list), with
/// `ide/` (0700, the IDE's user: its sockets) and `logs/` (0755: mount-s3's logs, for
/// the IDE's terminals to read).
pub struct Runtime {
    pub dir: PathBuf,
    pub sockets: PathBuf,
    pub logs: PathBuf,
}

pub fn runtime(root: &Path, suffix: &str, user: Option<&User>) -> Result<Runtime, String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = root.join(format!("studio-{suffix}"));
    let make = |p: &Path, mode: u32| {
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(p)
            .and_then(|_| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| format!("cannot create {}: {e}", p.display()))
    };
    // create, not create_all: a directory someone made in advance is refused.
    make(&dir, 0o711)?;
    let sockets = dir.join("ide");
    make(&sockets, 0o700)?;
    if let Some(u) = user {
        std::os::unix::fs::chown(&sockets, Some(u.uid), Some(u.gid))
            .map_err(|e| format!("cannot give {} to {}: {e}", sockets.display(), u.name))?;
    }
    let logs = dir.join("logs");
    make(&logs, 0o755)?;
    Ok(Runtime { dir, sockets, logs })
}

/// Gives the workspace to the IDE's user (restored files, the conda environment: the
/// agent wrote them as root). Mount points (another file system) are not entered.
pub fn chown_workspace(workspace: &Path, user: &User) -> Result<u64, String> {
    use std::os::unix::fs::MetadataExt;
    let root_dev = std::fs::metadata(workspace)
        .map_err(|e| format!("cannot read {}: {e}", workspace.display()))?
        .dev();
    let mut count = 0u64;
    let mut stack = vec![workspace.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.dev() != root_dev {
            continue;
        }
        if meta.uid() != user.uid || meta.gid() != user.gid {
            std::os::unix::fs::lchown(&path, Some(user.uid), Some(user.gid))
                .map_err(|e| format!("cannot give {} to {}: {e}", path.display(), user.name))?;
            count += 1;
        }
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for entry in entries.flatten() {
                stack.push(entry.path());
            }
        }
    }
    Ok(count)
}

/// The processes of session `sid`, from /proc. The IDE runs as the leader of a session
/// of its own (setsid): what it starts stays in it even in a process group of its own,
/// as Xpra's Xvfb is (Xpra starts it with setpgrp), unless it starts a session itself.
pub fn session_members(sid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| session_of(&stat))
                == Some(sid)
        })
        .collect()
}

/// The session id in a /proc/<pid>/stat line: the 6th field, counted after the command
/// name's closing parenthesis (the name may hold spaces and parentheses).
fn session_of(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// Sends `signal` to every process of session `sid`; how many there were.
pub fn signal_session(sid: i32, signal: i32) -> usize {
    let members = session_members(sid);
    for pid in &members {
        // SAFETY: kill(2) on a process id; no memory is involved.
        unsafe {
            libc::kill(*pid, signal);
        }
    }
    members.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            name: "rstudio".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/rstudio".into(),
        }
    }

    fn inputs<'a>(
        template: &'a str,
        env: &'a [(String, String)],
        activation: &'a [(String, String)],
        user: Option<&'a User>,
    ) -> Inputs<'a> {
        Inputs {
            template,
            command: None,
            port: 4000,
            base_path: "/connect/st-1/",
            workspace: Path::new("/workspace"),
            token: "t0k",
            socket_dir: Path::new("/tmp/studio-x/ide"),
            user,
            env,
            activation,
            https: true,
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn jupyter_gets_its_token_and_saves_in_place() {
        let p = plan(&inputs("jupyter", &[], &[], None)).unwrap();
        assert_eq!(p.program, "jupyter");
        for arg in [
            "--ServerApp.base_url=/connect/st-1/",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=4000",
            "--IdentityProvider.token=t0k",
            "--FileContentsManager.use_atomic_writing=False",
        ] {
            assert!(p.args.contains(&arg.to_string()), "{arg}: {:?}", p.args);
        }
        assert_eq!(p.headers, pairs(&[("authorization", "token t0k")]));
        assert_eq!(p.upstream, Upstream::Tcp("127.0.0.1:4000".parse().unwrap()));
        assert!(!p.strip_base_path);
    }

    #[test]
    fn code_server_and_xpra_listen_on_the_private_socket_only() {
        let v = plan(&inputs("vscode", &[], &[], None)).unwrap();
        assert_eq!(
            v.upstream,
            Upstream::Unix("/tmp/studio-x/ide/code-server.sock".into())
        );
        assert!(v
            .args
            .contains(&"--socket=/tmp/studio-x/ide/code-server.sock".to_string()));
        assert!(v.args.contains(&"--auth=none".to_string()));
        assert!(!v.args.iter().any(|a| a.starts_with("--bind-addr")));
        assert_eq!(v.args.last().unwrap(), "/workspace");
        assert!(v.strip_base_path);

        let x = plan(&inputs("xpra", &[], &[], None)).unwrap();
        assert_eq!(x.args[0], "start");
        assert_eq!(
            x.upstream,
            Upstream::Unix("/tmp/studio-x/ide/xpra.sock".into())
        );
        assert!(x
            .args
            .contains(&"--bind=/tmp/studio-x/ide/xpra.sock".to_string()));
        assert!(x.args.contains(&"--html=on".to_string()));
        // No TCP listener, and no display number: Xvfb picks a free one.
        assert!(!x.args.iter().any(|a| a.starts_with("--bind-tcp")));
        assert!(!x.args.iter().any(|a| a.starts_with(':')));
    }

    #[test]
    fn rstudio_runs_as_the_rocker_user_on_loopback_with_the_jobs_environment() {
        let env = pairs(&[
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/abc",
            ),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("NVIDIA_VISIBLE_DEVICES", "GPU-1,GPU-2"),
            ("STUDIO_AGENT_TOKEN", "secret-of-the-agent"),
            ("R_HOME", "/opt/R"),
            ("PATH", "/usr/bin"),
        ]);
        let activation = pairs(&[
            ("PATH", "/workspace/.conda/envs/x/bin:/usr/bin"),
            ("CONDA_PREFIX", "/workspace/.conda/envs/x"),
        ]);
        let u = user();
        let p = plan(&inputs("rstudio", &env, &activation, Some(&u))).unwrap();
        assert_eq!(p.program, "/usr/lib/rstudio-server/bin/rserver");
        assert_eq!(
            p.args,
            [
                "--server-daemonize=0",
                "--server-user=rstudio",
                "--auth-none=1",
                "--www-address=127.0.0.1",
                "--www-port=4000",
                "--www-root-path=/connect/st-1/",
            ]
        );
        // rserver itself stays root (it switches to the user for the R sessions).
        assert_eq!(p.run_as, None);
        assert!(p.env.contains(&("USER".into(), "rstudio".into())));
        assert!(p.env.contains(&("HOME".into(), "/home/rstudio".into())));
        assert_eq!(p.headers, pairs(&[("x-forwarded-proto", "https")]));
        assert_eq!(p.files.len(), 1);
        assert_eq!(p.files[0].path, PathBuf::from("/opt/R/etc/Renviron.site"));
        assert_eq!(
            p.files[0].lines,
            [
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI='/v2/credentials/abc'",
                "AWS_DEFAULT_REGION='eu-west-1'",
                "AWS_REGION='eu-west-1'",
                "CONDA_PREFIX='/workspace/.conda/envs/x'",
                "CUDA_VISIBLE_DEVICES='GPU-1,GPU-2'",
                "HOME='/home/rstudio'",
                "LOGNAME='rstudio'",
                "NVIDIA_VISIBLE_DEVICES='GPU-1,GPU-2'",
                "PATH='/workspace/.conda/envs/x/bin:/usr/bin'",
                "USER='rstudio'",
            ]
        );
        // Without a user there is nobody to run R as.
        assert!(plan(&inputs("rstudio", &env, &[], None))
            .unwrap_err()
            .contains("non-root user"));
        // Plain http: RStudio is told so.
        let mut i = inputs("rstudio", &env, &[], Some(&u));
        i.https = false;
        assert_eq!(
            plan(&i).unwrap().headers,
            pairs(&[("x-forwarded-proto", "http")])
        );
    }

    #[test]
    fn the_renviron_block_is_replaced_and_unsafe_values_left_out() {
        let first = with_block("R_LIBS_USER=~/R\n", &["A='1'".to_string()]);
        assert_eq!(first, format!("R_LIBS_USER=~/R\n{BEGIN}\nA='1'\n{END}\n"));
        let second = with_block(&first, &["B='2'".to_string()]);
        assert_eq!(second, format!("R_LIBS_USER=~/R\n{BEGIN}\nB='2'\n{END}\n"));
        assert_eq!(renviron_line("X", "a'b"), None);
        assert_eq!(renviron_line("X", "${HOME}"), None);
        assert_eq!(renviron_line("X", "a b"), Some("X='a b'".into()));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/Renviron.site");
        let plan = Plan {
            program: String::new(),
            args: vec![],
            env: vec![],
            upstream: Upstream::Tcp("127.0.0.1:1".parse().unwrap()),
            headers: vec![],
            strip_base_path: false,
            run_as: None,
            files: vec![Block {
                path: path.clone(),
                lines: vec!["A='1'".into()],
            }],
        };
        write_files(&plan).unwrap();
        write_files(&plan).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{BEGIN}\nA='1'\n{END}\n")
        );
    }

    #[test]
    fn the_ide_sees_only_the_gpus_ecs_assigned() {
        let assigned = pairs(&[("NVIDIA_VISIBLE_DEVICES", "GPU-aa,GPU-bb")]);
        assert_eq!(
            gpu_env(&assigned),
            Some(("CUDA_VISIBLE_DEVICES".into(), "GPU-aa,GPU-bb".into()))
        );
        assert_eq!(gpu_env(&pairs(&[("NVIDIA_VISIBLE_DEVICES", "all")])), None);
        assert_eq!(gpu_env(&[]), None);
        let own = pairs(&[
            ("NVIDIA_VISIBLE_DEVICES", "GPU-aa"),
            ("CUDA_VISIBLE_DEVICES", "0"),
        ]);
        assert_eq!(gpu_env(&own), None);
        let p = plan(&inputs("vscode", &assigned, &[], None)).unwrap();
        assert!(p
            .env
            .contains(&("CUDA_VISIBLE_DEVICES".into(), "GPU-aa,GPU-bb".into())));
    }

    #[test]
    fn custom_commands_and_unknown_templates() {
        assert!(plan(&inputs("custom", &[], &[], None))
            .unwrap_err()
            .contains("STUDIO_IDE_COMMAND"));
        let mut i = inputs("custom", &[], &[], None);
        i.command = Some("my-ide --port {port} --root {workspace}");
        let c = plan(&i).unwrap();
        assert_eq!(c.args, vec!["-c", "my-ide --port 4000 --root /workspace"]);
        assert!(c.env.contains(&("STUDIO_IDE_TOKEN".into(), "t0k".into())));
        assert_eq!(c.upstream, Upstream::Tcp("127.0.0.1:4000".parse().unwrap()));
    }

    #[test]
    fn users_come_from_the_image() {
        let root = lookup_user("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(lookup_user("no-such-user-here").is_none());
        assert!(resolve_user("jupyter", Some("no-such-user-here"))
            .unwrap_err()
            .contains("STUDIO_IDE_USER"));
        // The agent's own user: no switch.
        let me = unsafe { libc::geteuid() };
        if me == 0 {
            assert_eq!(resolve_user("jupyter", Some("root")).unwrap(), None);
        }
        // A template whose image has no such user runs the IDE as the agent.
        assert_eq!(resolve_user("xpra", None).unwrap(), None);
    }

    #[test]
    fn a_session_is_found_and_ended_with_what_it_started_in_other_groups() {
        assert_eq!(session_of("7 (a (b) c) S 1 7 42 0 -1"), Some(42));
        assert_eq!(session_of("garbage"), None);
        // A session leader whose child moves to a process group of its own (as Xvfb
        // under Xpra), both still in the session.
        let mut leader = std::process::Command::new("/bin/sh");
        leader.args(["-c", "perl -e 'setpgrp(0, 0); sleep 30' & sleep 30"]);
        // SAFETY: setsid(2) in the child before exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            leader.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = leader.spawn().unwrap();
        let sid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let two_groups = |sid: i32| {
            let groups: std::collections::HashSet<i32> = session_members(sid)
                .iter()
                .map(|p| unsafe { libc::getpgid(*p) })
                .collect();
            groups.len() >= 2
        };
        while !(session_members(sid).len() >= 2 && two_groups(sid))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let members = session_members(sid);
        assert!(members.len() >= 2, "{members:?}");
        assert!(two_groups(sid), "one process group only: {members:?}");
        assert!(signal_session(sid, libc::SIGKILL) >= 2);
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !session_members(sid).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Killed ones that nobody reaped yet are zombies: none may be alive.
        let alive: Vec<i32> = session_members(sid)
            .into_iter()
            .filter(|p| {
                !std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .is_ok_and(|s| s[s.rfind(')').unwrap() + 1..].trim_start().starts_with('Z'))
            })
            .collect();
        assert!(alive.is_empty(), "{alive:?}");
    }

    #[test]
    fn the_runtime_directory_is_private_and_fresh() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let r = runtime(root.path(), "abc", None).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&r.dir), 0o711);
        assert_eq!(mode(&r.sockets), 0o700);
        assert_eq!(mode(&r.logs), 0o755);
        // The same name again (someone made it first) is refused.
        assert!(runtime(root.path(), "abc", None).is_err());
    }
}
