//! The container boundary: the one place the agent builds a job's environment and its
//! container command line. The job's environment reaches the job only: the child's own
//! environment for a process job, an env file read by the runtime for an image job — never
//! the agent's environment nor the runtime's (a job setting `DOCKER_HOST`, `AWS_ENDPOINT_URL`
//! or `SPOTFIT_IMDS` changes nothing outside itself). The image is parsed as an image reference
//! and passed after `--`, so it can never become a runtime option; the container gets its own
//! network namespace (`bridge`), where the instance's IMDS is unreachable: the user data drops
//! forwarded traffic to 169.254.169.254 and the launch sets the IMDS hop limit to 1.

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

/// `RUNTIME run --rm --network bridge --security-opt no-new-privileges [--env-file FILE] -- IMAGE ARGV…`
pub fn run_argv(
    runtime: &str,
    image: &str,
    env_file: Option<&Path>,
    argv: &[String],
) -> Result<Vec<String>, MonitorError> {
    spotfit_core::image::parse_image_ref(image).map_err(|why| MonitorError::BadInput {
        field: "image",
        reason: format!(
            "{:?} is not an image reference: {why}",
            image.chars().take(80).collect::<String>()
        ),
    })?;
    let mut v: Vec<String> = [
        runtime,
        "run",
        "--rm",
        "--network",
        NETWORK,
        "--security-opt",
        "no-new-privileges",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(f) = env_file {
        v.push("--env-file".into());
        v.push(f.display().to_string());
    }
    v.push("--".into());
    v.push(image.to_string());
    v.extend(argv.iter().cloned());
    Ok(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_image_comes_after_the_end_of_options_and_options_are_refused() {
        let argv = vec!["--volume=/:/host".to_string(), "x".into()];
        let v = run_argv("docker", "rocker/r-ver:4.4", Some(Path::new("/s/container.env")), &argv).unwrap();
        assert_eq!(
            v,
            [
                "docker",
                "run",
                "--rm",
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
            let e = run_argv("docker", bad, None, &[]).unwrap_err();
            assert!(e.to_string().contains("image"), "{e}");
        }
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
