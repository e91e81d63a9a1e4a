//! DynamoDB stores: job profiles (conditional writes on `version`), run attempts (one item per
//! run id and attempt, a `by-job` index on job and start time), capacity marks (TTL on
//! `expires_at`), and the waits of attempts an execution waits on ([`DynamoWaitStore`]). Items carry the domain object as JSON in `doc` plus the key and index
//! attributes, so the schema of the domain types can grow without a table migration.

use crate::errors::store_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use spotfit_core::ids::Pool;
use spotfit_core::ports::{CapacityMark, CapacityStore, ProfileStore, RunStore, StoreError, WaitStore, Waiting};
use spotfit_core::profile::JobProfile;
use spotfit_core::run::RunRecord;
use spotfit_core::spec::Market;
use std::collections::HashMap;

/// Name of the runs table's index on (`job`, `started_at_ms`).
pub const RUNS_BY_JOB_INDEX: &str = "by-job";

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}
fn get_n<T: std::str::FromStr>(item: &Item, k: &str) -> Option<T> {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// The item of one attempt in a table keyed by (`run_id`, `attempt`), read consistently (the
/// runs and the waits tables).
async fn get_attempt(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    run_id: &str,
    attempt: u32,
) -> Result<Option<Item>, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .key("run_id", s(run_id))
        .key("attempt", n(attempt))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| store_error("dynamodb", e))?;
    Ok(out.item)
}

fn doc<T: serde::de::DeserializeOwned>(item: &Item, key: &str) -> Result<T, StoreError> {
    let json = get_s(item, "doc").ok_or_else(|| StoreError::Corrupt {
        key: key.into(),
        reason: "no doc attribute".into(),
    })?;
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        key: key.into(),
        reason: e.to_string(),
    })
}

fn to_json<T: serde::Serialize>(v: &T, key: &str) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt {
        key: key.into(),
        reason: e.to_string(),
    })
}

/// [`ProfileStore`] on the `profiles` table (pk `job`).
#[derive(Debug, Clone)]
pub struct DynamoProfileStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoProfileStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The store on `table` with a client from the shared config.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(aws_sdk_dynamodb::Client::new(sdk), table)
    }
}

#[async_trait]
impl ProfileStore for DynamoProfileStore {
    #[tracing::instrument(skip(self), err, fields(table = %self.table))]
    async fn get(&self, job: &str) -> Result<Option<JobProfile>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("job", s(job))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("dynamodb", e))?;
        out.item().map(|item| doc(item, job)).transpose()
    }

    #[tracing::instrument(skip(self, profile), err, fields(table = %self.table, job = %profile.job))]
    async fn put_if_version(&self, profile: &JobProfile, expected: Option<u64>) -> Result<(), StoreError> {
        let mut call = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("job", s(&profile.job))
            .item("version", n(profile.version))
            .item("doc", s(to_json(profile, &profile.job)?))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        call = match expected {
            None => call.condition_expression("attribute_not_exists(job)"),
            Some(v) => call
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
        };
        match call.send().await {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                    let found = c.item().and_then(|i| get_n::<u64>(i, "version"));
                    Err(StoreError::Conflict {
                        key: profile.job.clone(),
                        expected,
                        found,
                    })
                }
                _ => Err(store_error("dynamodb", e)),
            },
        }
    }
}

/// [`RunStore`] on the `runs` table (pk `run_id`, sk `attempt`, index `by-job`).
#[derive(Debug, Clone)]
pub struct DynamoRunStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoRunStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The store on `table` with a client from the shared config (for callers, like the CLI,
    /// that do not otherwise name the DynamoDB SDK).
    pub fn from_sdk(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(aws_sdk_dynamodb::Client::new(sdk), table)
    }
}

/// The time a run row sorts by: the agent's start when known, else its latest heartbeat.
fn started_at(run: &RunRecord) -> i64 {
    run.started_at_ms().unwrap_or(0)
}

