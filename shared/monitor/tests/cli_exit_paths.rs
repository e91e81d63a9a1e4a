//! `spotfit monitor`'s exit paths and its boundary with the job, through the argument parser
//! and `cli::run` as the binary calls them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use spotfit_core::ports::ObjectStore;
use spotfit_monitor::cli::{run, MonitorArgs, UploadUrl};
use spotfit_monitor::MonitorError;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: MonitorArgs,
}

fn args(a: &[&str]) -> MonitorArgs {
    let mut v = vec!["spotfit-monitor", "--interval", "0.05", "--no-gpu"];
    if !a.contains(&"--imds") {
        v.extend(["--imds", "off"]);
    }
    v.extend_from_slice(a);
    Cli::try_parse_from(v).unwrap().args
}

fn no_store(_: &UploadUrl) -> Result<(Arc<dyn ObjectStore>, Option<tokio::runtime::Handle>), MonitorError> {
    Err(MonitorError::BadInput {
        field: "upload",
        reason: "no store in this test".into(),
    })
}

fn exec(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn output_is_not_truncated_before_the_arguments_are_checked() {
    // GIVEN an existing --output file and arguments that are wrong in ways checked late before
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("samples.ndjson");
    std::fs::write(&out, b"yesterday's samples\n").unwrap();
    let o = out.to_str().unwrap();
    for bad in [
        vec!["--output", o, "--job", "not a name", "--", "true"],
        vec!["--output", o, "--run-id", "../escape", "--", "true"],
        vec!["--output", o, "--cgroup", ""],
        vec!["--output", o, "--imds", "http://in valid", "--", "true"],
        vec!["--output", o, "--image=--volume=/:/host", "--", "true"],
    ] {
        // WHEN run THEN refused, and the file is as it was
        assert!(run(&args(&bad), &no_store, None).is_err(), "{bad:?}");
        assert_eq!(std::fs::read(&out).unwrap(), b"yesterday's samples\n", "{bad:?}");
    }
}

#[test]
fn an_empty_cgroup_and_an_invalid_imds_url_are_refused_naming_the_flag() {
    let e = run(&args(&["--cgroup", ""]), &no_store, None).unwrap_err().to_string();
    assert!(e.contains("cgroup"), "{e}");
    for url in [
        "http://in valid",
        "https://169.254.169.254",
        "169.254.169.254",
        "http://h:99999",
        "http://:80",
    ] {
        let e = run(&args(&["--imds", url, "--", "true"]), &no_store, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("imds"), "{url}: {e}");
    }
}

#[test]
fn output_to_a_full_device_fails_non_zero() {
    // GIVEN --output /dev/full (every write fails with ENOSPC) and a job that succeeds
    let r = run(
        &args(&["--output", "/dev/full", "--", "sh", "-c", "sleep 0.2"]),
        &no_store,
        None,
    );
    // THEN the run fails, naming --output
    let e = r.unwrap_err();
    assert!(matches!(e, MonitorError::Output { .. }), "{e}");
    assert!(e.to_string().contains("/dev/full"), "{e}");
}

#[test]
fn an_unwritable_summary_keeps_the_jobs_exit_status() {
    for code in [0, 3] {
        let cmd = format!("exit {code}");
        let r = run(
            &args(&["--summary", "/nonexistent-dir/summary.json", "--", "sh", "-c", &cmd]),
            &no_store,
            None,
        );
        assert_eq!(r.unwrap(), code);
    }
}

#[test]
fn the_jobs_env_reaches_the_job_only() {
    // GIVEN a job env that would redirect the agent (its IMDS, its AWS endpoint, docker's host)
    let dir = tempfile::tempdir().unwrap();
    // HOSTILE would create PWNED (by absolute path, wherever the shell runs) if anything on
    // the way evaluated it instead of passing it as a value.
    let pwned = dir.path().join("PWNED");
    let hostile = format!("$(touch {})'\"", pwned.display());
    let env = dir.path().join("env");
    std::fs::write(
        &env,
        format!(
            "SPOTFIT_IMDS=http://evil:80\0AWS_ENDPOINT_URL=http://evil\0DOCKER_HOST=tcp://evil:2375\0HOSTILE={hostile}\0"
        ),
    )
    .unwrap();
    let keys = ["SPOTFIT_IMDS", "AWS_ENDPOINT_URL", "DOCKER_HOST", "HOSTILE"];
    let agent_env = || keys.map(|k| std::env::var(k).unwrap_or_default());
    let agent_env_before = agent_env();
    let seen = dir.path().join("seen");
    let script = |out: &Path| {
        format!(
            "printf '%s|%s|%s|%s' \"$SPOTFIT_IMDS\" \"$AWS_ENDPOINT_URL\" \"$DOCKER_HOST\" \"$HOSTILE\" > {}",
            out.display()
        )
    };
    // WHEN a process job runs with it
    let code = run(
        &args(&["--job-env", env.to_str().unwrap(), "--", "sh", "-c", &script(&seen)]),
        &no_store,
        None,
    )
    .unwrap();
    // THEN the job saw every value byte for byte, and nothing evaluated HOSTILE
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        format!("http://evil:80|http://evil|tcp://evil:2375|{hostile}")
    );
    assert!(!pwned.exists(), "HOSTILE was evaluated");
    // AND the agent's own environment is as it was: the next job, run without the env file,
    // sees the agent's values (unset here), not the last job's
    assert_eq!(agent_env(), agent_env_before, "the job's env reached the agent");
    let seen_next = dir.path().join("seen-next");
    assert_eq!(
        run(&args(&["--", "sh", "-c", &script(&seen_next)]), &no_store, None).unwrap(),
        0
    );
    assert_eq!(
        std::fs::read_to_string(&seen_next).unwrap(),
        agent_env_before.join("|"),
        "the job's env outlived the job"
    );

    // WHEN an image job runs with it (a stand-in runtime records its argv, env and env file)
    let rt = dir.path().join("fake-docker");
    let rec = dir.path().join("rec");
    exec(
        &rt,
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {r}.argv\nenv > {r}.env\nwhile [ $# -gt 0 ]; do if [ \"$1\" = --env-file ]; then cp \"$2\" {r}.file; fi; shift; done\n",
            r = rec.display()
        ),
    );
    let code = run(
        &args(&[
            "--job-env",
            env.to_str().unwrap(),
            "--container-runtime",
            rt.to_str().unwrap(),
            "--image",
            "rocker/r-ver:4.4",
            "--",
            "Rscript",
            "-e",
            "1",
        ]),
        &no_store,
        None,
    )
    .unwrap();
    assert_eq!(code, 0);
    let argv = std::fs::read_to_string(rec.with_extension("argv")).unwrap();
    let argv: Vec<&str> = argv.lines().collect();
    // THEN the runtime got its own network namespace, the env as a file, and the image after `--`
    let sep = argv.iter().position(|a| *a == "--").unwrap();
    assert_eq!(&argv[sep + 1..], ["rocker/r-ver:4.4", "Rscript", "-e", "1"]);
    assert_eq!(argv[..3], ["run", "--network", "bridge"]);
    // no `--rm`: the agent inspects the stopped container (OOM-killed?), then removes it itself;
    // it finds the container by the id the runtime writes to the cidfile
    assert!(!argv.contains(&"--rm") && argv.contains(&"--cidfile"), "{argv:?}");
    assert!(!argv.contains(&"host"), "{argv:?}");
    let file = std::fs::read_to_string(rec.with_extension("file")).unwrap();
    assert!(
        file.contains("DOCKER_HOST=tcp://evil:2375\n") && file.contains(&format!("HOSTILE={hostile}\n")),
        "{file}"
    );
    assert!(!pwned.exists(), "HOSTILE was evaluated");
    // AND the runtime's own environment has none of the job's variables
    let renv = std::fs::read_to_string(rec.with_extension("env")).unwrap();
    for k in ["SPOTFIT_IMDS=", "AWS_ENDPOINT_URL=", "DOCKER_HOST=", "HOSTILE="] {
        assert!(
            !renv.lines().any(|l| l.starts_with(k)),
            "{k} reached the container runtime"
        );
    }
}

