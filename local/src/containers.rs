//! Sessions as containers in the local run (`STUDIOS_LOCAL_SESSIONS=container`), the way
//! AWS Batch runs them on EC2: the container's settings are read back from the job
//! definition the AWS adapter registered (shared/src/compute.rs, `SessionContainer`) and
//! from the job as Batch describes it, and turned into `docker run` arguments here — one
//! mapping, so the local containers and Batch's cannot drift (docs/decisions.md).

use aws_sdk_batch::types::{ContainerDetail, ContainerProperties, ResourceType};

/// How long `docker stop` waits between SIGTERM and SIGKILL: the ECS agent's default
/// stop timeout, which is what TerminateJob gives a Batch job on EC2.
pub const STOP_TIMEOUT_SECONDS: u32 = 30;

/// What `docker run` gets for one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRun {
    /// The container's name (the job id: unique, and what `docker stop` names).
    pub name: String,
    pub image: String,
    /// Everything before the image, environment excluded (it goes in a file, not argv,
    /// where any local user could read a session's secrets).
    pub args: Vec<String>,
    pub environment: Vec<(String, String)>,
}

/// The resources a job was submitted with (its `containerOverrides`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    pub vcpus: u32,
    pub memory_mib: u32,
    pub gpus: u32,
}

/// The `docker run` of a job: `definition` is the job definition's container as
/// registered, `job` the job's container as DescribeJobs shows it (its environment and,
/// on AWS, its resources), `submitted` the resources the job was submitted with, which
/// win (the emulator's DescribeJobs shows the definition's). `None` without an image.
pub fn container_run(
    name: &str,
    definition: &ContainerProperties,
    job: Option<&ContainerDetail>,
    submitted: Option<Resources>,
) -> Option<ContainerRun> {
    let image = definition.image()?.to_string();
    // Batch on EC2 runs simple jobs with host networking (docs/agent.md, "Networking").
    let mut args = vec![
        "--rm".to_string(),
        "--name".into(),
        name.into(),
        "--network".into(),
        "host".into(),
    ];
    if let Some(linux) = definition.linux_parameters() {
        if linux.init_process_enabled() == Some(true) {
            args.push("--init".into());
        }
        if let Some(mib) = linux.shared_memory_size() {
            args.push("--shm-size".into());
            args.push(format!("{mib}m"));
        }
        for device in linux.devices() {
            let Some(host) = device.host_path() else {
                continue;
            };
            let inside = device.container_path().unwrap_or(host);
            let permissions: String = device
                .permissions()
                .iter()
                .map(|p| match p.as_str() {
                    "READ" => 'r',
                    "WRITE" => 'w',
                    _ => 'm',
                })
                .collect();
            args.push("--device".into());
            args.push(if permissions.is_empty() {
                format!("{host}:{inside}")
            } else {
                format!("{host}:{inside}:{permissions}")
            });
        }
    }
    // Batch makes mount sessions privileged (its linuxParameters cannot add one
    // capability); this sandbox refuses `--privileged`, and mount-s3 needs only
    // SYS_ADMIN with /dev/fuse, so the local run grants exactly that.
    if definition.privileged() == Some(true) {
        args.push("--cap-add".into());
        args.push("SYS_ADMIN".into());
    }
    // The job's own resources (its overrides) win over the definition's defaults.
    let resource = |kind: ResourceType| {
        let asked = submitted.map(|r| match kind {
            ResourceType::Vcpu => r.vcpus.to_string(),
            ResourceType::Memory => r.memory_mib.to_string(),
            _ => r.gpus.to_string(),
        });
        if asked.is_some() {
            return asked;
        }
        job.map(|c| c.resource_requirements())
            .into_iter()
            .flatten()
            .chain(definition.resource_requirements())
            .find(|r| r.r#type() == Some(&kind))
            .and_then(|r| r.value().map(String::from))
    };
    if let Some(vcpus) = resource(ResourceType::Vcpu) {
        args.push("--cpus".into());
        args.push(vcpus);
    }
    if let Some(mib) = resource(ResourceType::Memory) {
        args.push("--memory".into());
        args.push(format!("{mib}m"));
    }
    if let Some(gpus) = resource(ResourceType::Gpu).filter(|g| g != "0") {
        args.push("--gpus".into());
        args.push(gpus);
    }
    let environment = job
        .map(|c| c.environment())
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| Some((kv.name()?.to_string(), kv.value()?.to_string())))
        .collect();
    Some(ContainerRun {
        name: name.into(),
        image,
        args,
        environment,
    })
}

