//! Ports: what the pipeline needs from the outside world, in domain words. Adapters live in
//! `spotfit-local` (embedded default) and `spotfit-aws`; in-memory fakes for tests live in
//! [`crate::pipeline::testkit`]-style modules of the crates that use them.

use crate::ids::{InstanceId, Pool};
use crate::profile::JobProfile;
use crate::run::RunRecord;
use crate::spec::Market;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Errors of the storage ports (object store, profile, run and capacity stores).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: someone else wrote `key` since we read it.
    #[error("conflict writing {key}: expected version {expected:?}, found {found:?}")]
    Conflict {
        key: String,
        expected: Option<u64>,
        found: Option<u64>,
    },
    /// Stored data could not be read back; nothing was overwritten.
    #[error("stored data at {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    /// The store does not exist (e.g. no local store at that path yet).
    #[error("store not found: {0}")]
    Missing(String),
    /// The service asked us to slow down; retry with backoff.
    #[error("throttled by {service}: {message}")]
    Throttled { service: String, message: String },
    /// The service could not be reached; retry later.
    #[error("{service} unavailable: {message}")]
    Unavailable { service: String, message: String },
    /// Anything else, with the service's own error code where there is one.
    #[error("{service} error {code}: {message}")]
    Other {
        service: String,
        code: String,
        message: String,
    },
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Throttled { .. } | StoreError::Unavailable { .. } | StoreError::Conflict { .. }
        )
    }
}

/// Errors of the launcher.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No capacity in this pool right now (InsufficientInstanceCapacity, SpotMaxPriceTooLow, …):
    /// mark the pool and try the next candidate.
    #[error("no capacity in {pool} ({code}): {message}")]
    Capacity { pool: Pool, code: String, message: String },
    /// A region-wide quota refused the launch (MaxSpotInstanceCountExceeded, VcpuLimitExceeded …):
    /// every pool of this market would refuse it too, and no pool is to blame (nothing is marked).
    #[error("quota {code} refuses {} launches in the region: {message}", market.as_str())]
    Quota {
        market: Market,
        code: String,
        message: String,
    },
    /// This pool can never take this request (the type is not offered in the AZ, or cannot boot
    /// the image's architecture …): try the next candidate; nothing is marked.
    #[error("{pool} cannot take this request ({code}): {message}")]
    PoolRejected { pool: Pool, code: String, message: String },
    /// Throttled (RequestLimitExceeded …): back off and retry the same call.
    #[error("throttled ({code}): {message}")]
    Throttled { code: String, message: String },
    /// Anything else: fail, carrying the AWS code.
    #[error("launch failed ({code}): {message}")]
    Fatal { code: String, message: String },
}

/// What to launch: one pool, one run attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchRequest {
    pub pool: Pool,
    pub job: String,
    pub run_id: String,
    pub attempt: u32,
    /// The run id the agent writes under (its object keys, the exit marker's `run_id`): chosen
    /// by the launch step, carried here so no launcher derives it again.
    pub agent_run_id: String,
    /// Idempotency token: the same request (retried Lambda) must not start a second instance.
    pub client_token: String,
    /// The job's argv and env, passed to the agent as data, never spliced into a shell string.
    pub argv: Vec<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Unix ms after which the reaper may terminate the instance.
    pub deadline_ms: i64,
    /// Most to pay per hour for spot (None = on-demand price cap, as EC2 defaults).
    #[serde(default)]
    pub max_price_per_hour: Option<f64>,
    /// The memory the job was sized to: the limit a launcher sets on the job where it can (the
    /// local launcher's cgroup; a container's `--memory`), so exceeding it is an OOM kill.
    #[serde(default)]
    pub memory_limit_bytes: Option<u64>,
    /// The image to boot, as RunInstances' `ImageId` (`resolve:ssm:` + AWS's public parameter,
    /// [`crate::machine_image`]); None: the launch template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The root volume, GiB; None: the launch template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_volume_gib: Option<u32>,
    /// The spec's `env_from`: variable → secret reference, resolved by the agent on the
    /// instance (only the references travel; see [`crate::secret_ref`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_from: BTreeMap<String, String>,
    /// The spec's `role`: which of the deployment's job roles the instance runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// GPUs of the pool's instance type (from the ranked candidate): a container job on a type
    /// with GPUs gets them (`--gpus all`).
    #[serde(default)]
    pub gpus: u32,
}

/// A started instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchedInstance {
    pub instance_id: InstanceId,
    pub pool: Pool,
    pub launched_at_ms: i64,
}

/// Lifecycle state of an instance, reduced to what the pipeline decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Stopped,
    Terminated,
}