/// A secret store of fixed values; an unknown reference is denied, as the store would.
struct Store(Vec<(&'static str, &'static str)>);

impl spotfit_monitor::cli::SecretReader for Store {
    fn read(&self, r: &spotfit_core::secret_ref::SecretRef) -> Result<String, String> {
        let key = r.to_string();
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .ok_or_else(|| "AccessDeniedException (400) not authorized".to_string())
    }
}

type Opened = (Arc<dyn ObjectStore>, Option<tokio::runtime::Handle>);

fn dir_store(root: std::path::PathBuf) -> impl Fn(&UploadUrl) -> Result<Opened, MonitorError> {
    move |_| {
        Ok((
            Arc::new(spotfit_monitor::fs_store::FsObjectStore::new(root.clone())) as Arc<dyn ObjectStore>,
            None,
        ))
    }
}

#[test]
fn env_from_values_reach_the_job_alone_and_an_unreadable_one_keeps_it_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let store = Store(vec![
        ("ssm:/team/db/password", "s3cr3t 'with' $(quotes)"),
        ("secretsmanager:team/api", "k-123"),
    ]);
    let script = format!("printf '%s|%s' \"$DB\" \"$API\" > {}", seen.display());
    // GIVEN two references the store has, WHEN a job runs with them
    let code = run(
        &args(&[
            "--env-from=DB=ssm:/team/db/password",
            "--env-from",
            "API=secretsmanager:team/api",
            "--",
            "sh",
            "-c",
            &script,
        ]),
        &no_store,
        Some(&store),
    )
    .unwrap();
    // THEN the job saw both values byte for byte, and the agent's own environment has neither
    assert_eq!(code, 0);
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "s3cr3t 'with' $(quotes)|k-123");
    assert!(std::env::var("DB").is_err() && std::env::var("API").is_err());

    // GIVEN a reference the store denies, shipping to a store (as an agent does)
    let up = dir.path().join("up");
    let open = dir_store(up.clone());
    let ran = dir.path().join("ran");
    let summary = dir.path().join("summary.json");
    let code = run(
        &args(&[
            "--upload",
            &format!("file://{}", up.display()),
            "--summary",
            summary.to_str().unwrap(),
            "--job",
            "etl",
            "--env-from=DB=ssm:/team/other",
            "--",
            "touch",
            ran.to_str().unwrap(),
        ]),
        &open,
        Some(&store),
    )
    .unwrap();
    // THEN the job never started; the run is a failure with 125 and the reason in its stderr tail
    assert_eq!(code, 125);
    assert!(!ran.exists(), "the job started without its secret");
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["exit"]["code"], 125, "{s}");
    let text = s.to_string();
    assert!(
        text.contains("env_from.DB: cannot read ssm:/team/other: AccessDeniedException"),
        "{text}"
    );

    // AND without a reader (the CLI's `spotfit monitor`) or with bad syntax, it is an error naming the field
    let e = run(&args(&["--env-from=DB=ssm:/a", "--", "true"]), &no_store, None).unwrap_err();
    assert!(matches!(e, MonitorError::BadInput { field: "env_from", .. }), "{e}");
    for bad in ["DB", "1DB=ssm:/a", "DB=vault:/a"] {
        let flag = format!("--env-from={bad}");
        let e = run(&args(&[&flag, "--", "true"]), &no_store, Some(&store)).unwrap_err();
        assert!(
            matches!(e, MonitorError::BadInput { field: "env_from", .. }),
            "{bad}: {e}"
        );
    }
    // AND a value with a line break cannot go to a container's env file
    let lines = Store(vec![("ssm:/multi", "a\nb")]);
    let e = run(
        &args(&["--env-from=M=ssm:/multi", "--image", "busybox", "--", "true"]),
        &no_store,
        Some(&lines),
    )
    .unwrap_err();
    assert!(e.to_string().contains("line break"), "{e}");
}

