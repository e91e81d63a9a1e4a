//! Reads the job's `--env-from` secrets on the instance, at start: SSM Parameter Store
//! (`GetParameter` with decryption) and Secrets Manager (`GetSecretValue`), each one JSON 1.1
//! POST signed with SigV4 on the instance's credentials (the job role's, when the spec names
//! one: the role decides what may be read). No SDK: the same signer and blocking HTTPS client
//! as the S3 shipping.
//!
//! A value is returned to the monitor, which hands it to the job's environment alone; nothing
//! here logs, prints or keeps it. Errors carry the reference and the service's error code.

use crate::creds::Provider;
use crate::sigv4;
use serde::Deserialize;
use spotfit_core::ports::StoreError;
use spotfit_core::secret_ref::SecretRef;
use spotfit_monitor::cli::SecretReader;
use std::io::Read;
use std::time::Duration;

/// The SDKs' per-service endpoint overrides (then `AWS_ENDPOINT_URL`, as for S3).
pub const ENDPOINT_SSM_ENV: &str = "AWS_ENDPOINT_URL_SSM";
pub const ENDPOINT_SECRETS_MANAGER_ENV: &str = "AWS_ENDPOINT_URL_SECRETS_MANAGER";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A secret is at most 64 KiB (Secrets Manager), a parameter 8 KiB; the JSON around it is small.
const BODY_LIMIT: u64 = 256 * 1024;
/// Tries of one read: throttling, a 5xx or a transport failure is retried, with backoff.
const TRIES: u32 = 4;

/// The two services, by their signing names, JSON targets and endpoints.
#[derive(Debug)]
pub struct Reader {
    ssm: url::Url,
    secrets_manager: url::Url,
    region: String,
    creds: Provider,
    http: ureq::Agent,
}

#[derive(Deserialize)]
struct ParameterReply {
    #[serde(rename = "Parameter")]
    parameter: Parameter,
}

#[derive(Deserialize)]
struct Parameter {
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Deserialize)]
struct SecretReply {
    #[serde(rename = "SecretString")]
    secret_string: Option<String>,
}

#[derive(Deserialize)]
struct ErrorReply {
    #[serde(rename = "__type")]
    kind: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// A service's endpoint: its override variable, `AWS_ENDPOINT_URL`, else AWS's regional one.
pub fn endpoint(
    get: &dyn Fn(&str) -> Option<String>,
    override_var: &'static str,
    service_host: &str,
    region: &str,
) -> Result<url::Url, (&'static str, String)> {
    if let Some(u) = crate::s3::endpoint_override(get, &[override_var, crate::s3::ENDPOINT_ENV])? {
        return Ok(u);
    }
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{service_host}.{region}.{suffix}/")
        .parse()
        .map_err(|e| (crate::s3::REGION_ENV, format!("{region:?}: {e}")))
}

impl Reader {
    pub fn new(
        get: &dyn Fn(&str) -> Option<String>,
        region: &str,
        creds: Provider,
        roots: Option<Vec<ureq::tls::Certificate<'static>>>,
    ) -> Result<Self, (&'static str, String)> {
        let http = crate::s3::http_config(REQUEST_TIMEOUT, CONNECT_TIMEOUT, roots)
            .build()
            .into();
        Ok(Self {
            ssm: endpoint(get, ENDPOINT_SSM_ENV, "ssm", region)?,
            secrets_manager: endpoint(get, ENDPOINT_SECRETS_MANAGER_ENV, "secretsmanager", region)?,
            region: region.to_string(),
            creds,
            http,
        })
    }

    /// One signed JSON call; Ok(body) on 200, Err((retry?, reason)) otherwise.
    fn call(&self, service: &str, url: &url::Url, target: &str, body: &[u8]) -> Result<Vec<u8>, (bool, String)> {
        let creds = self.creds.current().map_err(|e| match e {
            StoreError::Unavailable { message, .. } => (true, format!("no credentials: {message}")),
            other => (false, format!("no credentials: {other}")),
        })?;
        let mut url = url.clone();
        let sha = sigv4::sha256_hex(body);
        let content_type = "application/x-amz-json-1.1";
        let headers = sigv4::sign_service(
            service,
            "POST",
            &mut url,
            &self.region,
            &creds,
            &sha,
            &[("content-type", content_type), ("x-amz-target", target)],
            chrono::Utc::now(),
        );
        let mut req = self
            .http
            .post(url.as_str())
            .header("content-type", content_type)
            .header("x-amz-target", target);
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut resp = req.send(body).map_err(|e| (true, format!("{service}: {e}")))?;
        let status = resp.status().as_u16();
        let mut out = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(BODY_LIMIT + 1)
            .read_to_end(&mut out)
            .map_err(|e| (true, format!("{service}: reading the answer: {e}")))?;
        if out.len() as u64 > BODY_LIMIT {
            return Err((false, format!("{service}: the answer is over {BODY_LIMIT} bytes")));
        }
        if status == 200 {
            return Ok(out);
        }
        let (code, message) = error_of(status, &out);
        if matches!(code.as_str(), "ExpiredTokenException" | "UnrecognizedClientException") {
            self.creds.invalidate();
        }
        let retry = status >= 500
            || matches!(
                code.as_str(),
                "ThrottlingException" | "TooManyUpdates" | "ExpiredTokenException" | "RequestLimitExceeded"
            );
        Err((retry, format!("{code} ({status}) {message}").trim().to_string()))
    }

