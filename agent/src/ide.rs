//! Which IDE a template runs and how (docs/agent.md). The IDE listens on loopback; the
//! agent's port is the way in. `STUDIO_IDE_COMMAND` replaces the template's command
//! (custom images must set it): `{port}`, `{basePath}`, `{workspace}` and `{token}` are
//! filled in, and it runs with `/bin/sh -c`.

use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub program: String,
    pub args: Vec<String>,
    /// Added by the proxy to every request it forwards (the IDE's own credentials,
    /// which the browser never sees).
    pub auth_header: Option<(String, String)>,
    /// Whether the IDE wants paths without the base path (it serves at `/`).
    pub strip_base_path: bool,
}

pub fn plan(
    template: &str,
    command: Option<&str>,
    port: u16,
    base_path: &str,
    workspace: &Path,
    token: &str,
) -> Result<Plan, String> {
    let ws = workspace.display().to_string();
    let fill = |s: &str| {
        s.replace("{port}", &port.to_string())
            .replace("{basePath}", base_path)
            .replace("{workspace}", &ws)
            .replace("{token}", token)
    };
    if let Some(command) = command {
        return Ok(Plan {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), fill(command)],
            auth_header: (template == "jupyter")
                .then(|| ("authorization".into(), format!("token {token}"))),
            strip_base_path: matches!(template, "vscode" | "xpra"),
        });
    }
    let strs = |v: &[&str]| v.iter().map(|s| fill(s)).collect::<Vec<_>>();
    Ok(match template {
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
                // Many images run as root; the container is the boundary.
                "--allow-root",
            ]),
            auth_header: Some(("authorization".into(), format!("token {token}"))),
            strip_base_path: false,
        },
        "rstudio" => Plan {
            program: "/usr/lib/rstudio-server/bin/rserver".into(),
            args: strs(&[
                "--server-daemonize=0",
                "--auth-none=1",
                "--www-address=127.0.0.1",
                "--www-port={port}",
                "--www-root-path={basePath}",
            ]),
            auth_header: None,
            strip_base_path: true,
        },
        "vscode" => Plan {
            program: "code-server".into(),
            args: strs(&[
                "--bind-addr=127.0.0.1:{port}",
                "--auth=none",
                "--disable-telemetry",
                "{workspace}",
            ]),
            auth_header: None,
            strip_base_path: true,
        },
        "xpra" => Plan {
            program: "xpra".into(),
            args: strs(&[
                "start",
                "--daemon=no",
                "--bind-tcp=127.0.0.1:{port}",
                "--html=on",
                "--start=xterm",
            ]),
            auth_header: None,
            strip_base_path: true,
        },
        other => {
            return Err(format!(
                "template '{other}' has no built-in IDE: a custom image sets STUDIO_IDE_COMMAND (docs/agent.md)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_run_their_ide_on_loopback_under_the_base_path() {
        let p = plan(
            "jupyter",
            None,
            4000,
            "/connect/st-1/",
            Path::new("/workspace"),
            "t0k",
        )
        .unwrap();
        assert_eq!(p.program, "jupyter");
        assert!(p
            .args
            .contains(&"--ServerApp.base_url=/connect/st-1/".to_string()));
        assert!(p.args.contains(&"--ServerApp.ip=127.0.0.1".to_string()));
        assert_eq!(
            p.auth_header,
            Some(("authorization".into(), "token t0k".into()))
        );
        let v = plan("vscode", None, 4000, "/b/", Path::new("/w"), "t").unwrap();
        assert!(v.strip_base_path);
        assert!(v.args.contains(&"--bind-addr=127.0.0.1:4000".to_string()));
        assert!(plan("custom", None, 1, "/", Path::new("/w"), "t")
            .unwrap_err()
            .contains("STUDIO_IDE_COMMAND"));
        let c = plan(
            "custom",
            Some("my-ide --port {port} --root {workspace}"),
            7,
            "/",
            Path::new("/w"),
            "t",
        )
        .unwrap();
        assert_eq!(c.args, vec!["-c", "my-ide --port 7 --root /w"]);
    }
}