/// What `describe` / `list_managed` return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub instance_id: InstanceId,
    pub state: InstanceState,
    pub instance_type: String,
    pub az: String,
    pub market: Market,
    /// From the spotfit tags.
    pub job: Option<String>,
    pub run_id: Option<String>,
    /// The run attempt (tag `spotfit:attempt`), if tagged.
    #[serde(default)]
    pub attempt: Option<u32>,
    pub deadline_ms: Option<i64>,
    pub launched_at_ms: Option<i64>,
    /// EC2 state reason code (e.g. `Server.SpotInstanceTermination`), if any: for people.
    pub state_reason: Option<String>,
    /// Why a stopped or terminated instance ended, classified by its adapter: what the check
    /// step decides on (a reclaimed spot instance is retried on another pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<InstanceEnd>,
}

/// Why an instance stopped or terminated, in the pipeline's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceEnd {
    /// EC2 reclaimed the spot instance (`Server.SpotInstanceTermination`,
    /// `Server.SpotInstanceShutdown`).
    SpotReclaimed,
    /// The instance shut itself down (`Client.InstanceInitiatedShutdown`): the agent's
    /// `shutdown -h now`, the deadline's scheduled shutdown, or a crash.
    SelfShutdown,
    /// A person or API call stopped or terminated it (`Client.UserInitiatedShutdown`).
    UserTerminated,
    /// Anything else (`Server.InternalError`, `Server.InsufficientInstanceCapacity`, volume
    /// limits, …).
    Other,
}

impl InstanceEnd {
    /// The class of an EC2 state-reason code (the text before any `:`), as EC2 documents them
    /// (`StateReason.Code` in the EC2 API reference).
    pub fn of_ec2_code(code: &str) -> Self {
        match code.split(':').next().unwrap_or("").trim() {
            "Server.SpotInstanceTermination" | "Server.SpotInstanceShutdown" => Self::SpotReclaimed,
            "Client.InstanceInitiatedShutdown" => Self::SelfShutdown,
            "Client.UserInitiatedShutdown" | "Client.UserInitiatedHibernate" => Self::UserTerminated,
            _ => Self::Other,
        }
    }
}

impl InstanceInfo {
    /// A just-launched instance of `req`, as a launcher's own bookkeeping records it.
    pub fn launched(req: &LaunchRequest, instance_id: InstanceId, launched_at_ms: i64) -> Self {
        InstanceInfo {
            instance_id,
            state: InstanceState::Running,
            instance_type: req.pool.instance_type.clone(),
            az: req.pool.az.clone(),
            market: req.pool.market,
            job: Some(req.job.clone()),
            run_id: Some(req.run_id.clone()),
            attempt: Some(req.attempt),
            deadline_ms: Some(req.deadline_ms),
            launched_at_ms: Some(launched_at_ms),
            state_reason: None,
            end: None,
        }
    }
}

#[async_trait]
pub trait InstanceLauncher: Send + Sync {
    /// Launches one instance in `req.pool`. Idempotent on `req.client_token`.
    /// `Err(Capacity)` means "try the next pool"; `Err(Throttled)` means "retry this call".
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchedInstance, LaunchError>;
    /// Current state; `Ok(None)` if the instance is unknown (never existed or long gone).
    async fn describe(&self, id: &InstanceId) -> Result<Option<InstanceInfo>, LaunchError>;
    /// The states of several instances, unknown ones left out (the sweep: one call per batch
    /// where the API allows it).
    async fn describe_many(&self, ids: &[InstanceId]) -> Result<Vec<InstanceInfo>, LaunchError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(info) = self.describe(id).await? {
                out.push(info);
            }
        }
        Ok(out)
    }
    /// Terminates; succeeds if it is already terminated or unknown (safe to repeat).
    async fn terminate(&self, id: &InstanceId) -> Result<(), LaunchError>;
    /// All spotfit-managed instances not yet terminated (every page).
    async fn list_managed(&self) -> Result<Vec<InstanceInfo>, LaunchError>;
    /// The managed instances of one run not yet terminated (a stopped execution's); adapters
    /// that can filter on the run id tag do it server-side.
    async fn list_run(&self, run_id: &str) -> Result<Vec<InstanceInfo>, LaunchError> {
        let mut all = self.list_managed().await?;
        all.retain(|i| i.run_id.as_deref() == Some(run_id));
        Ok(all)
    }
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Writes `bytes` at `key`, replacing what was there (so retried uploads never duplicate).
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    /// Reads `key`; `Ok(None)` when absent.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Keys under `prefix`, sorted, every page.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

