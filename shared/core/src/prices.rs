//! Live prices: the spot price overlay the price refresher writes (the latest
//! `DescribeSpotPriceHistory` price per instance type × availability zone of one region), how a
//! ranking decides whether to trust it, and what an attempt was billed from the spot prices in
//! force over its instance's lifetime.
//!
//! The catalog snapshot compiled into the binaries stays the base: a type the overlay does not
//! quote keeps its snapshot price, and an overlay older than [`DEFAULT_MAX_AGE_MS`] is ignored
//! as a whole (a refresher that stopped must not freeze prices for ever). Karpenter does the
//! same: live prices on a schedule over a generated snapshot.

use crate::cost::MIN_BILLED_S;
use crate::ports::ObjectStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The overlay format this code reads and writes (`format` in the file).
pub const OVERLAY_FORMAT: u32 = 1;

/// An overlay older than this is ignored and the snapshot ranks. Spot prices move gradually
/// (a few changes a day per pool, since EC2's 2017 pricing model), so a price a few hours old is
/// still far closer than a snapshot months old; six hours covers several failed hourly
/// refreshes (throttling, an outage) but not a refresher that has silently stopped, which the
/// refresher's error alarm reports long before. `SPOTFIT_PRICE_MAX_AGE_S` overrides it.
pub const DEFAULT_MAX_AGE_MS: i64 = 6 * 3600 * 1000;

/// The S3 key of the overlay for `region`, in the deployment's data bucket.
pub fn overlay_key(region: &str) -> String {
    format!("prices/{region}/spot.json")
}

/// Where the price a candidate or an attempt was bought at came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    /// The catalog snapshot compiled into the binary (an estimate for spot).
    #[default]
    Snapshot,
    /// The live spot price of that pool, from the price overlay.
    Live,
}

impl PriceSource {
    pub fn is_snapshot(&self) -> bool {
        *self == PriceSource::Snapshot
    }
}

/// Whether a recorded cost is what EC2 billed (the instance's lifetime × the prices in force
/// over it, from the price history) or an estimate (a price from the snapshot or the ranking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CostBasis {
    #[default]
    Estimated,
    Billed,
}

impl CostBasis {
    /// Its name as stored (the serde name).
    pub fn as_str(&self) -> &'static str {
        match self {
            CostBasis::Estimated => "estimated",
            CostBasis::Billed => "billed",
        }
    }
}

/// One observed spot price: `DescribeSpotPriceHistory`'s row, the zone as its AZ id.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotQuote {
    pub instance_type: String,
    /// AZ id (`use1-az4`): the same physical zone in every account, unlike AZ names.
    pub az_id: String,
    pub price_per_hour: f64,
    /// When this price took effect, Unix ms.
    pub at_ms: i64,
}

/// The latest spot price per (type, AZ) of one region, as of `fetched_at_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverlay {
    pub format: u32,
    pub region: String,
    /// When the refresher read the prices, Unix ms.
    pub fetched_at_ms: i64,
    /// instance type → AZ id → USD per hour (Linux/UNIX).
    pub spot: BTreeMap<String, BTreeMap<String, f64>>,
    /// instance type → on-demand list price, USD per hour (Linux, shared tenancy), from the
    /// Pricing API; refreshed at most daily ([`ON_DEMAND_EVERY_MS`]) and carried over between.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub on_demand: BTreeMap<String, f64>,
    /// When `on_demand` was read, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_fetched_at_ms: Option<i64>,
}

/// How often the refresher reads on-demand prices: list prices change a few times a year, and
/// the Pricing API's answer for one region is about fourteen pages.
pub const ON_DEMAND_EVERY_MS: i64 = 24 * 3600 * 1000;

/// On-demand prices older than this are not ranked on (the snapshot's are): a week of failed
/// daily reads.
pub const ON_DEMAND_MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;

