//! In-memory fakes of every port, for domain and handler tests only (feature `testkit`). Not
//! intended for production: nothing is persisted, and the launcher starts nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::ids::{InstanceId, Pool};
use crate::ports::{
    CapacityMark, CapacityStore, Clock, InstanceInfo, InstanceLauncher, InstanceState, LaunchError, LaunchRequest,
    LaunchedInstance, ObjectStore, ProfileStore, RunStore, StoreError,
};
use crate::profile::JobProfile;
use crate::run::RunRecord;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

/// Runs a future to completion on this thread: the fakes never wait on I/O, so no reactor is
/// needed. The same executor the CLI drives the embedded store with.
pub use futures_executor::block_on;

/// A clock the test moves by hand.
#[derive(Debug, Default)]
pub struct FakeClock(pub AtomicI64);

impl FakeClock {
    pub fn at(ms: i64) -> Self {
        FakeClock(AtomicI64::new(ms))
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How many more times a pool fails, and with what.
pub type ScriptedFailure = (u32, fn(&Pool) -> LaunchError);

/// A scripted launcher: pools in `insufficient` answer with a capacity error (as many times as
/// their count says, `u32::MAX` = always), everything else launches. Honours ClientToken like
/// EC2. Every call is logged in `calls` so tests can check the fallback order.
#[derive(Debug, Default)]
pub struct FakeLauncher {
    pub insufficient: Mutex<HashMap<Pool, u32>>,
    /// Launches answered with a throttling error before any pool is tried (count).
    pub throttle_next: Mutex<u32>,
    pub calls: Mutex<Vec<LaunchRequest>>,
    /// Pools that answer with a scripted error (as many times as the count).
    pub failures: Mutex<HashMap<Pool, ScriptedFailure>>,
    /// A region-wide quota per market: launches there fail with it (as many times as the count).
    pub quota: Mutex<HashMap<crate::spec::Market, u32>>,
    pub instances: Mutex<BTreeMap<InstanceId, InstanceInfo>>,
    tokens: Mutex<HashMap<String, InstanceId>>,
    pub now_ms: AtomicI64,
}

impl FakeLauncher {
    pub fn new() -> Self {
        Self::default()
    }
    /// `pool` refuses capacity `times` times.
    pub fn insufficient(self, pool: Pool, times: u32) -> Self {
        self.insufficient.lock().unwrap().insert(pool, times);
        self
    }
    /// `pool` answers `times` times with the error `make` builds.
    pub fn failing(self, pool: Pool, times: u32, make: fn(&Pool) -> LaunchError) -> Self {
        self.failures.lock().unwrap().insert(pool, (times, make));
        self
    }
    /// Launches in `market` hit a region-wide quota `times` times.
    pub fn quota(self, market: crate::spec::Market, times: u32) -> Self {
        self.quota.lock().unwrap().insert(market, times);
        self
    }
    /// The pools tried, in order.
    pub fn tried(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|r| r.pool.to_string()).collect()
    }
    pub fn live(&self) -> Vec<InstanceInfo> {
        self.instances
            .lock()
            .unwrap()
            .values()
            .filter(|i| i.state != InstanceState::Terminated)
            .cloned()
            .collect()
    }
    /// Sets an instance's state (e.g. a spot interruption) as EC2 would report it.
    pub fn set_state(&self, id: &InstanceId, state: InstanceState, reason: Option<&str>) {
        if let Some(i) = self.instances.lock().unwrap().get_mut(id) {
            i.state = state;
            i.state_reason = reason.map(Into::into);
            i.end = reason.map(crate::ports::InstanceEnd::of_ec2_code);
        }
    }
}

#[async_trait]
impl InstanceLauncher for FakeLauncher {
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchedInstance, LaunchError> {
        self.calls.lock().unwrap().push(req.clone());
        {
            let mut t = self.throttle_next.lock().unwrap();
            if *t > 0 {
                *t -= 1;
                return Err(LaunchError::Throttled {
                    code: "RequestLimitExceeded".into(),
                    message: "slow down".into(),
                });
            }
        }
        if let Some(id) = self.tokens.lock().unwrap().get(&req.client_token) {
            let i = &self.instances.lock().unwrap()[id];
            return Ok(LaunchedInstance {
                instance_id: id.clone(),
                pool: req.pool.clone(),
                launched_at_ms: i.launched_at_ms.unwrap_or(0),
            });
        }
        if let Some((left, make)) = self.failures.lock().unwrap().get_mut(&req.pool) {
            if *left > 0 {
                *left -= 1;
                return Err((*make)(&req.pool));
            }
        }
        if let Some(left) = self.quota.lock().unwrap().get_mut(&req.pool.market) {
            if *left > 0 {
                *left -= 1;
                return Err(LaunchError::Quota {
                    market: req.pool.market,
                    code: "MaxSpotInstanceCountExceeded".into(),
                    message: "quota".into(),
                });
            }
        }
        if let Some(left) = self.insufficient.lock().unwrap().get_mut(&req.pool) {
            if *left > 0 {
                *left = left.saturating_sub(1);
                return Err(LaunchError::Capacity {
                    pool: req.pool.clone(),
                    code: "InsufficientInstanceCapacity".into(),
                    message: "no capacity".into(),
                });
            }
        }
        let mut instances = self.instances.lock().unwrap();
        let id = InstanceId(format!("i-{:017x}", instances.len() + 1));
        let launched_at_ms = self.now_ms.load(Ordering::SeqCst);
        instances.insert(id.clone(), InstanceInfo::launched(req, id.clone(), launched_at_ms));
        self.tokens.lock().unwrap().insert(req.client_token.clone(), id.clone());
        Ok(LaunchedInstance {
            instance_id: id,
            pool: req.pool.clone(),
            launched_at_ms,
        })
    }

