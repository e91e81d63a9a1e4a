//! The container boundary: the one place the agent builds a job's environment and its
//! container command line. The job's environment reaches the job only: the child's own
//! environment for a process job, an env file read by the runtime for an image job — never
//! the agent's environment nor the runtime's (a job setting `DOCKER_HOST`, `AWS_ENDPOINT_URL`
//! or `SPOTFIT_IMDS` changes nothing outside itself). The image is parsed as an image reference
//! and passed after `--`, so it can never become a runtime option; the container gets its own
//! network namespace (`bridge`), where the instance's IMDS is unreachable unless the run has a
//! job role (then the role is the job's): the user data drops forwarded traffic to
//! 169.254.169.254 and the launch sets the IMDS hop limit to 1.

use crate::MonitorError;
use std::path::{Path, PathBuf};

/// The container runtime's command (`docker`, or podman's `docker` shim).
pub const DEFAULT_RUNTIME: &str = "docker";

/// Network the container joins: its own namespace, never the host's.
pub const NETWORK: &str = "bridge";

/// Reads a job environment file: NUL-separated `NAME=VALUE` entries (what the user data
/// decodes from the launch), each name `[A-Za-z_][A-Za-z0-9_]*`.
pub fn read_job_env(path: &Path) -> Result<Vec<(String, String)>, MonitorError> {
    let bytes = std::fs::read(path).map_err(|source| MonitorError::Spool {
        path: path.to_path_buf(),
        source,
    })?;
    let mut env = Vec::new();
    for (i, entry) in bytes.split(|b| *b == 0).filter(|e| !e.is_empty()).enumerate() {
        let bad = |reason: &str| MonitorError::BadInput {
            field: "job_env",
            reason: format!("entry {i}: {reason}"),
        };
        let text = std::str::from_utf8(entry).map_err(|_| bad("is not UTF-8"))?;
        let (name, value) = text.split_once('=').ok_or_else(|| bad("is not NAME=VALUE"))?;
        if !spotfit_core::spec::valid_env_name(name) {
            return Err(bad("the name must match [A-Za-z_][A-Za-z0-9_]*"));
        }
        env.push((name.to_string(), value.to_string()));
    }
    Ok(env)
}

/// Writes `env` as the runtime's `--env-file` (one `NAME=VALUE` a line, read literally, no
/// quoting) into `dir` (a private directory), mode 0600. A value with a line break cannot be
/// written in that format and is refused (the spec validator refuses it first).
pub fn write_env_file(dir: &Path, env: &[(String, String)]) -> Result<PathBuf, MonitorError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::new();
    for (k, v) in env {
        if v.contains(['\n', '\r']) {
            return Err(MonitorError::BadInput {
                field: "job_env",
                reason: format!("{k}: a value with a line break cannot be passed to a container"),
            });
        }
        text.push_str(k);
        text.push('=');
        text.push_str(v);
        text.push('\n');
    }
    let path = dir.join("container.env");
    let err = |source| MonitorError::Spool {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    Ok(path)
}

/// A scratch directory as a container mount can name it (`--mount type=bind,source=D,…` has
/// no quoting): an absolute UTF-8 path without `:`, `,` or a line break.
pub fn check_scratch(dir: &Path) -> Result<String, MonitorError> {
    match dir.to_str() {
        Some(d) if d.starts_with('/') && !d.contains([':', ',', '\n']) => Ok(d.to_string()),
        _ => Err(MonitorError::BadInput {
            field: "scratch",
            reason: format!("{dir:?} must be an absolute path without ':' or ','"),
        }),
    }
}

/// What the container gets besides the image and the argv.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions<'a> {
    /// The job's environment (see [`write_env_file`]).
    pub env_file: Option<&'a Path>,
    /// Where the runtime writes the container's id (a path in a private directory that does not
    /// exist yet), so the agent can find and measure the container itself.
    pub cidfile: Option<&'a Path>,
    /// `--memory N --memory-swap N`: the container gets N bytes and no swap, so going over is
    /// the kernel's OOM kill inside the container, never a host driven into swap or its own OOM.
    pub memory_limit: Option<u64>,
    /// `--gpus all` (the instance type has GPUs; the GPU image has the NVIDIA toolkit).
    pub gpus: bool,
    /// The instance's scratch directory, bind-mounted at the same path
    /// (`--mount type=bind,source=DIR,target=DIR`).
    pub scratch: Option<&'a Path>,
}

