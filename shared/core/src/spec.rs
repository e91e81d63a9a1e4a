//! The job spec: what to run and within which bounds. It is the state machine's input and
//! `spotfit run JOB.json`'s input. Parsing rejects unknown fields; [`JobSpec::validate`]
//! reports every problem at once, each with its field path and the reason.

use crate::catalog::{Catalog, Offer};
use crate::ranking::{
    can_estimate, family_matches, launch_scope, looks_like_az_id, misfit, offered_prices, ranked_regions,
    reference_score, within_price_cap, Floors, Misfit, RankOptions, Zones, DEFAULT_REGION,
};
use crate::sizing::{instance_memory_bytes, vcpus_for, OS_RESERVE_BYTES};
use crate::units::{bytes_to_gib, gib_to_bytes};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
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
    /// Environment variables whose values are secrets, by reference: `ssm:NAME` (SSM Parameter
    /// Store, SecureStrings decrypted) or `secretsmanager:ID` ([`crate::secret_ref`]). Resolved
    /// on the instance at start with the job's role; only the reference travels through spotfit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_from: BTreeMap<String, String>,
    /// The IAM role the job runs with, by its name in the deployment's allow-list (the stack's
    /// `spotfit:jobRoles`): the instance gets that role's instance profile, whose role holds
    /// the job's rights and the agent's narrow ones. None: the agent's role alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
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
    /// Size of the instance's root (EBS gp3) volume, GiB: the job's disk. Default
    /// [`crate::machine_image::DEFAULT_ROOT_GIB`]; never under what the image boots from. Its
    /// cost is part of the run's estimate and cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<u32>,
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

/// One problem in a spec: the field path (`resources.max_vcpu`, `command[2]`) and why. Both
/// are escaped and bounded once, by [`FieldError::new`], the only way to build one (the fields
/// are private): what is read back or displayed is that text as it is, never escaped again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    field: String,
    reason: String,
}

impl FieldError {
    /// The field path, escaped and bounded.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why the field is refused, escaped and bounded.
    pub fn reason(&self) -> &str {
        &self.reason
    }
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
    #[error("invalid job spec: {}", list_errors(.0))]
    Invalid(Vec<FieldError>),
}

fn list_errors(errs: &[FieldError]) -> String {
    let mut s = errs
        .iter()
        .take(MAX_LISTED_ERRORS)
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    if errs.len() > MAX_LISTED_ERRORS {
        s.push_str(&format!("; and {} more", errs.len() - MAX_LISTED_ERRORS));
    }
    s
}

impl SpecError {
    pub fn errors(&self) -> Vec<FieldError> {
        match self {
            SpecError::Parse(e) => vec![e.clone()],
            SpecError::Invalid(v) => v.clone(),
        }
    }
}

/// True for a valid job name: 1–64 of `[a-z0-9._-]`, starting with a letter or digit (a
/// leading `-` would be read as an option by every command line the name reaches, a leading
/// `.` makes a hidden or relative path).
pub fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

/// True for an environment variable name the job may set: `[A-Za-z_][A-Za-z0-9_]*`, what a
/// POSIX shell and the container runtime's env file both take as a name. The one check of the
/// spec, the user-data renderer and the agent reading the job's env file.
pub fn valid_env_name(name: &str) -> bool {
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

/// Longest field path / reason text an error carries: a hostile key or value cannot flood a
/// terminal or a Step Functions `Cause` (32 KiB), whatever the spec holds.
pub const MAX_ERROR_TEXT: usize = 320;
/// Most problems listed in one [`SpecError::Invalid`] message (the rest are counted).
pub const MAX_LISTED_ERRORS: usize = 20;

/// Text safe to print: control characters (ANSI escapes, newlines, BiDi overrides) are shown
/// as `\u{..}` escapes and the result is at most `max` characters (an ellipsis marks a cut).
pub fn escape_bounded(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    for c in s.chars() {
        let piece = if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            c.escape_unicode().to_string()
        } else {
            c.to_string()
        };
        let len = piece.chars().count();
        if n + len > max {
            out.push('…');
            return out;
        }
        n += len;
        out.push_str(&piece);
    }
    out
}

impl FieldError {
    /// A field error whose path and reason are escaped and bounded ([`escape_bounded`]).
    pub fn new(field: impl AsRef<str>, reason: impl AsRef<str>) -> FieldError {
        FieldError {
            field: escape_bounded(field.as_ref(), MAX_ERROR_TEXT),
            reason: escape_bounded(reason.as_ref(), MAX_ERROR_TEXT),
        }
    }
}

/// The message of a duplicate-key error (serde_json adds where it is).
const DUPLICATE_KEY: &str = "duplicate key: a key may appear once in an object";

/// Reads a JSON value strictly: a key given twice in one object is an error (serde_json keeps
/// the last one silently). serde's error carries only a message, so the duplicated key comes
/// back through `duplicate`, for the field path to name it (the deserializer's path ends at
/// the object holding it).
#[derive(Clone, Copy)]
struct Strict<'a> {
    duplicate: &'a Cell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = serde_json::Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<serde_json::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = serde_json::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<serde_json::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<serde_json::Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<serde_json::Value, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = seq.next_element_seed(self)? {
            v.push(x);
        }
        Ok(serde_json::Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<serde_json::Value, A::Error> {
        let mut m = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                self.duplicate.set(Some(k));
                return Err(serde::de::Error::custom(DUPLICATE_KEY));
            }
            let v = map.next_value_seed(self)?;
            m.insert(k, v);
        }
        Ok(serde_json::Value::Object(m))
    }
}

fn parse_error(path: &str, reason: impl AsRef<str>) -> SpecError {
    let field = if path == "." || path.is_empty() { "(spec)" } else { path };
    SpecError::Parse(FieldError::new(field, reason))
}