    async fn describe(&self, id: &InstanceId) -> Result<Option<InstanceInfo>, LaunchError> {
        Ok(self.instances.lock().unwrap().get(id).cloned())
    }

    async fn terminate(&self, id: &InstanceId) -> Result<(), LaunchError> {
        if let Some(i) = self.instances.lock().unwrap().get_mut(id) {
            i.state = InstanceState::Terminated;
        }
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<InstanceInfo>, LaunchError> {
        Ok(self.live())
    }
}

/// What the agent writes when a job ends: the run summary, then the exit marker, under the
/// keys of `summary.run_id` for a run started at `started_at_ms`.
pub fn agent_exits(objects: &InMemoryObjectStore, summary: &crate::summary::RunSummary, started_at_ms: i64) {
    let keys = crate::ids::RunKeys::new(&summary.job, started_at_ms, &summary.run_id);
    // Straight into the map, not through an executor: callers may already be inside one (the
    // driver's pause plays the agent).
    let mut map = objects.0.lock().unwrap();
    map.insert(keys.summary(), serde_json::to_vec(summary).unwrap());
    let marker = crate::summary::ExitMarker::of(summary, None);
    map.insert(keys.exit_marker(), serde_json::to_vec(&marker).unwrap());
}

/// Objects in a map.
#[derive(Debug, Default)]
pub struct InMemoryObjectStore(pub Mutex<BTreeMap<String, Vec<u8>>>);

#[async_trait]
impl ObjectStore for InMemoryObjectStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.0.lock().unwrap().insert(key.to_string(), bytes);
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

/// Profiles in a map, with the version check of the real stores.
#[derive(Debug, Default)]
pub struct InMemoryProfileStore(pub Mutex<BTreeMap<String, JobProfile>>);

#[async_trait]
impl ProfileStore for InMemoryProfileStore {
    async fn get(&self, job: &str) -> Result<Option<JobProfile>, StoreError> {
        Ok(self.0.lock().unwrap().get(job).cloned())
    }
    async fn put_if_version(&self, profile: &JobProfile, expected: Option<u64>) -> Result<(), StoreError> {
        let mut m = self.0.lock().unwrap();
        let found = m.get(&profile.job).map(|p| p.version);
        if found != expected {
            return Err(StoreError::Conflict {
                key: profile.job.clone(),
                expected,
                found,
            });
        }
        m.insert(profile.job.clone(), profile.clone());
        Ok(())
    }
}

/// Run rows in a map keyed by (run id, attempt).
#[derive(Debug, Default)]
pub struct InMemoryRunStore(pub Mutex<BTreeMap<(String, u32), RunRecord>>);

#[async_trait]
impl RunStore for InMemoryRunStore {
    async fn put(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.0
            .lock()
            .unwrap()
            .insert((run.run_id.clone(), run.attempt), run.clone());
        Ok(())
    }
    async fn get(&self, run_id: &str, attempt: u32) -> Result<Option<RunRecord>, StoreError> {
        Ok(self.0.lock().unwrap().get(&(run_id.to_string(), attempt)).cloned())
    }
    async fn list(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let m = self.0.lock().unwrap();
        let mut v: Vec<RunRecord> = m.values().filter(|r| job.is_none_or(|j| r.job == j)).cloned().collect();
        v.reverse();
        v.truncate(limit);
        Ok(v)
    }
}

/// Waits in a map keyed by (run id, attempt).
#[derive(Debug, Default)]
pub struct InMemoryWaitStore(pub Mutex<BTreeMap<(String, u32), crate::ports::Waiting>>);

#[async_trait]
impl crate::ports::WaitStore for InMemoryWaitStore {
    async fn arm(&self, wait: &crate::ports::Waiting) -> Result<(), StoreError> {
        self.0
            .lock()
            .unwrap()
            .insert((wait.run_id.clone(), wait.attempt), wait.clone());
        Ok(())
    }
    async fn get(&self, run_id: &str, attempt: u32) -> Result<Option<crate::ports::Waiting>, StoreError> {
        Ok(self.0.lock().unwrap().get(&(run_id.to_string(), attempt)).cloned())
    }
    async fn of_run(&self, run_id: &str) -> Result<Vec<crate::ports::Waiting>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .values()
            .filter(|w| w.run_id == run_id)
            .cloned()
            .collect())
    }
    async fn all(&self) -> Result<Vec<crate::ports::Waiting>, StoreError> {
        Ok(self.0.lock().unwrap().values().cloned().collect())
    }
    async fn disarm(&self, run_id: &str, attempt: u32, token: &str) -> Result<bool, StoreError> {
        let mut m = self.0.lock().unwrap();
        let key = (run_id.to_string(), attempt);
        if m.get(&key).is_some_and(|w| w.token == token) {
            m.remove(&key);
            return Ok(true);
        }
        Ok(false)
    }
}

