//! `spotfit monitor`: the agent user-data starts on an instance (and a standalone tracker here).
//! Arguments, sampling, spooling and the summary live in `spotfit-monitor`; this module only
//! wires the object store `--upload` names: S3 through `spotfit-aws` (only in builds with the
//! `aws` feature), or a local directory with the same key layout through `spotfit-local`.

use spotfit_core::ports::ObjectStore;
use spotfit_monitor::cli::{MonitorArgs, UploadUrl};
use spotfit_monitor::MonitorError;
use std::sync::Arc;

type Opened = (Arc<dyn ObjectStore>, Option<tokio::runtime::Handle>);

pub fn run(args: MonitorArgs) -> anyhow::Result<i32> {
    let upload = args.upload.as_deref().map(UploadUrl::parse).transpose()?;
    #[cfg(feature = "aws")]
    {
        // The SDK needs a tokio runtime; build one only when shipping to S3, so plain tracking
        // keeps the agent at one sampling thread.
        let runtime = match upload {
            Some(UploadUrl::S3 { .. }) => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?,
            ),
            _ => None,
        };
        let open = |u: &UploadUrl| -> Result<Opened, MonitorError> {
            match (u, &runtime) {
                (UploadUrl::S3 { bucket, prefix }, Some(rt)) => {
                    let sdk = rt.block_on(spotfit_aws::load_sdk_config());
                    let s3 =
                        spotfit_aws::S3ObjectStore::new(spotfit_aws::S3ObjectStore::client_from(&sdk), bucket.clone());
                    Ok((
                        Arc::new(spotfit_monitor::cli::PrefixedStore {
                            inner: s3,
                            prefix: prefix.clone(),
                        }),
                        Some(rt.handle().clone()),
                    ))
                }
                (UploadUrl::Dir(dir), _) => local(dir),
                (UploadUrl::S3 { .. }, None) => Err(MonitorError::BadInput {
                    field: "upload",
                    reason: "no runtime for S3".into(),
                }),
            }
        };
        Ok(spotfit_monitor::cli::run(&args, &open)?)
    }
    #[cfg(not(feature = "aws"))]
    {
        if let Some(UploadUrl::S3 { .. }) = upload {
            return Err(crate::no_aws("`spotfit monitor --upload s3://…`"));
        }
        let open = |u: &UploadUrl| -> Result<Opened, MonitorError> {
            match u {
                UploadUrl::Dir(dir) => local(dir),
                UploadUrl::S3 { .. } => Err(MonitorError::BadInput {
                    field: "upload",
                    reason: "this build has no S3 support (build with --features aws)".into(),
                }),
            }
        };
        Ok(spotfit_monitor::cli::run(&args, &open)?)
    }
}

fn local(dir: &std::path::Path) -> Result<Opened, MonitorError> {
    Ok((Arc::new(spotfit_local::FsObjectStore::new(dir.to_path_buf())), None))
}
