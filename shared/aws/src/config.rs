//! Configuration of the Lambdas and the CLI's AWS side, from the environment. Every variable
//! name is a constant here; values are typed and checked once (at cold start), and an error
//! names the variable.

use std::collections::BTreeMap;
use std::time::Duration;

pub const BUCKET: &str = "SPOTFIT_BUCKET";
pub const PROFILES_TABLE: &str = "SPOTFIT_PROFILES_TABLE";
pub const RUNS_TABLE: &str = "SPOTFIT_RUNS_TABLE";
pub const CAPACITY_TABLE: &str = "SPOTFIT_CAPACITY_TABLE";
pub const LAUNCH_TEMPLATE_ID: &str = "SPOTFIT_LAUNCH_TEMPLATE_ID";
/// JSON object: AZ id → subnet id, e.g. `{"use1-az1":"subnet-0abc"}`.
pub const SUBNETS: &str = "SPOTFIT_SUBNETS";
pub const INSTANCE_PROFILE_ARN: &str = "SPOTFIT_INSTANCE_PROFILE_ARN";
/// Optional JSON object: job role name (a spec's `role`) → the ARN of its instance profile (the
/// stack's `spotfit:jobRoles`, each role holding the job's rights and the agent's).
pub const JOB_PROFILES: &str = "SPOTFIT_JOB_PROFILES";
/// S3 key of the `spotfit` agent binary in the bucket.
pub const AGENT_KEY: &str = "SPOTFIT_AGENT_KEY";
pub const REGION: &str = "SPOTFIT_REGION";
/// Optional: JSON list of security group ids; with it the launch sets the network interface
/// itself (and can then say whether it gets a public IP).
pub const SECURITY_GROUP_IDS: &str = "SPOTFIT_SECURITY_GROUP_IDS";
/// Optional `true`/`false` (default false): give instances a public IP.
pub const ASSOCIATE_PUBLIC_IP: &str = "SPOTFIT_ASSOCIATE_PUBLIC_IP";
/// Optional: seconds without a poll after which the reaper calls a running attempt abandoned.
pub const REAP_STALE_S: &str = "SPOTFIT_REAP_STALE_S";
/// Optional: seconds after launch before the reaper may call an instance without a run row unknown.
pub const REAP_GRACE_S: &str = "SPOTFIT_REAP_GRACE_S";
/// The waits table: one item per attempt an execution waits on (task token and state).
pub const WAITS_TABLE: &str = "SPOTFIT_WAITS_TABLE";
/// Optional: the Await task's heartbeat bound, seconds (three reaper periods; default 900).
pub const HEARTBEAT_S: &str = "SPOTFIT_HEARTBEAT_S";
/// Optional: seconds allowed for boot, agent download and the final upload on top of a job's
/// `timeout_s` before its deadline (default 600).
pub const BOOT_GRACE_S: &str = "SPOTFIT_BOOT_GRACE_S";
/// Optional: registry hosts (`host[:port]`, comma-separated) that take an ECR token like ECR's
/// own `<account>.dkr.ecr.<region>.amazonaws.com` hosts, which need no entry. Instances log in
/// to an image's host before the pull when it is one of these; the tests name the emulator's
/// loopback registry here.
pub const ECR_REGISTRIES: &str = "SPOTFIT_ECR_REGISTRIES";
/// Optional: seconds after which the spot price overlay is too old to rank on (default six
/// hours, `spotfit_core::prices::DEFAULT_MAX_AGE_MS`; between ten minutes and a week).
pub const PRICE_MAX_AGE_S: &str = "SPOTFIT_PRICE_MAX_AGE_S";
/// Optional: the state machine `spotfit submit` starts.
pub const STATE_MACHINE_ARN: &str = "SPOTFIT_STATE_MACHINE_ARN";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// Where the stores live (every Lambda needs some of these).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub bucket: String,
    pub profiles_table: String,
    pub runs_table: String,
    pub capacity_table: String,
    /// The deployment's region (`SPOTFIT_REGION`, else `AWS_REGION`), for run records.
    pub region: String,
}