/// The on-demand list price of one product of a `GetProducts` answer (each `PriceList` entry is
/// a JSON document in a string): its instance type and its hourly USD price, the lowest of its
/// OnDemand terms. None for anything else (a product without an instance type, no hourly USD
/// dimension, a zero price: reservations and placeholders).
pub fn on_demand_of_product(doc: &str) -> Option<(String, f64)> {
    let v: serde_json::Value = serde_json::from_str(doc).ok()?;
    let t = v.pointer("/product/attributes/instanceType")?.as_str()?.to_string();
    let price = v
        .pointer("/terms/OnDemand")?
        .as_object()?
        .values()
        .filter_map(|term| term.get("priceDimensions")?.as_object())
        .flat_map(|dims| dims.values())
        .filter(|d| d.get("unit").and_then(|u| u.as_str()) == Some("Hrs"))
        .filter_map(|d| d.pointer("/pricePerUnit/USD")?.as_str()?.parse::<f64>().ok())
        .filter(|p| p.is_finite() && *p > 0.0)
        .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.min(p))))?;
    Some((t, price))
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PriceError {
    #[error("price overlay is unreadable: {0}")]
    Parse(String),
    #[error("price overlay: {field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> PriceError {
    PriceError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl PriceOverlay {
    /// The overlay of `region` from the quotes one complete refresh read: the latest price of
    /// each (type, AZ) among the types `known` accepts (the catalog's), so a quote for a type no
    /// ranking can use is not carried. Repeated and older rows (the history's pages overlap
    /// around the start time) collapse to the newest.
    pub fn from_quotes(
        region: &str,
        fetched_at_ms: i64,
        quotes: impl IntoIterator<Item = SpotQuote>,
        known: impl Fn(&str) -> bool,
    ) -> PriceOverlay {
        let mut latest: BTreeMap<(String, String), (i64, f64)> = BTreeMap::new();
        for q in quotes {
            if !(known(&q.instance_type) && q.price_per_hour.is_finite() && q.price_per_hour > 0.0) {
                continue;
            }
            let slot = latest.entry((q.instance_type, q.az_id)).or_insert((i64::MIN, 0.0));
            if q.at_ms >= slot.0 {
                *slot = (q.at_ms, q.price_per_hour);
            }
        }
        let mut spot: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        for ((t, az), (_, p)) in latest {
            spot.entry(t).or_default().insert(az, p);
        }
        PriceOverlay {
            format: OVERLAY_FORMAT,
            region: region.to_string(),
            fetched_at_ms,
            spot,
            on_demand: BTreeMap::new(),
            on_demand_fetched_at_ms: None,
        }
    }

    /// Parses and checks an overlay: every field named in the error.
    pub fn from_json(bytes: &[u8]) -> Result<PriceOverlay, PriceError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let o: PriceOverlay = serde_path_to_error::deserialize(de).map_err(|e| {
            if e.inner().is_data() {
                invalid(e.path().to_string(), e.inner().to_string())
            } else {
                PriceError::Parse(e.inner().to_string())
            }
        })?;
        if o.format != OVERLAY_FORMAT {
            return Err(invalid(
                "format",
                format!("{} is not the supported {OVERLAY_FORMAT}", o.format),
            ));
        }
        if o.region.is_empty() {
            return Err(invalid("region", "empty"));
        }
        if o.fetched_at_ms <= 0 {
            return Err(invalid("fetched_at_ms", "must be a Unix time in ms"));
        }
        for (t, zones) in &o.spot {
            for (az, p) in zones {
                if !crate::ranking::looks_like_az_id(az) {
                    return Err(invalid(format!("spot.{t}.{az}"), "not an AZ id (like use1-az4)"));
                }
                if !(p.is_finite() && *p > 0.0) {
                    return Err(invalid(format!("spot.{t}.{az}"), format!("price {p} is not positive")));
                }
            }
        }
        for (t, p) in &o.on_demand {
            if !(p.is_finite() && *p > 0.0) {
                return Err(invalid(format!("on_demand.{t}"), format!("price {p} is not positive")));
            }
        }
        if !o.on_demand.is_empty() && o.on_demand_fetched_at_ms.is_none() {
            return Err(invalid("on_demand_fetched_at_ms", "missing beside on_demand prices"));
        }
        Ok(o)
    }

    /// The live on-demand price of `instance_type` while it is young enough at `now_ms`.
    pub fn on_demand_at(&self, instance_type: &str, now_ms: i64) -> Option<f64> {
        let at = self.on_demand_fetched_at_ms?;
        (now_ms - at <= ON_DEMAND_MAX_AGE_MS)
            .then(|| self.on_demand.get(instance_type).copied())
            .flatten()
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The live spot price of `instance_type` per AZ id; None when the overlay does not quote
    /// the type (its snapshot price stands).
    pub fn spot_zones(&self, instance_type: &str) -> Option<&BTreeMap<String, f64>> {
        self.spot.get(instance_type).filter(|z| !z.is_empty())
    }

    /// (types, quotes) in the overlay.
    pub fn counts(&self) -> (usize, usize) {
        (self.spot.len(), self.spot.values().map(BTreeMap::len).sum())
    }
}

/// What a ranking may use of an overlay read at `now_ms`.
#[derive(Debug, Clone, PartialEq)]
pub enum Freshness {
    /// No overlay (never refreshed, or this region not refreshed).
    Missing,
    /// Young enough: rank on it.
    Fresh,
    /// Older than the bound: the snapshot ranks; the caller logs why.
    Stale { age_ms: i64, max_age_ms: i64 },
    /// For another region than the one ranked.
    OtherRegion { region: String },
}

/// Whether `overlay` may be ranked on in `region` at `now_ms`.
pub fn freshness(overlay: Option<&PriceOverlay>, region: &str, now_ms: i64, max_age_ms: i64) -> Freshness {
    match overlay {
        None => Freshness::Missing,
        Some(o) if o.region != region => Freshness::OtherRegion {
            region: o.region.clone(),
        },
        Some(o) if now_ms - o.fetched_at_ms > max_age_ms => Freshness::Stale {
            age_ms: now_ms - o.fetched_at_ms,
            max_age_ms,
        },
        Some(_) => Freshness::Fresh,
    }
}

/// How often a warm process looks for a newer overlay: the refresher writes one an hour, so a
/// minute's delay costs nothing, and a ranking does not pay a read each time.
pub const RECHECK_MS: i64 = 60_000;

/// The overlay a ranking uses, or why it uses the snapshot (for the caller's warning).
#[derive(Debug, Clone)]
pub enum Loaded {
    Live(Arc<PriceOverlay>),
    /// `warn`: something is wrong (stale, unreadable, foreign, the store failing) rather than
    /// a deployment whose first refresh has not run yet.
    Snapshot {
        why: String,
        warn: bool,
    },
}

/// The overlay as a warm process holds it: read from the store at most every
/// [`RECHECK_MS`], re-parsed only when a newer one was written, and checked for age at each use.
#[derive(Debug, Default)]
pub struct OverlayCache {
    held: Mutex<Option<Held>>,
}

#[derive(Debug, Clone)]
struct Held {
    read_at_ms: i64,
    overlay: Option<Arc<PriceOverlay>>,
    /// Why the last read gave nothing usable (absent, unreadable), for the warning.
    problem: Option<String>,
}

impl OverlayCache {
    /// The overlay of `region` to rank on at `now_ms`. A failed read keeps the overlay held
    /// before (if it is still young enough); an overlay that is missing, unreadable, foreign or
    /// older than `max_age_ms` gives [`Loaded::Snapshot`] with the reason.
    pub async fn current<O: ObjectStore + ?Sized>(
        &self,
        objects: &O,
        region: &str,
        now_ms: i64,
        max_age_ms: i64,
    ) -> Loaded {
        let held = self.held.lock().map(|h| h.clone()).unwrap_or_default();
        let held = match held {
            Some(h) if now_ms - h.read_at_ms < RECHECK_MS => h,
            before => {
                let key = overlay_key(region);
                let (overlay, problem) = match objects.get(&key).await {
                    Ok(Some(bytes)) => match before.as_ref().and_then(|b| b.overlay.clone()) {
                        // The same refresh as held: no need to parse it again.
                        Some(o) if same_refresh(&bytes, &o) => (Some(o), None),
                        _ => match PriceOverlay::from_json(&bytes) {
                            Ok(o) => (Some(Arc::new(o)), None),
                            Err(e) => (None, Some(format!("{key}: {e}"))),
                        },
                    },
                    Ok(None) => (None, Some(format!("no price overlay at {key} yet"))),
                    // A store error keeps what was held: the next recheck tries again.
                    Err(e) => (
                        before.as_ref().and_then(|b| b.overlay.clone()),
                        Some(format!("reading {key}: {e}")),
                    ),
                };
                let h = Held {
                    read_at_ms: now_ms,
                    overlay,
                    problem,
                };
                if let Ok(mut slot) = self.held.lock() {
                    *slot = Some(h.clone());
                }
                h
            }
        };
        match (
            freshness(held.overlay.as_deref(), region, now_ms, max_age_ms),
            held.overlay,
        ) {
            (Freshness::Fresh, Some(o)) => Loaded::Live(o),
            (Freshness::Missing, _) => Loaded::Snapshot {
                warn: held
                    .problem
                    .as_deref()
                    .is_some_and(|p| !p.starts_with("no price overlay")),
                why: held.problem.unwrap_or_else(|| "no price overlay".into()),
            },
            (Freshness::Stale { age_ms, max_age_ms }, _) => Loaded::Snapshot {
                why: format!(
                    "the price overlay is {} min old, older than the {} min bound: ranking on the snapshot",
                    age_ms / 60_000,
                    max_age_ms / 60_000
                ),
                warn: true,
            },
            (Freshness::OtherRegion { region: r }, _) => Loaded::Snapshot {
                why: format!("the price overlay is for {r}, not {region}: ranking on the snapshot"),
                warn: true,
            },
            (Freshness::Fresh, None) => Loaded::Snapshot {
                why: "no price overlay".into(),
                warn: false,
            },
        }
    }
}

/// Whether `bytes` are the refresh `held` was parsed from (same region and time), read from
/// its head fields without building the price maps again.
fn same_refresh(bytes: &[u8], held: &PriceOverlay) -> bool {
    #[derive(Deserialize)]
    struct Head {
        region: String,
        fetched_at_ms: i64,
    }
    serde_json::from_slice::<Head>(bytes)
        .is_ok_and(|h| h.region == held.region && h.fetched_at_ms == held.fetched_at_ms)
}

/// What one refresh did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshReport {
    pub region: String,
    pub fetched_at_ms: i64,
    /// Types and (type, AZ) quotes in the new overlay.
    pub types: usize,
    pub quotes: usize,
    /// Quotes in the overlay it replaced (0: none).
    pub previous_quotes: usize,
    pub written: bool,
    /// On-demand prices in the overlay written, and when they were read (this refresh, or an
    /// earlier one they were carried over from).
    #[serde(default)]
    pub on_demand: usize,
    #[serde(default)]
    pub on_demand_fetched_at_ms: Option<i64>,
    /// Why this refresh's on-demand read failed (the previous prices were kept), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Reading the market failed (throttled past the SDK's retries, a page lost): the previous
    /// overlay stays.
    #[error("reading spot prices: {0}")]
    Feed(crate::ports::StoreError),
    /// The market answered, but with far fewer pools than the overlay it would replace: taken
    /// as a truncated answer, not written.
    #[error("refusing a partial refresh: {quotes} quotes against {previous} in the overlay of {previous_age_min} min ago (at least half are needed)")]
    Partial {
        quotes: usize,
        previous: usize,
        previous_age_min: i64,
    },
    #[error("writing the price overlay: {0}")]
    Store(crate::ports::StoreError),
}

