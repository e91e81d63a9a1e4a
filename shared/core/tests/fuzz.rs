//! Property-based fuzzing of the spec parser + validator and the user-data renderer with hostile
//! JSON. Time-boxed: each property runs for `SPOTFIT_FUZZ_SECS` seconds (default below, so the
//! whole test suite stays within its 2-minute fuzz budget); `scripts/fuzz` runs it longer and
//! prints the case counts. Failing cases are shrunk by proptest and printed.
//!
//! Invariants: no panic; a refusal names a field and a reason, in escaped text of bounded
//! length; trailing data, a duplicated key and an array for an object are refused; a validated
//! spec reads back from its own serialization as the same spec, and renders to ≤ 16 KiB of
//! user data with the longest plain tokens the renderer accepts; the rendered user data holds
//! no job byte outside its base64 payloads; what the renderer refuses, validation refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use spotfit_core::spec::{JobSpec, MAX_ERROR_TEXT, MAX_LISTED_ERRORS};
use spotfit_core::user_data::{render, UserDataInput, MAX_PLAIN_LEN, MAX_USER_DATA};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const DEFAULT_SECS: f64 = 25.0;

/// Runs `test` on values of `strategy` in chunks until the time box is spent; returns the
/// number of cases. Each chunk gets a fresh random seed; a failure panics with the shrunk case.
fn time_boxed<S: Strategy>(
    name: &str,
    secs: f64,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> u64
where
    S::Value: std::fmt::Debug,
{
    let start = Instant::now();
    let budget = Duration::from_secs_f64(secs);
    let mut cases = 0u64;
    while start.elapsed() < budget {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            max_shrink_iters: 2048,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{name}: {e}");
        }
        cases += 256;
    }
    let s = start.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {name}: {cases} cases in {s:.1} s ({:.0} cases/s)",
        cases as f64 / s
    );
    cases
}

fn secs() -> f64 {
    std::env::var("SPOTFIT_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SECS)
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._-]{1,70}",
        "\\PC{0,24}",
        ".{0,40}",
        (1usize..6000).prop_map(|n| "a".repeat(n)),
        prop::sample::select(vec![
            "-rf",
            "--volume=/:/host",
            "--network=host",
            "$(touch /tmp/PWNED)",
            "`id`",
            "'\"`;|&\n",
            "\u{1b}]0;x\u{7}\u{1b}[2J",
            "\u{202e}evil",
            "us-east-1",
            "eu-west-1",
            "xx-east-9",
            "us-east-1a",
            "use1-az4",
            "m7i",
            "c7g",
            "p4d",
            "zz99",
            "c7*",
            "rocker/r-ver:4.4",
            "localhost:5000/a/b@sha256:0123456789abcdef0123456789abcdef",
            "x86_64",
            "arm64",
            "spot",
            "on-demand",
            "spot-then-on-demand",
            "@@ARGV_B64@@",
            "",
        ])
        .prop_map(str::to_string),
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..70).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        (0.0f64..200.0).prop_map(|f| f.to_string()),
        prop::sample::select(vec![
            "1e400",
            "-0",
            "0.0000001",
            "18446744073709551616",
            "4096",
            "1.5",
            "0"
        ])
        .prop_map(str::to_string),
    ]
}

const KEYS: &[&str] = &[
    "name",
    "command",
    "image",
    "env",
    "hints",
    "resources",
    "placement",
    "market",
    "retry",
    "timeout_s",
    "vcpu",
    "memory_gib",
    "gpu",
    "gpu_memory_gib",
    "duration_s",
    "min_vcpu",
    "max_vcpu",
    "min_memory_gib",
    "max_memory_gib",
    "min_gpu",
    "max_gpu",
    "min_gpu_memory_gib",
    "max_gpu_memory_gib",
    "max_price_per_hour",
    "regions",
    "availability_zones",
    "architectures",
    "allowed_families",
    "excluded_families",
    "max_attempts",
    "oom_memory_factor",
    "max_slowdown",
    "PATH",
    "AWS_ENDPOINT_URL",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(KEYS).prop_map(str::to_string), 1 => hostile_string()]
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Arbitrary JSON text over the spec's vocabulary: any shape, duplicate keys included.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        hostile_string().prop_map(|s| q(&s)),
        number(),
        Just("true".to_string()),
        Just("null".to_string()),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key(), inner), 0..8).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("{}:{v}", q(k))).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