#[async_trait]
pub trait ProfileStore: Send + Sync {
    /// The job's profile, or `Ok(None)` for a job never recorded.
    async fn get(&self, job: &str) -> Result<Option<JobProfile>, StoreError>;
    /// Writes `profile` only if the stored version is still `expected` (`None` = must not exist).
    /// `Err(Conflict)` means re-read, re-apply, retry — see [`crate::pipeline::update_profile`].
    async fn put_if_version(&self, profile: &JobProfile, expected: Option<u64>) -> Result<(), StoreError>;
    /// Read-modify-write of one job's profile in a single atomic step, for stores that can
    /// hold a lock across it (an embedded database). `apply` gets the stored profile and
    /// returns the one to write, or `None` to write nothing. `Ok(None)` from this method means
    /// "not supported here": the caller falls back to the optimistic loop over
    /// [`ProfileStore::put_if_version`] (DynamoDB's conditional writes).
    async fn update_atomically(
        &self,
        _job: &str,
        _apply: &(dyn Fn(Option<JobProfile>) -> Option<JobProfile> + Send + Sync),
    ) -> Result<Option<JobProfile>, StoreError> {
        Ok(None)
    }
}

#[async_trait]
pub trait RunStore: Send + Sync {
    /// Inserts or replaces the record of one attempt (keyed by run id and attempt).
    async fn put(&self, run: &RunRecord) -> Result<(), StoreError>;
    async fn get(&self, run_id: &str, attempt: u32) -> Result<Option<RunRecord>, StoreError>;
    /// Most recent first, at most `limit`; all jobs when `job` is None.
    async fn list(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError>;
}

/// An execution waiting on one attempt's end: the Step Functions task token it waits on and
/// the state the attempt's end is checked from. Stored by the arm step, removed once the
/// attempt's outcome was sent (or the execution is gone). The token never leaves the control
/// plane: not in user data, not on the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    pub run_id: String,
    pub attempt: u32,
    pub token: String,
    pub instance_id: InstanceId,
    pub armed_at_ms: i64,
    pub state: Box<crate::pipeline::RunState>,
}

#[async_trait]
pub trait WaitStore: Send + Sync {
    /// Stores the wait of one attempt, replacing an older one of the same attempt (a re-arm
    /// after a heartbeat timeout brings a new token).
    async fn arm(&self, wait: &Waiting) -> Result<(), StoreError>;
    async fn get(&self, run_id: &str, attempt: u32) -> Result<Option<Waiting>, StoreError>;
    /// The waits of one run (at most one per attempt).
    async fn of_run(&self, run_id: &str) -> Result<Vec<Waiting>, StoreError>;
    /// Every wait (the sweep: a few hundred at most, one per attempt in flight).
    async fn all(&self) -> Result<Vec<Waiting>, StoreError>;
    /// Removes the wait if it still holds `token`; `Ok(false)` when it was gone or re-armed.
    async fn disarm(&self, run_id: &str, attempt: u32, token: &str) -> Result<bool, StoreError>;
}

/// What Step Functions said to a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Accepted,
    /// The task no longer waits: completed by an earlier callback, timed out, or its execution
    /// stopped (`TaskDoesNotExist`, `TaskTimedOut`, `InvalidToken`). Never an error: events
    /// arrive at least once and in no order.
    Gone,
}

/// The callback half of Step Functions' `.waitForTaskToken`.
#[async_trait]
pub trait TaskCallback: Send + Sync {
    /// `SendTaskSuccess`: the task's output is `output` (the checked state).
    async fn succeed(&self, token: &str, output: &serde_json::Value) -> Result<Delivery, StoreError>;
    /// `SendTaskHeartbeat` (writes no history event).
    async fn heartbeat(&self, token: &str) -> Result<Delivery, StoreError>;
}

/// What Step Functions said to a `StartExecution`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// An execution of that name runs: this call started it, or one with the same name and
    /// input was already running (Step Functions answers both the same way).
    Running { execution_arn: String },
    /// An execution of that name exists and has ended, or runs with other input
    /// (`ExecutionAlreadyExists`): nothing was started.
    AlreadyExists,
}

/// Starts executions of the deployment's state machine under a name of the caller's choosing:
/// Step Functions keeps execution names unique per state machine (90 days after they close),
/// which is what makes a start idempotent.
#[async_trait]
pub trait ExecutionStarter: Send + Sync {
    async fn start(&self, name: &str, input: &serde_json::Value) -> Result<Started, StoreError>;
}

/// Why a pool was marked unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapacityMark {
    InsufficientCapacity,
    Interrupted,
}