/// The refresh step: reads every spot price in force now, keeps the latest per (type, AZ) of
/// the types `known` accepts, and writes the overlay over the previous one unless the answer
/// looks partial: fewer than half the previous overlay's quotes while that one is still young
/// enough to rank on (a stale one is replaced by anything the market answered). Nothing is
/// written on any error, so a failed refresh never replaces a complete one.
///
/// On-demand prices (`on_demand`, the Pricing API) are read when the previous overlay's are
/// older than [`ON_DEMAND_EVERY_MS`] or missing, and carried over otherwise; a failed read keeps
/// the previous ones and is reported, but does not stop the spot refresh.
pub async fn refresh<F, D, O>(
    feed: &F,
    on_demand: Option<&D>,
    objects: &O,
    region: &str,
    now_ms: i64,
    known: impl Fn(&str) -> bool,
) -> Result<RefreshReport, RefreshError>
where
    F: crate::ports::SpotPriceFeed + ?Sized,
    D: crate::ports::OnDemandFeed + ?Sized,
    O: ObjectStore + ?Sized,
{
    let quotes = feed.current(now_ms).await.map_err(RefreshError::Feed)?;
    let mut overlay = PriceOverlay::from_quotes(region, now_ms, quotes, &known);
    let key = overlay_key(region);
    // An unreadable previous overlay is no reason to keep it.
    let previous = objects
        .get(&key)
        .await
        .map_err(RefreshError::Store)?
        .and_then(|b| PriceOverlay::from_json(&b).ok());
    // On-demand: carried over while young, else read (and on failure, carried over anyway).
    let held = previous
        .as_ref()
        .filter(|p| p.region == region && p.on_demand_fetched_at_ms.is_some())
        .map(|p| (p.on_demand.clone(), p.on_demand_fetched_at_ms));
    let due = held
        .as_ref()
        .and_then(|(_, at)| *at)
        .is_none_or(|at| now_ms - at >= ON_DEMAND_EVERY_MS);
    let mut on_demand_error = None;
    let (prices, at) = match (due, on_demand) {
        (true, Some(d)) => match d.on_demand(region).await {
            Ok(m) if !m.is_empty() => (m.into_iter().filter(|(t, _)| known(t)).collect(), Some(now_ms)),
            Ok(_) => {
                on_demand_error = Some("the Pricing API answered no price".to_string());
                held.unwrap_or_default()
            }
            Err(e) => {
                on_demand_error = Some(e.to_string());
                held.unwrap_or_default()
            }
        },
        _ => held.unwrap_or_default(),
    };
    overlay.on_demand = prices;
    overlay.on_demand_fetched_at_ms = at.filter(|_| !overlay.on_demand.is_empty());
    let (types, quotes) = overlay.counts();
    let previous_quotes = previous.as_ref().map_or(0, |p| p.counts().1);
    if let Some(p) = &previous {
        let young = freshness(Some(p), region, now_ms, DEFAULT_MAX_AGE_MS) == Freshness::Fresh;
        if young && quotes * 2 < previous_quotes {
            return Err(RefreshError::Partial {
                quotes,
                previous: previous_quotes,
                previous_age_min: (now_ms - p.fetched_at_ms) / 60_000,
            });
        }
    }
    if quotes == 0 {
        return Err(RefreshError::Partial {
            quotes,
            previous: previous_quotes,
            previous_age_min: previous.as_ref().map_or(0, |p| (now_ms - p.fetched_at_ms) / 60_000),
        });
    }
    objects
        .put(&key, overlay.to_json())
        .await
        .map_err(RefreshError::Store)?;
    Ok(RefreshReport {
        region: region.to_string(),
        fetched_at_ms: now_ms,
        types,
        quotes,
        previous_quotes,
        written: true,
        on_demand: overlay.on_demand.len(),
        on_demand_fetched_at_ms: overlay.on_demand_fetched_at_ms,
        on_demand_error,
    })
}

