//! `spotfit monitor` as a standalone binary, for the benchmark and the tests of this crate: the
//! same arguments and code path as the `spotfit` CLI, with `--upload file:///dir` only (the
//! `spotfit` binary adds S3).

use spotfit_core::ports::ObjectStore;
use spotfit_monitor::cli::{run, MonitorArgs, UploadUrl};
use spotfit_monitor::MonitorError;
use std::sync::Arc;

#[derive(clap::Parser, Debug)]
#[command(name = "spotfit-monitor")]
struct Cli {
    #[command(flatten)]
    args: MonitorArgs,
}

fn main() -> std::process::ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let open = |u: &UploadUrl| -> Result<(Arc<dyn ObjectStore>, Option<tokio::runtime::Handle>), MonitorError> {
        match u {
            UploadUrl::Dir(d) => Ok((Arc::new(spotfit_monitor::fs_store::FsObjectStore::new(d.clone())), None)),
            UploadUrl::S3 { .. } => Err(MonitorError::BadInput {
                field: "upload",
                reason: "use the spotfit binary for s3://".into(),
            }),
        }
    };
    match run(&cli.args, &open, None) {
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("spotfit monitor: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