/// A spec-shaped object with values from the hostile vocabulary: most fields well typed, so
/// that many pass parsing and reach the validator and the renderer.
fn spec_text() -> impl Strategy<Value = String> {
    // Mostly valid, sometimes hostile: each field has its own chance to break the spec.
    let strs = || prop_oneof![9 => Just(Vec::new()), 1 => prop::collection::vec(hostile_string(), 0..3)];
    let num = || prop::option::weighted(0.08, number());
    let name = prop_oneof![9 => "[a-z0-9][a-z0-9._-]{0,20}", 1 => hostile_string()];
    let arg = prop_oneof![9 => "\\PC{1,30}", 1 => hostile_string()];
    (
        (
            name,
            prop::collection::vec(arg, 1..6),
            prop::option::weighted(0.1, hostile_string()),
        ),
        prop::collection::btree_map(
            prop_oneof![9 => "[A-Za-z_][A-Za-z0-9_]{0,8}", 1 => "\\PC{1,6}"],
            prop_oneof![9 => "\\PC{0,20}", 1 => hostile_string()],
            0..4,
        ),
        (num(), num(), num(), num()),
        (num(), num(), num(), num(), num()),
        (strs(), strs(), strs(), strs(), strs()),
        (prop::option::weighted(0.1, hostile_string()), num(), num(), num()),
    )
        .prop_map(
            |((name, command, image), env, (hv, hm, hg, hd), (r1, r2, r3, r4, r5), pl, (market, t, a, f))| {
                let mut o = serde_json::Map::new();
                let n = |s: &Option<String>| {
                    s.as_ref()
                        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                };
                o.insert("name".into(), name.into());
                o.insert("command".into(), command.into());
                if let Some(i) = image {
                    o.insert("image".into(), i.into());
                }
                o.insert("env".into(), serde_json::to_value(env).unwrap());
                let put =
                    |m: &mut serde_json::Map<String, serde_json::Value>, k: &str, v: Option<serde_json::Value>| {
                        if let Some(v) = v {
                            m.insert(k.into(), v);
                        }
                    };
                let mut h = serde_json::Map::new();
                put(&mut h, "vcpu", n(&hv));
                put(&mut h, "memory_gib", n(&hm));
                put(&mut h, "gpu", n(&hg));
                put(&mut h, "duration_s", n(&hd));
                o.insert("hints".into(), h.into());
                let mut r = serde_json::Map::new();
                put(&mut r, "min_vcpu", n(&r1));
                put(&mut r, "max_vcpu", n(&r2));
                put(&mut r, "min_memory_gib", n(&r3));
                put(&mut r, "min_gpu", n(&r4));
                put(&mut r, "max_price_per_hour", n(&r5));
                o.insert("resources".into(), r.into());
                let (regions, azs, arch, allowed, excluded) = pl;
                o.insert(
                    "placement".into(),
                    serde_json::json!({"regions": regions, "availability_zones": azs, "architectures": arch,
                    "allowed_families": allowed, "excluded_families": excluded}),
                );
                put(&mut o, "market", market.map(Into::into));
                put(&mut o, "timeout_s", n(&t));
                let mut rt = serde_json::Map::new();
                put(&mut rt, "max_attempts", n(&a));
                put(&mut rt, "oom_memory_factor", n(&f));
                o.insert("retry".into(), rt.into());
                serde_json::Value::Object(o).to_string()
            },
        )
}

/// Text-level mutations serde_json alone would not refuse: trailing data, a duplicate key, an
/// array for an object. Returns the text and whether the parser must refuse it: always after
/// trailing data; for a duplicated top-level `name`, and for `retry` given as the array of its
/// values (which serde would read positionally), where the text was an object that had them.
fn mutated(text: String, m: u8, extra: String) -> (String, bool) {
    let object = || match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(o)) if text.starts_with('{') => Some(o),
        _ => None,
    };
    match m % 6 {
        0 => (format!("{text} {extra}"), true),
        1 => {
            let had_name = object().is_some_and(|o| o.contains_key("name"));
            (text.replacen('{', &format!("{{\"name\":{},", q("dup")), 1), had_name)
        }
        2 => (text.replacen("{}", "[]", 1), false),
        3 => match object() {
            Some(mut o) if o.get("retry").is_some_and(serde_json::Value::is_object) => {
                let retry = o.remove("retry").and_then(|r| match r {
                    serde_json::Value::Object(r) => Some(r.into_iter().map(|(_, v)| v).collect()),
                    _ => None,
                });
                o.insert("retry".into(), serde_json::Value::Array(retry.unwrap_or_default()));
                (serde_json::Value::Object(o).to_string(), true)
            }
            _ => (text, false),
        },
        _ => (text, false),
    }
}