#[async_trait]
impl RunStore for DynamoRunStore {
    #[tracing::instrument(skip(self, run), err, fields(table = %self.table, run_id = %run.run_id, attempt = run.attempt))]
    async fn put(&self, run: &RunRecord) -> Result<(), StoreError> {
        let key = format!("{}/{}", run.run_id, run.attempt);
        self.client
            .put_item()
            .table_name(&self.table)
            .item("run_id", s(&run.run_id))
            .item("attempt", n(run.attempt))
            .item("job", s(&run.job))
            .item("started_at_ms", n(started_at(run)))
            .item("status", s(run.status.as_str()))
            .item("doc", s(to_json(run, &key)?))
            .send()
            .await
            .map_err(|e| store_error("dynamodb", e))?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err, fields(table = %self.table))]
    async fn get(&self, run_id: &str, attempt: u32) -> Result<Option<RunRecord>, StoreError> {
        get_attempt(&self.client, &self.table, run_id, attempt)
            .await?
            .map(|item| doc(&item, &format!("{run_id}/{attempt}")))
            .transpose()
    }

    #[tracing::instrument(skip(self), err, fields(table = %self.table))]
    async fn list(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let mut items: Vec<Item> = Vec::new();
        match job {
            Some(job) => {
                let mut pages = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(RUNS_BY_JOB_INDEX)
                    .key_condition_expression("job = :j")
                    .expression_attribute_values(":j", s(job))
                    .scan_index_forward(false)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    items.extend(page.map_err(|e| store_error("dynamodb", e))?.items().iter().cloned());
                    if limit > 0 && items.len() >= limit {
                        break;
                    }
                }
            }
            None => {
                // All jobs: a scan (the CLI's `runs` without a job; small tables or rare use).
                let mut pages = self.client.scan().table_name(&self.table).into_paginator().send();
                while let Some(page) = pages.next().await {
                    items.extend(page.map_err(|e| store_error("dynamodb", e))?.items().iter().cloned());
                }
            }
        }
        let mut runs: Vec<RunRecord> = items.iter().map(|i| doc(i, "runs")).collect::<Result<_, _>>()?;
        runs.sort_by_key(|r| std::cmp::Reverse((started_at(r), r.attempt)));
        if limit > 0 {
            runs.truncate(limit);
        }
        Ok(runs)
    }
}

/// [`CapacityStore`] on the `capacity` table (pk `pool`, TTL `expires_at` in epoch seconds).
/// DynamoDB deletes expired items lazily (within days), so reads also filter on `until_ms`.
#[derive(Debug, Clone)]
pub struct DynamoCapacityStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoCapacityStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn market_of(s: &str) -> Option<Market> {
    match s {
        "spot" => Some(Market::Spot),
        "on-demand" => Some(Market::OnDemand),
        _ => None,
    }
}

