//! Stand-in for `spotfit monitor` on an emulated instance, for the end-to-end test until the
//! CLI's own `monitor` subcommand is merged: the same command line the user data uses
//! (`monitor --job J --run-id R --upload s3://BUCKET --summary FILE -- ARGV…`), the real
//! monitor library (`spotfit_monitor::run_command`: samples, spool, upload, summary, exit
//! marker) and the real S3 adapter, pointed at the emulator through `AWS_ENDPOINT_URL`.

use anyhow::{bail, Context};
use spotfit_aws::S3ObjectStore;
use spotfit_monitor::{CommandSpec, MonitorOptions, UploadOptions};
use std::sync::Arc;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sep = args
        .iter()
        .position(|a| a == "--")
        .context("missing -- before the job's argv")?;
    let (opts, argv) = (&args[..sep], args[sep + 1..].to_vec());
    if opts.first().map(String::as_str) != Some("monitor") {
        bail!("usage: agent_standin monitor --job J --run-id R --upload s3://B --summary F -- ARGV…");
    }
    let flag = |name: &str| {
        opts.iter()
            .position(|a| a == name)
            .and_then(|i| opts.get(i + 1))
            .cloned()
    };
    let job = flag("--job").context("--job")?;
    let run_id = flag("--run-id").context("--run-id")?;
    let bucket = flag("--upload")
        .and_then(|u| u.strip_prefix("s3://").map(str::to_string))
        .context("--upload s3://…")?;
    let summary_path = flag("--summary");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .build()?;
    let sdk = rt.block_on(spotfit_aws::load_sdk_config());
    let store = S3ObjectStore::new(S3ObjectStore::client_from(&sdk), bucket);
    let spool = tempfile::tempdir()?;
    let options = MonitorOptions {
        interval: Duration::from_millis(200),
        job,
        run_id,
        gpu: false,
        spool_dir: Some(spool.path().to_path_buf()),
        upload: Some(UploadOptions {
            store: Arc::new(store),
            every: Duration::from_secs(1),
            runtime: Some(rt.handle().clone()),
            finish_timeout: Duration::from_secs(20),
        }),
        // The library summarises from the kept samples: false would give an empty summary.
        keep_samples: true,
        ..Default::default()
    };
    let cmd = CommandSpec {
        argv,
        ..Default::default()
    };
    let out = spotfit_monitor::run_command(&cmd, &options, &mut |_| {})?;
    if let Some(p) = summary_path {
        std::fs::write(p, serde_json::to_vec(&out.summary)?)?;
    }
    eprintln!(
        "agent_standin: {} samples, status {:?}, upload {:?}",
        out.sample_count, out.summary.status, out.upload
    );
    std::process::exit(out.exit.shell_code());
}
