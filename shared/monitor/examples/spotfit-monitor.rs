//! `spotfit monitor` as a standalone binary, for the benchmark and the tests of this crate: the
//! same arguments and code path as the `spotfit` CLI, with `--upload file:///dir` only (the
//! `spotfit` binary adds S3).

use spotfit_core::ports::{ObjectStore, StoreError};
use spotfit_monitor::cli::{run, MonitorArgs, UploadUrl};
use spotfit_monitor::MonitorError;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Parser, Debug)]
#[command(name = "spotfit-monitor")]
struct Cli {
    #[command(flatten)]
    args: MonitorArgs,
}

/// Objects as files under a directory, keys as relative paths.
#[derive(Debug)]
struct DirStore(PathBuf);

#[async_trait::async_trait]
impl ObjectStore for DirStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let p = self.0.join(key);
        let err = |e: std::io::Error| StoreError::Unavailable {
            service: "dir".into(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(p.parent().unwrap_or(&self.0)).map_err(err)?;
        std::fs::write(&p, bytes).map_err(err)
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(std::fs::read(self.0.join(key)).ok())
    }
    async fn list(&self, _prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(vec![])
    }
}

fn main() -> std::process::ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let open = |u: &UploadUrl| -> Result<(Arc<dyn ObjectStore>, Option<tokio::runtime::Handle>), MonitorError> {
        match u {
            UploadUrl::Dir(d) => Ok((Arc::new(DirStore(d.clone())), None)),
            UploadUrl::S3 { .. } => Err(MonitorError::BadInput {
                field: "upload",
                reason: "use the spotfit binary for s3://".into(),
            }),
        }
    };
    match run(&cli.args, &open) {
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("spotfit monitor: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
