//! Renders the instance user data from `scripts/user-data.sh.tpl`. The job's argv, env and
//! image are passed as base64 of NUL-separated lists and never spliced into the script as
//! text; every other value must be a plain token. See the template for how they are decoded.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::collections::BTreeMap;

/// The template, compiled in (a Lambda has no checkout to read it from).
pub const TEMPLATE: &str = include_str!("../../../scripts/user-data.sh.tpl");

/// EC2 accepts at most 16 KiB of user data (before base64).
pub const MAX_USER_DATA: usize = 16 * 1024;

/// Longest plain token (bucket, agent key, region, job name, run id) the renderer accepts.
pub const MAX_PLAIN_LEN: usize = 128;

/// Placeholders filled with plain tokens, numbers or words the renderer chooses (each at most
/// [`MAX_PLAIN_LEN`]; the optional ones may be empty).
const PLAIN_PLACEHOLDERS: [&str; 11] = [
    "@@BUCKET@@",
    "@@AGENT_KEY@@",
    "@@REGION@@",
    "@@JOB@@",
    "@@RUN_ID@@",
    "@@DEADLINE_EPOCH_S@@",
    "@@MEMORY_LIMIT@@",
    "@@GPUS@@",
    "@@REGISTRY_HOST@@",
    "@@REGISTRY_REGION@@",
    "@@JOB_ROLE@@",
];

/// Bytes of user data left for the job's encoded argv, env and image when every plain token
/// has its longest length: a spec whose [`job_payload_len`] fits this always renders within
/// [`MAX_USER_DATA`], whatever the deployment's names are.
pub fn job_payload_budget() -> usize {
    let fixed = TEMPLATE.len()
        - ["@@ARGV_B64@@", "@@ENV_B64@@", "@@ENV_FROM_B64@@", "@@IMAGE_B64@@"]
            .iter()
            .map(|p| p.len())
            .sum::<usize>()
        + PLAIN_PLACEHOLDERS
            .iter()
            .map(|p| TEMPLATE.matches(p).count() * (MAX_PLAIN_LEN.saturating_sub(p.len())))
            .sum::<usize>();
    MAX_USER_DATA.saturating_sub(fixed)
}

/// Bytes the job's argv, env (values, and `env_from` references) and image take in the
/// rendered user data (base64 of the NUL-separated lists, as [`render`] encodes them).
pub fn job_payload_len(
    argv: &[String],
    env: &BTreeMap<String, String>,
    env_from: &BTreeMap<String, String>,
    image: Option<&str>,
) -> usize {
    let b64 = |raw: usize| raw.div_ceil(3) * 4;
    let argv_raw: usize = argv.iter().map(|a| a.len() + 1).sum();
    let pairs = |m: &BTreeMap<String, String>| -> usize { m.iter().map(|(k, v)| k.len() + 1 + v.len() + 1).sum() };
    b64(argv_raw) + b64(pairs(env)) + b64(pairs(env_from)) + image.map_or(0, |i| b64(i.len()))
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UserDataError {
    #[error("{field} contains a NUL byte, which cannot be passed to a process")]
    Nul { field: String },
    #[error("{field} must be a plain token (letters, digits and -_./:=+@), got {value:?}")]
    NotPlain { field: &'static str, value: String },
    #[error("user data would be {size} bytes; EC2 accepts {MAX_USER_DATA} (shorten the job's argv or env)")]
    TooLarge { size: usize },
}

/// What goes into one instance's user data.
#[derive(Debug, Clone)]
pub struct UserDataInput<'a> {
    pub bucket: &'a str,
    pub agent_key: &'a str,
    pub region: &'a str,
    pub job: &'a str,
    /// The run id the agent writes under (the attempt's).
    pub run_id: &'a str,
    pub deadline_epoch_s: i64,
    pub argv: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    /// Variable → secret reference (`ssm:…`, `secretsmanager:…`): the agent resolves them on
    /// the instance; only the references are in the user data.
    pub env_from: &'a BTreeMap<String, String>,
    pub image: Option<&'a str>,
    /// The instance runs with one of the deployment's job roles (the spec's `role`): its
    /// rights are the job's, so a container job may reach them through IMDS (the launch allows
    /// one more hop) instead of being cut off from it.
    pub job_role: bool,
    /// The memory the job was sized to: the agent's `--memory-limit` (the container's
    /// `--memory`, a process job's memory cgroup), so going over it is a recorded OOM kill.
    pub memory_limit_bytes: Option<u64>,
    /// The instance type has GPUs: an image job's container gets `--gpus all`.
    pub gpus: bool,
    /// The deployment's ECR-compatible registry hosts besides ECR's own (see
    /// [`crate::image::registry_login`]).
    pub registry_hosts: &'a [String],
}

fn plain(field: &'static str, value: &str) -> Result<(), UserDataError> {
    if !value.is_empty()
        && value.len() <= MAX_PLAIN_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=+@".contains(&b))
    {
        Ok(())
    } else {
        Err(UserDataError::NotPlain {
            field,
            value: value.chars().take(64).collect(),
        })
    }
}

fn nul_list<'s>(field: &str, items: impl Iterator<Item = (String, &'s str)>) -> Result<String, UserDataError> {
    let mut bytes = Vec::new();
    for (name, item) in items {
        if item.contains('\0') {
            return Err(UserDataError::Nul {
                field: format!("{field}{name}"),
            });
        }
        bytes.extend_from_slice(item.as_bytes());
        bytes.push(0);
    }
    Ok(B64.encode(bytes))
}

