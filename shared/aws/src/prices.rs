//! [`SpotPriceFeed`] on EC2's `DescribeSpotPriceHistory`: Linux/UNIX prices, every page (1,000
//! rows each, the API's most), zones as AZ ids. The API names the zone of a row by its AZ name
//! (`us-east-1a`, different in every account) and, in newer answers, its id; where the id is
//! missing the account's mapping comes from one `DescribeAvailabilityZones` per call.

use crate::errors::store_error;
use async_trait::async_trait;
use aws_sdk_ec2::primitives::DateTime;
use spotfit_core::ports::{SpotPriceFeed, StoreError};
use spotfit_core::prices::{PricePoint, SpotQuote};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The product whose price a spotfit instance pays (its AMIs are Linux, in a VPC).
pub const PRODUCT: &str = "Linux/UNIX";

#[derive(Debug)]
pub struct Ec2SpotPrices {
    client: aws_sdk_ec2::Client,
    /// API calls made (pages and zone lookups), for the refresher's report.
    calls: AtomicU64,
}

impl Ec2SpotPrices {
    pub fn new(client: aws_sdk_ec2::Client) -> Self {
        Ec2SpotPrices {
            client,
            calls: AtomicU64::new(0),
        }
    }

    /// API calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// AZ name → AZ id in this account and region.
    async fn zone_ids(&self) -> Result<BTreeMap<String, String>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let out = self
            .client
            .describe_availability_zones()
            .send()
            .await
            .map_err(|e| store_error("ec2", e))?;
        Ok(out
            .availability_zones()
            .iter()
            .filter_map(|z| Some((z.zone_name()?.to_string(), z.zone_id()?.to_string())))
            .collect())
    }

    /// Every row of one query, all pages, with each row's zone as an AZ id.
    async fn rows(&self, from_ms: i64, to_ms: i64, pool: Option<(&str, &str)>) -> Result<Vec<SpotQuote>, StoreError> {
        let mut raw = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut req = self
                .client
                .describe_spot_price_history()
                .product_descriptions(PRODUCT)
                .start_time(DateTime::from_millis(from_ms))
                .end_time(DateTime::from_millis(to_ms))
                .max_results(1000)
                .set_next_token(token.clone());
            if let Some((t, az)) = pool {
                req = req.instance_types(t.into()).availability_zone_id(az);
            }
            let out = req.send().await.map_err(|e| store_error("ec2", e))?;
            raw.extend(out.spot_price_history().iter().cloned());
            token = out.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let ids = if raw.iter().any(|r| r.availability_zone_id().is_none()) {
            self.zone_ids().await?
        } else {
            BTreeMap::new()
        };
        Ok(raw
            .iter()
            .filter_map(|r| {
                let az_id = match r.availability_zone_id() {
                    Some(id) => id.to_string(),
                    None => ids.get(r.availability_zone()?)?.clone(),
                };
                Some(SpotQuote {
                    instance_type: r.instance_type()?.as_str().to_string(),
                    az_id,
                    price_per_hour: r.spot_price()?.parse().ok()?,
                    at_ms: r.timestamp()?.to_millis().ok()?,
                })
            })
            .collect())
    }
}

#[async_trait]
impl SpotPriceFeed for Ec2SpotPrices {
    async fn current(&self, at_ms: i64) -> Result<Vec<SpotQuote>, StoreError> {
        // Start and end at the same time: the price in force then, one row per pool.
        self.rows(at_ms, at_ms, None).await
    }

    async fn history(
        &self,
        instance_type: &str,
        az_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<PricePoint>, StoreError> {
        Ok(self
            .rows(from_ms, to_ms, Some((instance_type, az_id)))
            .await?
            .into_iter()
            // A filter the service ignored must not price the run from another pool.
            .filter(|q| q.instance_type == instance_type && q.az_id == az_id)
            .map(|q| PricePoint {
                at_ms: q.at_ms,
                price_per_hour: q.price_per_hour,
            })
            .collect())
    }
}
