//! Where the agent's AWS credentials come from: the environment first (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), else the instance role through IMDSv2 only
//! (token, then `/latest/meta-data/iam/security-credentials/ROLE`), cached and fetched again
//! shortly before they expire. No config files, no profiles, no SSO: an instance has none.

use chrono::{DateTime, Utc};
use spotfit_core::ports::StoreError;
use spotfit_monitor::imds::Imds;
use std::sync::Mutex;

pub const ACCESS_KEY_ENV: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";
pub const SESSION_TOKEN_ENV: &str = "AWS_SESSION_TOKEN";
/// The SDKs' switch for "never ask IMDS" (the test scripts set it off EC2).
pub const IMDS_DISABLED_ENV: &str = "AWS_EC2_METADATA_DISABLED";
/// The SDKs' IMDS endpoint override, honoured when `--imds` is left at `auto`.
pub const IMDS_ENDPOINT_ENV: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
const ROLE_PATH: &str = "/latest/meta-data/iam/security-credentials/";
/// EC2 rotates role credentials at least 5 minutes before they expire; asking again 5 minutes
/// before `Expiration` always gets the new set, and a put signed just before never lands expired
/// (a put lasts a few seconds at most).
const REFRESH_BEFORE: chrono::Duration = chrono::Duration::minutes(5);

/// One set of credentials; `expires` is `None` for long-lived ones from the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct Creds {
    pub key: String,
    pub secret: String,
    pub token: Option<String>,
    pub expires: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Creds {
    // Never print the secret or the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creds")
            .field("key", &self.key)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("expires", &self.expires)
            .finish()
    }
}

impl Creds {
    fn fresh_at(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_none_or(|e| e - now > REFRESH_BEFORE)
    }
}

/// The first link of the chain that applies, decided once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env(Creds),
    /// The instance role, from IMDS at this endpoint (`http://host[:port]`).
    Imds(String),
}

/// Picks the source from the environment (`get` reads a variable) and the IMDS endpoint the
/// monitor was given (`None`: `--imds off`). Half-set environment credentials are an error
/// naming the missing variable, not a silent fall-through to the instance role.
pub fn source(get: &dyn Fn(&str) -> Option<String>, imds: Option<&str>) -> Result<Source, (&'static str, String)> {
    let var = |n: &str| get(n).filter(|v| !v.is_empty());
    match (var(ACCESS_KEY_ENV), var(SECRET_KEY_ENV)) {
        (Some(key), Some(secret)) => {
            return Ok(Source::Env(Creds {
                key,
                secret,
                token: var(SESSION_TOKEN_ENV),
                expires: None,
            }))
        }
        (Some(_), None) => return Err((SECRET_KEY_ENV, format!("set with {ACCESS_KEY_ENV}, or unset both"))),
        (None, Some(_)) => return Err((ACCESS_KEY_ENV, format!("set with {SECRET_KEY_ENV}, or unset both"))),
        (None, None) => {}
    }
    let disabled = var(IMDS_DISABLED_ENV).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    match imds {
        Some(endpoint) if !disabled => Ok(Source::Imds(endpoint.to_string())),
        _ => Err((
            ACCESS_KEY_ENV,
            format!(
                "no credentials: set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}, or run on EC2 with an \
                 instance profile (IMDS is off: --imds off or {IMDS_DISABLED_ENV}=true)"
            ),
        )),
    }
}

/// The IMDS endpoint for `--imds` (`auto`, `off` or a URL): `auto` is the SDKs' override
/// variable or the link-local default.
pub fn imds_endpoint(flag: &str, get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    match flag {
        "off" => None,
        "auto" => Some(
            get(IMDS_ENDPOINT_ENV)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| spotfit_monitor::imds::DEFAULT_ENDPOINT.to_string()),
        ),
        url => Some(url.to_string()),
    }
}