fn check_refusal(e: &spotfit_core::SpecError) -> Result<(), TestCaseError> {
    let errs = e.errors();
    prop_assert!(!errs.is_empty());
    for f in &errs {
        prop_assert!(!f.field().is_empty() && f.field() != ".", "no field named: {f:?}");
        prop_assert!(!f.reason().is_empty(), "no reason: {f:?}");
        prop_assert!(
            f.field().chars().count() <= MAX_ERROR_TEXT + 1 && f.reason().chars().count() <= MAX_ERROR_TEXT + 1
        );
    }
    let msg = e.to_string();
    prop_assert!(
        !msg.chars()
            .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
        "unescaped: {msg:?}"
    );
    prop_assert!(
        msg.len() <= (MAX_LISTED_ERRORS + 2) * (2 * 4 * MAX_ERROR_TEXT + 8),
        "{} bytes",
        msg.len()
    );
    Ok(())
}

const PAYLOADS: [&str; 4] = ["ARGV_B64='", "ENV_B64='", "ENV_FROM_B64='", "IMAGE_B64='"];
/// Values the renderer decides from the job's image (GPUs only for images, the registry to log
/// in to): not job bytes, but they differ from the empty job's, so they are checked apart.
const DECIDED: [&str; 3] = ["GPUS='", "REGISTRY_HOST='", "REGISTRY_REGION='"];

