//! References to secrets a job's environment is given on the instance (`env_from`): only the
//! reference travels through spotfit (the execution input and history, the user data, the run
//! record); the value is read on the instance at start, with the job's role, and handed to the
//! job's environment alone.
//!
//! `ssm:NAME` is an SSM Parameter Store parameter (a SecureString is decrypted), NAME a path
//! (`/team/db/password`) or a bare name; `secretsmanager:ID` is a Secrets Manager secret, ID its
//! name or ARN. The syntax is checked here so a bad reference is a spec error naming the field,
//! not a failure on an instance someone is paying for.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest reference accepted (SSM names are at most 2,048 characters; Secrets Manager ARNs far
/// less).
pub const MAX_SECRET_REF_LEN: usize = 2048;

/// Most `env_from` entries a spec may name.
pub const MAX_ENV_FROM: usize = 32;

/// Where a secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "store", content = "id", rename_all = "snake_case")]
pub enum SecretRef {
    /// An SSM Parameter Store parameter, by name.
    Ssm(String),
    /// A Secrets Manager secret, by name or ARN.
    SecretsManager(String),
}

impl SecretRef {
    /// Parses `ssm:NAME` or `secretsmanager:ID`; the error says why.
    pub fn parse(s: &str) -> Result<SecretRef, String> {
        if s.len() > MAX_SECRET_REF_LEN {
            return Err(format!("is {} characters; at most {MAX_SECRET_REF_LEN}", s.len()));
        }
        if let Some(name) = s.strip_prefix("ssm:") {
            // SSM: letters, digits, `.-_/`; a path starts with `/`; no `aws`/`ssm` prefix.
            let ok = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
                && !name.ends_with('/')
                && !name.contains("//");
            let bare = name.trim_start_matches('/').to_ascii_lowercase();
            if !ok {
                return Err(format!(
                    "{:?} is not an SSM parameter name (letters, digits, . _ - and / only)",
                    name
                ));
            }
            if bare.starts_with("aws") || bare.starts_with("ssm") {
                return Err("SSM parameter names may not begin with aws or ssm".into());
            }
            return Ok(SecretRef::Ssm(name.to_string()));
        }
        if let Some(id) = s.strip_prefix("secretsmanager:") {
            let ok = !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-:".contains(&b));
            if !ok {
                return Err(format!(
                    "{:?} is not a Secrets Manager secret name or ARN (letters, digits, / _ + = . @ - :)",
                    id
                ));
            }
            if id.contains(':') && !id.starts_with("arn:") {
                return Err("a secret id with ':' must be an ARN (arn:aws:secretsmanager:…)".into());
            }
            return Ok(SecretRef::SecretsManager(id.to_string()));
        }
        Err("must be ssm:NAME or secretsmanager:ID".into())
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Ssm(n) => write!(f, "ssm:{n}"),
            SecretRef::SecretsManager(n) => write!(f, "secretsmanager:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_round_trip() {
        for s in [
            "ssm:/team/db/password",
            "ssm:plain_name-1.x",
            "secretsmanager:prod/db",
            "secretsmanager:arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
        ] {
            assert_eq!(SecretRef::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(SecretRef::parse("ssm:/a").unwrap(), SecretRef::Ssm("/a".into()));
    }

    #[test]
    fn bad_references_say_why() {
        for (s, why) in [
            ("vault:x", "must be ssm:NAME"),
            ("ssm:", "not an SSM parameter name"),
            ("ssm:/a b", "not an SSM parameter name"),
            ("ssm:/a//b", "not an SSM parameter name"),
            ("ssm:/aws/service/x", "may not begin with aws"),
            ("secretsmanager:a b", "not a Secrets Manager"),
            ("secretsmanager:x:y", "must be an ARN"),
        ] {
            let e = SecretRef::parse(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
        assert!(SecretRef::parse(&format!("ssm:/{}", "a".repeat(3000)))
            .unwrap_err()
            .contains("at most"));
    }
}
