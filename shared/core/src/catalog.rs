//! The instance catalog: specs, on-demand and spot prices, interruption buckets and benchmark
//! scores per (instance type, region), from the snapshot in `data/catalog/catalog.json`
//! (built by `scripts/build-catalog`, sources in `data/catalog/README.md`). The snapshot is
//! compiled in with `include_bytes!` and parsed once per process, on first use.

use crate::spec::Arch;
use crate::units::MIB;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::OnceLock;

/// The snapshot compiled into every binary that uses the catalog.
pub static SNAPSHOT_JSON: &[u8] = include_bytes!("../../../data/catalog/catalog.json");

/// The snapshot format this loader reads (`format` in the file).
pub const FORMAT_VERSION: u32 = 1;

/// Where a spot price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpotSource {
    /// No spot price known: the type is not bought on the spot market.
    #[default]
    None,
    /// On-demand price × (1 − the Spot Advisor's published savings).
    AdvisorEstimate,
    /// An observed spot price (older, region-level minimum).
    Observed,
}

/// Where a benchmark score came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScoreSource {
    #[default]
    None,
    /// Measured by Spare Cores on this type.
    Measured,
    /// Per-vCPU figures of a measured type of the same family, scaled.
    FamilyEstimate,
}

/// One instance type with its prices in one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub instance_type: String,
    pub family: String,
    pub region: String,
    pub vcpu: u32,
    pub memory_bytes: u64,
    pub arch: Arch,
    pub gpu: u32,
    /// Memory of each GPU, bytes (0 without GPU).
    pub gpu_memory_bytes: u64,
    pub on_demand_per_hour: Option<f64>,
    pub spot_per_hour: Option<f64>,
    /// stress-ng div16 multi-core ops/s at its best vCPU count (Spare Cores' SCore).
    pub score_multi: Option<f64>,
    /// stress-ng div16 ops/s on one vCPU: single-thread speed.
    pub score_single: Option<f64>,
    /// Spot Advisor interruption bucket 0 (<5%/month) … 4 (>20%).
    pub interruption_bucket: Option<u8>,
    /// AZ ids (`use1-az4`) where the type is offered; empty when unknown.
    pub azs: Vec<String>,
    #[serde(default)]
    pub spot_source: SpotSource,
    #[serde(default)]
    pub score_source: ScoreSource,
    /// vCPU count at which `score_multi` was reached.
    #[serde(default)]
    pub score_multi_cores: Option<u32>,
    #[serde(default)]
    pub burstable: bool,
    #[serde(default)]
    pub current_generation: bool,
    /// Carries a non-GPU accelerator (Inferentia, Trainium, FPGA, media): a premium for
    /// hardware a CPU job does not use.
    #[serde(default)]
    pub accelerator: bool,
}

impl Offer {
    /// The benchmark throughput this type delivers to a job that keeps `cores` busy: a job
    /// cannot use more than its cores (single-thread score × cores) nor more than the machine
    /// (its multi-core score, which already counts hyperthreads as the fraction of a core they
    /// are). None when the type has no benchmark.
    pub fn score_for(&self, cores: f64) -> Option<f64> {
        let multi = self.score_multi?;
        let single = self.score_single?;
        // Below one core a job still runs on one core at single-thread speed.
        let usable = cores.max(1.0).min(self.vcpu as f64);
        Some(multi.min(single * usable))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog snapshot is unreadable: {0}")]
    Parse(String),
    #[error("catalog snapshot: {field}: {reason}")]
    Invalid { field: String, reason: String },
}

/// All offers, grouped by region (offers of one region are contiguous).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub offers: Vec<Offer>,
    by_region: BTreeMap<String, Range<usize>>,
    /// Median single-thread score per region: the reference machine for duration estimates.
    median_single: BTreeMap<String, f64>,
}

type TypeRow = (
    String,
    String,
    u32,
    u64,
    String,
    u32,
    u64,
    u8,
    u8,
    u8,
    u8,
    Option<f64>,
    Option<u32>,
    Option<f64>,
    u8,
);
type OfferRow = (usize, usize, Option<f64>, Option<f64>, u8, Option<u8>, Vec<usize>);