/// One ended spot attempt's instance time in its pool: what the pool's learned interruption
/// rate is made of ([`crate::cost::learned_rate`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub pool: Pool,
    /// `<run_id>#<attempt>`: an attempt is counted once, however often it is recorded.
    pub attempt_key: String,
    pub ended_at_ms: i64,
    pub hours: f64,
    pub interrupted: bool,
}

/// A pool's history within [`EXPOSURE_WINDOW_MS`]: instance-hours and interruptions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolExposure {
    pub instance_type: String,
    pub az: String,
    pub hours: f64,
    pub interruptions: u32,
}

/// How far back a pool's history counts: spot markets change (a pool's demand, new types), so
/// the rate is of the last 90 days, not of all time.
pub const EXPOSURE_WINDOW_MS: i64 = 90 * 86_400_000;

/// Sums attempts into one [`PoolExposure`] per pool (type and AZ), sorted.
pub fn sum_exposures<'a>(attempts: impl IntoIterator<Item = &'a Exposure>) -> Vec<PoolExposure> {
    let mut by_pool: std::collections::BTreeMap<(String, String), PoolExposure> = Default::default();
    for e in attempts {
        let p = by_pool
            .entry((e.pool.instance_type.clone(), e.pool.az.clone()))
            .or_insert_with(|| PoolExposure {
                instance_type: e.pool.instance_type.clone(),
                az: e.pool.az.clone(),
                ..Default::default()
            });
        p.hours += e.hours.max(0.0);
        p.interruptions += u32::from(e.interrupted);
    }
    by_pool.into_values().collect()
}

#[async_trait]
pub trait CapacityStore: Send + Sync {
    /// Remembers that `pool` failed until `until_ms` (stores expire it with a TTL).
    async fn mark(&self, pool: &Pool, why: CapacityMark, until_ms: i64) -> Result<(), StoreError>;
    /// Pools marked and not yet expired at `now_ms`.
    async fn unavailable(&self, now_ms: i64) -> Result<Vec<Pool>, StoreError>;
    /// Adds an ended spot attempt to its pool's history; `Ok(false)` when that attempt was
    /// counted before (a repeated record step), which changes nothing.
    async fn add_exposure(&self, e: &Exposure) -> Result<bool, StoreError>;
    /// Every pool's history of the [`EXPOSURE_WINDOW_MS`] before `now_ms`, one row per pool.
    async fn exposures(&self, now_ms: i64) -> Result<Vec<PoolExposure>, StoreError>;
}

/// The spot market's prices (EC2's `DescribeSpotPriceHistory`, Linux/UNIX), zones as AZ ids.
#[async_trait]
pub trait SpotPriceFeed: Send + Sync {
    /// Every price in force at `at_ms` in the region, all pages; an error when any page fails,
    /// so a caller never takes a partial answer for the market.
    async fn current(&self, at_ms: i64) -> Result<Vec<crate::prices::SpotQuote>, StoreError>;
    /// The prices of one pool from `from_ms` to `to_ms`, with the one in force at `from_ms`.
    async fn history(
        &self,
        instance_type: &str,
        az_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<crate::prices::PricePoint>, StoreError>;
}

/// On-demand list prices (the Pricing API's `GetProducts`): instance type → USD per hour for
/// Linux, shared tenancy, in `region`; an error when any page fails.
#[async_trait]
pub trait OnDemandFeed: Send + Sync {
    async fn on_demand(&self, region: &str) -> Result<std::collections::BTreeMap<String, f64>, StoreError>;
}

/// Wall-clock time, injectable for tests.
pub trait Clock: Send + Sync {
    /// Unix epoch milliseconds.
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

#[cfg(test)]
mod instance_end_tests {
    use super::InstanceEnd;

    #[test]
    fn ec2_state_reason_codes_classify_as_documented() {
        for (code, end) in [
            ("Server.SpotInstanceTermination", InstanceEnd::SpotReclaimed),
            ("Server.SpotInstanceShutdown", InstanceEnd::SpotReclaimed),
            ("Client.InstanceInitiatedShutdown", InstanceEnd::SelfShutdown),
            (
                "Client.InstanceInitiatedShutdown: the agent finished",
                InstanceEnd::SelfShutdown,
            ),
            ("Client.UserInitiatedShutdown", InstanceEnd::UserTerminated),
            ("Server.InternalError", InstanceEnd::Other),
            ("Server.InsufficientInstanceCapacity", InstanceEnd::Other),
            // a message that merely mentions spot is not a spot reclaim
            ("Client.VolumeLimitExceeded: spot volume", InstanceEnd::Other),
            ("", InstanceEnd::Other),
        ] {
            assert_eq!(InstanceEnd::of_ec2_code(code), end, "{code:?}");
        }
    }
}
