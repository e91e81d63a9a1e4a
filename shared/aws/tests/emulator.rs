//! Adapter tests against the local stack (moto server + the EC2 fault layer), started by
//! `scripts/tests/31-pipeline-adapters.sh` (feature `integration`). They FAIL, never skip, when
//! the stack's environment is missing. Every instance a test starts is terminated by it.
//!
//! IAM is enforced: each adapter runs on the STS credentials of the role the synthesized template
//! gives the Lambda that uses it (`SPOTFIT_ROLES_DIR/roles.json`, written by `scripts/local-stack
//! iam`); only assertions about EC2's own view use the set-up's admin (`admin_sdk`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_aws::ec2::instance_info;
use spotfit_aws::{
    DynamoCapacityStore, DynamoProfileStore, DynamoRunStore, Ec2Launcher, LaunchConfig, S3ObjectStore, StoreConfig,
};
use spotfit_core::ids::{InstanceId, Pool};
use spotfit_core::pipeline::{self, LaunchSettings, ReapPolicy, RunState};
use spotfit_core::ports::*;
use spotfit_core::ports::{WaitStore, Waiting};
use spotfit_core::profile::JobProfile;
use spotfit_core::run::RunRecord;
use spotfit_core::spec::Market;
use spotfit_core::summary::{RunStatus, RunSummary};
use spotfit_core::testkit::{candidate, sized_state};
use std::io::{Read, Write};

struct Stack {
    /// The set-up's admin: only for reading back what EC2 recorded.
    admin_sdk: aws_config::SdkConfig,
    roles: std::collections::HashMap<String, aws_config::SdkConfig>,
    store: StoreConfig,
    launch: LaunchConfig,
    faults_url: String,
}

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run these tests through scripts/tests/31-pipeline-adapters.sh (it starts the local stack)")
    })
}

async fn stack() -> Stack {
    env("AWS_ENDPOINT_URL");
    env("AWS_ENDPOINT_URL_EC2");
    let roles_file = std::path::Path::new(&env("SPOTFIT_ROLES_DIR")).join("roles.json");
    let roles: serde_json::Value = serde_json::from_slice(&std::fs::read(&roles_file).expect("roles.json")).unwrap();
    let mut by_role = std::collections::HashMap::new();
    for (component, r) in roles.as_object().unwrap() {
        let creds = aws_sdk_s3::config::Credentials::new(
            r["AccessKeyId"].as_str().unwrap(),
            r["SecretAccessKey"].as_str().unwrap(),
            Some(r["SessionToken"].as_str().unwrap().to_string()),
            None,
            "spotfit-template-role",
        );
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .credentials_provider(creds)
            .load()
            .await;
        by_role.insert(component.clone(), sdk);
    }
    Stack {
        admin_sdk: spotfit_aws::load_sdk_config().await,
        roles: by_role,
        store: StoreConfig::from_env().expect("store config"),
        launch: LaunchConfig::from_env().expect("launch config"),
        faults_url: env("SPOTFIT_FAULTS_URL"),
    }
}