#[async_trait]
impl CapacityStore for DynamoCapacityStore {
    #[tracing::instrument(skip(self), err, fields(table = %self.table, pool = %pool))]
    async fn mark(&self, pool: &Pool, why: CapacityMark, until_ms: i64) -> Result<(), StoreError> {
        let why = match why {
            CapacityMark::InsufficientCapacity => "insufficient_capacity",
            CapacityMark::Interrupted => "interrupted",
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pool", s(pool.to_string()))
            .item("instance_type", s(&pool.instance_type))
            .item("az", s(&pool.az))
            .item("market", s(pool.market.as_str()))
            .item("why", s(why))
            .item("until_ms", n(until_ms))
            .item("expires_at", n(until_ms.div_euclid(1000) + 1))
            .send()
            .await
            .map_err(|e| store_error("dynamodb", e))?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err, fields(table = %self.table))]
    async fn unavailable(&self, now_ms: i64) -> Result<Vec<Pool>, StoreError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("until_ms > :now")
            .expression_attribute_values(":now", n(now_ms))
            .into_paginator()
            .send();
        let mut pools = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(|e| store_error("dynamodb", e))?.items() {
                let (Some(t), Some(az), Some(m)) =
                    (get_s(item, "instance_type"), get_s(item, "az"), get_s(item, "market"))
                else {
                    continue;
                };
                if let Some(market) = market_of(m) {
                    pools.push(Pool {
                        instance_type: t.to_string(),
                        az: az.to_string(),
                        market,
                    });
                }
            }
        }
        pools.sort();
        Ok(pools)
    }

    /// One item per pool and day (`exposure#<pool>#<YYYYMMDD>`) in the same table: instance-hours
    /// and interruptions added with `ADD`, under the condition that the attempt is not in the
    /// item's `counted` set yet (so a repeated record step adds nothing), and a TTL at the end of
    /// the window. No `until_ms`, so capacity lookups never read them as marks.
    #[tracing::instrument(skip(self), err, fields(table = %self.table, pool = %e.pool))]
    async fn add_exposure(&self, e: &spotfit_core::ports::Exposure) -> Result<bool, StoreError> {
        let day = spotfit_core::ids::day_of(e.ended_at_ms).replace('-', "");
        let expires = (e.ended_at_ms + spotfit_core::ports::EXPOSURE_WINDOW_MS).div_euclid(1000) + 86_400;
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pool", s(format!("exposure#{}#{day}", e.pool)))
            .update_expression(
                "SET instance_type = :t, az = :az, market = :m, expires_at = :e ADD hours :h, interruptions :k, counted :c",
            )
            .condition_expression("attribute_not_exists(counted) OR NOT contains(counted, :key)")
            .expression_attribute_values(":t", s(&e.pool.instance_type))
            .expression_attribute_values(":az", s(&e.pool.az))
            .expression_attribute_values(":m", s(e.pool.market.as_str()))
            .expression_attribute_values(":e", n(expires))
            .expression_attribute_values(":h", n(e.hours.max(0.0)))
            .expression_attribute_values(":k", n(u32::from(e.interrupted)))
            .expression_attribute_values(":c", AttributeValue::Ss(vec![e.attempt_key.clone()]))
            .expression_attribute_values(":key", s(&e.attempt_key))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(store_error("dynamodb", err)),
        }
    }

    #[tracing::instrument(skip(self), err, fields(table = %self.table))]
    async fn exposures(&self, now_ms: i64) -> Result<Vec<spotfit_core::ports::PoolExposure>, StoreError> {
        let since = spotfit_core::ids::day_of(now_ms - spotfit_core::ports::EXPOSURE_WINDOW_MS).replace('-', "");
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(#p, :prefix)")
            .expression_attribute_names("#p", "pool")
            .expression_attribute_values(":prefix", s("exposure#"))
            .projection_expression("#p, instance_type, az, hours, interruptions")
            .into_paginator()
            .send();
        let mut sum: std::collections::BTreeMap<(String, String), spotfit_core::ports::PoolExposure> =
            Default::default();
        while let Some(page) = pages.next().await {
            for item in page.map_err(|e| store_error("dynamodb", e))?.items() {
                let (Some(key), Some(t), Some(az)) =
                    (get_s(item, "pool"), get_s(item, "instance_type"), get_s(item, "az"))
                else {
                    continue;
                };
                // The day is the key's last part; TTL deletion lags, so the window is checked here.
                if key.rsplit('#').next().is_none_or(|d| d <= since.as_str()) {
                    continue;
                }
                let p =
                    sum.entry((t.to_string(), az.to_string()))
                        .or_insert_with(|| spotfit_core::ports::PoolExposure {
                            instance_type: t.to_string(),
                            az: az.to_string(),
                            ..Default::default()
                        });
                p.hours += get_n::<f64>(item, "hours").unwrap_or(0.0);
                p.interruptions += get_n::<u32>(item, "interruptions").unwrap_or(0);
            }
        }
        Ok(sum.into_values().collect())
    }
}

/// [`WaitStore`] on the `waits` table (pk `run_id`, sk `attempt`; `token`, the state gzipped in `docz`,
/// TTL `expires_at` a day past the attempt's deadline so a wait nobody removed cannot linger).
/// Scanned whole by the sweep: it holds one item per attempt in flight, never history.
#[derive(Debug, Clone)]
pub struct DynamoWaitStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoWaitStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

