//! The job spec: what to run and within which bounds. It is the state machine's input and
//! `spotfit run JOB.json`'s input. Parsing rejects unknown fields; [`JobSpec::validate`]
//! reports every problem at once, each with its field path and the reason.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest argv element / env value accepted. Large enough for any sane argument, small
/// enough that a spec always fits in EC2 user data (16 KiB) and a DynamoDB item.
pub const MAX_ARG_LEN: usize = 4096;
pub const MAX_ARGS: usize = 256;
pub const MAX_ENV: usize = 128;
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The profile key: 1–64 of `[a-z0-9._-]`.
    pub name: String,
    /// The command as an argv array; never a shell string. With `image`, the argv run inside it.
    #[serde(default)]
    pub command: Vec<String>,
    /// Optional container image; the command then runs inside it (`docker run IMAGE ARGV…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Environment for the job. Names: `[A-Za-z_][A-Za-z0-9_]*`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// What the submitter believes the job needs; used until the job has history.
    #[serde(default)]
    pub hints: Hints,
    /// Hard bounds: sizing never leaves them, whatever the history says.
    #[serde(default)]
    pub resources: Bounds,
    /// Wall-clock limit for one attempt, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default)]
    pub market: Market,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How much longer than on the cores it wants a run may take to save money (≥ 1; default
    /// [`DEFAULT_MAX_SLOWDOWN`]): sizing never buys fewer cores than that allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_slowdown: Option<f64>,
    /// The run's input objects (`s3://bucket/key`): their summed size is the run's input size
    /// for input-aware sizing, read by whoever can list them (the `hints.input_bytes` hint
    /// says it directly).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

/// A run may take 10% longer than on the cores it wants when that saves money.
pub const DEFAULT_MAX_SLOWDOWN: f64 = 1.1;

impl JobSpec {
    /// The spec's `max_slowdown`, or [`DEFAULT_MAX_SLOWDOWN`].
    pub fn max_slowdown(&self) -> f64 {
        self.max_slowdown
            .filter(|v| v.is_finite() && *v >= 1.0)
            .unwrap_or(DEFAULT_MAX_SLOWDOWN)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Hints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gib: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_gib: Option<f64>,
    /// Expected duration, seconds (for cost estimates before any run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Size of this run's input, bytes: memory and duration are then predicted from it where
    /// the job's history shows they follow it (input-aware sizing, docs/sizing.md). Takes
    /// precedence over the sizes of `inputs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_bytes: Option<u64>,
}

/// Most entries in a spec's `inputs`.
pub const MAX_INPUTS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_vcpu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vcpu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory_gib: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_gib: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_gpu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gpu: Option<u32>,
    /// Minimum memory per GPU, GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_gpu_memory_gib: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gpu_memory_gib: Option<f64>,
    /// Most the job may cost per instance-hour, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price_per_hour: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    pub fn as_str(&self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "x86_64" | "amd64" | "x86-64" => Some(Arch::X86_64),
            "arm64" | "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Allowed regions; empty = the deployment's region (us-east-1 for local estimates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Allowed availability zones, as AZ ids (`use1-az4`) or names (`us-east-1a`); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub availability_zones: Vec<String>,
    /// Allowed architectures; empty = any the job's image supports (x86_64 and arm64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<Arch>,
    /// Instance families allowed (`m7i`, `c7g`); empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_families: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_families: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    #[default]
    Spot,
    OnDemand,
    SpotThenOnDemand,
}

impl Market {
    pub fn as_str(&self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::OnDemand => "on-demand",
            Market::SpotThenOnDemand => "spot-then-on-demand",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all (first run included) after interruptions or lost instances.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Memory multiplier for the retry after an OOM kill.
    #[serde(default = "default_oom_factor")]
    pub oom_memory_factor: f64,
}

fn default_attempts() -> u32 {
    3
}
fn default_oom_factor() -> f64 {
    1.5
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            oom_memory_factor: default_oom_factor(),
        }
    }
}