/// Step Functions' side of the callback, as it behaves: a token is open until one success
/// (later ones find it gone); [`FakeCallback::close`] ends a task the way a stopped execution
/// or a timeout does.
#[derive(Debug, Default)]
pub struct FakeCallback {
    /// Token → the output it was completed with (None: open).
    pub tasks: Mutex<BTreeMap<String, Option<serde_json::Value>>>,
    pub heartbeats: Mutex<Vec<String>>,
    /// Successes sent, accepted or not.
    pub sends: Mutex<u32>,
}

impl FakeCallback {
    pub fn open(&self, token: &str) {
        self.tasks.lock().unwrap().insert(token.to_string(), None);
    }
    /// The task ends without a callback (execution stopped, timed out).
    pub fn close(&self, token: &str) {
        self.tasks.lock().unwrap().remove(token);
    }
    pub fn output(&self, token: &str) -> Option<serde_json::Value> {
        self.tasks.lock().unwrap().get(token).cloned().flatten()
    }
}

#[async_trait]
impl crate::ports::TaskCallback for FakeCallback {
    async fn succeed(&self, token: &str, output: &serde_json::Value) -> Result<crate::ports::Delivery, StoreError> {
        *self.sends.lock().unwrap() += 1;
        let mut t = self.tasks.lock().unwrap();
        match t.get_mut(token) {
            Some(slot @ None) => {
                *slot = Some(output.clone());
                Ok(crate::ports::Delivery::Accepted)
            }
            _ => Ok(crate::ports::Delivery::Gone),
        }
    }
    async fn heartbeat(&self, token: &str) -> Result<crate::ports::Delivery, StoreError> {
        self.heartbeats.lock().unwrap().push(token.to_string());
        Ok(match self.tasks.lock().unwrap().get(token) {
            Some(None) => crate::ports::Delivery::Accepted,
            _ => crate::ports::Delivery::Gone,
        })
    }
}