/// The wait's state, gzipped: the sweep scans every wait each period, and DynamoDB bills a scan
/// by the bytes it reads (a state with its ranked candidates is ~10 KB as JSON, ~2 KB gzipped).
fn wait_doc(wait: &Waiting, key: &str) -> Result<Vec<u8>, StoreError> {
    use std::io::Write;
    let json = to_json(wait, key)?;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(json.as_bytes())
        .and_then(|()| z.finish())
        .map_err(|e| StoreError::Corrupt {
            key: key.into(),
            reason: format!("gzip: {e}"),
        })
}

fn wait_of(item: &Item) -> Result<Waiting, StoreError> {
    use std::io::Read;
    let key = format!(
        "{}/{}",
        get_s(item, "run_id").unwrap_or("?"),
        get_n::<u32>(item, "attempt").unwrap_or(0)
    );
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.clone(),
        reason,
    };
    let bytes = item
        .get("docz")
        .and_then(|v| v.as_b().ok())
        .ok_or_else(|| corrupt("no docz attribute".into()))?;
    let mut json = String::new();
    flate2::read::GzDecoder::new(bytes.as_ref())
        .take(4 << 20)
        .read_to_string(&mut json)
        .map_err(|e| corrupt(format!("not gzipped JSON: {e}")))?;
    serde_json::from_str(&json).map_err(|e| corrupt(e.to_string()))
}

#[async_trait]
impl WaitStore for DynamoWaitStore {
    #[tracing::instrument(skip(self, wait), err, fields(table = %self.table, run_id = %wait.run_id, attempt = wait.attempt))]
    async fn arm(&self, wait: &Waiting) -> Result<(), StoreError> {
        let key = format!("{}/{}", wait.run_id, wait.attempt);
        const DAY_S: i64 = 86_400;
        let deadline_ms = wait.state.instance.as_ref().map_or(wait.armed_at_ms, |i| i.deadline_ms);
        self.client
            .put_item()
            .table_name(&self.table)
            .item("run_id", s(&wait.run_id))
            .item("attempt", n(wait.attempt))
            .item("token", s(&wait.token))
            .item("instance_id", s(&wait.instance_id.0))
            .item("armed_ms", n(wait.armed_at_ms))
            .item("expires_at", n(deadline_ms.div_euclid(1000) + DAY_S))
            .item("docz", AttributeValue::B(wait_doc(wait, &key)?.into()))
            .send()
            .await
            .map_err(|e| store_error("dynamodb", e))?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err, fields(table = %self.table))]
    async fn get(&self, run_id: &str, attempt: u32) -> Result<Option<Waiting>, StoreError> {
        get_attempt(&self.client, &self.table, run_id, attempt)
            .await?
            .map(|item| wait_of(&item))
            .transpose()
    }

    #[tracing::instrument(skip(self), err, fields(table = %self.table))]
    async fn of_run(&self, run_id: &str) -> Result<Vec<Waiting>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("run_id = :r")
            .expression_attribute_values(":r", s(run_id))
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(|e| store_error("dynamodb", e))?.items() {
                out.push(wait_of(item)?);
            }
        }
        Ok(out)
    }

    #[tracing::instrument(skip(self), err, fields(table = %self.table))]
    async fn all(&self) -> Result<Vec<Waiting>, StoreError> {
        // Eventually consistent (half the price): a wait armed this very second is the next
        // sweep's, and its arm step has already looked once.
        let mut pages = self.client.scan().table_name(&self.table).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(|e| store_error("dynamodb", e))?.items() {
                out.push(wait_of(item)?);
            }
        }
        Ok(out)
    }

    #[tracing::instrument(skip(self, token), err, fields(table = %self.table))]
    async fn disarm(&self, run_id: &str, attempt: u32, token: &str) -> Result<bool, StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("run_id", s(run_id))
            .key("attempt", n(attempt))
            .condition_expression("#t = :t")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":t", s(token))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(store_error("dynamodb", e)),
        }
    }
}