/// One problem in a spec: the field path (`resources.max_vcpu`, `command[2]`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The JSON could not be read as a spec (syntax, type, unknown field); names the path.
    #[error("invalid job spec: {0}")]
    Parse(FieldError),
    /// The spec parsed but breaks rules; every problem is listed.
    #[error("invalid job spec: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
}

impl SpecError {
    pub fn errors(&self) -> Vec<FieldError> {
        match self {
            SpecError::Parse(e) => vec![e.clone()],
            SpecError::Invalid(v) => v.clone(),
        }
    }
}

/// True for a valid job name: 1–64 of `[a-z0-9._-]`, not `.` or `..`.
pub fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn valid_family(f: &str) -> bool {
    !f.is_empty()
        && f.len() <= 16
        && f.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl JobSpec {
    /// Parses and validates a spec from JSON.
    pub fn from_json(json: &str) -> Result<JobSpec, SpecError> {
        if !json.trim_start().starts_with('{') {
            let reason = "must be a JSON object ({\"name\": …, \"command\": [...]})".to_string();
            return Err(SpecError::Parse(FieldError {
                field: "(spec)".into(),
                reason,
            }));
        }
        let de = &mut serde_json::Deserializer::from_str(json);
        let spec: JobSpec = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path.is_empty() {
                "(spec)".to_string()
            } else {
                path
            };
            SpecError::Parse(FieldError {
                field,
                reason: e.into_inner().to_string(),
            })
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// A spec for an ad-hoc command (`spotfit run -- CMD…`).
    pub fn for_command(name: &str, argv: Vec<String>) -> JobSpec {
        JobSpec {
            name: name.to_string(),
            command: argv,
            ..Default::default()
        }
    }

    /// Checks every rule and returns all violations at once.
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut errs: Vec<FieldError> = Vec::new();
        let mut err = |field: &str, reason: String| {
            errs.push(FieldError {
                field: field.to_string(),
                reason,
            })
        };

        if !valid_job_name(&self.name) {
            err(
                "name",
                format!(
                    "must be 1–{MAX_NAME_LEN} characters of [a-z0-9._-] (got {:?})",
                    truncate(&self.name)
                ),
            );
        }
        if self.command.is_empty() && self.image.is_none() {
            err(
                "command",
                "must have at least one element (the program), or give an image".into(),
            );
        }
        if self.command.len() > MAX_ARGS {
            err(
                "command",
                format!("has {} elements; at most {MAX_ARGS}", self.command.len()),
            );
        }
        if let Some(first) = self.command.first() {
            if first.trim().is_empty() {
                err("command[0]", "the program must not be empty".into());
            }
        }
        for (i, a) in self.command.iter().enumerate() {
            if a.contains('\0') {
                err(&format!("command[{i}]"), "must not contain a NUL byte".into());
            }
            if a.len() > MAX_ARG_LEN {
                err(
                    &format!("command[{i}]"),
                    format!("is {} bytes; at most {MAX_ARG_LEN}", a.len()),
                );
            }
        }
        if let Some(image) = &self.image {
            if image.is_empty() || image.len() > 512 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
                err(
                    "image",
                    "must be a non-empty image reference without spaces (e.g. rocker/r-ver:4.4)".into(),
                );
            }
        }
        if self.env.len() > MAX_ENV {
            err("env", format!("has {} variables; at most {MAX_ENV}", self.env.len()));
        }
        for (k, v) in &self.env {
            if !valid_env_name(k) {
                err(
                    &format!("env.{k}"),
                    "variable name must match [A-Za-z_][A-Za-z0-9_]*".into(),
                );
            }
            if v.contains('\0') {
                err(&format!("env.{k}"), "value must not contain a NUL byte".into());
            }
            if v.len() > MAX_ARG_LEN {
                err(
                    &format!("env.{k}"),
                    format!("value is {} bytes; at most {MAX_ARG_LEN}", v.len()),
                );
            }
        }

        positive_opt(&mut err, "hints.vcpu", self.hints.vcpu, 4096.0);
        positive_opt(&mut err, "hints.memory_gib", self.hints.memory_gib, 65536.0);
        positive_opt(&mut err, "hints.gpu_memory_gib", self.hints.gpu_memory_gib, 4096.0);
        positive_opt(&mut err, "hints.duration_s", self.hints.duration_s, 31.0 * 86400.0);
        if let Some(b) = self.hints.input_bytes {
            if b == 0 || b > 1u64 << 60 {
                err("hints.input_bytes", format!("{b} is outside 1..=2^60 bytes"));
            }
        }
        if self.inputs.len() > MAX_INPUTS {
            err("inputs", format!("{} entries; at most {MAX_INPUTS}", self.inputs.len()));
        }
        for (i, u) in self.inputs.iter().enumerate() {
            let ok = u
                .strip_prefix("s3://")
                .and_then(|r| r.split_once('/'))
                .is_some_and(|(bucket, key)| {
                    (3..=63).contains(&bucket.len())
                        && bucket
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                        && !key.is_empty()
                        && key.len() <= 1024
                });
            if !ok {
                err(&format!("inputs[{i}]"), format!("{u:?} is not an s3://bucket/key URI"));
            }
        }

        let r = &self.resources;
        if r.min_vcpu == Some(0) {
            err("resources.min_vcpu", "must be >= 1".into());
        }
        if r.max_vcpu == Some(0) {
            err("resources.max_vcpu", "must be >= 1".into());
        }
        if let (Some(lo), Some(hi)) = (r.min_vcpu, r.max_vcpu) {
            if hi < lo {
                err(
                    "resources.max_vcpu",
                    format!("must be >= resources.min_vcpu ({hi} < {lo})"),
                );
            }
        }
        positive_opt(&mut err, "resources.min_memory_gib", r.min_memory_gib, 65536.0);
        positive_opt(&mut err, "resources.max_memory_gib", r.max_memory_gib, 65536.0);
        if let (Some(lo), Some(hi)) = (r.min_memory_gib, r.max_memory_gib) {
            if hi < lo {
                err(
                    "resources.max_memory_gib",
                    format!("must be >= resources.min_memory_gib ({hi} < {lo})"),
                );
            }
        }
        if let (Some(lo), Some(hi)) = (r.min_gpu, r.max_gpu) {
            if hi < lo {
                err(
                    "resources.max_gpu",
                    format!("must be >= resources.min_gpu ({hi} < {lo})"),
                );
            }
        }
        positive_opt(&mut err, "resources.min_gpu_memory_gib", r.min_gpu_memory_gib, 4096.0);
        positive_opt(&mut err, "resources.max_gpu_memory_gib", r.max_gpu_memory_gib, 4096.0);
        if let (Some(lo), Some(hi)) = (r.min_gpu_memory_gib, r.max_gpu_memory_gib) {
            if hi < lo {
                err(
                    "resources.max_gpu_memory_gib",
                    format!("must be >= resources.min_gpu_memory_gib ({hi} < {lo})"),
                );
            }
        }
        positive_opt(&mut err, "resources.max_price_per_hour", r.max_price_per_hour, 1000.0);
        if let (Some(hint), Some(max)) = (self.hints.vcpu, r.max_vcpu) {
            if hint > max as f64 {
                err("hints.vcpu", format!("must be <= resources.max_vcpu ({hint} > {max})"));
            }
        }
        if let (Some(hint), Some(max)) = (self.hints.memory_gib, r.max_memory_gib) {
            if hint > max {
                err(
                    "hints.memory_gib",
                    format!("must be <= resources.max_memory_gib ({hint} > {max})"),
                );
            }
        }
        if let Some(v) = self.max_slowdown {
            if !(v.is_finite() && (1.0..=100.0).contains(&v)) {
                err("max_slowdown", format!("must be a number between 1 and 100 (got {v})"));
            }
        }
        if let Some(t) = self.timeout_s {
            if t == 0 || t > 14 * 86400 {
                err(
                    "timeout_s",
                    format!("must be between 1 and {} seconds (14 days) (got {t})", 14 * 86400),
                );
            }
        }

        let p = &self.placement;
        for (i, region) in p.regions.iter().enumerate() {
            if !looks_like_region(region) {
                err(
                    &format!("placement.regions[{i}]"),
                    format!("{:?} is not an AWS region code (e.g. us-east-1)", truncate(region)),
                );
            }
        }
        for (i, az) in p.availability_zones.iter().enumerate() {
            if az.is_empty()
                || az.len() > 32
                || !az
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                err(
                    &format!("placement.availability_zones[{i}]"),
                    format!("{:?} is not an AZ id or name", truncate(az)),
                );
            }
        }
        for (i, f) in p.allowed_families.iter().enumerate() {
            if !valid_family(f) {
                err(
                    &format!("placement.allowed_families[{i}]"),
                    format!("{:?} is not an instance family (e.g. m7i)", truncate(f)),
                );
            }
        }
        for (i, f) in p.excluded_families.iter().enumerate() {
            if !valid_family(f) {
                err(
                    &format!("placement.excluded_families[{i}]"),
                    format!("{:?} is not an instance family", truncate(f)),
                );
            }
            if p.allowed_families.contains(f) {
                err(
                    &format!("placement.excluded_families[{i}]"),
                    format!("{f} is also in placement.allowed_families"),
                );
            }
        }

        if self.retry.max_attempts == 0 || self.retry.max_attempts > 10 {
            err(
                "retry.max_attempts",
                format!("must be between 1 and 10 (got {})", self.retry.max_attempts),
            );
        }
        if !(self.retry.oom_memory_factor.is_finite() && (1.0..=8.0).contains(&self.retry.oom_memory_factor)) {
            err(
                "retry.oom_memory_factor",
                format!("must be between 1.0 and 8.0 (got {})", self.retry.oom_memory_factor),
            );
        }

        if errs.is_empty() {
            Ok(())
        } else {
            Err(SpecError::Invalid(errs))
        }
    }
}