/// What the EC2 launcher needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchConfig {
    pub launch_template_id: String,
    /// AZ id → subnet id.
    pub subnets: BTreeMap<String, String>,
    pub instance_profile_arn: Option<String>,
    pub bucket: String,
    pub agent_key: String,
    pub region: String,
    pub security_group_ids: Vec<String>,
    pub associate_public_ip: bool,
    /// Job role name → instance profile ARN: the allow-list a spec's `role` is looked up in.
    pub job_profiles: BTreeMap<String, String>,
    /// [`ECR_REGISTRIES`].
    pub registry_hosts: Vec<String>,
}

/// The reaper's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReapConfig {
    pub stale: Duration,
    pub grace: Duration,
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn required(env: Env<'_>, var: &'static str) -> Result<String, ConfigError> {
    match env(var) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(ConfigError::Missing(var)),
    }
}

fn optional(env: Env<'_>, var: &'static str) -> Option<String> {
    env(var).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn region(env: Env<'_>) -> Result<String, ConfigError> {
    optional(env, REGION)
        .or_else(|| optional(env, "AWS_REGION"))
        .ok_or(ConfigError::Missing(REGION))
}

fn seconds(env: Env<'_>, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
    match optional(env, var) {
        None => Ok(Duration::from_secs(default)),
        Some(v) => v
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| ConfigError::Invalid {
                var,
                reason: format!("{v:?} is not a number of seconds: {e}"),
            }),
    }
}

/// Values spliced into the user-data script must be plain tokens (they are single-quoted there,
/// but a quote or a control character in configuration is a mistake worth stopping at).
fn plain(var: &'static str, v: String) -> Result<String, ConfigError> {
    if v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=+@".contains(&b)) {
        Ok(v)
    } else {
        Err(ConfigError::Invalid {
            var,
            reason: "only letters, digits and -_./:=+@ are allowed".into(),
        })
    }
}

/// A required variable from the process environment (an error names it).
pub fn env_var(var: &'static str) -> Result<String, ConfigError> {
    required(&|k| std::env::var(k).ok(), var)
}

/// The deployment's region (`SPOTFIT_REGION`, else `AWS_REGION`).
pub fn env_region() -> Result<String, ConfigError> {
    region(&|k| std::env::var(k).ok())
}

impl StoreConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }
    pub fn from_lookup(env: Env<'_>) -> Result<Self, ConfigError> {
        Ok(StoreConfig {
            bucket: required(env, BUCKET)?,
            profiles_table: required(env, PROFILES_TABLE)?,
            runs_table: required(env, RUNS_TABLE)?,
            capacity_table: required(env, CAPACITY_TABLE)?,
            region: region(env)?,
        })
    }
}