/// One price in force from `at_ms` on (a pool's price history).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PricePoint {
    pub at_ms: i64,
    pub price_per_hour: f64,
}

/// What an instance cost from `launch_ms` to `end_ms` at the spot prices in force over that
/// time (`history`: any order, it must hold the price in force at the launch, i.e. a point at or
/// before it), plus `storage_per_hour` for its volume: per second, each second at the price in
/// force then, with EC2's 60 s minimum (a run shorter than that pays its first price for 60 s).
/// None when the history does not reach back to the launch: the caller keeps its estimate.
pub fn billed_over(history: &[PricePoint], launch_ms: i64, end_ms: i64, storage_per_hour: f64) -> Option<f64> {
    let mut points: Vec<PricePoint> = history
        .iter()
        .copied()
        .filter(|p| p.price_per_hour.is_finite() && p.price_per_hour >= 0.0)
        .collect();
    points.sort_by_key(|p| p.at_ms);
    let first = points.iter().rposition(|p| p.at_ms <= launch_ms)?;
    let end_ms = end_ms.max(launch_ms);
    let mut usd = 0.0;
    for (i, p) in points.iter().enumerate().skip(first) {
        let from = p.at_ms.max(launch_ms);
        let to = points.get(i + 1).map_or(end_ms, |n| n.at_ms.min(end_ms));
        if to > from {
            usd += p.price_per_hour * (to - from) as f64 / 3_600_000.0;
        }
    }
    let seconds = (end_ms - launch_ms) as f64 / 1000.0;
    if seconds < MIN_BILLED_S {
        usd += points[first].price_per_hour * (MIN_BILLED_S - seconds) / 3600.0;
    }
    Some(usd + crate::cost::billed_cost(storage_per_hour, seconds))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_cost_basis_is_named_as_serde_stores_it() {
        for b in [CostBasis::Estimated, CostBasis::Billed] {
            assert_eq!(serde_json::to_value(b).unwrap(), b.as_str());
        }
    }

    fn q(t: &str, az: &str, p: f64, at: i64) -> SpotQuote {
        SpotQuote {
            instance_type: t.into(),
            az_id: az.into(),
            price_per_hour: p,
            at_ms: at,
        }
    }

    #[test]
    fn the_overlay_keeps_the_latest_price_per_type_and_zone_of_known_types() {
        let o = PriceOverlay::from_quotes(
            "us-east-1",
            10_000,
            [
                q("m7i.large", "use1-az1", 0.05, 1_000),
                q("m7i.large", "use1-az1", 0.04, 3_000),
                q("m7i.large", "use1-az1", 0.06, 2_000),
                q("m7i.large", "use1-az2", 0.07, 1_000),
                q("m7i.large", "use1-az2", 0.07, 1_000), // a repeated row (overlapping pages)
                q("x9.unknown", "use1-az1", 0.01, 1_000),
                q("c7i.large", "use1-az1", f64::NAN, 1_000),
            ],
            |t| t != "x9.unknown",
        );
        assert_eq!(o.spot_zones("m7i.large").unwrap()["use1-az1"], 0.04);
        assert_eq!(o.spot_zones("m7i.large").unwrap()["use1-az2"], 0.07);
        assert!(o.spot_zones("x9.unknown").is_none());
        assert!(o.spot_zones("c7i.large").is_none());
        assert_eq!(o.counts(), (1, 2));
        // AND it survives its own JSON
        assert_eq!(PriceOverlay::from_json(&o.to_json()).unwrap(), o);
    }

    #[test]
    fn a_bad_overlay_names_the_field() {
        let bad = |j: serde_json::Value| {
            PriceOverlay::from_json(j.to_string().as_bytes())
                .unwrap_err()
                .to_string()
        };
        let ok = serde_json::json!({"format": 1, "region": "us-east-1", "fetched_at_ms": 5,
            "spot": {"m7i.large": {"use1-az1": 0.04}}});
        assert!(PriceOverlay::from_json(ok.to_string().as_bytes()).is_ok());
        let mut j = ok.clone();
        j["spot"]["m7i.large"]["use1-az1"] = serde_json::json!(-1.0);
        assert!(bad(j).contains("spot.m7i.large.use1-az1"));
        let mut j = ok.clone();
        j["spot"]["m7i.large"] = serde_json::json!({"us-east-1a": 0.04});
        assert!(bad(j).contains("not an AZ id"));
        let mut j = ok.clone();
        j["format"] = serde_json::json!(2);
        assert!(bad(j).contains("format"));
        let mut j = ok.clone();
        j["spot"] = serde_json::json!({"m7i.large": {"use1-az1": "cheap"}});
        assert!(bad(j).contains("spot.m7i.large.use1-az1"));
        let mut j = ok;
        j["extra"] = serde_json::json!(1);
        assert!(bad(j).contains("extra"));
        assert!(PriceOverlay::from_json(b"{")
            .unwrap_err()
            .to_string()
            .contains("unreadable"));
    }

    #[test]
    fn an_old_or_foreign_overlay_is_not_ranked_on() {
        let o = PriceOverlay::from_quotes("us-east-1", 1_000, [], |_| true);
        assert_eq!(freshness(Some(&o), "us-east-1", 1_000 + 59, 60), Freshness::Fresh);
        assert_eq!(
            freshness(Some(&o), "us-east-1", 1_000 + 61, 60),
            Freshness::Stale {
                age_ms: 61,
                max_age_ms: 60
            }
        );
        assert!(matches!(
            freshness(Some(&o), "eu-west-1", 1_000, 60),
            Freshness::OtherRegion { .. }
        ));
        assert_eq!(freshness(None, "us-east-1", 0, 60), Freshness::Missing);
    }

    #[test]
    fn a_warm_process_rereads_a_newer_overlay_and_drops_a_stale_one() {
        use crate::testkit::{block_on, InMemoryObjectStore};
        let store = InMemoryObjectStore::default();
        let cache = OverlayCache::default();
        let put = |at: i64, price: f64| {
            let o = PriceOverlay::from_quotes("us-east-1", at, [q("m7i.large", "use1-az1", price, 0)], |_| true);
            block_on(store.put(&overlay_key("us-east-1"), o.to_json())).unwrap();
        };
        let hour = 3_600_000;
        let price = |l: &Loaded| match l {
            Loaded::Live(o) => Some(o.spot["m7i.large"]["use1-az1"]),
            Loaded::Snapshot { .. } => None,
        };
        // GIVEN no overlay yet: the snapshot, saying why
        let l = block_on(cache.current(&store, "us-east-1", hour, DEFAULT_MAX_AGE_MS));
        assert!(
            matches!(&l, Loaded::Snapshot { why, warn: false } if why.contains("no price overlay")),
            "{l:?}"
        );
        // WHEN the refresher writes one: it is used after the recheck interval, not before
        put(hour, 0.04);
        assert_eq!(
            price(&block_on(cache.current(
                &store,
                "us-east-1",
                hour + 1,
                DEFAULT_MAX_AGE_MS
            ))),
            None
        );
        let t = hour + RECHECK_MS;
        assert_eq!(
            price(&block_on(cache.current(&store, "us-east-1", t, DEFAULT_MAX_AGE_MS))),
            Some(0.04)
        );
        // AND a newer refresh replaces it at the next recheck
        put(2 * hour, 0.05);
        let t = t + RECHECK_MS;
        assert_eq!(
            price(&block_on(cache.current(&store, "us-east-1", t, DEFAULT_MAX_AGE_MS))),
            Some(0.05)
        );
        // AND a corrupt write is not ranked on (the reason names the key)
        block_on(store.put(&overlay_key("us-east-1"), b"{\"format\": 1".to_vec())).unwrap();
        let t = t + RECHECK_MS;
        let l = block_on(cache.current(&store, "us-east-1", t, DEFAULT_MAX_AGE_MS));
        assert!(
            matches!(&l, Loaded::Snapshot { why, warn: true } if why.contains("prices/us-east-1/spot.json")),
            "{l:?}"
        );
        // AND once the last good refresh is older than the bound, the snapshot ranks
        put(2 * hour, 0.05);
        let l = block_on(cache.current(
            &store,
            "us-east-1",
            2 * hour + DEFAULT_MAX_AGE_MS + RECHECK_MS,
            DEFAULT_MAX_AGE_MS,
        ));
        assert!(
            matches!(&l, Loaded::Snapshot { why, warn: true } if why.contains("older than the 360 min bound")),
            "{l:?}"
        );
    }

    #[test]
    fn a_failed_read_keeps_the_overlay_held() {
        use crate::ports::StoreError;
        use crate::testkit::block_on;
        struct Flaky(Mutex<Option<Vec<u8>>>);
        #[async_trait::async_trait]
        impl ObjectStore for Flaky {
            async fn put(&self, _: &str, _: Vec<u8>) -> Result<(), StoreError> {
                Ok(())
            }
            async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
                self.0.lock().unwrap().take().map(Some).ok_or(StoreError::Unavailable {
                    service: "s3".into(),
                    message: "down".into(),
                })
            }
            async fn list(&self, _: &str) -> Result<Vec<String>, StoreError> {
                Ok(vec![])
            }
        }
        let o = PriceOverlay::from_quotes("us-east-1", 1_000, [q("m7i.large", "use1-az1", 0.04, 0)], |_| true);
        let store = Flaky(Mutex::new(Some(o.to_json())));
        let cache = OverlayCache::default();
        assert!(matches!(
            block_on(cache.current(&store, "us-east-1", 2_000, DEFAULT_MAX_AGE_MS)),
            Loaded::Live(_)
        ));
        // the store fails at the next recheck: the held overlay stays in use
        let l = block_on(cache.current(&store, "us-east-1", 2_000 + RECHECK_MS, DEFAULT_MAX_AGE_MS));
        assert!(matches!(l, Loaded::Live(ref h) if **h == o), "{l:?}");
    }

    struct Feed(Mutex<Vec<Result<Vec<SpotQuote>, crate::ports::StoreError>>>);
    #[async_trait::async_trait]
    impl crate::ports::SpotPriceFeed for Feed {
        async fn current(&self, _: i64) -> Result<Vec<SpotQuote>, crate::ports::StoreError> {
            self.0.lock().unwrap().remove(0)
        }
        async fn history(&self, _: &str, _: &str, _: i64, _: i64) -> Result<Vec<PricePoint>, crate::ports::StoreError> {
            Ok(vec![])
        }
    }

    struct OnDemand(
        Mutex<Vec<Result<BTreeMap<String, f64>, crate::ports::StoreError>>>,
        Mutex<u32>,
    );
    #[async_trait::async_trait]
    impl crate::ports::OnDemandFeed for OnDemand {
        async fn on_demand(&self, region: &str) -> Result<BTreeMap<String, f64>, crate::ports::StoreError> {
            assert_eq!(region, "us-east-1");
            *self.1.lock().unwrap() += 1;
            self.0.lock().unwrap().remove(0)
        }
    }
    const NO_OD: Option<&OnDemand> = None;

    #[test]
    fn on_demand_prices_are_read_daily_carried_between_and_kept_when_a_read_fails() {
        use crate::testkit::{block_on, InMemoryObjectStore};
        let h = 3_600_000;
        let spot: Vec<SpotQuote> = (0..4).map(|i| q(&format!("m{i}.large"), "use1-az1", 0.1, 0)).collect();
        let feed = Feed(Mutex::new((0..5).map(|_| Ok(spot.clone())).collect()));
        let od =
            |p: f64| -> BTreeMap<String, f64> { [("m0.large".to_string(), p), ("x9.unknown".to_string(), 1.0)].into() };
        let pricing = OnDemand(
            Mutex::new(vec![
                Ok(od(0.2)),
                Err(crate::ports::StoreError::Throttled {
                    service: "pricing".into(),
                    message: "ThrottlingException".into(),
                }),
                Ok(od(0.25)),
            ]),
            Mutex::new(0),
        );
        let store = InMemoryObjectStore::default();
        let read =
            || PriceOverlay::from_json(&block_on(store.get(&overlay_key("us-east-1"))).unwrap().unwrap()).unwrap();
        // the first refresh reads them (the catalog's types only)
        let r = block_on(refresh(&feed, Some(&pricing), &store, "us-east-1", h, |t| {
            t != "x9.unknown"
        }))
        .unwrap();
        assert_eq!((r.on_demand, r.on_demand_fetched_at_ms), (1, Some(h)));
        assert_eq!(read().on_demand_at("m0.large", h), Some(0.2));
        // an hour later they are carried over, not read again
        block_on(refresh(&feed, Some(&pricing), &store, "us-east-1", 2 * h, |_| true)).unwrap();
        assert_eq!(
            (*pricing.1.lock().unwrap(), read().on_demand_fetched_at_ms),
            (1, Some(h))
        );
        // a day later they are due; the read fails: the spot refresh is written, the old prices kept
        let r = block_on(refresh(&feed, Some(&pricing), &store, "us-east-1", 26 * h, |_| true)).unwrap();
        assert!(
            r.on_demand_error.as_deref().unwrap().contains("ThrottlingException"),
            "{r:?}"
        );
        assert_eq!(
            (read().fetched_at_ms, read().on_demand_at("m0.large", 26 * h)),
            (26 * h, Some(0.2))
        );
        // the next refresh tries again, and succeeds
        block_on(refresh(&feed, Some(&pricing), &store, "us-east-1", 27 * h, |_| true)).unwrap();
        assert_eq!(read().on_demand_at("m0.large", 27 * h), Some(0.25));
        // prices older than their bound are not ranked on
        assert_eq!(read().on_demand_at("m0.large", 27 * h + ON_DEMAND_MAX_AGE_MS + 1), None);
    }

    #[test]
    fn a_get_products_entry_gives_its_type_and_hourly_price() {
        let doc = r#"{"product":{"productFamily":"Compute Instance","attributes":{"instanceType":"m7i.large","regionCode":"us-east-1"}},
            "terms":{"OnDemand":{"X.JRTCKXETXF":{"priceDimensions":{"X.JRTCKXETXF.6YS6EN2CT7":{"unit":"Hrs","pricePerUnit":{"USD":"0.1008000000"}}}}}}}"#;
        assert_eq!(on_demand_of_product(doc), Some(("m7i.large".to_string(), 0.1008)));
        let zero = doc.replace("0.1008000000", "0.0000000000");
        assert_eq!(on_demand_of_product(&zero), None, "a placeholder price is no price");
        let per_gb = doc.replace("\"Hrs\"", "\"GB-Mo\"");
        assert_eq!(on_demand_of_product(&per_gb), None);
        assert_eq!(on_demand_of_product("{\"product\": {}}"), None);
        assert_eq!(on_demand_of_product("not json"), None);
    }

    #[test]
    fn a_failed_or_partial_refresh_keeps_the_previous_overlay() {
        use crate::ports::StoreError;
        use crate::testkit::{block_on, InMemoryObjectStore};
        let full: Vec<SpotQuote> = (0..10).map(|i| q(&format!("m{i}.large"), "use1-az1", 0.1, 0)).collect();
        let feed = Feed(Mutex::new(vec![
            Ok(full.clone()),
            Err(StoreError::Throttled {
                service: "ec2".into(),
                message: "RequestLimitExceeded".into(),
            }),
            Ok(full[..3].to_vec()),
            Ok(full[..6].to_vec()),
        ]));
        let store = InMemoryObjectStore::default();
        let h = 3_600_000;
        let read =
            || PriceOverlay::from_json(&block_on(store.get(&overlay_key("us-east-1"))).unwrap().unwrap()).unwrap();
        // a complete refresh is written
        let r = block_on(refresh(&feed, NO_OD, &store, "us-east-1", h, |_| true)).unwrap();
        assert_eq!((r.types, r.quotes, r.written), (10, 10, true));
        // throttled past the retries: an error, the overlay untouched
        assert!(matches!(
            block_on(refresh(&feed, NO_OD, &store, "us-east-1", 2 * h, |_| true)),
            Err(RefreshError::Feed(_))
        ));
        assert_eq!(read().fetched_at_ms, h);
        // a truncated answer (3 of 10): refused, the overlay untouched
        let e = block_on(refresh(&feed, NO_OD, &store, "us-east-1", 3 * h, |_| true)).unwrap_err();
        assert!(e.to_string().contains("3 quotes against 10"), "{e}");
        assert_eq!(read().counts().1, 10);
        // a market that lost some pools (6 of 10) is still a market: written
        let r = block_on(refresh(&feed, NO_OD, &store, "us-east-1", 4 * h, |_| true)).unwrap();
        assert_eq!((r.quotes, r.previous_quotes), (6, 10));
        assert_eq!(read().fetched_at_ms, 4 * h);
    }

    fn pp(at_ms: i64, price_per_hour: f64) -> PricePoint {
        PricePoint { at_ms, price_per_hour }
    }

    #[test]
    fn billing_follows_the_price_in_force_each_second() {
        let h = 3_600_000;
        // $0.10 from before the launch, $0.20 from 30 min in; a 90-minute run:
        // 30 min × 0.10 + 60 min × 0.20 = 0.05 + 0.20
        let got = billed_over(&[pp(2 * h + h / 2, 0.20), pp(0, 0.10)], 2 * h, 3 * h + h / 2, 0.0).unwrap();
        assert!((got - 0.25).abs() < 1e-12, "{got}");
        // a change after the end does not count
        let got = billed_over(&[pp(0, 0.10), pp(10 * h, 9.0)], h, 2 * h, 0.0).unwrap();
        assert!((got - 0.10).abs() < 1e-12, "{got}");
        // with its volume, billed for the same lifetime
        let got = billed_over(&[pp(0, 0.10)], h, 2 * h, 0.01).unwrap();
        assert!((got - 0.11).abs() < 1e-12, "{got}");
    }

    #[test]
    fn a_short_run_pays_the_minute_at_its_launch_price() {
        // 20 s at $0.36/h, the price changing to $3.60 after 10 s: 10 s × 0.36 + 10 s × 3.60
        // + the 40 s the minimum adds, at the launch price
        let got = billed_over(&[pp(0, 0.36), pp(10_000, 3.60)], 0, 20_000, 0.0).unwrap();
        let want = (10.0 * 0.36 + 10.0 * 3.60 + 40.0 * 0.36) / 3600.0;
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn a_history_that_does_not_reach_the_launch_is_no_bill() {
        assert_eq!(billed_over(&[pp(5_000, 0.1)], 1_000, 90_000, 0.0), None);
        assert_eq!(billed_over(&[], 1_000, 90_000, 0.0), None);
    }
}