/// Renders `spec` with the longest plain tokens and checks the user-data invariants.
fn check_render(spec: &JobSpec) -> Result<(), TestCaseError> {
    let long = "x".repeat(MAX_PLAIN_LEN);
    let input = |argv: &'_ [String],
                 env: &'_ BTreeMap<String, String>,
                 env_from: &'_ BTreeMap<String, String>,
                 image: Option<&'_ str>|
     -> Result<String, String> {
        render(&UserDataInput {
            bucket: &long,
            agent_key: &long,
            region: &long,
            job: &long,
            run_id: &long,
            deadline_epoch_s: i64::MIN,
            argv,
            env,
            env_from,
            // The spec's own: the empty job compared with below takes the same.
            job_role: spec.role.is_some(),
            image,
            // The longest values the new fields can take, for the size bound.
            memory_limit_bytes: Some(u64::MAX),
            gpus: true,
            registry_hosts: &[],
        })
        .map_err(|e| e.to_string())
    };
    let script = input(&spec.command, &spec.env, &spec.env_from, spec.image.as_deref());
    prop_assert!(script.is_ok(), "a validated spec does not render: {script:?}");
    let script = script.unwrap();
    prop_assert!(script.len() <= MAX_USER_DATA, "{} bytes of user data", script.len());
    // No job byte outside the payloads: blanking them gives the empty job's script.
    let blank = |s: &str| -> String {
        s.lines()
            .map(|l| {
                if PAYLOADS.iter().any(|p| l.starts_with(p)) {
                    "PAYLOAD"
                } else if DECIDED.iter().any(|p| l.starts_with(p)) {
                    "DECIDED"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let empty = input(&[], &BTreeMap::new(), &BTreeMap::new(), None).unwrap();
    prop_assert_eq!(blank(&script), blank(&empty));
    // Each decided value is a plain token (or empty) inside single quotes.
    for p in DECIDED {
        let line = script.lines().find(|l| l.starts_with(p)).unwrap();
        let v = &line[p.len()..line.len() - 1];
        prop_assert!(line.ends_with('\''));
        prop_assert!(
            v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=+@".contains(&b)),
            "{line}"
        );
    }
    // Each payload is base64 inside single quotes, and the argv decodes to the command.
    for p in PAYLOADS {
        let line = script.lines().find(|l| l.starts_with(p)).unwrap();
        let v = &line[p.len()..line.len() - 1];
        prop_assert!(line.ends_with('\''));
        prop_assert!(
            v.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
            "{line}"
        );
        if p == PAYLOADS[0] {
            let raw = base64::engine::general_purpose::STANDARD.decode(v).unwrap();
            let argv: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|s| String::from_utf8(s.to_vec()).unwrap())
                .collect();
            let mut want = spec.command.clone();
            want.push(String::new()); // the trailing NUL
            prop_assert_eq!(argv, want);
        }
    }
    Ok(())
}

#[test]
fn fuzz_spec_parser_validator_and_user_data() {
    let secs = secs();
    let accepted = std::sync::atomic::AtomicU64::new(0);
    let fields = std::sync::Mutex::new(BTreeSet::new());
    let strategy = (
        prop_oneof![1 => json_text(), 2 => spec_text()],
        any::<u8>(),
        json_text(),
    )
        .prop_map(|(t, m, x)| mutated(t, m, x));
    let cases = time_boxed("spec", secs * 0.7, strategy, |(text, must_refuse)| {
        match JobSpec::from_json(&text) {
            Ok(spec) => {
                prop_assert!(!must_refuse, "accepted a text the parser must refuse: {text}");
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // The spec travels as its serialization (`spotfit submit` sends it, the size
                // step parses it again on every attempt): that must be accepted as the same spec.
                // Floats may come back one ulp off: serde_json's default parser does not promise
                // exact round trips (its `float_roundtrip` feature does), so they compare within
                // a relative 1e-15.
                let sent = serde_json::to_string(&spec).unwrap();
                let received = JobSpec::from_json(&sent);
                prop_assert!(
                    received.as_ref().is_ok_and(|r| same_json(
                        &serde_json::to_value(r).unwrap(),
                        &serde_json::to_value(&spec).unwrap()
                    )),
                    "{sent} read back as {received:?}"
                );
                check_render(&spec)?;
            }
            Err(e) => {
                check_refusal(&e)?;
                let mut f = fields.lock().unwrap();
                for fe in e.errors() {
                    if fe.field().len() < 40 {
                        f.insert(fe.field().split('[').next().unwrap_or("").to_string());
                    }
                }
            }
        }
        Ok(())
    });
    let accepted = accepted.into_inner();
    let fields = fields.into_inner().unwrap();
    eprintln!(
        "fuzz spec: {accepted} of {cases} accepted and rendered; refusals named {} distinct fields",
        fields.len()
    );
    // Coverage floor: both sides of the validator are reached.
    assert!(
        accepted > 0,
        "no generated spec was valid: the generator lost its coverage"
    );
    assert!(fields.len() >= 15, "refusals named only {fields:?}");

    // The renderer alone, on argv/env/image the validator would refuse too (it must refuse or
    // render safely, never emit a job byte unquoted).
    let strategy = (
        prop::collection::vec(hostile_string(), 0..8),
        prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,8}", hostile_string(), 0..4),
        prop::option::of(hostile_string()),
    );
    time_boxed("user-data", secs * 0.3, strategy, |(argv, env, image)| {
        let spec = JobSpec {
            command: argv,
            env,
            image,
            ..JobSpec::for_command("j", vec![])
        };
        let long = "x".repeat(MAX_PLAIN_LEN);
        let r = render(&UserDataInput {
            bucket: &long,
            agent_key: &long,
            region: &long,
            job: &long,
            run_id: &long,
            deadline_epoch_s: i64::MIN,
            argv: &spec.command,
            env: &spec.env,
            env_from: &spec.env_from,
            job_role: spec.role.is_some(),
            image: spec.image.as_deref(),
            // The longest values the new fields can take, for the size bound.
            memory_limit_bytes: Some(u64::MAX),
            gpus: true,
            registry_hosts: &[],
        });
        match r {
            Ok(_) if spec.command.iter().all(|a| !a.contains('\0')) => check_render(&spec)?,
            Ok(_) => prop_assert!(false, "NUL byte rendered"),
            // What the renderer refuses, validation must have refused first: a validated spec
            // that cannot be rendered fails only at launch, after it was sized and ranked.
            Err(e) => prop_assert!(
                spec.validate().is_err(),
                "the renderer refused a spec validation accepts ({e}): {spec:?}"
            ),
        }
        Ok(())
    });
}

/// `a == b`, but floats equal within a relative 1e-15 (one or two ulps).
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) if x.is_f64() || y.is_f64() => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
            _ => false,
        },
        (V::Array(x), V::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