#[derive(Deserialize)]
struct Snapshot {
    format: u32,
    type_columns: Vec<String>,
    offer_columns: Vec<String>,
    codes: BTreeMap<String, BTreeMap<String, u8>>,
    regions: Vec<String>,
    az_ids: Vec<String>,
    types: Vec<TypeRow>,
    offers: Vec<OfferRow>,
}

/// The contract with the builder (`scripts/build-catalog`): the positional columns this loader
/// reads, in order, and the numeric codes of its enums. The builder writes its own columns and
/// codes into the file; a snapshot whose differ is refused, so editing either side alone fails
/// every test that loads the embedded catalog.
pub const TYPE_COLUMNS: [&str; 15] = [
    "instance_type",
    "family",
    "vcpu",
    "memory_mib",
    "arch",
    "gpu",
    "gpu_memory_mib_each",
    "burstable",
    "current_generation",
    "spot_supported",
    "accelerator",
    "score_multi",
    "score_multi_cores",
    "score_single",
    "score_source",
];
pub const OFFER_COLUMNS: [&str; 7] = [
    "type",
    "region",
    "on_demand_per_hour",
    "spot_per_hour",
    "spot_source",
    "interruption_bucket",
    "az_ids",
];
const SPOT_SOURCE_CODES: [(&str, u8, SpotSource); 3] = [
    ("none", 0, SpotSource::None),
    ("advisor_estimate", 1, SpotSource::AdvisorEstimate),
    ("observed", 2, SpotSource::Observed),
];
const SCORE_SOURCE_CODES: [(&str, u8, ScoreSource); 3] = [
    ("none", 0, ScoreSource::None),
    ("measured", 1, ScoreSource::Measured),
    ("family_estimate", 2, ScoreSource::FamilyEstimate),
];

/// The codes this loader reads, in the shape the builder writes them (`codes` in the file).
pub fn codes() -> BTreeMap<String, BTreeMap<String, u8>> {
    let table = |t: &[(&str, u8)]| t.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    BTreeMap::from([
        (
            "spot_source".to_string(),
            table(&SPOT_SOURCE_CODES.map(|(n, c, _)| (n, c))),
        ),
        (
            "score_source".to_string(),
            table(&SCORE_SOURCE_CODES.map(|(n, c, _)| (n, c))),
        ),
    ])
}

fn check_contract(snap: &Snapshot) -> Result<(), CatalogError> {
    let differs = |field: &str, theirs: String, ours: String| {
        invalid(
            field.into(),
            format!("the builder wrote {theirs}, this spotfit reads {ours} (rebuild the catalog or the loader)"),
        )
    };
    if snap.type_columns != TYPE_COLUMNS {
        return Err(differs(
            "type_columns",
            format!("{:?}", snap.type_columns),
            format!("{TYPE_COLUMNS:?}"),
        ));
    }
    if snap.offer_columns != OFFER_COLUMNS {
        return Err(differs(
            "offer_columns",
            format!("{:?}", snap.offer_columns),
            format!("{OFFER_COLUMNS:?}"),
        ));
    }
    let ours = codes();
    if snap.codes != ours {
        return Err(differs("codes", format!("{:?}", snap.codes), format!("{ours:?}")));
    }
    Ok(())
}