/// The user-data script for one instance.
pub fn render(input: &UserDataInput<'_>) -> Result<String, UserDataError> {
    plain("bucket", input.bucket)?;
    plain("agent_key", input.agent_key)?;
    plain("region", input.region)?;
    plain("job", input.job)?;
    plain("run_id", input.run_id)?;
    let argv = nul_list(
        "command",
        input
            .argv
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("[{i}]"), a.as_str())),
    )?;
    let env_pairs: Vec<(String, String)> = input
        .env
        .iter()
        .map(|(k, v)| (format!(".{k}"), format!("{k}={v}")))
        .collect();
    for k in input.env.keys() {
        if !crate::spec::valid_env_name(k) {
            return Err(UserDataError::NotPlain {
                field: "env name",
                value: k.chars().take(64).collect(),
            });
        }
    }
    let env = nul_list("env", env_pairs.iter().map(|(n, kv)| (n.clone(), kv.as_str())))?;
    // References only, each checked here as the spec checks it: a bad one fails the launch,
    // never the agent on a paid-for instance.
    let mut ref_pairs = Vec::with_capacity(input.env_from.len());
    for (k, r) in input.env_from {
        if !crate::spec::valid_env_name(k) {
            return Err(UserDataError::NotPlain {
                field: "env_from name",
                value: k.chars().take(64).collect(),
            });
        }
        if crate::secret_ref::SecretRef::parse(r).is_err() {
            return Err(UserDataError::NotPlain {
                field: "env_from reference",
                value: r.chars().take(64).collect(),
            });
        }
        ref_pairs.push((format!(".{k}"), format!("{k}={r}")));
    }
    let env_from = nul_list("env_from", ref_pairs.iter().map(|(n, kv)| (n.clone(), kv.as_str())))?;
    let job_role = if input.job_role { "yes" } else { "" };
    let image = match input.image {
        Some(i) if i.contains('\0') => return Err(UserDataError::Nul { field: "image".into() }),
        Some(i) => B64.encode(i.as_bytes()),
        None => String::new(),
    };
    let deadline = input.deadline_epoch_s.to_string();
    let memory_limit = input.memory_limit_bytes.map(|m| m.to_string()).unwrap_or_default();
    // Only a container uses GPUs through the runtime; a process job sees the host's devices.
    let gpus = if input.gpus && input.image.is_some() { "all" } else { "" };
    // Which registry to log in to is decided here, not in the script: the script only runs
    // `aws ecr get-login-password | RUNTIME login --password-stdin HOST` when it is given one.
    let login = input
        .image
        .and_then(|i| crate::image::registry_login(i, input.registry_hosts, input.region));
    if let Some(l) = &login {
        plain("registry host", &l.host)?;
        plain("registry region", &l.region)?;
    }
    let (registry_host, registry_region) = login
        .as_ref()
        .map_or(("", ""), |l| (l.host.as_str(), l.region.as_str()));
    let value = |name: &str| -> Option<&str> {
        Some(match name {
            "BUCKET" => input.bucket,
            "AGENT_KEY" => input.agent_key,
            "REGION" => input.region,
            "JOB" => input.job,
            "RUN_ID" => input.run_id,
            "DEADLINE_EPOCH_S" => &deadline,
            "ARGV_B64" => &argv,
            "ENV_B64" => &env,
            "ENV_FROM_B64" => &env_from,
            "JOB_ROLE" => job_role,
            "IMAGE_B64" => &image,
            "MEMORY_LIMIT" => &memory_limit,
            "GPUS" => gpus,
            "REGISTRY_HOST" => registry_host,
            "REGISTRY_REGION" => registry_region,
            _ => return None,
        })
    };
    // One pass over the template: a substituted value is never scanned for placeholders again
    // (a bucket named `@@ARGV_B64@@` stays a bucket name).
    let mut script = String::with_capacity(TEMPLATE.len() + argv.len() + env.len() + image.len());
    let mut rest = TEMPLATE;
    while let Some(at) = rest.find("@@") {
        script.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find("@@").and_then(|end| value(&after[..end]).map(|v| (end, v))) {
            Some((end, v)) => {
                script.push_str(v);
                rest = &after[end + 2..];
            }
            None => {
                script.push_str("@@");
                rest = after;
            }
        }
    }
    script.push_str(rest);
    if script.len() > MAX_USER_DATA {
        return Err(UserDataError::TooLarge { size: script.len() });
    }
    Ok(script)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;

    fn write_exec(path: &Path, body: &str) {
        std::fs::write(path, body).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Runs a rendered script with stand-ins for curl, aws and shutdown on PATH; the stand-in
    /// agent dumps its argv and the job env it was given, NUL-separated, for exact comparison.
    fn run_script(script: &str, dir: &Path) -> (Vec<String>, Vec<String>, String) {
        run_script_with(script, dir, &[])
    }

    /// [`run_script`] with extra variables in the script's environment.
    fn run_script_with(script: &str, dir: &Path, extra: &[(&str, &Path)]) -> (Vec<String>, Vec<String>, String) {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        write_exec(&bin.join("curl"), "#!/bin/bash\nfor a in \"$@\"; do case \"$a\" in *api/token) echo tok; exit 0;; *instance-id) echo i-test; exit 0;; esac; done\n");
        write_exec(
            &bin.join("shutdown"),
            &format!("#!/bin/bash\necho \"$*\" >> {}/shutdown.log\n", dir.display()),
        );
        write_exec(
            &bin.join("iptables"),
            &format!("#!/bin/bash\necho \"$*\" >> {}/iptables.log\n", dir.display()),
        );
        let agent = dir.join("agent");
        write_exec(
            &agent,
            &format!(
                "#!/bin/bash\nprintf '%s\\0' \"$@\" > {d}/agent.argv\nprintf '%s\\0' \"${{HOSTILE_A-unset}}\" \"${{PLAIN-unset}}\" \"${{MULTI-unset}}\" > {d}/agent.env\n",
                d = dir.display()
            ),
        );
        write_exec(
            &bin.join("aws"),
            &format!(
                "#!/bin/bash\n# aws s3 cp SRC DEST | aws ecr get-login-password --region R\nif [ \"$1\" = ecr ]; then echo \"$*\" >> {d}/ecr.log; echo ecr-token-SECRET; exit 0; fi\ncp {a} \"${{@: -1}}\"\n",
                d = dir.display(),
                a = agent.display()
            ),
        );
        // The registry login: its argv, its stdin and where it was told to keep the token.
        write_exec(
            &bin.join("docker"),
            &format!(
                "#!/bin/bash\nprintf '%s\\0' \"$@\" > {d}/docker.argv\ncat > {d}/docker.stdin\necho \"$DOCKER_CONFIG $REGISTRY_AUTH_FILE\" > {d}/docker.env\nmkdir -p \"$DOCKER_CONFIG\" && echo '{{}}' > \"$DOCKER_CONFIG/config.json\"\n",
                d = dir.display()
            ),
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("SPOTFIT_HOME", dir.join("home"))
            .env("SPOTFIT_DISK_BY_ID", dir.join("by-id"))
            .env("SPOTFIT_SCRATCH_DIR", dir.join("scratch"))
            .envs(extra.iter().copied())
            .current_dir(dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "script failed: {stderr}");
        let split = |p: &str| -> Vec<String> {
            let b = std::fs::read(dir.join(p)).unwrap();
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8(s.to_vec()).unwrap())
                .collect()
        };
        (split("agent.argv"), split("agent.env"), stderr)
    }

    fn hostile() -> Vec<String> {
        vec![
            "python3".into(),
            "it's \"quoted\"".into(),
            "$(touch PWNED)".into(),
            "`touch PWNED2`".into(),
            "line1\nline2\n".into(),
            "; rm -rf / #".into(),
            "${HOME} $PATH \\ * ? [a] ~".into(),
            "--job".into(),
            "'@@RUN_ID@@'".into(),
            "x".repeat(4000),
            "ünïcødé ✓".into(),
        ]
    }

    #[test]
    fn hostile_argv_and_env_reach_the_agent_byte_for_byte_and_run_nothing() {
        // GIVEN a job whose argv and env hold quotes, substitutions, newlines and long values
        let dir = tempfile::tempdir().unwrap();
        let argv = hostile();
        let mut env = BTreeMap::new();
        env.insert("HOSTILE_A".to_string(), "$(touch PWNED3)'\"\n`id`".to_string());
        env.insert("PLAIN".to_string(), "v=1 w=2".to_string());
        env.insert("MULTI".to_string(), "a\nb\n\nc".to_string());
        let input = UserDataInput {
            bucket: "bucket-1",
            agent_key: "agent/x86_64/spotfit-agent",
            region: "us-east-1",
            job: "etl",
            run_id: "run-1-a2",
            deadline_epoch_s: chrono::Utc::now().timestamp() + 3600,
            argv: &argv,
            env: &env,
            env_from: &BTreeMap::new(),
            job_role: false,
            image: None,
            memory_limit_bytes: None,
            gpus: false,
            registry_hosts: &[],
        };
        // WHEN the rendered script runs
        let script = render(&input).unwrap();
        let (got_argv, got_env, _) = run_script(&script, dir.path());
        // THEN the agent got `monitor … -- ARGV` exactly, the env exactly, and nothing was executed
        let sep = got_argv.iter().position(|a| a == "--").unwrap();
        assert_eq!(
            &got_argv[..sep],
            [
                "monitor",
                "--job",
                "etl",
                "--run-id",
                "run-1-a2",
                "--upload",
                "s3://bucket-1",
                "--summary"
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([
                dir.path().join("home/summary.json").display().to_string(),
                "--job-env".to_string(),
                dir.path().join("home/env").display().to_string(),
                "--disk".to_string(),
                "/".to_string(),
            ])
            .collect::<Vec<_>>()
        );
        assert_eq!(&got_argv[sep + 1..], &argv[..]);
        // AND the agent that ran is the slim `spotfit-agent`, fetched to that name and made executable
        let agent = dir.path().join("home/spotfit-agent");
        assert!(
            agent.exists(),
            "the agent was not fetched to $SPOTFIT_HOME/spotfit-agent"
        );
        assert_eq!(std::fs::metadata(&agent).unwrap().permissions().mode() & 0o777, 0o755);
        // AND the job's env went to the agent as a file (for the job), never into its own env
        assert_eq!(got_env, vec!["unset", "unset", "unset"]);
        let file = std::fs::read(dir.path().join("home/env")).unwrap();
        let entries: Vec<&[u8]> = file.split(|b| *b == 0).filter(|e| !e.is_empty()).collect();
        assert_eq!(
            entries,
            env.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .map(|s| s.into_bytes())
                .collect::<Vec<_>>()
        );
        for f in ["PWNED", "PWNED2", "PWNED3"] {
            assert!(
                !dir.path().join(f).exists(),
                "{f} was created: a job string was executed"
            );
        }
        // AND the deadline shutdown was scheduled, then the final power-off
        let log = std::fs::read_to_string(dir.path().join("shutdown.log")).unwrap();
        assert!(log.starts_with("-h +6"), "{log}");
        assert!(log.ends_with("-h now\n"), "{log}");
    }

    #[test]
    fn image_jobs_hand_the_image_to_the_agent_and_block_imds_for_containers() {
        let dir = tempfile::tempdir().unwrap();
        let argv = vec!["Rscript".to_string(), "train.R".to_string()];
        let mut env = BTreeMap::new();
        env.insert("HOSTILE_A".to_string(), "$(x)".to_string());
        let input = UserDataInput {
            bucket: "b",
            agent_key: "k",
            region: "eu-west-1",
            job: "r",
            run_id: "r1",
            deadline_epoch_s: 0,
            argv: &argv,
            env: &env,
            env_from: &BTreeMap::new(),
            job_role: false,
            image: Some("rocker/r-ver:4.4"),
            memory_limit_bytes: None,
            gpus: false,
            registry_hosts: &[],
        };
        let (got, agent_env, _) = run_script(&render(&input).unwrap(), dir.path());
        let sep = got.iter().position(|a| a == "--").unwrap();
        // THEN the agent (which builds the container command line) gets the image as one
        // `--image=` word, the argv after `--`, and no job variable in its own environment
        assert_eq!(got[sep - 1], "--image=rocker/r-ver:4.4");
        assert_eq!(&got[sep + 1..], ["Rscript", "train.R"]);
        assert!(!got.iter().any(|a| a == "docker" || a == "host"), "{got:?}");
        assert_eq!(agent_env[0], "unset");
        // AND forwarded traffic to IMDS is dropped before the job starts
        let fw = std::fs::read_to_string(dir.path().join("iptables.log")).unwrap();
        assert!(fw.contains("-I DOCKER-USER -d 169.254.169.254/32 -j DROP"), "{fw}");
    }

    #[test]
    fn an_ecr_image_is_pulled_after_a_login_whose_token_only_goes_through_a_pipe() {
        // GIVEN an ECR image job, sized to 3 GiB, on a GPU type
        let dir = tempfile::tempdir().unwrap();
        let argv = vec!["python".to_string(), "train.py".to_string()];
        let env = BTreeMap::new();
        let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let image = format!("{host}/nlp/train:3");
        let input = UserDataInput {
            image: Some(&image),
            memory_limit_bytes: Some(3 << 30),
            gpus: true,
            region: "us-east-1",
            ..plain_input(&argv, &env)
        };
        let script = render(&input).unwrap();
        let (got, _, stderr) = run_script(&script, dir.path());
        // THEN the token was asked for in the registry's region and given to the runtime's login
        // on stdin only: not in its argv, not in the script, not in the log
        let ecr = std::fs::read_to_string(dir.path().join("ecr.log")).unwrap();
        assert_eq!(ecr.trim(), "ecr get-login-password --region eu-west-1");
        let login: Vec<String> = std::fs::read(dir.path().join("docker.argv"))
            .unwrap()
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect();
        assert_eq!(login, ["login", "--username", "AWS", "--password-stdin", host]);
        let stdin = std::fs::read_to_string(dir.path().join("docker.stdin")).unwrap();
        assert_eq!(stdin.trim(), "ecr-token-SECRET");
        assert!(!script.contains("SECRET") && !stderr.contains("SECRET"), "{stderr}");
        // AND the runtime kept it in a private directory of this boot, removed after the job
        let env_line = std::fs::read_to_string(dir.path().join("docker.env")).unwrap();
        let auth = dir.path().join("home/registry-auth");
        assert!(env_line.starts_with(&auth.display().to_string()), "{env_line}");
        assert!(!auth.exists(), "the registry credentials outlived the job");
        // AND the agent got the sized memory and the GPUs, before `--`
        let sep = got.iter().position(|a| a == "--").unwrap();
        let opts = got[..sep].join(" ");
        assert!(opts.contains(&format!("--memory-limit {}", 3u64 << 30)), "{opts}");
        assert!(opts.contains("--gpus"), "{opts}");
    }

    #[test]
    fn public_images_and_process_jobs_log_in_nowhere_and_get_no_gpus_flag() {
        let dir = tempfile::tempdir().unwrap();
        let argv = vec!["x".to_string()];
        let env = BTreeMap::new();
        // a public image on a GPU type: GPUs yes, login no
        let input = UserDataInput {
            image: Some("pytorch/pytorch:2.3.0"),
            gpus: true,
            ..plain_input(&argv, &env)
        };
        let (got, _, _) = run_script(&render(&input).unwrap(), dir.path());
        assert!(got.iter().any(|a| a == "--gpus"), "{got:?}");
        assert!(!dir.path().join("docker.argv").exists(), "logged in for a public image");
        // a process job on a GPU type, with a limit: the limit yes, `--gpus` (a container flag) no
        let dir = tempfile::tempdir().unwrap();
        let input = UserDataInput {
            memory_limit_bytes: Some(1 << 30),
            gpus: true,
            ..plain_input(&argv, &env)
        };
        let (got, _, _) = run_script(&render(&input).unwrap(), dir.path());
        assert!(!got.iter().any(|a| a == "--gpus"), "{got:?}");
        assert!(
            got.windows(2)
                .any(|w| w[0] == "--memory-limit" && w[1] == (1u64 << 30).to_string()),
            "{got:?}"
        );
        // the deployment's extra registry (the emulator's) is logged in to, in its region
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["127.0.0.1:5000".to_string()];
        let input = UserDataInput {
            image: Some("127.0.0.1:5000/burn:1"),
            registry_hosts: &hosts,
            region: "us-east-1",
            ..plain_input(&argv, &env)
        };
        run_script(&render(&input).unwrap(), dir.path());
        let ecr = std::fs::read_to_string(dir.path().join("ecr.log")).unwrap();
        assert_eq!(ecr.trim(), "ecr get-login-password --region us-east-1");
    }

    #[test]
    fn secret_references_reach_the_agent_as_arguments_and_a_job_role_opens_imds_to_the_container() {
        // GIVEN an image job with a job role and two secret references
        let dir = tempfile::tempdir().unwrap();
        let argv = vec!["python".to_string(), "etl.py".to_string()];
        let env = BTreeMap::new();
        let mut env_from = BTreeMap::new();
        env_from.insert("DB_PASSWORD".to_string(), "ssm:/team/db/password".to_string());
        env_from.insert("API_KEY".to_string(), "secretsmanager:team/api-key".to_string());
        let input = UserDataInput {
            env_from: &env_from,
            job_role: true,
            image: Some("python:3.12"),
            ..plain_input(&argv, &env)
        };
        let script = render(&input).unwrap();
        // WHEN the script runs
        let (got, _, _) = run_script(&script, dir.path());
        // THEN each reference is one `--env-from=NAME=REF` word before `--`, in name order
        let sep = got.iter().position(|a| a == "--").unwrap();
        let refs: Vec<&String> = got[..sep].iter().filter(|a| a.starts_with("--env-from=")).collect();
        assert_eq!(
            refs,
            [
                "--env-from=API_KEY=secretsmanager:team/api-key",
                "--env-from=DB_PASSWORD=ssm:/team/db/password"
            ]
        );
        // AND the container is not cut off from IMDS (its role is its own)
        assert!(
            !dir.path().join("iptables.log").exists(),
            "IMDS was blocked for a job role's container"
        );
        // AND a reference that is not one fails the render, before any instance exists
        let mut bad = BTreeMap::new();
        bad.insert("X".to_string(), "vault:/x".to_string());
        let input = UserDataInput {
            env_from: &bad,
            ..plain_input(&argv, &env)
        };
        assert!(matches!(
            render(&input),
            Err(UserDataError::NotPlain {
                field: "env_from reference",
                ..
            })
        ));
    }

    #[test]
    fn instance_store_disks_are_striped_formatted_and_mounted_as_scratch_and_runtime_storage() {
        // GIVEN an instance with two instance-store NVMe disks (one listed twice, as udev links
        // a namespace too) and an EBS root, and a container job
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (by_id, dev, bin) = (d.join("by-id"), d.join("dev"), d.join("bin"));
        for p in [&by_id, &dev, &bin] {
            std::fs::create_dir_all(p).unwrap();
        }
        for (link, target) in [
            ("nvme-Amazon_EC2_NVMe_Instance_Storage_AWS111", "nvme1n1"),
            ("nvme-Amazon_EC2_NVMe_Instance_Storage_AWS111_1", "nvme1n1"),
            ("nvme-Amazon_EC2_NVMe_Instance_Storage_AWS222", "nvme2n1"),
            ("nvme-Amazon_Elastic_Block_Store_vol0123", "nvme0n1"),
        ] {
            std::fs::write(dev.join(target), b"").unwrap();
            std::os::unix::fs::symlink(dev.join(target), by_id.join(link)).unwrap();
        }
        let store = d.join("var-lib-docker");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(store.join("layer"), b"x").unwrap();
        for tool in ["mdadm", "mkfs.xfs", "mount", "systemctl"] {
            write_exec(
                &bin.join(tool),
                &format!("#!/bin/bash\necho \"{tool} $*\" >> {}/disk.log\n", d.display()),
            );
        }
        let argv = vec!["python".to_string()];
        let env = BTreeMap::new();
        let input = UserDataInput {
            image: Some("python:3.12"),
            ..plain_input(&argv, &env)
        };
        let script = render(&input).unwrap();
        let (got, _, _) = run_script_with(&script, d, &[("SPOTFIT_RUNTIME_STORES", &store)]);
        // THEN both disks (once each, never the EBS one) were striped, formatted and mounted
        let log = std::fs::read_to_string(d.join("disk.log")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        let n1 = dev.join("nvme1n1").display().to_string();
        let n2 = dev.join("nvme2n1").display().to_string();
        assert_eq!(
            lines[0],
            format!("mdadm --create /dev/md/spotfit --run --force --level=0 --raid-devices=2 {n1} {n2}")
        );
        assert_eq!(lines[1], "mkfs.xfs -f -q /dev/md/spotfit");
        let scratch = d.join("scratch").display().to_string();
        assert_eq!(lines[2], format!("mount -o noatime /dev/md/spotfit {scratch}"));
        assert!(!log.contains("nvme0n1"), "{log}");
        // AND the runtime's storage moved there with the runtime stopped, then restarted
        assert!(
            log.contains(&format!(
                "mount --bind {scratch}/.runtime/var-lib-docker {}",
                store.display()
            )),
            "{log}"
        );
        assert!(d.join("scratch/.runtime/var-lib-docker/layer").exists());
        assert!(
            log.find("systemctl stop").unwrap() < log.find("systemctl start").unwrap(),
            "{log}"
        );
        // AND the agent was told the scratch directory and to watch the disks' use
        let sep = got.iter().position(|a| a == "--").unwrap();
        assert!(got[..sep].contains(&format!("--scratch={scratch}")), "{got:?}");
        assert!(
            got[..sep].windows(2).any(|w| w[0] == "--disk" && w[1] == "/"),
            "{got:?}"
        );

        // GIVEN no instance store, THEN no disk is touched and no scratch is named
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        for tool in ["mdadm", "mkfs.xfs", "mount"] {
            write_exec(
                &dir.path().join("bin").join(tool),
                &format!("#!/bin/bash\necho \"{tool} $*\" >> {}/disk.log\n", dir.path().display()),
            );
        }
        let (got, _, _) = run_script(&render(&plain_input(&argv, &env)).unwrap(), dir.path());
        assert!(!dir.path().join("disk.log").exists());
        assert!(!got.iter().any(|a| a.starts_with("--scratch")), "{got:?}");
    }

    static NO_REFS: BTreeMap<String, String> = BTreeMap::new();

    /// An input with plain one-letter tokens around `argv` and `env`.
    fn plain_input<'a>(argv: &'a [String], env: &'a BTreeMap<String, String>) -> UserDataInput<'a> {
        UserDataInput {
            bucket: "b",
            agent_key: "k",
            region: "r",
            job: "j",
            run_id: "r",
            deadline_epoch_s: 0,
            argv,
            env,
            env_from: &NO_REFS,
            job_role: false,
            image: None,
            memory_limit_bytes: None,
            gpus: false,
            registry_hosts: &[],
        }
    }

    #[test]
    fn unsafe_tokens_nul_bytes_and_oversize_are_refused() {
        let argv = vec!["a\0b".to_string()];
        let env = BTreeMap::new();
        let mut input = plain_input(&argv, &env);
        assert_eq!(
            render(&input).unwrap_err(),
            UserDataError::Nul {
                field: "command[0]".into()
            }
        );
        let ok = vec!["x".to_string()];
        input.argv = &ok;
        input.bucket = "b' ; reboot '";
        assert!(matches!(
            render(&input).unwrap_err(),
            UserDataError::NotPlain { field: "bucket", .. }
        ));
        input.bucket = "b";
        let big = vec!["y".repeat(MAX_USER_DATA)];
        input.argv = &big;
        assert!(matches!(render(&input).unwrap_err(), UserDataError::TooLarge { .. }));
    }

    #[test]
    fn env_names_are_refused_exactly_where_the_spec_refuses_them() {
        // GIVEN names on both sides of the rule (a leading digit, a dash, non-ASCII, empty)
        let argv = vec!["x".to_string()];
        for (name, ok) in [
            ("A1_b", true),
            ("_", true),
            ("", false),
            ("1A", false),
            ("A-B", false),
            ("A B", false),
            ("É", false),
        ] {
            let env = BTreeMap::from([(name.to_string(), "v".to_string())]);
            let input = plain_input(&argv, &env);
            // THEN the renderer agrees with the spec's rule, naming the env name when it refuses
            let rendered = render(&input);
            assert_eq!(rendered.is_ok(), ok, "{name:?}: {rendered:?}");
            assert_eq!(crate::spec::valid_env_name(name), ok, "{name:?}");
            if !ok {
                assert!(
                    matches!(rendered, Err(UserDataError::NotPlain { field: "env name", .. })),
                    "{name:?}"
                );
            }
        }
    }
}