/// `RUNTIME run --network bridge --security-opt no-new-privileges [--cidfile F] [--memory N
/// --memory-swap N] [--gpus all] [--mount type=bind,source=D,target=D] [--env-file FILE] --
/// IMAGE ARGV…`. No `--rm`: the agent
/// inspects the stopped container (was it OOM-killed?) and then removes it itself.
pub fn run_argv(
    runtime: &str,
    image: &str,
    opts: &RunOptions<'_>,
    argv: &[String],
) -> Result<Vec<String>, MonitorError> {
    spotfit_core::image::parse_image_ref(image).map_err(|why| MonitorError::BadInput {
        field: "image",
        reason: format!(
            "{:?} is not an image reference: {why}",
            image.chars().take(80).collect::<String>()
        ),
    })?;
    if opts.memory_limit.is_some_and(|m| m < MIN_MEMORY) {
        return Err(MonitorError::BadInput {
            field: "memory_limit",
            reason: format!("a container needs at least {MIN_MEMORY} bytes (Docker refuses less)"),
        });
    }
    let mut v: Vec<String> = [
        runtime,
        "run",
        "--network",
        NETWORK,
        "--security-opt",
        "no-new-privileges",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(f) = opts.cidfile {
        v.push("--cidfile".into());
        v.push(f.display().to_string());
    }
    if let Some(m) = opts.memory_limit {
        v.extend(["--memory".into(), m.to_string(), "--memory-swap".into(), m.to_string()]);
    }
    if opts.gpus {
        v.extend(["--gpus".into(), "all".into()]);
    }
    if let Some(d) = opts.scratch {
        let d = check_scratch(d)?;
        v.push("--mount".into());
        v.push(format!("type=bind,source={d},target={d}"));
    }
    if let Some(f) = opts.env_file {
        v.push("--env-file".into());
        v.push(f.display().to_string());
    }
    v.push("--".into());
    v.push(image.to_string());
    v.extend(argv.iter().cloned());
    Ok(v)
}

/// Docker's smallest `--memory` (6 MiB).
pub const MIN_MEMORY: u64 = 6 << 20;

/// A container job, for [`MonitorOptions::container`](crate::MonitorOptions::container): the
/// command the monitor starts is the runtime's client (`RUNTIME run --cidfile CIDFILE …`); the
/// monitor waits on it for the exit status, and measures the container through its cgroup.
#[derive(Debug, Clone)]
pub struct ContainerRun {
    /// The runtime's command (for `inspect` and `rm`, as argv).
    pub runtime: String,
    /// The `--cidfile` given to `run`.
    pub cidfile: PathBuf,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_image_comes_after_the_end_of_options_and_options_are_refused() {
        let argv = vec!["--volume=/:/host".to_string(), "x".into()];
        let opts = RunOptions {
            env_file: Some(Path::new("/s/container.env")),
            ..Default::default()
        };
        let v = run_argv("docker", "rocker/r-ver:4.4", &opts, &argv).unwrap();
        assert_eq!(
            v,
            [
                "docker",
                "run",
                "--network",
                "bridge",
                "--security-opt",
                "no-new-privileges",
                "--env-file",
                "/s/container.env",
                "--",
                "rocker/r-ver:4.4",
                "--volume=/:/host",
                "x"
            ]
        );
        assert!(!v.iter().any(|a| a == "host"));
        for bad in ["--volume=/:/host", "-v", "--network=host", "a b"] {
            let e = run_argv("docker", bad, &RunOptions::default(), &[]).unwrap_err();
            assert!(e.to_string().contains("image"), "{e}");
        }
    }

    #[test]
    fn the_scratch_directory_is_bind_mounted_at_its_own_path_and_odd_paths_are_refused() {
        let opts = RunOptions {
            scratch: Some(Path::new("/scratch")),
            ..Default::default()
        };
        let v = run_argv("docker", "x", &opts, &[]).unwrap();
        let sep = v.iter().position(|a| a == "--").unwrap();
        assert!(
            v[..sep]
                .windows(2)
                .any(|w| w[0] == "--mount" && w[1] == "type=bind,source=/scratch,target=/scratch"),
            "{v:?}"
        );
        for bad in ["relative", "/a:b", "/a,readonly"] {
            let opts = RunOptions {
                scratch: Some(Path::new(bad)),
                ..Default::default()
            };
            let e = run_argv("docker", "x", &opts, &[]).unwrap_err();
            assert!(
                matches!(e, MonitorError::BadInput { field: "scratch", .. }),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_container_gets_its_id_file_memory_limit_and_gpus_as_separate_words() {
        // GIVEN a sized job on a GPU type
        let opts = RunOptions {
            cidfile: Some(Path::new("/p/cid")),
            memory_limit: Some(512 << 20),
            gpus: true,
            ..Default::default()
        };
        let v = run_argv("podman", "localhost:5000/burn:1", &opts, &["burn".into()]).unwrap();
        // THEN the limit is memory and memory+swap alike (no swap), GPUs are all of the type's,
        // the id goes to the cidfile, all before `--`, and the container is not `--rm`
        let sep = v.iter().position(|a| a == "--").unwrap();
        let opts_part = v[..sep].join(" ");
        assert!(opts_part.contains("--cidfile /p/cid"), "{opts_part}");
        assert!(
            opts_part.contains("--memory 536870912 --memory-swap 536870912"),
            "{opts_part}"
        );
        assert!(opts_part.contains("--gpus all"), "{opts_part}");
        assert!(!v.iter().any(|a| a == "--rm"), "{v:?}");
        assert_eq!(&v[sep + 1..], ["localhost:5000/burn:1", "burn"]);
        // AND without GPUs or a limit neither word appears; a limit Docker refuses is an error
        let plain = run_argv("docker", "x", &RunOptions::default(), &[]).unwrap();
        assert!(!plain.iter().any(|a| a == "--gpus" || a == "--memory"), "{plain:?}");
        let tiny = RunOptions {
            memory_limit: Some(1 << 20),
            ..Default::default()
        };
        let e = run_argv("docker", "x", &tiny, &[]).unwrap_err();
        assert!(e.to_string().contains("memory_limit"), "{e}");
    }

    #[test]
    fn job_env_files_round_trip_and_refuse_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("env");
        std::fs::write(&p, b"A=1\0HOSTILE=$(id)'\"\0EMPTY=\0").unwrap();
        let env = read_job_env(&p).unwrap();
        assert_eq!(
            env,
            [
                ("A".into(), "1".into()),
                ("HOSTILE".into(), "$(id)'\"".into()),
                ("EMPTY".into(), String::new())
            ]
        );
        let f = write_env_file(dir.path(), &env).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "A=1\nHOSTILE=$(id)'\"\nEMPTY=\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&p, b"1BAD=x\0").unwrap();
        assert!(read_job_env(&p).is_err());
        assert!(write_env_file(dir.path(), &[("A".into(), "x\ny".into())]).is_err());
    }
}
