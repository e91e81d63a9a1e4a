//! The Athena tables (infra/lib/analytics.ts) read the JSON that these Rust types write. The
//! columns each type really writes — every field set, so none is skipped — are kept in
//! `infra/athena/schema.json`; this test fails when a type changes and the file is not updated
//! (`SPOTFIT_BLESS=1` rewrites it), and infra/test/contract.test.ts fails when the stack's
//! columns differ from the file. So neither side can change alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Map, Value};
use spotfit_core::ids::InstanceId;
use spotfit_core::run::{Placed, RunRecord};
use spotfit_core::summary::{CpuStats, ExitInfo, GpuStats, IoTotals, RunStatus, RunSummary};
use spotfit_core::{GpuSample, Market, MemoryMetric, Sample};
use std::path::PathBuf;

// Struct literals without `..Default::default()`: a new field is a compile error here, so the
// schema below cannot miss it.
fn sample() -> Sample {
    Sample {
        ts_ms: 1,
        run_id: "r".into(),
        seq: 1,
        interval_s: 1.0,
        cpu_cores: 1.0,
        host_cpu_cores: Some(1.0),
        processes: 1,
        mem_bytes: 1,
        mem_metric: MemoryMetric::Rss,
        rss_bytes: 1,
        pss_bytes: Some(1),
        cgroup_mem_bytes: Some(1),
        cgroup_working_set_bytes: Some(1),
        cgroup_mem_limit_bytes: Some(1),
        oom_kills: Some(1),
        mem_limit_hits: Some(1),
        cpu_throttled_s: Some(1.0),
        page_faults_minor: 1,
        page_faults_major: 1,
        disk_read_bytes: 1,
        disk_write_bytes: 1,
        net_rx_bytes: Some(1),
        net_tx_bytes: Some(1),
        gpus: vec![GpuSample {
            index: 0,
            util_pct: 1.0,
            mem_used_bytes: 1,
            mem_total_bytes: 1,
            proc_mem_bytes: Some(1),
        }],
    }
}

fn summary() -> RunSummary {
    RunSummary {
        job: "j".into(),
        run_id: "r".into(),
        started_at_ms: 1,
        ended_at_ms: 1,
        duration_s: 1.0,
        samples: 1,
        cpu: CpuStats {
            avg: 1.0,
            p50: 1.0,
            p95: 1.0,
            max: 1.0,
        },
        mem_max_bytes: 1,
        mem_metric: MemoryMetric::Rss,
        gpu: Some(GpuStats {
            count: 1,
            util_avg_pct: 1.0,
            util_max_pct: 1.0,
            mem_max_bytes: 1,
        }),
        io: IoTotals {
            disk_read_bytes: 1,
            disk_write_bytes: 1,
            net_rx_bytes: 1,
            net_tx_bytes: 1,
        },
        exit: ExitInfo {
            code: Some(1),
            signal: Some(9),
        },
        oom_killed: true,
        status: RunStatus::Succeeded,
        cpu_given_cores: Some(1.0),
        cpu_throttled: true,
        input_bytes: Some(1),
        stdout_tail: "1".into(),
        stderr_tail: "1".into(),
        disk_used_max_bytes: Some(1),
    }
}

fn record() -> RunRecord {
    RunRecord {
        run_id: "r".into(),
        job: "j".into(),
        attempt: 1,
        status: RunStatus::Succeeded,
        placed: Some(Placed {
            instance_id: Some(InstanceId("i-1".into())),
            instance_type: "m7i.large".into(),
            region: "us-east-1".into(),
            az: "use1-az1".into(),
            market: Market::Spot,
            price_per_hour: 1.0,
            local: true,
            storage_per_hour: 1.0,
        }),
        cost_usd: 1.0,
        cost_basis: spotfit_core::prices::CostBasis::Billed,
        summary: Some(summary()),
        requested_vcpu: 1,
        requested_memory_bytes: 1,
        heartbeat_ms: Some(1),
    }
}

/// The column type Athena needs for a JSON value, coarsely: integer (int or bigint), double,
/// string, boolean, struct<…> and array<…> with their members.
fn shape(v: &Value) -> Value {
    match v {
        Value::Bool(_) => json!("boolean"),
        Value::Number(n) if n.is_f64() => json!("double"),
        Value::Number(_) => json!("integer"),
        Value::String(_) => json!("string"),
        Value::Array(a) => json!({ "array": shape(&a[0]) }),
        Value::Object(o) => Value::Object(columns(o)),
        Value::Null => json!("null"),
    }
}

fn columns(o: &Map<String, Value>) -> Map<String, Value> {
    o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()
}

fn schema() -> Value {
    let obj = |v: Value| match shape(&v) {
        Value::Object(m) => Value::Object(m),
        other => panic!("not an object: {other}"),
    };
    let mut runs = obj(serde_json::to_value(summary()).unwrap());
    // `job` is the `runs` table's partition key (the key's job=… folder), not a column.
    runs.as_object_mut().unwrap().remove("job");
    json!({
        "samples": obj(serde_json::to_value(sample()).unwrap()),
        "runs": runs,
        "run_records": obj(serde_json::to_value(record()).unwrap()),
    })
}

#[test]
fn the_athena_schema_file_is_what_the_rust_types_write() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/athena/schema.json");
    let want = serde_json::to_string_pretty(&schema()).unwrap() + "\n";
    if std::env::var_os("SPOTFIT_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: the Rust types now write\n{want}\n(update the Athena columns in infra/lib/analytics.ts, then run with SPOTFIT_BLESS=1)",
        path.display()
    );
}