/// The first place where `input` has an array and the parsed spec an object: serde reads a
/// struct from an array positionally (`"retry": [5, 2.0]`), which no spec author means.
fn array_for_object(input: &serde_json::Value, parsed: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value::{Array, Object};
    match (input, parsed) {
        (Array(_), Object(_)) => Some(path.to_string()),
        (Object(i), Object(p)) => i.iter().find_map(|(k, iv)| {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            p.get(k).and_then(|pv| array_for_object(iv, pv, &sub))
        }),
        (Array(i), Array(p)) => i
            .iter()
            .zip(p)
            .enumerate()
            .find_map(|(n, (iv, pv))| array_for_object(iv, pv, &format!("{path}[{n}]"))),
        _ => None,
    }
}

impl JobSpec {
    /// Parses and validates a spec from JSON: exactly one object (nothing after it), objects
    /// where the spec has objects, every key once, no unknown field; then [`JobSpec::validate`].
    pub fn from_json(json: &str) -> Result<JobSpec, SpecError> {
        let spec = JobSpec::parse_json(json)?;
        spec.validate()?;
        Ok(spec)
    }

    /// The parsing half of [`JobSpec::from_json`]: syntax and shape only, no rules.
    pub fn parse_json(json: &str) -> Result<JobSpec, SpecError> {
        if !json.trim_start().starts_with('{') {
            return Err(parse_error(
                "(spec)",
                "must be a JSON object ({\"name\": …, \"command\": [...]})",
            ));
        }
        let mut de = serde_json::Deserializer::from_str(json);
        let duplicate = Cell::new(None);
        let mut track = serde_path_to_error::Track::new();
        let value = Strict { duplicate: &duplicate }
            .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
            .map_err(|e| {
                let path = track.path().to_string();
                match duplicate.take() {
                    Some(key) if path == "." => parse_error(&key, e.to_string()),
                    Some(key) => parse_error(&format!("{path}.{key}"), e.to_string()),
                    None => parse_error(&path, e.to_string()),
                }
            })?;
        de.end().map_err(|e| {
            parse_error(
                "(spec)",
                format!("unexpected data after the spec object ({e}); give exactly one object"),
            )
        })?;
        let spec: JobSpec = serde_path_to_error::deserialize(&value)
            .map_err(|e| parse_error(&e.path().to_string(), e.into_inner().to_string()))?;
        let reparsed = serde_json::to_value(&spec).map_err(|e| parse_error("(spec)", e.to_string()))?;
        if let Some(path) = array_for_object(&value, &reparsed, "") {
            return Err(parse_error(&path, "must be an object ({…}), not an array"));
        }
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

    /// Every rule that needs no catalog: types, ranges, lengths, names.
    fn rule_errors(&self) -> Vec<FieldError> {
        let mut errs: Vec<FieldError> = Vec::new();
        let mut err = |field: &str, reason: String| errs.push(FieldError::new(field, reason));

        if !valid_job_name(&self.name) {
            err(
                "name",
                format!(
                    "must be 1–{MAX_NAME_LEN} characters of [a-z0-9._-] starting with a letter or digit (got {:?})",
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
            if let Err(why) = crate::image::parse_image_ref(image) {
                err(
                    "image",
                    format!(
                        "{:?} is not an image reference (e.g. rocker/r-ver:4.4): {why}",
                        truncate(image)
                    ),
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
            if self.image.is_some() && (v.contains('\n') || v.contains('\r')) {
                // The container gets its env from an env file (never the runtime's own env
                // or its command line), and that format is one NAME=VALUE per line.
                err(
                    &format!("env.{k}"),
                    "value must not contain a line break when the job runs in an image".into(),
                );
            }
        }
        if self.env_from.len() > crate::secret_ref::MAX_ENV_FROM {
            err(
                "env_from",
                format!(
                    "has {} variables; at most {}",
                    self.env_from.len(),
                    crate::secret_ref::MAX_ENV_FROM
                ),
            );
        }
        for (k, r) in &self.env_from {
            let field = format!("env_from.{k}");
            if !valid_env_name(k) {
                err(&field, "variable name must match [A-Za-z_][A-Za-z0-9_]*".into());
            }
            if self.env.contains_key(k) {
                err(&field, "is also in env: a variable has one source".into());
            }
            if let Err(why) = crate::secret_ref::SecretRef::parse(r) {
                err(&field, why);
            }
        }
        // Secrets are read on the instance with the instance profile's rights. The default
        // profile (the agent's) may read none, so a job naming secrets names the job role whose
        // allow-list grants them (the stack's `spotfit:jobRoles.<name>.secrets`).
        if !self.env_from.is_empty() && self.role.is_none() {
            err(
                "env_from",
                "needs a `role`: secrets are read on the instance with the job role's rights (the default role may read none)"
                    .into(),
            );
        }
        if let Some(role) = &self.role {
            let ok = (1..=64).contains(&role.len())
                && role
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
            if !ok {
                err(
                    "role",
                    "must be 1-64 of letters, digits and _+=,.@- (a name in the deployment's job roles)".into(),
                );
            }
        }
        let payload =
            crate::user_data::job_payload_len(&self.command, &self.env, &self.env_from, self.image.as_deref());
        let budget = crate::user_data::job_payload_budget();
        if payload > budget {
            let argv_len = crate::user_data::job_payload_len(&self.command, &BTreeMap::new(), &BTreeMap::new(), None);
            err(
                if argv_len * 2 >= payload { "command" } else { "env" },
                format!(
                    "the command, env and image take {payload} bytes of instance user data once encoded; \
                     at most {budget} fit in EC2's 16 KiB limit"
                ),
            );
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
        if let Some(d) = r.disk_gib {
            let max = crate::machine_image::MAX_ROOT_GIB;
            if d == 0 || d > max {
                err(
                    "resources.disk_gib",
                    format!("must be between 1 and {max} GiB (a gp3 volume) (got {d})"),
                );
            }
        }
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
        if let (Some(hint), Some(max)) = (self.hints.gpu, r.max_gpu) {
            if hint > max {
                err("hints.gpu", format!("must be <= resources.max_gpu ({hint} > {max})"));
            }
        }
        if let (Some(hint), Some(max)) = (self.hints.gpu_memory_gib, r.max_gpu_memory_gib) {
            if hint > max {
                err(
                    "hints.gpu_memory_gib",
                    format!("must be <= resources.max_gpu_memory_gib ({hint} > {max})"),
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

        errs
    }

    /// Checks every rule, then (when they hold) that ranking could place the spec on a type of
    /// the catalog compiled into the binary, in the regions ranked when the caller has no
    /// region of its own (`placement.regions`, else [`DEFAULT_REGION`]: the CLI and
    /// `spotfit run`); returns all violations at once. A deployment, which launches in its own
    /// region, checks with [`JobSpec::validate_with`].
    pub fn validate(&self) -> Result<(), SpecError> {
        let catalog =
            Catalog::embedded().map_err(|e| SpecError::Invalid(vec![FieldError::new("(catalog)", e.to_string())]))?;
        self.validate_with(catalog, &ranked_regions(&self.placement, DEFAULT_REGION))
    }

    /// The rules that hold wherever the job runs (names, command, limits, environment), without
    /// the placement checks that need a catalog and the deployment's regions: for a caller that
    /// only names the run (`start-scheduled`); the size step checks everything.
    pub fn validate_rules(&self) -> Result<(), SpecError> {
        let errs = self.rule_errors();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(SpecError::Invalid(errs))
        }
    }

    /// [`JobSpec::validate`] against `catalog` for a caller that ranks in `launch_regions`: a
    /// spec naming no region is checked in all of them, one naming regions in those of them it
    /// names, and it is refused when it names none of them ([`launch_scope`]).
    pub fn validate_with(&self, catalog: &Catalog, launch_regions: &[&str]) -> Result<(), SpecError> {
        let mut errs = self.rule_errors();
        if errs.is_empty() {
            errs = self.placement_errors(catalog, launch_regions);
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(SpecError::Invalid(errs))
        }
    }
}

/// How far an offer gets through ranking's filters, in the order
/// [`rank`](crate::ranking::rank) applies them; an offer past all of them would be ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// A rule of [`crate::ranking::fits`].
    Fit(Misfit),
    /// Not offered in the given AZ ids.
    Zone,
    /// No estimate of a run on it (no benchmark score).
    Unscored,
    /// Not sold in the spec's market.
    Market,
    /// Dearer than `resources.max_price_per_hour` in every market the spec allows.
    Price,
}

/// The floors the spec sets for its first run, and which field sets each: the larger of the
/// bound and the hint (sizing raises a hint to its bound).
struct SpecFloors {
    vcpu: (u32, &'static str),
    job_memory_gib: (f64, &'static str),
    gpu: (u32, &'static str),
    gpu_memory_gib: (f64, &'static str),
}

impl JobSpec {
    fn floors(&self) -> SpecFloors {
        let (r, h) = (&self.resources, &self.hints);
        // The hint's field is named only where it sets more than the bound.
        fn larger<T: PartialOrd + Default>(
            bound: (Option<T>, &'static str),
            hint: (Option<T>, &'static str),
        ) -> (T, &'static str) {
            match (bound.0, hint.0) {
                (b, Some(x)) if b.as_ref().is_none_or(|b| x > *b) => (x, hint.1),
                (b, _) => (b.unwrap_or_default(), bound.1),
            }
        }
        SpecFloors {
            vcpu: larger(
                (r.min_vcpu, "resources.min_vcpu"),
                (h.vcpu.map(|v| vcpus_for(v, 1.0)), "hints.vcpu"),
            ),
            job_memory_gib: larger(
                (r.min_memory_gib, "resources.min_memory_gib"),
                (h.memory_gib, "hints.memory_gib"),
            ),
            gpu: larger((r.min_gpu, "resources.min_gpu"), (h.gpu, "hints.gpu")),
            gpu_memory_gib: larger(
                (r.min_gpu_memory_gib, "resources.min_gpu_memory_gib"),
                (h.gpu_memory_gib, "hints.gpu_memory_gib"),
            ),
        }
    }

    /// Whether ranking could place this spec in the regions of `launch_regions` it may use:
    /// the regions, families and AZs it names exist there, and some offer passes the very
    /// filters [`rank`](crate::ranking::rank) applies (its fit rules for the spec's floors,
    /// the zones, an estimate, the market and the price cap). Otherwise the filter the last
    /// offers standing fail names the field. Stops at the first offer that would be ranked, so
    /// a spec that fits costs a few offers, not the catalog.
    fn placement_errors(&self, catalog: &Catalog, launch_regions: &[&str]) -> Vec<FieldError> {
        let p = &self.placement;
        let mut errs: Vec<FieldError> = p
            .regions
            .iter()
            .enumerate()
            .filter(|(_, r)| catalog.region(r).is_empty())
            .map(|(i, r)| {
                FieldError::new(
                    format!("placement.regions[{i}]"),
                    format!("{:?} is not a region of the instance catalog", truncate(r)),
                )
            })
            .collect();
        if !errs.is_empty() {
            return errs;
        }
        let regions = match launch_scope(p, launch_regions) {
            Ok(regions) => regions,
            Err(why) => return vec![FieldError::new("placement.regions", why)],
        };
        let scope = format!("in {}", truncate(&regions.join(", ")));
        let offers = || regions.iter().flat_map(|r| catalog.region(r));
        if offers().next().is_none() {
            return vec![FieldError::new(
                "placement.regions",
                format!("the instance catalog has no instance type {scope}, where the spec would be ranked"),
            )];
        }
        for (i, f) in p.allowed_families.iter().enumerate() {
            if !offers().any(|o| family_matches(f, &o.family)) {
                errs.push(FieldError::new(
                    format!("placement.allowed_families[{i}]"),
                    format!("{:?} is not an instance family {scope}", truncate(f)),
                ));
            }
        }
        for (i, az) in p.availability_zones.iter().enumerate() {
            let field = format!("placement.availability_zones[{i}]");
            if looks_like_az_id(az) {
                if !offers().any(|o| o.azs.contains(az)) {
                    errs.push(FieldError::new(
                        field,
                        format!("{:?} is not an AZ id {scope}", truncate(az)),
                    ));
                }
            } else {
                let region = az.trim_end_matches(|c: char| c.is_ascii_lowercase());
                if region == az || !regions.contains(&region) {
                    errs.push(FieldError::new(
                        field,
                        format!("{:?} is not an AZ name {scope} (e.g. us-east-1a)", truncate(az)),
                    ));
                }
            }
        }
        if !errs.is_empty() {
            return errs;
        }

        let want = self.floors();
        let floors = Floors {
            vcpu: want.vcpu.0,
            memory_bytes: instance_memory_bytes(gib_to_bytes(want.job_memory_gib.0)),
            gpu: want.gpu.0,
            gpu_memory_bytes: gib_to_bytes(want.gpu_memory_gib.0),
            architectures: &p.architectures,
        };
        // Every caller ranks with the default options (no burstable types, benchmark speeds).
        let opts = RankOptions::default();
        let zones = Zones::new(p);
        let cap = self.resources.max_price_per_hour;
        let mut furthest: Option<Stage> = None;
        let mut left: Vec<&Offer> = Vec::new();
        for region in &regions {
            let Some(names) = zones.names_in(region) else {
                continue;
            };
            let reference = reference_score(catalog, region, &opts);
            for o in catalog.region(region) {
                let stage = if let Some(m) = misfit(o, &floors, p, &opts) {
                    Stage::Fit(m)
                } else if !zones.offered(o, &names) {
                    Stage::Zone
                } else if !can_estimate(o, floors.gpu, reference, opts.speed) {
                    Stage::Unscored
                } else if offered_prices(o, self.market).next().is_none() {
                    Stage::Market
                } else if !offered_prices(o, self.market).any(|(_, x)| within_price_cap(x, cap)) {
                    Stage::Price
                } else {
                    return Vec::new(); // ranked
                };
                // The offers that got furthest are those left before the filter that failed.
                match furthest.cmp(&Some(stage)) {
                    std::cmp::Ordering::Less => {
                        furthest = Some(stage);
                        left = vec![o];
                    }
                    std::cmp::Ordering::Equal => left.push(o),
                    std::cmp::Ordering::Greater => {}
                }
            }
        }
        let most = |f: fn(&Offer) -> f64| left.iter().map(|o| f(o)).fold(0.0, f64::max);
        let market = self.market.as_str();
        let (field, why) = match furthest {
            // No region left once the AZ names pick theirs (the checks above rule it out).
            None => ("placement", format!("no instance type {scope} is left to rank")),
            Some(Stage::Fit(Misfit::FamilyNotAllowed)) => (
                "placement.allowed_families",
                format!("no instance type {scope} is of these families"),
            ),
            Some(Stage::Fit(Misfit::FamilyExcluded)) => (
                "placement.excluded_families",
                format!("excludes every instance family {scope} that is left"),
            ),
            Some(Stage::Fit(Misfit::Burstable)) => (
                "placement.allowed_families",
                format!(
                    "the types that fit {scope} are all burstable (t*), which are never ranked: a busy job \
                     is throttled to their baseline once their credits run out (allow other families)"
                ),
            ),
            Some(Stage::Fit(Misfit::PreviousGeneration)) => (
                "placement.allowed_families",
                format!(
                    "the types that fit {scope} are all of a previous generation (dearer per unit of work, \
                     being retired), ranked only when placement.allowed_families names their family"
                ),
            ),
            Some(Stage::Fit(Misfit::Architecture)) => (
                "placement.architectures",
                format!("no instance type {scope} of the allowed families has these architectures"),
            ),
            Some(Stage::Fit(Misfit::NoMachineImage)) => (
                "placement.architectures",
                format!(
                    "the GPU types that fit {scope} are all arm64, for which AWS publishes no GPU-optimized \
                     Amazon Linux 2023 image (allow x86_64)"
                ),
            ),
            Some(Stage::Fit(Misfit::GpuHost)) => (
                "resources.min_gpu",
                "the allowed types all carry GPUs or accelerators, which a job asking for no GPU is never \
                 placed on (set resources.min_gpu or hints.gpu, or allow other families)"
                    .to_string(),
            ),
            Some(Stage::Fit(Misfit::Vcpu)) => (
                want.vcpu.1,
                format!(
                    "no instance type {scope} that the spec allows has {} vCPUs (most: {})",
                    want.vcpu.0,
                    most(|o| o.vcpu as f64)
                ),
            ),
            Some(Stage::Fit(Misfit::Memory)) => (
                want.job_memory_gib.1,
                format!(
                    "no instance type {scope} that the spec allows has {} GiB of memory and the {} GiB \
                     the OS keeps (most: {} GiB)",
                    want.job_memory_gib.0,
                    bytes_to_gib(OS_RESERVE_BYTES),
                    most(|o| bytes_to_gib(o.memory_bytes))
                ),
            ),
            Some(Stage::Fit(Misfit::Gpu)) => (
                want.gpu.1,
                format!(
                    "no instance type {scope} that the spec allows has {} GPUs (most: {})",
                    want.gpu.0,
                    most(|o| o.gpu as f64)
                ),
            ),
            Some(Stage::Fit(Misfit::GpuMemory)) => (
                want.gpu_memory_gib.1,
                format!(
                    "no instance type {scope} that the spec allows has {} GiB per GPU (most: {})",
                    want.gpu_memory_gib.0,
                    most(|o| bytes_to_gib(o.gpu_memory_bytes))
                ),
            ),
            Some(Stage::Zone) => (
                "placement.availability_zones",
                format!("none of the types that fit {scope} is offered in these availability zones"),
            ),
            Some(Stage::Unscored) => (
                "placement.allowed_families",
                format!(
                    "the types that fit {scope} have no benchmark score, so the time and cost of a run on them \
                     cannot be estimated and they are never ranked (allow other families)"
                ),
            ),
            Some(Stage::Market) => (
                "market",
                format!("none of the types that fit is sold {scope} as {market}"),
            ),
            Some(Stage::Price) => {
                let cheapest = left
                    .iter()
                    .flat_map(|o| offered_prices(o, self.market).map(|(_, x)| x))
                    .fold(f64::INFINITY, f64::min);
                (
                    "resources.max_price_per_hour",
                    format!(
                        "{} USD/h is below every {market} offer that fits (cheapest: {cheapest:.4} USD/h)",
                        cap.unwrap_or_default()
                    ),
                )
            }
        };
        vec![FieldError::new(field, why)]
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
            Err(e) => e.errors().into_iter().map(|e| e.field().to_string()).collect(),
        }
    }

    #[test]
    fn minimal_spec_is_valid() {
        let s = JobSpec::from_json(r#"{"name":"etl.daily-1","command":["python3","-c","print(1)"]}"#).unwrap();
        assert_eq!(s.market, Market::Spot);
        assert_eq!(s.retry.max_attempts, 3);
    }

    #[test]
    fn secrets_by_reference_with_a_role_are_valid() {
        // GIVEN env_from references and the job role that may read them, THEN the spec is valid
        // and carries the references only
        let s = JobSpec::from_json(
            r#"{"name":"j","command":["x"],"role":"etl","env_from":{"DB":"ssm:/team/db","API":"secretsmanager:team/api"}}"#,
        )
        .unwrap();
        assert_eq!(s.env_from["DB"], "ssm:/team/db");
        assert_eq!(s.role.as_deref(), Some("etl"));
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
                r#"{"name":"j","command":["x"],"resources":{"disk_gib":0}}"#,
                "resources.disk_gib",
            ),
            (
                r#"{"name":"j","command":["x"],"resources":{"disk_gib":20000}}"#,
                "resources.disk_gib",
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
            (
                r#"{"name":"j","command":["x"],"env_from":{"1BAD":"ssm:/a"}}"#,
                "env_from.1BAD",
            ),
            (
                r#"{"name":"j","command":["x"],"env_from":{"DB":"vault:/a"}}"#,
                "env_from.DB",
            ),
            (
                r#"{"name":"j","command":["x"],"env":{"DB":"x"},"env_from":{"DB":"ssm:/a"}}"#,
                "env_from.DB",
            ),
            (r#"{"name":"j","command":["x"],"env_from":{"DB":"ssm:/a"}}"#, "env_from"),
            (r#"{"name":"j","command":["x"],"role":"has space"}"#, "role"),
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

    #[test]
    fn hostile_json_shapes_are_refused_naming_the_field() {
        // GIVEN JSON that serde_json alone would read (silently ignoring or reinterpreting parts)
        let cases: &[(&str, &str, &str)] = &[
            // trailing data: a second object after the spec
            (
                r#"{"name":"j","command":["x"]} {"name":"k","command":["rm"]}"#,
                "(spec)",
                "after the spec",
            ),
            (r#"{"name":"j","command":["x"]}]"#, "(spec)", "after the spec"),
            // arrays where objects are expected (serde reads structs positionally)
            (
                r#"{"name":"j","command":["x"],"retry":[5,2.0]}"#,
                "retry",
                "not an array",
            ),
            (r#"{"name":"j","command":["x"],"hints":[]}"#, "hints", "not an array"),
            (
                r#"{"name":"j","command":["x"],"resources":[1,2]}"#,
                "resources",
                "not an array",
            ),
            // duplicate keys (the last would win)
            (r#"{"name":"j","name":"k","command":["x"]}"#, "name", "duplicate key"),
            (
                r#"{"name":"j","command":["x"],"hints":{"vcpu":1,"vcpu":64}}"#,
                "hints.vcpu",
                "duplicate key",
            ),
            (
                r#"{"name":"j","command":["x"],"env":{"A":"1","B":"2","A":"3"}}"#,
                "env.A",
                "duplicate key",
            ),
            // inside an array, where the spec has no object at all
            (
                r#"{"name":"j","command":[{"a":1,"a":2}]}"#,
                "command[0].a",
                "duplicate key",
            ),
            // a key holding NUL, ':' and '.' is named whole (NUL escaped), not split at them
            (
                r#"{"name":"j","command":["x"],"hints":{"a\u0000b:c.d":1,"a\u0000b:c.d":2}}"#,
                "hints.a\\u{0}b:c.d",
                "duplicate key: a key may appear once in an object at line 1 column",
            ),
        ];
        for (json, field, why) in cases {
            // WHEN parsed THEN refused, naming the field and the reason
            let e = JobSpec::from_json(json).expect_err(json);
            let errs = e.errors();
            assert!(
                errs.iter().any(|f| f.field() == *field && f.reason().contains(why)),
                "{json}: wanted {field} / {why}, got {errs:?}"
            );
        }
    }

    #[test]
    fn job_names_that_a_command_line_would_read_as_options_are_refused() {
        for name in ["-rf", "--help", "-", ".hidden", "_x"] {
            let spec = JobSpec::for_command(name, vec!["x".into()]);
            let errs = spec.validate().expect_err(name).errors();
            assert_eq!(errs[0].field(), "name", "{name}");
        }
        assert!(JobSpec::for_command("etl-1.daily_x", vec!["x".into()])
            .validate()
            .is_ok());
    }

    #[test]
    fn image_must_be_an_image_reference_not_an_option() {
        for image in ["--volume=/:/host", "-v", "ubuntu --privileged", "Ubuntu:latest"] {
            let spec = JobSpec {
                image: Some(image.into()),
                ..JobSpec::for_command("j", vec!["x".into()])
            };
            let errs = spec.validate().expect_err(image).errors();
            assert!(errs.iter().any(|e| e.field() == "image"), "{image}: {errs:?}");
        }
        let mut ok = JobSpec::for_command("j", vec!["x".into()]);
        ok.image = Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/etl:v1".into());
        ok.validate().unwrap();
        // a line break cannot travel in the container's env file
        ok.env.insert("A".into(), "x\ny".into());
        assert_eq!(ok.validate().unwrap_err().errors()[0].field(), "env.A");
    }

    #[test]
    fn specs_no_catalog_entry_can_satisfy_are_refused_before_anything_starts() {
        // GIVEN specs that parse and keep every rule, but that no instance type could take
        let base = r#""name":"j","command":["x"]"#;
        let cases: &[(String, &str, &str)] = &[
            (
                format!(r#"{{{base},"placement":{{"allowed_families":["zz99"]}}}}"#),
                "placement.allowed_families[0]",
                "\"zz99\" is not an instance family in us-east-1",
            ),
            (
                format!(r#"{{{base},"placement":{{"regions":["us-east-1"],"allowed_families":["m7i","zz99"]}}}}"#),
                "placement.allowed_families[1]",
                "\"zz99\" is not an instance family in us-east-1",
            ),
            (
                format!(r#"{{{base},"placement":{{"regions":["xx-east-9"]}}}}"#),
                "placement.regions[0]",
                "not a region",
            ),
            (
                format!(r#"{{{base},"placement":{{"regions":["us-east-1"],"availability_zones":["eu-west-1a"]}}}}"#),
                "placement.availability_zones[0]",
                "not an AZ name in us-east-1",
            ),
            (
                format!(r#"{{{base},"placement":{{"regions":["us-east-1"],"availability_zones":["euw1-az9"]}}}}"#),
                "placement.availability_zones[0]",
                "not an AZ id",
            ),
            (
                format!(r#"{{{base},"resources":{{"min_gpu":64}}}}"#),
                "resources.min_gpu",
                "64 GPUs",
            ),
            (
                format!(r#"{{{base},"hints":{{"gpu":3}},"resources":{{"max_gpu":2}}}}"#),
                "hints.gpu",
                "max_gpu",
            ),
            (
                format!(r#"{{{base},"resources":{{"min_vcpu":100000}}}}"#),
                "resources.min_vcpu",
                "100000 vCPUs",
            ),
            (
                format!(r#"{{{base},"resources":{{"max_price_per_hour":0.0000001}}}}"#),
                "resources.max_price_per_hour",
                "below every spot offer",
            ),
            (
                format!(r#"{{{base},"placement":{{"allowed_families":["p4d"]}}}}"#),
                "resources.min_gpu",
                "GPUs or accelerators",
            ),
            (
                format!(r#"{{{base},"placement":{{"allowed_families":["m7g"],"architectures":["x86_64"]}}}}"#),
                "placement.architectures",
                "architectures",
            ),
        ];
        for (json, field, why) in cases {
            // WHEN validated THEN refused, naming the field and why
            let errs = JobSpec::from_json(json).expect_err(json).errors();
            assert!(
                errs.iter().any(|e| e.field() == *field && e.reason().contains(why)),
                "{json}: wanted {field} / {why}, got {errs:?}"
            );
        }
        // AND a spec that fits still passes
        JobSpec::from_json(&format!(
            r#"{{{base},"placement":{{"regions":["us-east-1"],"allowed_families":["m7i"],"availability_zones":["us-east-1a"]}},"resources":{{"min_gpu":0,"max_price_per_hour":5}}}}"#
        ))
        .unwrap();
    }

    /// Candidates ranking gives the spec's first run (no history), with the options every
    /// caller uses, in the regions `validate` checks.
    fn ranked_at_first_run(spec: &JobSpec) -> usize {
        let req = crate::sizing::size(spec, None, 0);
        crate::ranking::rank(
            Catalog::embedded().unwrap(),
            &req,
            &spec.placement,
            spec.market,
            &RankOptions::default(),
        )
        .len()
    }

    #[test]
    fn specs_ranking_could_never_place_are_refused_and_placeable_ones_kept() {
        // GIVEN specs that keep every rule, each fitting only types ranking never offers, or
        // only in a region it does not search (validation used to accept each of them)
        let base = r#""name":"j","command":["x"],"hints":{"vcpu":1,"memory_gib":1}"#;
        let refused: &[(String, &str, &str)] = &[
            // burstable types only
            (
                format!(r#"{{{base},"placement":{{"allowed_families":["t3"]}}}}"#),
                "placement.allowed_families",
                "burstable",
            ),
            // 16 GPUs: only p2.16xlarge, a previous generation the spec does not name
            (
                format!(r#"{{{base},"resources":{{"min_gpu":16}}}}"#),
                "placement.allowed_families",
                "previous generation",
            ),
            // hpc7a exists, but not in us-east-1, the region ranked when none is named
            (
                format!(r#"{{{base},"market":"on-demand","placement":{{"allowed_families":["hpc7a"]}}}}"#),
                "placement.allowed_families[0]",
                "\"hpc7a\" is not an instance family in us-east-1",
            ),
            // types without a benchmark score have no estimate to rank them by
            (
                format!(r#"{{{base},"market":"on-demand","placement":{{"allowed_families":["c8in"]}}}}"#),
                "placement.allowed_families",
                "no benchmark score",
            ),
            // m7i's largest type has 768 GiB, none of it left for the OS
            (
                format!(
                    r#"{{{base},"resources":{{"min_memory_gib":768}},"placement":{{"allowed_families":["m7i"]}}}}"#
                ),
                "resources.min_memory_gib",
                "768 GiB of memory and the 0.25 GiB the OS keeps (most: 768 GiB)",
            ),
        ];
        for (json, field, why) in refused {
            let spec = JobSpec::parse_json(json).unwrap();
            assert_eq!(ranked_at_first_run(&spec), 0, "{json}: ranking places it");
            // WHEN validated THEN refused, naming the field and why
            let errs = spec.validate().expect_err(json).errors();
            assert!(
                errs.iter().any(|e| e.field() == *field && e.reason().contains(why)),
                "{json}: wanted {field} / {why}, got {errs:?}"
            );
        }
        // AND the same families where ranking does place them are accepted
        let accepted = [
            format!(r#"{{{base},"placement":{{"allowed_families":["t3","m7i"]}}}}"#),
            format!(r#"{{{base},"resources":{{"min_gpu":16}},"placement":{{"allowed_families":["p2"]}}}}"#),
            format!(
                r#"{{{base},"market":"on-demand","placement":{{"regions":["eu-west-1"],"allowed_families":["hpc7a"]}}}}"#
            ),
            format!(r#"{{{base},"resources":{{"min_memory_gib":767}},"placement":{{"allowed_families":["m7i"]}}}}"#),
        ];
        for json in &accepted {
            let spec = JobSpec::from_json(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert!(ranked_at_first_run(&spec) > 0, "{json}: accepted but never ranked");
        }
    }

    #[test]
    fn a_deployment_checks_the_spec_in_its_own_region() {
        let catalog = Catalog::embedded().unwrap();
        let spec = |json: &str| JobSpec::parse_json(json).unwrap();
        // GIVEN a deployment in us-east-1 and a spec that names only eu-west-1
        let elsewhere = spec(r#"{"name":"j","command":["x"],"placement":{"regions":["eu-west-1"]}}"#);
        // WHEN validated for that deployment THEN refused on placement.regions, naming both
        let errs = elsewhere.validate_with(catalog, &["us-east-1"]).unwrap_err().errors();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field(), "placement.regions");
        assert!(
            errs[0].reason().contains("eu-west-1") && errs[0].reason().contains("launches in us-east-1"),
            "{errs:?}"
        );
        // AND accepted where the deployment is among its regions, or where nothing is named
        // (`validate` ranks the named regions themselves)
        elsewhere.validate().unwrap();
        spec(r#"{"name":"j","command":["x"],"placement":{"regions":["eu-west-1","us-east-1"]}}"#)
            .validate_with(catalog, &["us-east-1"])
            .unwrap();
        // AND a family is looked for in the deployment's region only
        let hpc =
            spec(r#"{"name":"j","command":["x"],"market":"on-demand","placement":{"allowed_families":["hpc7a"]}}"#);
        hpc.validate_with(catalog, &["eu-west-1"]).unwrap();
        let errs = hpc.validate_with(catalog, &["us-east-1"]).unwrap_err().errors();
        assert_eq!(errs[0].field(), "placement.allowed_families[0]", "{errs:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Validation and ranking agree: an accepted spec's first run gets candidates, and a
        /// spec ranking can place is refused only for naming a family or an AZ that does not
        /// exist where it is ranked.
        #[test]
        fn validation_accepts_exactly_what_ranking_can_place(
            allowed in proptest::sample::subsequence(vec!["m7i", "c7g", "t3", "p2", "c8in", "hpc7a", "p4d", "zz99"], 0..3),
            excluded in proptest::sample::subsequence(vec!["m7i", "c7g", "r7g", "c7i"], 0..2),
            regions in proptest::sample::select(vec![vec![], vec!["us-east-1"], vec!["eu-west-1"], vec!["eu-west-1", "us-east-1"]]),
            archs in proptest::sample::select(vec![vec![], vec![Arch::X86_64], vec![Arch::Arm64]]),
            azs in proptest::sample::select(vec![vec![], vec!["use1-az1"], vec!["us-east-1a"], vec!["euw1-az1", "eu-west-1b"]]),
            market in proptest::sample::select(vec![Market::Spot, Market::OnDemand, Market::SpotThenOnDemand]),
            min_vcpu in proptest::sample::select(vec![None, Some(4), Some(96), Some(100_000)]),
            min_memory_gib in proptest::sample::select(vec![None, Some(16.0), Some(768.0), Some(30_000.0)]),
            min_gpu in proptest::sample::select(vec![None, Some(1), Some(8), Some(16)]),
            cap in proptest::sample::select(vec![None, Some(0.0001), Some(0.05), Some(5.0)]),
        ) {
            proptest::prop_assume!(!excluded.iter().any(|f| allowed.contains(f)));
            let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let mut spec = JobSpec::for_command("j", vec!["x".into()]);
            spec.hints = Hints { vcpu: Some(1.0), memory_gib: Some(1.0), ..Hints::default() };
            spec.resources = Bounds { min_vcpu, min_memory_gib, min_gpu, max_price_per_hour: cap, ..Bounds::default() };
            spec.placement = Placement {
                regions: strings(&regions),
                availability_zones: strings(&azs),
                architectures: archs,
                allowed_families: strings(&allowed),
                excluded_families: strings(&excluded),
            };
            spec.market = market;
            let ranked = ranked_at_first_run(&spec) > 0;
            match spec.validate() {
                Ok(()) => proptest::prop_assert!(ranked, "accepted, but ranking places nothing: {:?}", spec.placement),
                Err(e) => {
                    let errs = e.errors();
                    let names_what_is_not_there = errs.iter().all(|f| {
                        f.field().starts_with("placement.allowed_families[") || f.field().starts_with("placement.availability_zones[")
                    });
                    proptest::prop_assert!(!ranked || names_what_is_not_there, "refused, but ranking places it: {errs:?}");
                }
            }
        }
    }

    #[test]
    fn error_text_is_escaped_and_bounded() {
        // GIVEN an unknown key with terminal escapes and one 100 kB long
        let evil = "\u{1b}]0;owned\u{7}\u{1b}[2J\r\n\u{202e}";
        let long = "k".repeat(100_000);
        for key in [evil.to_string(), long] {
            let json = format!(
                r#"{{"name":"j","command":["x"],{}:1}}"#,
                serde_json::to_string(&key).unwrap()
            );
            // WHEN refused
            let msg = JobSpec::from_json(&json).unwrap_err().to_string();
            // THEN the message has no control or BiDi characters and stays short
            assert!(!msg.chars().any(|c| c.is_control() || c == '\u{202e}'), "{msg:?}");
            assert!(
                msg.chars().count() < 2 * MAX_ERROR_TEXT + 40,
                "{} chars",
                msg.chars().count()
            );
        }
        // AND a spec with thousands of problems lists a bounded number of them
        let env: BTreeMap<String, String> = (0..500).map(|i| (format!("{i}bad"), "v".into())).collect();
        let spec = JobSpec {
            env,
            ..JobSpec::for_command("j", vec!["x".into()])
        };
        let msg = spec.validate().unwrap_err().to_string();
        assert!(msg.contains("more"), "{msg}");
        assert!(msg.len() < 20 * 2 * MAX_ERROR_TEXT, "{}", msg.len());
    }

    #[test]
    fn quotes_and_control_characters_are_escaped_exactly_once() {
        // GIVEN a region value and an unknown key, each with a quote, a backslash and an ESC
        let value = "a\"b\\c\u{1b}d";
        let region = format!(
            r#"{{"name":"j","command":["x"],"placement":{{"regions":[{}]}}}}"#,
            serde_json::to_string(value).unwrap()
        );
        let key = format!(
            r#"{{"name":"j","command":["x"],{}:1}}"#,
            serde_json::to_string(value).unwrap()
        );
        // WHEN refused THEN the value is quoted and escaped once (`{:?}`), and the key in the
        // field path has its control character escaped once, its quote and backslash as given
        assert_eq!(
            JobSpec::from_json(&region).unwrap_err().to_string(),
            r#"invalid job spec: placement.regions[0]: "a\"b\\c\u{1b}d" is not an AWS region code (e.g. us-east-1)"#
        );
        let e = JobSpec::from_json(&key).unwrap_err();
        assert_eq!(e.errors()[0].field(), r#"a"b\c\u{1b}d"#);
        assert!(
            e.to_string()
                .starts_with(r#"invalid job spec: a"b\c\u{1b}d: unknown field `a"b\c\u{1b}d`"#),
            "{e}"
        );
        // AND an error displays exactly the text it holds, bounded once
        let long = FieldError::new(format!("env.{}", "\u{7}".repeat(400)), "x");
        assert_eq!(long.to_string(), format!("{}: x", long.field()));
        assert!(long.field().ends_with('…') && long.field().chars().count() <= MAX_ERROR_TEXT + 1);
        let list = SpecError::Invalid(vec![long.clone(), FieldError::new("a\u{1b}", "b\"c")]).to_string();
        assert_eq!(list, format!("invalid job spec: {long}; a\\u{{1b}}: b\"c"));
    }

    #[test]
    fn a_validated_spec_always_fits_the_user_data_limit() {
        // GIVEN the largest argv the per-element rules allow (4 × 4 KiB were 19.8 KB rendered)
        let argv: Vec<String> = (0..4).map(|_| "a".repeat(MAX_ARG_LEN)).collect();
        let spec = JobSpec::for_command("j", argv);
        // THEN validation refuses it, naming the command
        let errs = spec.validate().unwrap_err().errors();
        assert_eq!(errs[0].field(), "command", "{errs:?}");
        assert!(errs[0].reason().contains("16 KiB"), "{errs:?}");
        // AND the largest spec it accepts renders within 16 KiB with the longest plain tokens
        let budget = crate::user_data::job_payload_budget();
        let n = budget / 4 * 3 - 1;
        let spec = JobSpec::for_command(
            "j",
            vec![
                "b".repeat(n.min(MAX_ARG_LEN)),
                "c".repeat(n.saturating_sub(MAX_ARG_LEN + 1).min(MAX_ARG_LEN)),
            ],
        );
        spec.validate().unwrap();
        let long = "x".repeat(crate::user_data::MAX_PLAIN_LEN);
        let script = crate::user_data::render(&crate::user_data::UserDataInput {
            bucket: &long,
            agent_key: &long,
            region: &long,
            job: &long,
            run_id: &long,
            deadline_epoch_s: i64::MIN,
            argv: &spec.command,
            env: &spec.env,
            env_from: &spec.env_from,
            job_role: true,
            image: None,
            // The longest values the new fields can take, for the size bound.
            memory_limit_bytes: Some(u64::MAX),
            gpus: true,
            registry_hosts: &[],
        })
        .unwrap();
        assert!(script.len() <= crate::user_data::MAX_USER_DATA, "{}", script.len());
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