    fn read_once(&self, secret: &SecretRef) -> Result<String, (bool, String)> {
        match secret {
            SecretRef::Ssm(name) => {
                let body = serde_json::json!({"Name": name, "WithDecryption": true}).to_string();
                let out = self.call("ssm", &self.ssm, "AmazonSSM.GetParameter", body.as_bytes())?;
                let r: ParameterReply =
                    serde_json::from_slice(&out).map_err(|e| (false, format!("an unexpected answer: {e}")))?;
                Ok(r.parameter.value)
            }
            SecretRef::SecretsManager(id) => {
                let body = serde_json::json!({"SecretId": id}).to_string();
                let out = self.call(
                    "secretsmanager",
                    &self.secrets_manager,
                    "secretsmanager.GetSecretValue",
                    body.as_bytes(),
                )?;
                let r: SecretReply =
                    serde_json::from_slice(&out).map_err(|e| (false, format!("an unexpected answer: {e}")))?;
                r.secret_string.ok_or_else(|| {
                    (
                        false,
                        "the secret is binary (SecretBinary); only SecretString values can be given to an environment"
                            .to_string(),
                    )
                })
            }
        }
    }
}

/// A failed reply's code and message: the JSON protocol's `{"__type": "…#Code", "message"}`,
/// else the XML `<Code>`/`<Message>` some front ends (and emulators) answer with, else the
/// HTTP status.
fn error_of(status: u16, body: &[u8]) -> (String, String) {
    if let Ok(e) = serde_json::from_slice::<ErrorReply>(body) {
        if let Some(kind) = e.kind {
            let code = kind.rsplit('#').next().unwrap_or_default().to_string();
            return (code, e.message.unwrap_or_default());
        }
    }
    match crate::s3::error_code(body) {
        (Some(code), message) => (code, message.unwrap_or_default()),
        (None, _) => (format!("Http{status}"), String::new()),
    }
}

impl SecretReader for Reader {
    fn read(&self, secret: &SecretRef) -> Result<String, String> {
        let mut last = String::new();
        for attempt in 0..TRIES {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(250 << attempt));
            }
            match self.read_once(secret) {
                Ok(v) => return Ok(v),
                Err((true, why)) => {
                    tracing::warn!(secret = %secret, attempt, error = %why, "reading a secret failed; retrying");
                    last = why;
                }
                Err((false, why)) => return Err(why),
            }
        }
        Err(format!("{last} (after {TRIES} tries)"))
    }
}

/// A reader that could not be built (no region, no credentials): every read says why, so the
/// job is reported as not started (with the reason) rather than the agent exiting unrecorded.
pub struct Unavailable(pub String);

impl SecretReader for Unavailable {
    fn read(&self, _: &SecretRef) -> Result<String, String> {
        Err(self.0.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_name_their_code_in_either_protocol() {
        let json = br#"{"__type":"com.amazonaws.ssm#ParameterNotFound","message":"no such parameter"}"#;
        assert_eq!(
            error_of(400, json),
            ("ParameterNotFound".into(), "no such parameter".into())
        );
        let sm = br#"{"__type":"AccessDeniedException","Message":"not authorized"}"#;
        assert_eq!(
            error_of(400, sm),
            ("AccessDeniedException".into(), "not authorized".into())
        );
        let xml = b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>User is not authorized</Message></Error></ErrorResponse>";
        assert_eq!(
            error_of(403, xml),
            ("AccessDenied".into(), "User is not authorized".into())
        );
        assert_eq!(error_of(502, b"bad gateway"), ("Http502".into(), String::new()));
    }

    #[test]
    fn endpoints_take_the_service_override_then_the_global_one_then_aws() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
        };
        let e = endpoint(&vars(&[]), ENDPOINT_SSM_ENV, "ssm", "eu-west-1").unwrap();
        assert_eq!(e.as_str(), "https://ssm.eu-west-1.amazonaws.com/");
        let e = endpoint(&vars(&[]), ENDPOINT_SECRETS_MANAGER_ENV, "secretsmanager", "cn-north-1").unwrap();
        assert_eq!(e.as_str(), "https://secretsmanager.cn-north-1.amazonaws.com.cn/");
        let g = vars(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]);
        assert_eq!(
            endpoint(&g, ENDPOINT_SSM_ENV, "ssm", "us-east-1").unwrap().as_str(),
            "http://127.0.0.1:5000/"
        );
        let both = vars(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:6000"),
        ]);
        assert_eq!(
            endpoint(&both, ENDPOINT_SSM_ENV, "ssm", "us-east-1").unwrap().as_str(),
            "http://127.0.0.1:6000/"
        );
        let bad = vars(&[("AWS_ENDPOINT_URL_SSM", "ftp://x")]);
        assert_eq!(
            endpoint(&bad, ENDPOINT_SSM_ENV, "ssm", "us-east-1").unwrap_err().0,
            "AWS_ENDPOINT_URL_SSM"
        );
    }
}