fn positive_opt(err: &mut impl FnMut(&str, String), field: &str, v: Option<f64>, max: f64) {
    if let Some(v) = v {
        if !v.is_finite() || v <= 0.0 {
            err(field, format!("must be a positive number (got {v})"));
        } else if v > max {
            err(field, format!("must be <= {max} (got {v})"));
        }
    }
}

fn looks_like_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Vec<String> {
        match JobSpec::from_json(json) {
            Ok(_) => vec![],
            Err(e) => e.errors().into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn minimal_spec_is_valid() {
        let s = JobSpec::from_json(r#"{"name":"etl.daily-1","command":["python3","-c","print(1)"]}"#).unwrap();
        assert_eq!(s.market, Market::Spot);
        assert_eq!(s.retry.max_attempts, 3);
    }

    #[test]
    fn each_kind_of_bad_spec_names_its_field() {
        // GIVEN one bad spec per rule, WHEN parsed, THEN the error names the field
        let cases: &[(&str, &str)] = &[
            (r#"{"name":"Bad Name","command":["x"]}"#, "name"),
            (r#"{"name":"","command":["x"]}"#, "name"),
            (r#"{"name":"j","command":[]}"#, "command"),
            (r#"{"name":"j","command":["x"],"colour":"red"}"#, "colour"),
            (r#"{"name":"j","command":"echo hi"}"#, "command"),
            (
                r#"{"name":"j","command":["x"],"resources":{"min_vcpu":4,"max_vcpu":2}}"#,
                "resources.max_vcpu",
            ),
            (
                r#"{"name":"j","command":["x"],"resources":{"min_memory_gib":8,"max_memory_gib":4}}"#,
                "resources.max_memory_gib",
            ),
            (
                r#"{"name":"j","command":["x"],"resources":{"max_price_per_hour":-1}}"#,
                "resources.max_price_per_hour",
            ),
            (
                r#"{"name":"j","command":["x"],"hints":{"memory_gib":0}}"#,
                "hints.memory_gib",
            ),
            (r#"{"name":"j","command":["x"],"market":"cheap"}"#, "market"),
            (
                r#"{"name":"j","command":["x"],"placement":{"regions":["mars"]}}"#,
                "placement.regions[0]",
            ),
            (
                r#"{"name":"j","command":["x"],"placement":{"architectures":["sparc"]}}"#,
                "placement.architectures[0]",
            ),
            (r#"{"name":"j","command":["x"],"env":{"1BAD":"v"}}"#, "env.1BAD"),
            (r#"{"name":"j","command":["x"],"timeout_s":0}"#, "timeout_s"),
            (
                r#"{"name":"j","command":["x"],"retry":{"max_attempts":0}}"#,
                "retry.max_attempts",
            ),
            (
                r#"{"name":"j","command":["x"],"resources":{"max_vcpu":"four"}}"#,
                "resources.max_vcpu",
            ),
            (
                r#"{"name":"j","command":["x"],"placement":{"allowed_families":["m7i"],"excluded_families":["m7i"]}}"#,
                "placement.excluded_families[0]",
            ),
            (r#"{"name":"j","command":["", "a"]}"#, "command[0]"),
            (
                r#"{"name":"j","command":["x"],"hints":{"input_bytes":0}}"#,
                "hints.input_bytes",
            ),
            (
                r#"{"name":"j","command":["x"],"hints":{"input_bytes":-5}}"#,
                "hints.input_bytes",
            ),
            (
                r#"{"name":"j","command":["x"],"inputs":["s3://ok-bucket/a.fq","/local/file"]}"#,
                "inputs[1]",
            ),
            (r#"{"name":"j","command":["x"],"inputs":["s3://B/x"]}"#, "inputs[0]"),
            (r#"[1,2]"#, "(spec)"),
        ];
        for (json, field) in cases {
            let got = fields(json);
            assert!(got.iter().any(|f| f == field), "{json}: wanted {field}, got {got:?}");
        }
    }

    #[test]
    fn input_size_hint_and_s3_inputs_are_accepted() {
        let s = JobSpec::from_json(
            r#"{"name":"j","command":["x"],"hints":{"input_bytes":1234},"inputs":["s3://my-bucket/runs/a.fastq.gz"]}"#,
        )
        .unwrap();
        assert_eq!(s.hints.input_bytes, Some(1234));
        assert_eq!(s.inputs.len(), 1);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let got = fields(r#"{"name":"UPPER","command":[],"resources":{"min_vcpu":4,"max_vcpu":2},"timeout_s":0}"#);
        assert_eq!(got, vec!["name", "command", "resources.max_vcpu", "timeout_s"]);
    }

    #[test]
    fn message_gives_the_reason_with_values() {
        let e =
            JobSpec::from_json(r#"{"name":"j","command":["x"],"resources":{"min_vcpu":4,"max_vcpu":2}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid job spec: resources.max_vcpu: must be >= resources.min_vcpu (2 < 4)"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_input(s in ".{0,200}") {
            let _ = JobSpec::from_json(&s);
        }
        #[test]
        fn never_panics_on_any_name(name in "\\PC{0,80}") {
            let spec = JobSpec::for_command(&name, vec!["x".into()]);
            let ok = spec.validate().is_ok();
            proptest::prop_assert_eq!(ok, valid_job_name(&name));
        }
    }

    #[test]
    fn max_slowdown_defaults_and_is_validated() {
        let s = JobSpec::from_json(r#"{"name":"j","command":["x"]}"#).unwrap();
        assert_eq!(s.max_slowdown(), DEFAULT_MAX_SLOWDOWN);
        let s = JobSpec::from_json(r#"{"name":"j","command":["x"],"max_slowdown":1.5}"#).unwrap();
        assert_eq!(s.max_slowdown(), 1.5);
        assert_eq!(
            fields(r#"{"name":"j","command":["x"],"max_slowdown":0.9}"#),
            ["max_slowdown"]
        );
    }
}