/// Parses the body of `/latest/meta-data/iam/security-credentials/ROLE`.
pub fn parse_role_credentials(body: &str) -> Result<Creds, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Doc {
        code: Option<String>,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        token: Option<String>,
        expiration: Option<String>,
    }
    let d: Doc = serde_json::from_str(body).map_err(|e| format!("role credentials are not JSON: {e}"))?;
    if let Some(code) = d.code.as_deref().filter(|c| *c != "Success") {
        return Err(format!("IMDS says the role credentials are not ready: Code {code}"));
    }
    let need = |v: Option<String>, name: &str| {
        v.filter(|s| !s.is_empty())
            .ok_or(format!("role credentials lack {name}"))
    };
    let expires = need(d.expiration, "Expiration")?;
    let expires = DateTime::parse_from_rfc3339(&expires)
        .map_err(|e| format!("role credentials' Expiration {expires:?}: {e}"))?
        .with_timezone(&Utc);
    Ok(Creds {
        key: need(d.access_key_id, "AccessKeyId")?,
        secret: need(d.secret_access_key, "SecretAccessKey")?,
        token: Some(need(d.token, "Token")?),
        expires: Some(expires),
    })
}

/// The role name: the first line of the listing (an instance profile holds exactly one role).
pub fn parse_role_name(body: &str) -> Result<String, String> {
    let role = body.lines().next().unwrap_or_default().trim();
    if role.is_empty()
        || !role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
    {
        return Err(format!(
            "no instance role (IMDS listed {:?}): attach an instance profile",
            body.chars().take(80).collect::<String>()
        ));
    }
    Ok(role.to_string())
}

/// Credentials on demand, cached until shortly before they expire.
#[derive(Debug)]
pub struct Provider {
    source: ProviderSource,
    cached: Mutex<Option<Creds>>,
}

#[derive(Debug)]
enum ProviderSource {
    Env,
    Imds(Mutex<Imds>),
}

fn unavailable(message: String) -> StoreError {
    StoreError::Unavailable {
        service: "imds".into(),
        message,
    }
}

impl Provider {
    pub fn new(source: Source) -> Result<Self, (&'static str, String)> {
        Ok(match source {
            Source::Env(c) => Self {
                source: ProviderSource::Env,
                cached: Mutex::new(Some(c)),
            },
            Source::Imds(endpoint) => Self {
                source: ProviderSource::Imds(Mutex::new(Imds::new(&endpoint).map_err(|e| ("imds", e.to_string()))?)),
                cached: Mutex::new(None),
            },
        })
    }

    /// The credentials to sign with now. An IMDS failure while the cached set is still valid
    /// (only within its last 5 minutes) keeps using it; otherwise it is `Unavailable`, which the
    /// uploader retries.
    pub fn current(&self) -> Result<Creds, StoreError> {
        let now = Utc::now();
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref().filter(|c| c.fresh_at(now)) {
            return Ok(c.clone());
        }
        let ProviderSource::Imds(imds) = &self.source else {
            return cached.clone().ok_or_else(|| unavailable("no credentials".into()));
        };
        let mut imds = imds.lock().unwrap_or_else(|p| p.into_inner());
        match fetch_role_credentials(&mut imds) {
            Ok(c) => {
                *cached = Some(c.clone());
                Ok(c)
            }
            Err(e) => match cached.as_ref().filter(|c| c.expires.is_some_and(|x| x > now)) {
                Some(c) => {
                    tracing::warn!(error = %e, "refreshing the instance role's credentials failed; using the current ones");
                    Ok(c.clone())
                }
                None => Err(e),
            },
        }
    }