#[test]
fn scratch_and_disk_watching_give_the_job_its_directory_and_the_summary_its_peak_disk_use() {
    // GIVEN a scratch directory on a quiet filesystem of its own (tmpfs), and a job that writes
    // 64 MiB under $TMPDIR and holds it for a few samples
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        panic!("this test needs /dev/shm (a tmpfs) as a filesystem of its own");
    }
    let scratch = tempfile::tempdir_in(shm).unwrap();
    let used = || {
        let st = nix::sys::statvfs::statvfs(shm).unwrap();
        (st.blocks() as u64 - st.blocks_free() as u64) * st.fragment_size() as u64
    };
    let before = used();
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let seen = dir.path().join("seen");
    let script = format!(
        "printf '%s|%s' \"$SPOTFIT_SCRATCH\" \"$TMPDIR\" > {}; head -c 67108864 /dev/zero > \"$TMPDIR/big\"; sleep 0.4; rm \"$TMPDIR/big\"",
        seen.display()
    );
    let s = scratch.path().to_str().unwrap();
    let code = run(
        &args(&[
            "--scratch",
            s,
            "--summary",
            summary.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ]),
        &no_store,
        None,
    )
    .unwrap();
    // THEN the job got the directory and a tmp inside it
    assert_eq!(code, 0);
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), format!("{s}|{s}/tmp"));
    // AND the summary's peak disk use holds the 64 MiB the job wrote there (the tmpfs's own use
    // before it, plus the file: within a few MiB of what else happens on the tmpfs meanwhile)
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let peak = v["disk_used_max_bytes"].as_u64().expect("no disk_used_max_bytes");
    let grew = peak as i64 - before as i64;
    assert!(
        (60 << 20..=80 << 20).contains(&grew),
        "peak {peak} is {grew} bytes over the {before} used before"
    );
    // AND without --disk or --scratch nothing is sampled
    let code = run(
        &args(&["--summary", summary.to_str().unwrap(), "--", "true"]),
        &no_store,
        None,
    )
    .unwrap();
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(v.get("disk_used_max_bytes").is_none(), "{v}");
}