impl LaunchConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }
    pub fn from_lookup(env: Env<'_>) -> Result<Self, ConfigError> {
        let subnets_json = required(env, SUBNETS)?;
        let subnets: BTreeMap<String, String> =
            serde_json::from_str(&subnets_json).map_err(|e| ConfigError::Invalid {
                var: SUBNETS,
                reason: format!("must be a JSON object of AZ id to subnet id ({e})"),
            })?;
        if subnets.is_empty() {
            return Err(ConfigError::Invalid {
                var: SUBNETS,
                reason: "names no subnet".into(),
            });
        }
        let security_group_ids = match optional(env, SECURITY_GROUP_IDS) {
            None => Vec::new(),
            Some(v) => serde_json::from_str(&v).map_err(|e| ConfigError::Invalid {
                var: SECURITY_GROUP_IDS,
                reason: format!("must be a JSON list of security group ids ({e})"),
            })?,
        };
        let job_profiles: BTreeMap<String, String> = match optional(env, JOB_PROFILES) {
            None => BTreeMap::new(),
            Some(v) => serde_json::from_str(&v).map_err(|e| ConfigError::Invalid {
                var: JOB_PROFILES,
                reason: format!("must be a JSON object of job role name to instance profile ARN ({e})"),
            })?,
        };
        if let Some((name, arn)) = job_profiles.iter().find(|(_, a)| !a.starts_with("arn:")) {
            return Err(ConfigError::Invalid {
                var: JOB_PROFILES,
                reason: format!("{name}: {arn:?} is not an instance profile ARN"),
            });
        }
        let associate_public_ip = match optional(env, ASSOCIATE_PUBLIC_IP).as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: ASSOCIATE_PUBLIC_IP,
                    reason: format!("{other:?} is not true or false"),
                })
            }
        };
        if associate_public_ip && security_group_ids.is_empty() {
            return Err(ConfigError::Invalid {
                var: ASSOCIATE_PUBLIC_IP,
                reason: format!("a public IP needs the network interface's groups in {SECURITY_GROUP_IDS}"),
            });
        }
        Ok(LaunchConfig {
            launch_template_id: required(env, LAUNCH_TEMPLATE_ID)?,
            subnets,
            instance_profile_arn: optional(env, INSTANCE_PROFILE_ARN),
            bucket: plain(BUCKET, required(env, BUCKET)?)?,
            agent_key: plain(AGENT_KEY, required(env, AGENT_KEY)?)?,
            region: plain(REGION, region(env)?)?,
            security_group_ids,
            associate_public_ip,
            job_profiles,
            registry_hosts: spotfit_core::image::parse_registry_hosts(
                &optional(env, ECR_REGISTRIES).unwrap_or_default(),
            )
            .map_err(|reason| ConfigError::Invalid {
                var: ECR_REGISTRIES,
                reason,
            })?,
        })
    }
    /// AZ ids with a subnet, in a stable order.
    pub fn zones(&self) -> Vec<String> {
        self.subnets.keys().cloned().collect()
    }
}

/// `SPOTFIT_PRICE_MAX_AGE_S` in ms (see [`PRICE_MAX_AGE_S`]).
pub fn price_max_age_ms(env: Env<'_>) -> Result<i64, ConfigError> {
    match optional(env, PRICE_MAX_AGE_S) {
        None => Ok(spotfit_core::prices::DEFAULT_MAX_AGE_MS),
        Some(v) => match v.parse::<i64>() {
            Ok(s) if (600..=7 * 86_400).contains(&s) => Ok(s * 1000),
            _ => Err(ConfigError::Invalid {
                var: PRICE_MAX_AGE_S,
                reason: format!("{v:?} is not a number of seconds between 600 and 604800"),
            }),
        },
    }
}

/// The AZ ids the deployment has subnets in (`SPOTFIT_SUBNETS`' keys); none when it is unset
/// (ranking then keeps every zone a price is quoted in).
pub fn subnet_zones(env: Env<'_>) -> Result<Vec<String>, ConfigError> {
    match optional(env, SUBNETS) {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_str::<BTreeMap<String, String>>(&v)
            .map(|m| m.into_keys().collect())
            .map_err(|e| ConfigError::Invalid {
                var: SUBNETS,
                reason: format!("must be a JSON object of AZ id to subnet id ({e})"),
            }),
    }
}

/// The Await task's heartbeat bound (`SPOTFIT_HEARTBEAT_S`): between one minute and three days
/// (the stack sets three reaper periods, and accepts a period of at most a day), so a
/// misconfigured sweep period cannot make every wait time out, or never.
pub fn heartbeat_s(env: Env<'_>) -> Result<u64, ConfigError> {
    let s = seconds(env, HEARTBEAT_S, 900)?.as_secs();
    if (60..=259_200).contains(&s) {
        Ok(s)
    } else {
        Err(ConfigError::Invalid {
            var: HEARTBEAT_S,
            reason: format!("{s} s is outside 60..=259200"),
        })
    }
}

/// The boot grace (`SPOTFIT_BOOT_GRACE_S`), milliseconds: at most an hour.
pub fn boot_grace_ms(env: Env<'_>) -> Result<i64, ConfigError> {
    let s = seconds(env, BOOT_GRACE_S, 600)?.as_secs();
    if s <= 3600 {
        Ok(s as i64 * 1000)
    } else {
        Err(ConfigError::Invalid {
            var: BOOT_GRACE_S,
            reason: format!("{s} s is over an hour"),
        })
    }
}

