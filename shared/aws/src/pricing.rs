//! [`OnDemandFeed`] on the Price List Query API (`GetProducts`): the on-demand price of every
//! EC2 instance type in a region, Linux, shared tenancy, no pre-installed software, capacity in
//! use — what a plain RunInstances pays. The API answers in us-east-1 (and two other regions)
//! only, so the client is made for us-east-1 whatever the deployment's region; every page is
//! read (100 products each). Behind the `pricing` feature: only refresh-prices carries this SDK.

use crate::errors::store_error;
use async_trait::async_trait;
use aws_sdk_pricing::types::{Filter, FilterType};
use spotfit_core::ports::{OnDemandFeed, StoreError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The Pricing API's home region (its endpoint `api.pricing.us-east-1.amazonaws.com`).
pub const PRICING_REGION: &str = "us-east-1";

#[derive(Debug)]
pub struct PricingOnDemand {
    client: aws_sdk_pricing::Client,
    calls: AtomicU64,
}

impl PricingOnDemand {
    /// A client for the Pricing API from the shared config, in [`PRICING_REGION`]
    /// (`AWS_ENDPOINT_URL_PRICING` overrides the endpoint, as for every service).
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        let conf = aws_sdk_pricing::config::Builder::from(sdk)
            .region(aws_sdk_pricing::config::Region::new(PRICING_REGION))
            .build();
        PricingOnDemand {
            client: aws_sdk_pricing::Client::from_conf(conf),
            calls: AtomicU64::new(0),
        }
    }

    /// Pages read so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

fn term(field: &str, value: &str) -> Result<Filter, StoreError> {
    Filter::builder()
        .r#type(FilterType::TermMatch)
        .field(field)
        .value(value)
        .build()
        .map_err(|e| StoreError::Other {
            service: "pricing".into(),
            code: "InvalidFilter".into(),
            message: e.to_string(),
        })
}

#[async_trait]
impl OnDemandFeed for PricingOnDemand {
    async fn on_demand(&self, region: &str) -> Result<BTreeMap<String, f64>, StoreError> {
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let out_page = self
                .client
                .get_products()
                .service_code("AmazonEC2")
                .filters(term("regionCode", region)?)
                .filters(term("operatingSystem", "Linux")?)
                .filters(term("tenancy", "Shared")?)
                .filters(term("preInstalledSw", "NA")?)
                .filters(term("capacitystatus", "Used")?)
                .filters(term("licenseModel", "No License required")?)
                .format_version("aws_v1")
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| store_error("pricing", e))?;
            for doc in out_page.price_list() {
                if let Some((t, p)) = spotfit_core::prices::on_demand_of_product(doc) {
                    let e = out.entry(t).or_insert(p);
                    *e = e.min(p);
                }
            }
            token = out_page.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}