/// An `--env-file` body: one `NAME=value` per line. Docker takes the rest of the line
/// as the value, so a newline in a value cannot be passed: such a variable is refused.
pub fn env_file(environment: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    for (name, value) in environment {
        if value.contains('\n') || name.contains(['=', '\n']) {
            return Err(format!(
                "{name}: a container's environment cannot hold a newline"
            ));
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
        out.push('\n');
    }
    Ok(out)
}

/// Where the images have the agent (images/*/Dockerfile): the local run mounts the
/// agent it built over it, so a session runs the agent of this checkout.
pub const AGENT_IN_IMAGE: &str = "/usr/local/bin/studio-agent";

/// Runs `run` with `docker run` until the container exits; its exit code (as Batch
/// reports the container's). The environment file is written 0600 into `dir` and
/// removed once the container has started (Docker reads it at create time).
pub async fn run(
    run: &ContainerRun,
    dir: &std::path::Path,
    agent: Option<&std::path::Path>,
    log: Option<std::fs::File>,
) -> Result<i32, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let env_path = dir.join("container.env");
    let body = env_file(&run.environment)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&env_path)
        .and_then(|mut f| f.write_all(body.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", env_path.display()))?;
    let mut command = tokio::process::Command::new("docker");
    command.arg("run").args(&run.args);
    command.arg("--env-file").arg(&env_path);
    if let Some(agent) = agent {
        command
            .arg("--volume")
            .arg(format!("{}:{AGENT_IN_IMAGE}:ro", agent.display()));
    }
    command
        .arg(&run.image)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(false);
    match log {
        Some(log) => command.stderr(log),
        None => command.stderr(std::process::Stdio::null()),
    };
    let mut child = command
        .spawn()
        .map_err(|e| format!("docker did not start: {e}"))?;
    let status = child.wait().await;
    let _ = std::fs::remove_file(&env_path);
    // `docker run` exits 125–127 when the container could not be made or started.
    status
        .map_err(|e| format!("docker run: {e}"))?
        .code()
        .ok_or_else(|| "docker run was killed".to_string())
}

/// TerminateJob on EC2: SIGTERM to the container's PID 1 (the init process passes it
/// on to the agent), SIGKILL after `STOP_TIMEOUT_SECONDS`.
pub async fn stop(name: &str) -> Result<(), String> {
    let status = tokio::process::Command::new("docker")
        .args(["stop", "--time", &STOP_TIMEOUT_SECONDS.to_string(), name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| format!("docker stop: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("docker stop {name} failed ({status})"))
    }
}

/// The session containers this process started and that still run (by name).
static RUNNING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

pub fn register(name: &str) {
    if let Ok(mut running) = RUNNING.lock() {
        running.push(name.to_string());
    }
}

pub fn unregister(name: &str) {
    if let Ok(mut running) = RUNNING.lock() {
        running.retain(|n| n != name);
    }
}

pub fn is_running(name: &str) -> bool {
    RUNNING.lock().is_ok_and(|r| r.iter().any(|n| n == name))
}

/// Removes every session container this process started, at once: the local run is
/// ending, and `docker run --rm` ends with its client only for the client, not the
/// container.
pub fn remove_all() {
    let names: Vec<String> = RUNNING.lock().map(|r| r.clone()).unwrap_or_default();
    if names.is_empty() {
        return;
    }
    let _ = std::process::Command::new("docker")
        .args(["rm", "--force"])
        .args(&names)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_batch::types::{
        Device, DeviceCgroupPermission, KeyValuePair, LinuxParameters, ResourceRequirement,
    };

    fn requirement(kind: ResourceType, value: &str) -> ResourceRequirement {
        ResourceRequirement::builder()
            .r#type(kind)
            .value(value)
            .build()
    }

    #[test]
    fn a_mount_session_runs_as_its_job_definition_says() {
        let definition = ContainerProperties::builder()
            .image("studios-jupyter:local")
            .privileged(true)
            .resource_requirements(requirement(ResourceType::Vcpu, "1"))
            .resource_requirements(requirement(ResourceType::Memory, "2048"))
            .linux_parameters(
                LinuxParameters::builder()
                    .init_process_enabled(true)
                    .shared_memory_size(4096)
                    .devices(
                        Device::builder()
                            .host_path("/dev/fuse")
                            .container_path("/dev/fuse")
                            .permissions(DeviceCgroupPermission::Read)
                            .permissions(DeviceCgroupPermission::Write)
                            .permissions(DeviceCgroupPermission::Mknod)
                            .build(),
                    )
                    .build(),
            )
            .build();
        let job = ContainerDetail::builder()
            .resource_requirements(requirement(ResourceType::Vcpu, "4"))
            .resource_requirements(requirement(ResourceType::Memory, "8192"))
            .environment(
                KeyValuePair::builder()
                    .name("STUDIO_ID")
                    .value("st-1")
                    .build(),
            )
            .build();
        let run = container_run("job-1", &definition, Some(&job), None).unwrap();
        assert_eq!(run.image, "studios-jupyter:local");
        assert_eq!(
            run.args.join(" "),
            "--rm --name job-1 --network host --init --shm-size 4096m \
             --device /dev/fuse:/dev/fuse:rwm --cap-add SYS_ADMIN --cpus 4 --memory 8192m"
        );
        assert_eq!(run.environment, vec![("STUDIO_ID".into(), "st-1".into())]);
    }

    #[test]
    fn a_plain_session_gets_no_device_and_no_capability() {
        let definition = ContainerProperties::builder()
            .image("img")
            .resource_requirements(requirement(ResourceType::Vcpu, "2"))
            .resource_requirements(requirement(ResourceType::Memory, "4096"))
            .build();
        let run = container_run("j", &definition, None, None).unwrap();
        assert_eq!(
            run.args.join(" "),
            "--rm --name j --network host --cpus 2 --memory 4096m"
        );
        // What the job was submitted with wins over what DescribeJobs shows.
        let asked = Resources {
            vcpus: 4,
            memory_mib: 16384,
            gpus: 1,
        };
        let run = container_run("j", &definition, None, Some(asked)).unwrap();
        assert_eq!(
            run.args.join(" "),
            "--rm --name j --network host --cpus 4 --memory 16384m --gpus 1"
        );
    }

    #[test]
    fn env_files_refuse_what_docker_cannot_carry() {
        let ok = env_file(&[("A".into(), "x=y z".into())]).unwrap();
        assert_eq!(ok, "A=x=y z\n");
        assert!(env_file(&[("A".into(), "line\nbreak".into())]).is_err());
    }
}
