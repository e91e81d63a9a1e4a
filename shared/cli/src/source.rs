//! Where the reading commands (`runs`, `profile`, `logs`, `report`, `status`) read: the local
//! store, or — with `--stack NAME` / `SPOTFIT_STACK` — a deployed stack, whose CloudFormation
//! outputs name its bucket and tables (`spotfit_aws::stack`). Both are the same ports, so each
//! command is written once over them.

use spotfit_core::ports::{ObjectStore, ProfileStore, RunStore};
use std::future::Future;
use std::path::Path;

#[derive(Debug)]
pub struct Source {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Local(spotfit_local::LocalStore),
    #[cfg(feature = "aws")]
    Stack(Box<Deployed>),
}

#[cfg(feature = "aws")]
#[derive(Debug)]
pub struct Deployed {
    pub outputs: spotfit_aws::stack::StackOutputs,
    pub sdk: spotfit_aws::SdkConfig,
    rt: tokio::runtime::Runtime,
    runs: spotfit_aws::DynamoRunStore,
    profiles: spotfit_aws::DynamoProfileStore,
    objects: spotfit_aws::S3ObjectStore,
}

impl Source {
    /// The stack when one is named, else the local store (which must exist: reading never
    /// creates one).
    pub fn open(store: Option<&Path>, stack: Option<&str>) -> anyhow::Result<Source> {
        match stack {
            None => Ok(Source {
                kind: Kind::Local(crate::store_cmd::open_existing(store)?),
            }),
            Some(name) => Self::stack(name),
        }
    }

    #[cfg(feature = "aws")]
    fn stack(name: &str) -> anyhow::Result<Source> {
        use anyhow::Context;
        // One worker thread: `logs --follow` drives the store through the runtime's handle,
        // which a current-thread runtime cannot do from outside its own block_on.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let sdk = rt.block_on(spotfit_aws::load_sdk_config());
        let outputs = rt
            .block_on(spotfit_aws::stack::StackOutputs::describe(&sdk, name))
            .with_context(|| format!("--stack {name}"))?;
        Ok(Source {
            kind: Kind::Stack(Box::new(Deployed {
                runs: spotfit_aws::DynamoRunStore::from_sdk(&sdk, &outputs.runs_table),
                profiles: spotfit_aws::DynamoProfileStore::from_sdk(&sdk, &outputs.profiles_table),
                objects: spotfit_aws::S3ObjectStore::new(
                    spotfit_aws::S3ObjectStore::client_from(&sdk),
                    &outputs.bucket,
                ),
                outputs,
                sdk,
                rt,
            })),
        })
    }

    #[cfg(not(feature = "aws"))]
    fn stack(_name: &str) -> anyhow::Result<Source> {
        Err(crate::no_aws("`--stack NAME`"))
    }

    pub fn runs(&self) -> &dyn RunStore {
        match &self.kind {
            Kind::Local(st) => &st.db,
            #[cfg(feature = "aws")]
            Kind::Stack(d) => &d.runs,
        }
    }

    pub fn profiles(&self) -> &dyn ProfileStore {
        match &self.kind {
            Kind::Local(st) => &st.db,
            #[cfg(feature = "aws")]
            Kind::Stack(d) => &d.profiles,
        }
    }

    pub fn objects(&self) -> &dyn ObjectStore {
        match &self.kind {
            Kind::Local(st) => &st.objects,
            #[cfg(feature = "aws")]
            Kind::Stack(d) => &d.objects,
        }
    }

    /// The objects, shared (for code that keeps the store beside a runtime handle).
    pub fn objects_shared(&self) -> std::sync::Arc<dyn ObjectStore> {
        match &self.kind {
            Kind::Local(st) => std::sync::Arc::new(st.objects.clone()),
            #[cfg(feature = "aws")]
            Kind::Stack(d) => std::sync::Arc::new(d.objects.clone()),
        }
    }

    /// The runtime a stack's futures need (None: the local store needs none).
    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        match &self.kind {
            Kind::Local(_) => None,
            #[cfg(feature = "aws")]
            Kind::Stack(d) => Some(d.rt.handle().clone()),
        }
    }

    /// Drives a future on what its store needs: the SDK's runtime for a stack, a plain
    /// executor for the local store (no reactor, no threads).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        match &self.kind {
            Kind::Local(_) => futures_executor::block_on(f),
            #[cfg(feature = "aws")]
            Kind::Stack(d) => d.rt.block_on(f),
        }
    }

    /// The stack, when reading one.
    #[cfg(feature = "aws")]
    pub fn deployed(&self) -> Option<&Deployed> {
        match &self.kind {
            Kind::Local(_) => None,
            Kind::Stack(d) => Some(d),
        }
    }

    /// What the output names as where it read.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Local(st) => format!("the local store {}", st.dir.display()),
            #[cfg(feature = "aws")]
            Kind::Stack(d) => format!(
                "stack {} (bucket {}, runs table {})",
                d.outputs.stack, d.outputs.bucket, d.outputs.runs_table
            ),
        }
    }
}
