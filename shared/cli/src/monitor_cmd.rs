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
    let s3 = S3::for_upload(upload.as_ref(), "`spotfit monitor --upload s3://…`")?;
    let open = |u: &UploadUrl| -> Result<Opened, MonitorError> {
        match u {
            UploadUrl::Dir(dir) => Ok((Arc::new(spotfit_local::FsObjectStore::new(dir.clone())), None)),
            UploadUrl::S3 { bucket, prefix } => s3.open(bucket, prefix),
        }
    };
    Ok(spotfit_monitor::cli::run(&args, &open, None)?)
}

/// S3 for `--upload s3://…`: the SDK needs a tokio runtime, built only when S3 is named, so
/// plain tracking keeps the agent at one sampling thread.
#[cfg(feature = "aws")]
pub(crate) struct S3(Option<tokio::runtime::Runtime>);

#[cfg(feature = "aws")]
impl S3 {
    pub(crate) fn for_upload(upload: Option<&UploadUrl>, _what: &str) -> anyhow::Result<Self> {
        Ok(S3(match upload {
            Some(UploadUrl::S3 { .. }) => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?,
            ),
            _ => None,
        }))
    }

    pub(crate) fn open(&self, bucket: &str, prefix: &str) -> Result<Opened, MonitorError> {
        let Some(rt) = &self.0 else {
            return Err(MonitorError::BadInput {
                field: "upload",
                reason: "no runtime for S3".into(),
            });
        };
        let sdk = rt.block_on(spotfit_aws::load_sdk_config());
        let s3 = spotfit_aws::S3ObjectStore::new(spotfit_aws::S3ObjectStore::client_from(&sdk), bucket.to_string());
        Ok((
            Arc::new(spotfit_monitor::cli::PrefixedStore {
                inner: s3,
                prefix: prefix.to_string(),
            }),
            Some(rt.handle().clone()),
        ))
    }
}

/// This build has no S3: `--upload s3://…` is refused before anything starts.
#[cfg(not(feature = "aws"))]
pub(crate) struct S3;

#[cfg(not(feature = "aws"))]
impl S3 {
    /// `what`: the command line that needs S3, for the error.
    pub(crate) fn for_upload(upload: Option<&UploadUrl>, what: &str) -> anyhow::Result<Self> {
        match upload {
            Some(UploadUrl::S3 { .. }) => Err(crate::no_aws(what)),
            _ => Ok(S3),
        }
    }

    pub(crate) fn open(&self, _bucket: &str, _prefix: &str) -> Result<Opened, MonitorError> {
        Err(MonitorError::BadInput {
            field: "upload",
            reason: "this build has no S3 support (build with --features aws)".into(),
        })
    }
}