    /// S3 said the credentials expired or are unknown: fetch new ones on the next call (role
    /// credentials only; environment ones cannot change under us).
    pub fn invalidate(&self) {
        if matches!(self.source, ProviderSource::Imds(_)) {
            *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

fn fetch_role_credentials(imds: &mut Imds) -> Result<Creds, StoreError> {
    let get = |imds: &mut Imds, path: &str| match imds.get(path) {
        Ok((200, body)) => Ok(body),
        Ok((status, _)) => Err(unavailable(format!("GET {path} answered {status}"))),
        Err(e) => Err(unavailable(format!("GET {path}: {e}"))),
    };
    let role = parse_role_name(&get(imds, ROLE_PATH)?).map_err(unavailable)?;
    parse_role_credentials(&get(imds, &format!("{ROLE_PATH}{role}"))?).map_err(unavailable)
}

/// The instance's region from IMDS (when neither `AWS_REGION` nor `AWS_DEFAULT_REGION` is set).
pub fn imds_region(endpoint: &str) -> Result<String, String> {
    let mut imds = Imds::new(endpoint).map_err(|e| e.to_string())?;
    match imds.get("/latest/meta-data/placement/region") {
        Ok((200, body)) => Ok(body.trim().to_string()),
        Ok((status, _)) => Err(format!("IMDS answered {status} for the region")),
        Err(e) => Err(format!("IMDS at {endpoint} unreachable: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{Read, Write};

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn the_environment_wins_over_the_instance_role() {
        // GIVEN keys and a token in the environment  WHEN the chain is resolved  THEN they are used
        let e = env(&[
            (ACCESS_KEY_ENV, "AK"),
            (SECRET_KEY_ENV, "SK"),
            (SESSION_TOKEN_ENV, "TOK"),
        ]);
        let Source::Env(c) = source(&e, Some("http://169.254.169.254")).unwrap() else {
            panic!("expected env credentials")
        };
        assert_eq!(
            (c.key.as_str(), c.secret.as_str(), c.token.as_deref()),
            ("AK", "SK", Some("TOK"))
        );
        assert!(c.fresh_at(Utc::now()));
        // an empty token is no token
        let e = env(&[(ACCESS_KEY_ENV, "AK"), (SECRET_KEY_ENV, "SK"), (SESSION_TOKEN_ENV, "")]);
        assert!(matches!(
            source(&e, None).unwrap(),
            Source::Env(Creds { token: None, .. })
        ));
    }

    #[test]
    fn half_set_keys_name_the_missing_variable() {
        let e = env(&[(ACCESS_KEY_ENV, "AK")]);
        assert_eq!(source(&e, Some("http://x")).unwrap_err().0, SECRET_KEY_ENV);
        let e = env(&[(SECRET_KEY_ENV, "SK")]);
        assert_eq!(source(&e, Some("http://x")).unwrap_err().0, ACCESS_KEY_ENV);
    }

    #[test]
    fn no_keys_means_the_instance_role_unless_imds_is_off() {
        let none = env(&[]);
        assert_eq!(
            source(&none, Some("http://127.0.0.1:9")).unwrap(),
            Source::Imds("http://127.0.0.1:9".into())
        );
        let err = source(&none, None).unwrap_err();
        assert_eq!(err.0, ACCESS_KEY_ENV);
        assert!(err.1.contains("no credentials"), "{}", err.1);
        let disabled = env(&[(IMDS_DISABLED_ENV, "TRUE")]);
        assert!(source(&disabled, Some("http://x")).is_err());
    }

    #[test]
    fn imds_endpoint_follows_the_monitor_flag() {
        let none = env(&[]);
        assert_eq!(imds_endpoint("off", &none), None);
        assert_eq!(imds_endpoint("auto", &none).as_deref(), Some("http://169.254.169.254"));
        let over = env(&[(IMDS_ENDPOINT_ENV, "http://127.0.0.1:1338")]);
        assert_eq!(imds_endpoint("auto", &over).as_deref(), Some("http://127.0.0.1:1338"));
        assert_eq!(
            imds_endpoint("http://10.0.0.1:80", &over).as_deref(),
            Some("http://10.0.0.1:80")
        );
    }

    #[test]
    fn parses_role_credentials_and_refuses_incomplete_ones() {
        // GIVEN the document IMDS serves for a role
        let body = r#"{"Code":"Success","LastUpdated":"2026-12-02T07:00:00Z","Type":"AWS-HMAC",
            "AccessKeyId":"ASIAX","SecretAccessKey":"sec","Token":"tok","Expiration":"2026-12-02T13:00:00Z"}"#;
        let c = parse_role_credentials(body).unwrap();
        assert_eq!(
            (c.key.as_str(), c.secret.as_str(), c.token.as_deref()),
            ("ASIAX", "sec", Some("tok"))
        );
        let exp = c.expires.unwrap();
        assert_eq!(exp.to_rfc3339(), "2026-12-02T13:00:00+00:00");
        // THEN it is fresh until 5 minutes before Expiration, stale after
        assert!(c.fresh_at(exp - chrono::Duration::minutes(6)));
        assert!(!c.fresh_at(exp - chrono::Duration::minutes(4)));
        // AND incomplete or failed documents are refused with the reason
        assert!(parse_role_credentials(r#"{"Code":"Failure"}"#)
            .unwrap_err()
            .contains("Failure"));
        let no_token = body.replace(r#""Token":"tok","#, "");
        assert!(parse_role_credentials(&no_token).unwrap_err().contains("Token"));
        assert!(parse_role_credentials(&body.replace("2026-12-02T13:00:00Z", "soon"))
            .unwrap_err()
            .contains("Expiration"));
        assert!(parse_role_credentials("<html>").is_err());
    }

    #[test]
    fn role_names() {
        assert_eq!(parse_role_name("spotfit-agent-role\n").unwrap(), "spotfit-agent-role");
        assert!(parse_role_name("").is_err());
        assert!(parse_role_name("../../x").is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Creds {
            key: "AK".into(),
            secret: "s3cr3t".into(),
            token: Some("t0k3n".into()),
            expires: None,
        };
        let d = format!("{c:?}");
        assert!(!d.contains("s3cr3t") && !d.contains("t0k3n"), "{d}");
    }

    /// A real IMDSv2 stand-in on loopback: token first, then the role listing and document;
    /// the second document expires within 5 minutes, so the provider asks again.
    #[test]
    fn fetches_role_credentials_over_imdsv2_and_refreshes_before_expiry() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let soon = (Utc::now() + chrono::Duration::minutes(2)).to_rfc3339();
        let later = (Utc::now() + chrono::Duration::hours(6)).to_rfc3339();
        std::thread::spawn(move || {
            let mut docs = 0;
            for c in l.incoming() {
                let mut c = c.unwrap();
                let mut buf = [0u8; 4096];
                let n = c.read(&mut buf).unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let body = if req.starts_with("PUT /latest/api/token") {
                    "TOKEN".to_string()
                } else if !req.contains("X-aws-ec2-metadata-token: TOKEN") {
                    let _ = c.write_all(b"HTTP/1.1 401 Unauthorized\r\n\r\n");
                    continue;
                } else if req.starts_with("GET /latest/meta-data/iam/security-credentials/ ") {
                    "the-role".to_string()
                } else if req.starts_with("GET /latest/meta-data/iam/security-credentials/the-role ") {
                    docs += 1;
                    let exp = if docs == 1 { &soon } else { &later };
                    format!(
                        r#"{{"Code":"Success","AccessKeyId":"AK{docs}","SecretAccessKey":"S","Token":"T","Expiration":"{exp}"}}"#
                    )
                } else {
                    let _ = c.write_all(b"HTTP/1.1 404 Not Found\r\n\r\n");
                    continue;
                };
                let _ =
                    c.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
            }
        });
        let p = Provider::new(Source::Imds(format!("http://127.0.0.1:{port}"))).unwrap();
        // WHEN asked twice: the first set expires in 2 minutes (inside the refresh margin)
        assert_eq!(p.current().unwrap().key, "AK1");
        // THEN the second call fetches again and gets the new set, which is then cached
        assert_eq!(p.current().unwrap().key, "AK2");
        assert_eq!(p.current().unwrap().key, "AK2");
        // AND invalidating (S3 said ExpiredToken) fetches once more
        p.invalidate();
        assert_eq!(p.current().unwrap().key, "AK3");
    }

    #[test]
    fn unreachable_imds_is_a_retryable_error() {
        // A closed port on loopback: connection refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = Provider::new(Source::Imds(format!("http://127.0.0.1:{port}"))).unwrap();
        let e = p.current().unwrap_err();
        assert!(e.is_retryable(), "{e}");
    }
}