impl Stack {
    /// The SDK configuration of `component`'s role (a Lambda's name, or `instance`).
    fn sdk(&self, component: &str) -> &aws_config::SdkConfig {
        self.roles
            .get(component)
            .unwrap_or_else(|| panic!("no role for {component} in roles.json"))
    }
    /// The EC2 launcher as `component` (launch-instance launches; check, terminate, reap describe).
    fn launcher(&self, component: &str) -> Ec2Launcher {
        Ec2Launcher::new(aws_sdk_ec2::Client::new(self.sdk(component)), self.launch.clone())
    }
    fn ddb(&self, component: &str) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(self.sdk(component))
    }
    fn objects(&self, component: &str) -> S3ObjectStore {
        S3ObjectStore::new(S3ObjectStore::client_from(self.sdk(component)), &self.store.bucket)
    }
    fn caps(&self, component: &str) -> DynamoCapacityStore {
        DynamoCapacityStore::new(self.ddb(component), &self.store.capacity_table)
    }
    fn runs(&self, component: &str) -> DynamoRunStore {
        DynamoRunStore::new(self.ddb(component), &self.store.runs_table)
    }
    fn zones(&self) -> Vec<String> {
        self.launch.zones()
    }
    /// POST/GET to the fault layer's control API (plain HTTP/1.1 on loopback).
    fn control(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let url = self.faults_url.strip_prefix("http://").unwrap();
        let (host, base) = url.split_once('/').unwrap();
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "{method} /{base}{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let json = resp.split("\r\n\r\n").nth(1).unwrap_or("null");
        serde_json::from_str(json).unwrap()
    }
    fn inject(&self, instance_type: &str, code: &str, count: i64) {
        self.control(
            "POST",
            "/faults",
            &serde_json::json!({"instance_type": instance_type, "code": code, "count": count}).to_string(),
        );
    }
    fn launches_of(&self, token_prefix_types: &[&str]) -> Vec<(String, String)> {
        self.control("GET", "/calls", "")
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| token_prefix_types.contains(&c["instance_type"].as_str().unwrap()))
            .map(|c| {
                (
                    c["instance_type"].as_str().unwrap().to_string(),
                    c["outcome"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn state(run_id: &str, types: &[&str]) -> RunState {
    let spec = serde_json::json!({"name": "adapter-test", "command": ["python3", "-c", "print(1)"], "timeout_s": 600});
    let cands = types
        .iter()
        .enumerate()
        .map(|(i, t)| candidate(t, 0.01 * (i + 1) as f64))
        .collect();
    sized_state(spec, run_id, cands, now_ms())
}

/// A one-off spot t3.micro launch of `true` for `run_id`, with the launch template's image and
/// volume: the request the error-path tests vary.
fn micro_request(s: &Stack, run_id: &str, token: &str) -> LaunchRequest {
    LaunchRequest {
        pool: Pool {
            instance_type: "t3.micro".into(),
            az: s.zones()[0].clone(),
            market: Market::Spot,
        },
        job: "j".into(),
        run_id: run_id.into(),
        attempt: 1,
        agent_run_id: run_id.into(),
        client_token: token.into(),
        argv: vec!["true".into()],
        image: None,
        env: Default::default(),
        deadline_ms: now_ms() + 60_000,
        max_price_per_hour: None,
        memory_limit_bytes: None,
        image_id: None,
        root_volume_gib: None,
        env_from: Default::default(),
        role: None,
        gpus: 0,
    }
}

async fn terminate_run(l: &Ec2Launcher, run_id: &str) {
    for i in l.list_managed().await.unwrap() {
        if i.run_id.as_deref() == Some(run_id) {
            l.terminate(&i.instance_id).await.unwrap();
        }
    }
    let left: Vec<_> = l
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.run_id.as_deref() == Some(run_id))
        .collect();
    assert!(left.is_empty(), "instances of {run_id} left running: {left:?}");
}

#[tokio::test]
async fn s3_object_store_round_trips_and_lists() {
    let s = stack().await;
    // record-run writes and reads runs/ (a missing key is a 404 only with ListBucket)
    let o = s.objects("record-run");
    let k = "runs/job=t/dt=2026-01-01";
    o.put(&format!("{k}/1"), b"one".to_vec()).await.unwrap();
    o.put(&format!("{k}/2"), b"two".to_vec()).await.unwrap();
    assert_eq!(o.get(&format!("{k}/1")).await.unwrap().unwrap(), b"one");
    assert_eq!(o.get(&format!("{k}/none")).await.unwrap(), None);
    assert_eq!(
        o.list(&format!("{k}/")).await.unwrap(),
        [format!("{k}/1"), format!("{k}/2")]
    );
    // and the instance role may write samples but read nothing back
    let inst = s.objects("instance");
    inst.put("samples/job=t/dt=2026-01-01/run=r/part-1.ndjson.gz", b"x".to_vec())
        .await
        .unwrap();
    assert!(
        inst.get(&format!("{k}/1")).await.is_err(),
        "the instance role must not read runs/"
    );
}

#[tokio::test]
async fn profile_writes_are_conditional_and_concurrent_updates_all_land() {
    let s = stack().await;
    let p = DynamoProfileStore::new(s.ddb("record-run"), &s.store.profiles_table);
    let mut prof = JobProfile::new("cond-job");
    prof.version = 1;
    p.put_if_version(&prof, None).await.unwrap();
    // a second create, or a write against a stale version, loses with Conflict
    match p.put_if_version(&prof, None).await {
        Err(StoreError::Conflict { found, .. }) => assert_eq!(found, Some(1)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        p.put_if_version(&prof, Some(7)).await,
        Err(StoreError::Conflict { .. })
    ));
    // eight runs of one job recorded at once: every one lands
    let summaries: Vec<RunSummary> = (0..8)
        .map(|i| RunSummary {
            job: "race-job".into(),
            run_id: format!("race-{i}"),
            status: RunStatus::Succeeded,
            duration_s: 10.0,
            ..Default::default()
        })
        .collect();
    let handles: Vec<_> = summaries
        .into_iter()
        .map(|r| {
            let p = p.clone();
            tokio::spawn(async move { pipeline::update_profile(&p, &r).await })
        })
        .collect();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let got = p.get("race-job").await.unwrap().unwrap();
    assert_eq!(got.runs, 8);
    assert_eq!(got.version, 8);
}

#[tokio::test]
async fn run_store_puts_gets_and_lists_by_job_newest_first() {
    let s = stack().await;
    let r = s.runs("record-run");
    for (i, run_id) in ["rs-1", "rs-2", "rs-3"].iter().enumerate() {
        let rec = RunRecord {
            run_id: run_id.to_string(),
            job: "list-job".into(),
            attempt: 1,
            status: RunStatus::Succeeded,
            heartbeat_ms: Some(1000 + i as i64),
            cost_usd: 0.01,
            ..Default::default()
        };
        r.put(&rec).await.unwrap();
    }
    let two = RunRecord {
        run_id: "rs-3".into(),
        job: "list-job".into(),
        attempt: 2,
        heartbeat_ms: Some(5000),
        ..Default::default()
    };
    r.put(&two).await.unwrap();
    assert_eq!(r.get("rs-2", 1).await.unwrap().unwrap().heartbeat_ms, Some(1001));
    assert_eq!(r.get("rs-2", 9).await.unwrap(), None);
    let listed = r.list(Some("list-job"), 3).await.unwrap();
    let ids: Vec<(String, u32)> = listed.iter().map(|x| (x.run_id.clone(), x.attempt)).collect();
    assert_eq!(
        ids,
        [
            ("rs-3".to_string(), 2),
            ("rs-3".to_string(), 1),
            ("rs-2".to_string(), 1)
        ]
    );
    assert!(r.list(None, 0).await.unwrap().len() >= 4);
}

#[tokio::test]
async fn subnets_are_checked_against_their_az_ids() {
    let s = stack().await;
    s.launcher("launch-instance").verify_subnets().await.unwrap();
    // GIVEN the configuration with two subnets' zones swapped
    let mut cfg = s.launch.clone();
    let zones: Vec<String> = cfg.subnets.keys().cloned().collect();
    assert!(zones.len() >= 2, "the local stack seeds two subnets");
    let (a, b) = (cfg.subnets[&zones[0]].clone(), cfg.subnets[&zones[1]].clone());
    cfg.subnets.insert(zones[0].clone(), b.clone());
    cfg.subnets.insert(zones[1].clone(), a);
    let l = Ec2Launcher::new(aws_sdk_ec2::Client::new(s.sdk("launch-instance")), cfg);
    // THEN it is refused, naming the variable and the subnet
    let err = l.verify_subnets().await.unwrap_err().to_string();
    assert!(err.contains("SPOTFIT_SUBNETS") && err.contains(&b), "{err}");
}

#[tokio::test]
async fn capacity_marks_expire() {
    let s = stack().await;
    let c = s.caps("launch-instance");
    let pool = Pool {
        instance_type: "cap.test".into(),
        az: "use1-az9".into(),
        market: Market::Spot,
    };
    c.mark(&pool, CapacityMark::InsufficientCapacity, 10_000).await.unwrap();
    assert!(c.unavailable(9_999).await.unwrap().contains(&pool));
    assert!(!c.unavailable(10_000).await.unwrap().contains(&pool));
}

#[tokio::test]
async fn pool_history_is_counted_once_per_attempt_summed_per_pool_and_not_a_mark() {
    let s = stack().await;
    // record-run adds, size-job reads: each on its own role
    let w = s.caps("record-run");
    let r = s.caps("size-job");
    let pool = |az: &str| Pool {
        instance_type: "exp.test".into(),
        az: az.into(),
        market: Market::Spot,
    };
    let now = now_ms();
    let e = |key: &str, az: &str, at: i64, hours: f64, interrupted: bool| Exposure {
        pool: pool(az),
        attempt_key: key.into(),
        ended_at_ms: at,
        hours,
        interrupted,
    };
    assert!(w.add_exposure(&e("x1#1", "use1-az1", now, 1.5, true)).await.unwrap());
    // the same attempt again (a retried record step): refused by the condition, nothing added
    assert!(!w.add_exposure(&e("x1#1", "use1-az1", now, 1.5, true)).await.unwrap());
    assert!(w.add_exposure(&e("x1#2", "use1-az1", now, 2.0, false)).await.unwrap());
    // another day of the same pool, and another pool
    assert!(w
        .add_exposure(&e("x2#1", "use1-az1", now - 86_400_000, 0.5, false))
        .await
        .unwrap());
    assert!(w.add_exposure(&e("x3#1", "use1-az2", now, 4.0, false)).await.unwrap());
    // older than the window: not counted
    assert!(w
        .add_exposure(&e(
            "x4#1",
            "use1-az2",
            now - EXPOSURE_WINDOW_MS - 2 * 86_400_000,
            100.0,
            true
        ))
        .await
        .unwrap());
    let mine: Vec<_> = r
        .exposures(now)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.instance_type == "exp.test")
        .map(|p| (p.az, p.hours, p.interruptions))
        .collect();
    assert_eq!(
        mine,
        [("use1-az1".to_string(), 4.0, 1), ("use1-az2".to_string(), 4.0, 0)]
    );
    // AND history items never read as capacity marks
    assert!(!r
        .unavailable(0)
        .await
        .unwrap()
        .iter()
        .any(|p| p.instance_type == "exp.test"));
}

#[tokio::test]
async fn launch_sets_imdsv2_spot_tags_user_data_and_no_public_ip() {
    let s = stack().await;
    let l = s.launcher("launch-instance");
    let (caps, runs) = (s.caps("launch-instance"), s.runs("launch-instance"));
    let st = state("ec2-props", &["m6i.large"]);
    let st = pipeline::launch_step(&l, &caps, &runs, &SystemClock, &LaunchSettings::new(s.zones()), st)
        .await
        .unwrap();
    let id = st.instance.as_ref().unwrap().instance_id.clone();
    let ec2 = aws_sdk_ec2::Client::new(&s.admin_sdk);
    let out = ec2.describe_instances().instance_ids(&id.0).send().await.unwrap();
    let inst = out.reservations()[0].instances()[0].clone();
    let info = instance_info(&inst);
    assert_eq!(info.market, Market::Spot);
    assert_eq!(info.run_id.as_deref(), Some("ec2-props"));
    assert_eq!(info.attempt, Some(1));
    assert_eq!(info.job.as_deref(), Some("adapter-test"));
    assert!(info.deadline_ms.unwrap() > now_ms());
    assert_eq!(
        inst.metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str()),
        Some("required"),
        "IMDSv2 must be required"
    );
    assert_eq!(inst.public_ip_address(), None);
    let ud = ec2
        .describe_instance_attribute()
        .instance_id(&id.0)
        .attribute("userData".into())
        .send()
        .await
        .unwrap();
    let b64 = ud.user_data().and_then(|u| u.value()).unwrap().to_string();
    use base64::Engine;
    let script = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
    assert!(script.contains("RUN_ID='ec2-props'"), "{script}");
    assert!(
        !script.contains("print(1)"),
        "argv must travel as base64 data, not text"
    );
    // the run row exists as running, so the reaper knows the instance
    assert_eq!(
        runs.get("ec2-props", 1).await.unwrap().unwrap().status,
        RunStatus::Running
    );
    terminate_run(&l, "ec2-props").await;
    assert_eq!(l.describe(&id).await.unwrap().unwrap().state, InstanceState::Terminated);
    assert_eq!(
        l.describe(&InstanceId("i-0000000000000dead".into())).await.unwrap(),
        None
    );
    l.terminate(&InstanceId("i-0000000000000dead".into())).await.unwrap();
}

#[tokio::test]
async fn launch_boots_the_image_and_disk_size_job_chose_resolved_with_the_launch_role() {
    // GIVEN a container job asking for 200 GiB, ranked onto a GPU type: size-job's choice is the
    // ECS GPU-optimized AL2023 image and a 200 GiB root volume
    let s = stack().await;
    let l = s.launcher("launch-instance");
    let (caps, runs) = (s.caps("launch-instance"), s.runs("launch-instance"));
    let mut c = candidate("g5.xlarge", 0.5);
    c.gpu = 1;
    c.machine_image = spotfit_core::machine_image::MachineImage::EcsGpuAl2023;
    c.root_volume_gib = 200;
    c.storage_per_hour = spotfit_core::cost::ebs_per_hour(200);
    let st = sized_state(
        serde_json::json!({"name": "adapter-test", "command": ["nvidia-smi"], "image": "public.ecr.aws/docker/library/busybox:1.36"}),
        "ec2-image",
        vec![c],
        now_ms(),
    );
    // WHEN it launches (the launch role resolves `resolve:ssm:` itself: IAM is enforced)
    let st = pipeline::launch_step(&l, &caps, &runs, &SystemClock, &LaunchSettings::new(s.zones()), st)
        .await
        .unwrap();
    let id = st.instance.as_ref().unwrap().instance_id.clone();
    // THEN EC2 booted the AMI the public parameter holds, with the volume asked for
    let ssm_ami = {
        let out = std::process::Command::new(std::env::var("SPOTFIT_PYTHON").unwrap_or_else(|_| "python3".into()))
            .args([
                "-c",
                "import boto3,sys; print(boto3.client('ssm').get_parameter(Name=sys.argv[1])['Parameter']['Value'])",
                "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let ec2 = aws_sdk_ec2::Client::new(&s.admin_sdk);
    let out = ec2.describe_instances().instance_ids(&id.0).send().await.unwrap();
    let inst = out.reservations()[0].instances()[0].clone();
    assert!(ssm_ami.starts_with("ami-"), "{ssm_ami}");
    assert_eq!(inst.image_id(), Some(ssm_ami.as_str()));
    let vol_id = inst.block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.volume_id())
        .unwrap()
        .to_string();
    let vols = ec2.describe_volumes().volume_ids(&vol_id).send().await.unwrap();
    assert_eq!(vols.volumes()[0].size(), Some(200));
    // … and the attempt is costed with its volume
    let rec = runs.get("ec2-image", 1).await.unwrap().unwrap();
    assert!((rec.placed.unwrap().storage_per_hour - spotfit_core::cost::ebs_per_hour(200)).abs() < 1e-12);
    terminate_run(&l, "ec2-image").await;
}

#[tokio::test]
async fn an_image_parameter_that_does_not_exist_fails_the_launch() {
    let s = stack().await;
    let l = s.launcher("launch-instance");
    let req = LaunchRequest {
        image_id: Some("resolve:ssm:/aws/service/no-such/image_id".into()),
        ..micro_request(&s, "ec2-noimage", "noimage-token")
    };
    match l.launch(&req).await {
        // the launch role may not even read it: only the images spotfit boots are granted
        Err(LaunchError::Fatal { code, .. }) => assert!(
            code == "UnauthorizedOperation" || code == "InvalidParameterValue",
            "{code}"
        ),
        other => panic!("expected a fatal launch error, got {other:?}"),
    }
}

#[tokio::test]
async fn capacity_errors_fall_back_and_mark_the_pools() {
    let s = stack().await;
    let l = s.launcher("launch-instance");
    let (caps, runs) = (s.caps("launch-instance"), s.runs("launch-instance"));
    // GIVEN the first type refusing in every zone and the second refusing once with another code
    s.inject("c5.large", "InsufficientInstanceCapacity", -1);
    s.inject("c5.xlarge", "SpotMaxPriceTooLow", 1);
    let st = state("ec2-fallback", &["c5.large", "c5.xlarge", "c5.2xlarge"]);
    let zones = vec![s.zones()[0].clone()];
    // WHEN launched with the real adapters
    let st = pipeline::launch_step(&l, &caps, &runs, &SystemClock, &LaunchSettings::new(zones), st)
        .await
        .unwrap();
    // THEN the third type runs, the two failures were tried in order, classified, and marked
    let inst = st.instance.as_ref().unwrap();
    assert_eq!(inst.pool.instance_type, "c5.2xlarge");
    let codes: Vec<&str> = inst.tried.iter().map(|t| t.code.as_str()).collect();
    assert_eq!(codes, ["InsufficientInstanceCapacity", "SpotMaxPriceTooLow"]);
    let marked = caps.unavailable(now_ms()).await.unwrap();
    assert!(marked.iter().any(|p| p.instance_type == "c5.large"));
    assert!(marked.iter().any(|p| p.instance_type == "c5.xlarge"));
    assert_eq!(
        s.launches_of(&["c5.large", "c5.xlarge", "c5.2xlarge"]),
        [
            ("c5.large".to_string(), "InsufficientInstanceCapacity".to_string()),
            ("c5.xlarge".to_string(), "SpotMaxPriceTooLow".to_string()),
            ("c5.2xlarge".to_string(), "launched".to_string()),
        ]
    );
    terminate_run(&l, "ec2-fallback").await;
}

#[tokio::test]
async fn a_non_capacity_error_is_fatal_with_its_code() {
    let s = stack().await;
    let l = s.launcher("launch-instance");
    s.inject("t3.micro", "InvalidParameterValue", -1);
    let req = micro_request(&s, "ec2-fatal", "fatal-token");
    match l.launch(&req).await {
        Err(LaunchError::Fatal { code, .. }) => assert_eq!(code, "InvalidParameterValue"),
        other => panic!("expected Fatal, got {other:?}"),
    }
    // always: the SDK itself retries throttling (standard mode, 3 tries) before we see it
    s.inject("t3.small", "RequestLimitExceeded", -1);
    let req = LaunchRequest {
        pool: Pool {
            instance_type: "t3.small".into(),
            ..req.pool.clone()
        },
        client_token: "thr".into(),
        ..req
    };
    assert!(matches!(l.launch(&req).await, Err(LaunchError::Throttled { .. })));
    terminate_run(&l, "ec2-fatal").await;
}

#[tokio::test]
async fn the_same_launch_twice_starts_exactly_one_instance() {
    let s = stack().await;
    let l = s.launcher("launch-instance");
    let (caps, runs) = (s.caps("launch-instance"), s.runs("launch-instance"));
    let st = state("ec2-idem", &["m5.xlarge"]);
    let settings = LaunchSettings::new(s.zones());
    let a = pipeline::launch_step(&l, &caps, &runs, &SystemClock, &settings, st.clone())
        .await
        .unwrap();
    let b = pipeline::launch_step(&l, &caps, &runs, &SystemClock, &settings, st)
        .await
        .unwrap();
    assert_eq!(
        a.instance.as_ref().unwrap().instance_id,
        b.instance.as_ref().unwrap().instance_id
    );
    let live: Vec<_> = l
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.run_id.as_deref() == Some("ec2-idem"))
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    // and the ClientToken alone (no tag lookup) also returns the first instance
    let req = LaunchRequest {
        pool: a.instance.as_ref().unwrap().pool.clone(),
        job: "adapter-test".into(),
        run_id: "ec2-idem".into(),
        attempt: 1,
        agent_run_id: "ec2-idem".into(),
        client_token: pipeline::client_token("ec2-idem", 1, &a.instance.as_ref().unwrap().pool),
        argv: vec!["true".into()],
        image: None,
        env: Default::default(),
        deadline_ms: now_ms() + 60_000,
        max_price_per_hour: None,
        memory_limit_bytes: None,
        image_id: None,
        root_volume_gib: None,
        env_from: Default::default(),
        role: None,
        gpus: 0,
    };
    let again = l.launch(&req).await.unwrap();
    assert_eq!(again.instance_id, a.instance.as_ref().unwrap().instance_id);
    terminate_run(&l, "ec2-idem").await;
}

#[tokio::test]
async fn an_interrupted_instance_is_reported_interrupted_and_its_pool_marked() {
    let s = stack().await;
    let l = s.launcher("launch-instance");
    let (caps, runs) = (s.caps("launch-instance"), s.runs("launch-instance"));
    let st = state("ec2-intr", &["m5.large"]);
    let st = pipeline::launch_step(&l, &caps, &runs, &SystemClock, &LaunchSettings::new(s.zones()), st)
        .await
        .unwrap();
    let id = st.instance.as_ref().unwrap().instance_id.clone();
    s.control(
        "POST",
        "/interrupt",
        &serde_json::json!({"instance_id": id.0}).to_string(),
    );
    let st = pipeline::check_step(
        &s.launcher("check-job"),
        &s.objects("check-job"),
        &s.caps("check-job"),
        &SystemClock,
        st,
    )
    .await
    .unwrap();
    assert_eq!(st.check.as_ref().unwrap().status, RunStatus::Interrupted);
    assert_eq!(st.outcome, Some(pipeline::Outcome::Retry));
    assert!(caps
        .unavailable(now_ms())
        .await
        .unwrap()
        .iter()
        .any(|p| p.instance_type == "m5.large"));
    terminate_run(&l, "ec2-intr").await;
}

#[tokio::test]
async fn the_reaper_terminates_an_abandoned_instance_and_spares_a_live_one() {
    let s = stack().await;
    let l = s.launcher("launch-instance");
    let (caps, runs) = (s.caps("launch-instance"), s.runs("launch-instance"));
    let settings = LaunchSettings::new(s.zones());
    let old = pipeline::launch_step(
        &l,
        &caps,
        &runs,
        &SystemClock,
        &settings,
        state("reap-old", &["r5.large"]),
    )
    .await
    .unwrap();
    // its execution stopped polling long ago
    let mut row = runs.get("reap-old", 1).await.unwrap().unwrap();
    row.heartbeat_ms = Some(now_ms() - 3_600_000);
    // the last heartbeat check-job wrote, long ago
    s.runs("check-job").put(&row).await.unwrap();
    pipeline::launch_step(
        &l,
        &caps,
        &runs,
        &SystemClock,
        &settings,
        state("reap-live", &["r5.large"]),
    )
    .await
    .unwrap();
    let report = pipeline::reap_step(
        &s.launcher("reap-instances"),
        &s.runs("reap-instances"),
        &SystemClock,
        &ReapPolicy::default(),
        &Default::default(),
    )
    .await
    .unwrap();
    let reaped: Vec<_> = report.terminated.iter().filter_map(|r| r.run_id.clone()).collect();
    assert!(reaped.contains(&"reap-old".to_string()), "{report:?}");
    assert!(!reaped.contains(&"reap-live".to_string()), "{report:?}");
    assert_eq!(
        l.describe(&old.instance.unwrap().instance_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        InstanceState::Terminated
    );
    terminate_run(&l, "reap-live").await;
}

#[tokio::test]
async fn waits_are_armed_found_by_run_swept_and_disarmed_only_with_their_token() {
    let s = stack().await;
    let table = env("SPOTFIT_WAITS_TABLE");
    let waits = |component: &str| spotfit_aws::DynamoWaitStore::new(s.ddb(component), &table);
    let l = s.launcher("launch-instance");
    let st = pipeline::launch_step(
        &l,
        &s.caps("launch-instance"),
        &s.runs("launch-instance"),
        &SystemClock,
        &LaunchSettings::new(s.zones()),
        state("wait-1", &["m5.large"]),
    )
    .await
    .unwrap();
    let inst = st.instance.clone().unwrap();
    let wait = Waiting {
        run_id: "wait-1".into(),
        attempt: 1,
        token: "tok-a".into(),
        instance_id: inst.instance_id.clone(),
        armed_at_ms: now_ms(),
        state: Box::new(st.clone()),
    };
    waits("check-job").arm(&wait).await.unwrap();
    assert_eq!(waits("job-events").get("wait-1", 1).await.unwrap(), Some(wait.clone()));
    assert_eq!(waits("job-events").of_run("wait-1").await.unwrap(), vec![wait.clone()]);
    assert!(waits("reap-instances").all().await.unwrap().contains(&wait));
    // A re-arm replaces the token; the old token no longer removes it.
    let rearmed = Waiting {
        token: "tok-b".into(),
        ..wait.clone()
    };
    waits("check-job").arm(&rearmed).await.unwrap();
    assert!(!waits("reap-instances").disarm("wait-1", 1, "tok-a").await.unwrap());
    assert_eq!(
        waits("job-events").get("wait-1", 1).await.unwrap().unwrap().token,
        "tok-b"
    );
    assert!(waits("job-events").disarm("wait-1", 1, "tok-b").await.unwrap());
    assert!(
        !waits("job-events").disarm("wait-1", 1, "tok-b").await.unwrap(),
        "already gone"
    );
    assert_eq!(waits("job-events").get("wait-1", 1).await.unwrap(), None);
    // The sweep's batched describe: one call, an unknown id left out rather than failing it.
    let many = s
        .launcher("reap-instances")
        .describe_many(&[inst.instance_id.clone(), InstanceId("i-0123456789abcdef0".into())])
        .await
        .unwrap();
    assert_eq!(many.len(), 1);
    assert_eq!(many[0].instance_id, inst.instance_id);
    assert_eq!(many[0].run_id.as_deref(), Some("wait-1"));
    // A stopped execution's instances, by the run id tag (server-side), as job-events sees them.
    let of_run = s.launcher("job-events").list_run("wait-1").await.unwrap();
    assert_eq!(
        of_run.iter().map(|i| &i.instance_id).collect::<Vec<_>>(),
        [&inst.instance_id]
    );
    assert!(s.launcher("job-events").list_run("wait-none").await.unwrap().is_empty());
    terminate_run(&s.launcher("terminate-instance"), "wait-1").await;
}