fn invalid(field: String, reason: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn price(field: String, p: Option<f64>) -> Result<Option<f64>, CatalogError> {
    match p {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(invalid(field, format!("price must be > 0, got {v}"))),
        other => Ok(other),
    }
}

impl Catalog {
    /// The snapshot compiled into the binary, parsed on first use.
    pub fn embedded() -> Result<&'static Catalog, CatalogError> {
        static CATALOG: OnceLock<Result<Catalog, String>> = OnceLock::new();
        CATALOG
            .get_or_init(|| Catalog::from_json(SNAPSHOT_JSON).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| CatalogError::Parse(e.clone()))
    }

    /// Parses a snapshot in the format of `data/catalog/catalog.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Catalog, CatalogError> {
        let snap: Snapshot = serde_json::from_slice(bytes).map_err(|e| CatalogError::Parse(e.to_string()))?;
        if snap.format != FORMAT_VERSION {
            return Err(invalid(
                "format".into(),
                format!("expected {FORMAT_VERSION}, got {}", snap.format),
            ));
        }
        check_contract(&snap)?;
        let mut offers = Vec::with_capacity(snap.offers.len());
        for (i, (t, r, od, spot, spot_src, bucket, azs)) in snap.offers.into_iter().enumerate() {
            let ty = snap
                .types
                .get(t)
                .ok_or_else(|| invalid(format!("offers[{i}].type"), format!("no type #{t}")))?;
            let region = snap
                .regions
                .get(r)
                .ok_or_else(|| invalid(format!("offers[{i}].region"), format!("no region #{r}")))?;
            let arch = Arch::parse(&ty.4).ok_or_else(|| invalid(format!("types[{t}].arch"), ty.4.clone()))?;
            let azs = azs
                .into_iter()
                .map(|a| {
                    snap.az_ids
                        .get(a)
                        .cloned()
                        .ok_or_else(|| invalid(format!("offers[{i}].az_ids"), "bad index"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if ty.2 == 0 {
                return Err(invalid(format!("types[{t}].vcpu"), "must be > 0"));
            }
            offers.push(Offer {
                instance_type: ty.0.clone(),
                family: ty.1.clone(),
                region: region.clone(),
                vcpu: ty.2,
                memory_bytes: ty.3 * MIB,
                arch,
                gpu: ty.5,
                gpu_memory_bytes: ty.6 * MIB,
                on_demand_per_hour: price(format!("offers[{i}].on_demand_per_hour"), od)?,
                spot_per_hour: price(format!("offers[{i}].spot_per_hour"), spot)?,
                score_multi: ty.11.filter(|s| s.is_finite() && *s > 0.0),
                score_single: ty.13.filter(|s| s.is_finite() && *s > 0.0),
                interruption_bucket: bucket.filter(|b| *b <= 4),
                azs,
                spot_source: SPOT_SOURCE_CODES
                    .iter()
                    .find(|(_, c, _)| *c == spot_src)
                    .map(|(_, _, s)| *s)
                    .ok_or_else(|| invalid(format!("offers[{i}].spot_source"), format!("unknown code {spot_src}")))?,
                score_source: SCORE_SOURCE_CODES
                    .iter()
                    .find(|(_, c, _)| *c == ty.14)
                    .map(|(_, _, s)| *s)
                    .ok_or_else(|| invalid(format!("types[{t}].score_source"), format!("unknown code {}", ty.14)))?,
                score_multi_cores: ty.12,
                burstable: ty.7 != 0,
                current_generation: ty.8 != 0,
                accelerator: ty.10 != 0,
            });
        }
        Ok(Catalog::from_offers(offers))
    }

    /// A catalog of the given offers (tests, refreshed data).
    pub fn from_offers(mut offers: Vec<Offer>) -> Catalog {
        offers.sort_by(|a, b| {
            a.region
                .cmp(&b.region)
                .then_with(|| a.instance_type.cmp(&b.instance_type))
        });
        let mut by_region = BTreeMap::new();
        let mut start = 0;
        for i in 1..=offers.len() {
            if i == offers.len() || offers[i].region != offers[start].region {
                by_region.insert(offers[start].region.clone(), start..i);
                start = i;
            }
        }
        let median_single = by_region
            .iter()
            .filter_map(|(r, range)| {
                let mut s: Vec<f64> = offers[range.clone()].iter().filter_map(|o| o.score_single).collect();
                s.sort_by(f64::total_cmp);
                s.get(s.len() / 2).map(|m| (r.clone(), *m))
            })
            .collect();
        Catalog {
            offers,
            by_region,
            median_single,
        }
    }

    /// Median single-thread score of a region's types (None without any scored type).
    pub fn median_single_score(&self, region: &str) -> Option<f64> {
        self.median_single.get(region).copied()
    }

    /// Offers in one region (empty when the region is unknown).
    pub fn region(&self, region: &str) -> &[Offer] {
        self.by_region.get(region).map_or(&[][..], |r| &self.offers[r.clone()])
    }

    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.by_region.keys().map(String::as_str)
    }

    pub fn find(&self, region: &str, instance_type: &str) -> Option<&Offer> {
        let offers = self.region(region);
        offers
            .binary_search_by(|o| o.instance_type.as_str().cmp(instance_type))
            .ok()
            .map(|i| &offers[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_snapshot_loads_and_covers_us_east_1() {
        // GIVEN the shipped snapshot WHEN parsed THEN us-east-1 has >1000 types, most with a score and a spot price
        let c = Catalog::embedded().unwrap();
        let use1 = c.region("us-east-1");
        assert!(use1.len() > 1000, "{}", use1.len());
        let scored_spot = use1
            .iter()
            .filter(|o| o.score_multi.is_some() && o.spot_per_hour.is_some())
            .count();
        assert!(scored_spot > 700, "{scored_spot}");
        assert!(c.regions().count() >= 29);
        let m = c.find("us-east-1", "m7i.large").unwrap();
        assert_eq!((m.vcpu, m.memory_bytes), (2, 8 * crate::units::GIB));
        assert!(!m.azs.is_empty());
        assert!(c.find("us-east-1", "no-such.type").is_none());
    }

    #[test]
    fn corrupt_snapshot_is_a_clear_error() {
        assert!(matches!(
            Catalog::from_json(b"{\"format\":1"),
            Err(CatalogError::Parse(_))
        ));
        let bad = snapshot(
            1,
            r#""regions":["r"],"az_ids":[],"types":[],"offers":[[0,0,1.0,null,0,null,[]]]"#,
        );
        let err = Catalog::from_json(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("offers[0].type"), "{err}");
        let v2 = snapshot(2, r#""regions":[],"az_ids":[],"types":[],"offers":[]"#);
        assert!(Catalog::from_json(v2.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("format"));
    }

    /// A snapshot with this loader's columns and codes around `rest`.
    fn snapshot(format: u32, rest: &str) -> String {
        format!(
            r#"{{"format":{format},"type_columns":{},"offer_columns":{},"codes":{},{rest}}}"#,
            serde_json::to_string(&TYPE_COLUMNS).unwrap(),
            serde_json::to_string(&OFFER_COLUMNS).unwrap(),
            serde_json::to_string(&codes()).unwrap(),
        )
    }

    #[test]
    fn a_snapshot_whose_columns_or_codes_differ_from_the_loaders_is_refused() {
        // the embedded file carries the builder's columns and codes, and they are the loader's
        let doc: serde_json::Value = serde_json::from_slice(SNAPSHOT_JSON).unwrap();
        assert!(Catalog::from_json(SNAPSHOT_JSON).is_ok());
        // the builder renumbering a code, renaming a column or swapping two, each alone, is caught
        type Edit = fn(&mut serde_json::Value);
        let edits: [(&str, Edit); 3] = [
            ("codes", |d| d["codes"]["spot_source"]["observed"] = 3.into()),
            ("offer_columns", |d| d["offer_columns"][4] = "spot_src".into()),
            ("type_columns", |d| {
                d["type_columns"].as_array_mut().unwrap().swap(11, 13)
            }),
        ];
        for (field, edit) in edits {
            let mut d = doc.clone();
            edit(&mut d);
            let err = Catalog::from_json(d.to_string().as_bytes()).unwrap_err().to_string();
            assert!(
                err.contains(field) && err.contains("the builder wrote"),
                "{field}: {err}"
            );
        }
        // and a file without the contract is refused, not read positionally on trust
        let mut d = doc;
        d.as_object_mut().unwrap().remove("codes");
        assert!(Catalog::from_json(d.to_string().as_bytes()).is_err());
    }

    #[test]
    fn score_fits_the_cores_used() {
        let c = Catalog::embedded().unwrap();
        let big = c.find("us-east-1", "c7g.4xlarge").unwrap();
        let (multi, single) = (big.score_multi.unwrap(), big.score_single.unwrap());
        // one busy core gets the single-thread score, sixteen get the machine
        assert!((big.score_for(1.0).unwrap() - single).abs() < 1e-9);
        assert!((big.score_for(64.0).unwrap() - multi).abs() < 1e-9);
        assert!(big.score_for(4.0).unwrap() < big.score_for(8.0).unwrap());
    }
}