impl ReapConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }
    pub fn from_lookup(env: Env<'_>) -> Result<Self, ConfigError> {
        Ok(ReapConfig {
            stale: seconds(env, REAP_STALE_S, 15 * 60)?,
            grace: seconds(env, REAP_GRACE_S, 10 * 60)?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn heartbeat_and_boot_grace_are_bounded_and_name_their_variable() {
        let none = |_: &str| None;
        assert_eq!(heartbeat_s(&none).unwrap(), 900);
        assert_eq!(boot_grace_ms(&none).unwrap(), 600_000);
        let hb = |v: &'static str| move |k: &str| (k == HEARTBEAT_S).then(|| v.to_string());
        assert_eq!(heartbeat_s(&hb("60")).unwrap(), 60);
        assert_eq!(heartbeat_s(&hb("259200")).unwrap(), 259_200);
        for bad in ["59", "259201", "ten"] {
            let e = heartbeat_s(&hb(bad)).unwrap_err().to_string();
            assert!(e.contains(HEARTBEAT_S), "{bad}: {e}");
        }
        let g = |v: &'static str| move |k: &str| (k == BOOT_GRACE_S).then(|| v.to_string());
        assert_eq!(boot_grace_ms(&g("0")).unwrap(), 0);
        assert!(boot_grace_ms(&g("3601"))
            .unwrap_err()
            .to_string()
            .contains(BOOT_GRACE_S));
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn launch_config_is_typed_and_errors_name_the_variable() {
        let base = [
            (LAUNCH_TEMPLATE_ID, "lt-1"),
            (SUBNETS, r#"{"use1-az2":"subnet-2","use1-az1":"subnet-1"}"#),
            (BUCKET, "b"),
            (AGENT_KEY, "agent/x86_64/spotfit-agent"),
            (REGION, "us-east-1"),
        ];
        let c = LaunchConfig::from_lookup(&env(&base)).unwrap();
        assert_eq!(c.zones(), ["use1-az1", "use1-az2"]);
        assert!(!c.associate_public_ip);
        assert!(c.registry_hosts.is_empty());
        let mut with = base.to_vec();
        with.push((ECR_REGISTRIES, "127.0.0.1:5000,registry.internal"));
        let c = LaunchConfig::from_lookup(&env(&with)).unwrap();
        assert_eq!(c.registry_hosts, ["127.0.0.1:5000", "registry.internal"]);
        let mut bad = base.to_vec();
        bad.push((ECR_REGISTRIES, "ok.io,bad;host"));
        assert!(LaunchConfig::from_lookup(&env(&bad))
            .unwrap_err()
            .to_string()
            .contains(ECR_REGISTRIES));

        let mut bad = base.to_vec();
        bad[1] = (SUBNETS, "[1]");
        assert!(LaunchConfig::from_lookup(&env(&bad))
            .unwrap_err()
            .to_string()
            .contains(SUBNETS));
        let mut bad = base.to_vec();
        bad.push((ASSOCIATE_PUBLIC_IP, "true"));
        assert!(LaunchConfig::from_lookup(&env(&bad))
            .unwrap_err()
            .to_string()
            .contains(SECURITY_GROUP_IDS));
        let mut bad = base.to_vec();
        bad[3] = (AGENT_KEY, "x'; rm -rf /");
        assert!(LaunchConfig::from_lookup(&env(&bad))
            .unwrap_err()
            .to_string()
            .contains(AGENT_KEY));
        let err = StoreConfig::from_lookup(&env(&[])).unwrap_err();
        assert!(err.to_string().contains(BUCKET), "{err}");
        let r = ReapConfig::from_lookup(&env(&[(REAP_STALE_S, "5")])).unwrap();
        assert_eq!(r.stale, Duration::from_secs(5));
        assert!(ReapConfig::from_lookup(&env(&[(REAP_GRACE_S, "soon")])).is_err());
    }
}
