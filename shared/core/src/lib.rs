//! spotfit-core: the domain of spotfit, pure and synchronous (the ports are async traits,
//! but nothing here performs I/O). Adapters in `spotfit-local` and `spotfit-aws` implement
//! the ports; the pipeline steps in [`pipeline`] are written once, generic over them.

pub mod catalog;
pub mod cost;
pub mod drive;
pub mod error_names;
pub mod fallback;
pub mod ids;
pub mod image;
pub mod input_fit;
pub mod logs;
pub mod machine_image;
pub mod pipeline;
pub mod ports;
pub mod prices;
pub mod profile;
pub mod ranking;
pub mod run;
pub mod sample;
pub mod secret_ref;
pub mod shared_host;
pub mod sizing;
pub mod spec;
pub mod summary;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod units;
pub mod user_data;

pub use sample::{GpuSample, MemoryMetric, Sample};
pub use spec::{JobSpec, Market, SpecError};
pub use summary::{ExitInfo, RunStatus, RunSummary};