/// Capacity marks in a map, and the pools' exposure by attempt.
#[derive(Debug, Default)]
pub struct InMemoryCapacityStore(
    pub Mutex<HashMap<Pool, (CapacityMark, i64)>>,
    pub Mutex<BTreeMap<String, crate::ports::Exposure>>,
);

#[async_trait]
impl CapacityStore for InMemoryCapacityStore {
    async fn mark(&self, pool: &Pool, why: CapacityMark, until_ms: i64) -> Result<(), StoreError> {
        self.0.lock().unwrap().insert(pool.clone(), (why, until_ms));
        Ok(())
    }
    async fn unavailable(&self, now_ms: i64) -> Result<Vec<Pool>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, (_, until))| *until > now_ms)
            .map(|(p, _)| p.clone())
            .collect())
    }
    async fn add_exposure(&self, e: &crate::ports::Exposure) -> Result<bool, StoreError> {
        let mut m = self.1.lock().unwrap();
        if m.contains_key(&e.attempt_key) {
            return Ok(false);
        }
        m.insert(e.attempt_key.clone(), e.clone());
        Ok(true)
    }
    async fn exposures(&self, now_ms: i64) -> Result<Vec<crate::ports::PoolExposure>, StoreError> {
        Ok(crate::ports::sum_exposures(
            self.1
                .lock()
                .unwrap()
                .values()
                .filter(|e| e.ended_at_ms > now_ms - crate::ports::EXPOSURE_WINDOW_MS),
        ))
    }
}

/// A ranked candidate with a spot price (on-demand at 4×), for tests that need no catalog.
pub fn candidate(instance_type: &str, spot_per_hour: f64) -> crate::ranking::Candidate {
    crate::ranking::Candidate {
        instance_type: instance_type.into(),
        region: "us-east-1".into(),
        az: None,
        market: crate::spec::Market::Spot,
        spot_per_hour: Some(spot_per_hour),
        on_demand_per_hour: Some(spot_per_hour * 4.0),
        price_per_hour: spot_per_hour,
        vcpu: 2,
        memory_bytes: 8 << 30,
        gpu: 0,
        gpu_memory_bytes: 0,
        score: 1.0,
        cost_per_perf: spot_per_hour,
        est_duration_s: None,
        est_cost_usd: None,
        interruption_bucket: None,
        interruption_penalty_usd: None,
        rank_cost: spot_per_hour,
        oom_risk: 0.0,
        oom_cost_usd: None,
        expected_slowdown: 1.0,
        spot_source: Default::default(),
        score_source: Default::default(),
        arch: crate::spec::Arch::X86_64,
        machine_image: Default::default(),
        root_volume_gib: 0,
        storage_per_hour: 0.0,
        price_source: Default::default(),
        interruption_source: Default::default(),
        interruption_rate_per_h: None,
    }
}

/// The state after the size step for `spec` (JSON), with `candidates` as the ranking.
pub fn sized_state(
    spec: serde_json::Value,
    run_id: &str,
    candidates: Vec<crate::ranking::Candidate>,
    now_ms: i64,
) -> crate::pipeline::RunState {
    let input = crate::pipeline::SizeInput {
        spec,
        execution: Some(run_id.into()),
        previous: None,
    };
    let profiles = InMemoryProfileStore::default();
    block_on(crate::pipeline::size_step(
        &profiles,
        |_: &crate::sizing::Requirement, _: &crate::JobSpec| candidates.clone(),
        input,
        now_ms,
    ))
    .unwrap()
}
