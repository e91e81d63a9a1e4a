//! The instance catalog: specs, prices and benchmark scores (placeholder; the catalog issue
//! work fills it from the snapshot in `data/catalog/`).

use crate::spec::Arch;
use serde::{Deserialize, Serialize};

/// One instance type with its price in one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub instance_type: String,
    pub family: String,
    pub region: String,
    pub vcpu: u32,
    pub memory_bytes: u64,
    pub arch: Arch,
    pub gpu: u32,
    pub gpu_memory_bytes: u64,
    pub on_demand_per_hour: Option<f64>,
    pub spot_per_hour: Option<f64>,
    pub score_multi: Option<f64>,
    pub score_single: Option<f64>,
    pub interruption_bucket: Option<u8>,
    pub azs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog snapshot is unreadable: {0}")]
    Parse(String),
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub offers: Vec<Offer>,
}

impl Catalog {
    /// The snapshot compiled into the binary.
    pub fn embedded() -> Result<&'static Catalog, CatalogError> {
        Err(CatalogError::Parse("not built yet".into()))
    }
}
