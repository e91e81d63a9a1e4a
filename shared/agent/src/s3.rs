//! S3 as an [`ObjectStore`] without the AWS SDK: `rusty-s3` builds each request's URL (and
//! parses listings), [`crate::sigv4`] signs it in the `Authorization` header (session tokens
//! included), and `ureq` sends it over one blocking keep-alive connection. The store's futures
//! never wait on anything: they run the request on the uploader's thread and return, so no
//! tokio reactor (or its threads) is needed.
//!
//! The semantics are those of `spotfit-aws`'s `S3ObjectStore`: a missing key reads as
//! `Ok(None)`; throttling is `Throttled`, server errors and every transport failure (refused,
//! reset, timed out) are `Unavailable` — both retryable; anything else is `Other` with S3's code.
//! Keys are deterministic and a put overwrites, so the uploader's retries never duplicate.

use crate::creds::Provider;
use crate::sigv4;
use rusty_s3::{Bucket, S3Action, UrlStyle};
use spotfit_core::ports::{ObjectStore, StoreError};
use std::io::Read;
use std::time::Duration;

pub const REGION_ENV: &str = "AWS_REGION";
pub const DEFAULT_REGION_ENV: &str = "AWS_DEFAULT_REGION";
/// The SDKs' endpoint overrides: the S3-specific one wins over the global one.
pub const ENDPOINT_S3_ENV: &str = "AWS_ENDPOINT_URL_S3";
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL";
/// The SDKs' private trust store: a PEM file of CA certificates trusted instead of the bundled
/// web PKI roots (a VPC endpoint or proxy behind a private CA; tests with their own CA).
pub const CA_BUNDLE_ENV: &str = "AWS_CA_BUNDLE";

/// A put can't be cancelled from outside (it blocks its thread), so its own deadline must end
/// it before the uploader's 5 s per-put timeout would: 4 s from DNS to the last response byte.
/// A part (a minute of samples) is a few KiB; that is ample on any link an instance has.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// `rusty-s3` builds URLs through its presigning call; unsigned (no credentials) it only adds
/// the query, and this is then unused.
const UNSIGNED: Duration = Duration::from_secs(0);
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Error bodies are a few hundred bytes of XML; read no more than this of one.
const ERROR_BODY_LIMIT: u64 = 16 * 1024;
/// The agent reads little back (resume checks, tests); bounded all the same.
const GET_LIMIT: u64 = 256 * 1024 * 1024;
/// Buffers per connection (ureq's default is 128 KiB each): a part is a few KiB and S3's
/// response headers are well under this, so a smaller buffer keeps the agent's RSS down.
const IO_BUFFER: usize = 16 * 1024;
const SERVICE: &str = "s3";

/// Where requests for `bucket` go: an endpoint override (emulators: path style, since they
/// serve buckets under the path, not as virtual hosts), else AWS's regional endpoint in
/// virtual-hosted style — AWS's own default and the only style for buckets created from now
/// on; path style only for a bucket whose name has a dot (it would not match the TLS wildcard
/// certificate as a host name).
pub fn endpoint(
    get: &dyn Fn(&str) -> Option<String>,
    region: &str,
    bucket: &str,
) -> Result<(url::Url, UrlStyle), (&'static str, String)> {
    if let Some(u) = endpoint_override(get, &[ENDPOINT_S3_ENV, ENDPOINT_ENV])? {
        return Ok((u, UrlStyle::Path));
    }
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    let u = format!("https://s3.{region}.{suffix}")
        .parse()
        .map_err(|e| (REGION_ENV, format!("{region:?}: {e}")))?;
    let style = if bucket.contains('.') {
        UrlStyle::Path
    } else {
        UrlStyle::VirtualHost
    };
    Ok((u, style))
}

/// The first of the SDKs' endpoint-override variables `names` that is set (a service's own,
/// then the global `AWS_ENDPOINT_URL`), checked to be an http(s) URL with a host.
pub fn endpoint_override(
    get: &dyn Fn(&str) -> Option<String>,
    names: &[&'static str],
) -> Result<Option<url::Url>, (&'static str, String)> {
    for &name in names {
        if let Some(v) = get(name).filter(|v| !v.is_empty()) {
            let u: url::Url = v.parse().map_err(|e| (name, format!("{v:?} is not a URL: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err((name, format!("{v:?}: expected http(s)://host[:port]")));
            }
            return Ok(Some(u));
        }
    }
    Ok(None)
}

/// The region: `AWS_REGION`, then `AWS_DEFAULT_REGION` (checked to be a region-shaped token,
/// since it becomes part of a host name and of the signature).
pub fn region(get: &dyn Fn(&str) -> Option<String>) -> Option<Result<String, (&'static str, String)>> {
    [REGION_ENV, DEFAULT_REGION_ENV].into_iter().find_map(|name| {
        get(name)
            .filter(|v| !v.is_empty())
            .map(|v| check_region(&v).map_err(|r| (name, r)))
    })
}

pub fn check_region(v: &str) -> Result<String, String> {
    if v.len() <= 32
        && !v.starts_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(v.to_string())
    } else {
        Err(format!(
            "{:?} is not a region name (e.g. us-east-1)",
            v.chars().take(40).collect::<String>()
        ))
    }
}

/// The certificates of a PEM CA bundle (at least one; keys and other sections are ignored).
pub fn ca_bundle(pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| format!("not PEM: {e}"))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err("no CERTIFICATE in it".into());
    }
    Ok(certs)
}

/// What every AWS request of the agent shares (S3's, the secret stores'): these deadlines;
/// statuses returned, not raised (each caller classifies its service's answers: a 404 is a
/// missing key, a 503 a throttle); never a redirect (the signature is for this host, and the
/// session token, a header, must not travel to another one: S3's 301/307 are errors with a
/// code); the agent's user agent; `roots` trusted instead of the bundled web PKI roots.
pub fn http_config(
    request: Duration,
    connect: Duration,
    roots: Option<Vec<ureq::tls::Certificate<'static>>>,
) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .timeout_global(Some(request))
        .timeout_connect(Some(connect))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("spotfit-agent/", env!("CARGO_PKG_VERSION")))
        .tls_config(match roots {
            Some(certs) => ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
            None => ureq::tls::TlsConfig::default(),
        })
}

/// One bucket through signed HTTP requests.
#[derive(Debug)]
pub struct S3Store {
    bucket: Bucket,
    creds: Provider,
    http: ureq::Agent,
}

/// A response: status, and the body of a failure (or of a successful GET / list).
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl S3Store {
    /// `roots`: trust these CAs instead of the bundled web PKI roots.
    pub fn new(
        endpoint: url::Url,
        style: UrlStyle,
        bucket: &str,
        region: &str,
        creds: Provider,
        roots: Option<Vec<ureq::tls::Certificate<'static>>>,
    ) -> Result<Self, String> {
        let bucket = Bucket::new(endpoint, style, bucket.to_string(), region.to_string())
            .map_err(|e| format!("bucket {bucket:?} at this endpoint: {e:?}"))?;
        let http = http_config(REQUEST_TIMEOUT, CONNECT_TIMEOUT, roots)
            .input_buffer_size(IO_BUFFER)
            .output_buffer_size(IO_BUFFER)
            // One connection is all the single uploader thread uses.
            .max_idle_connections(1)
            .max_idle_connections_per_host(1)
            .build()
            .into();
        Ok(Self { bucket, creds, http })
    }

    /// Signs and sends one request; transport failures are `Unavailable`, statuses are for the
    /// caller (a success body is read up to `limit`).
    fn send(&self, what: &str, mut url: url::Url, put: Option<&[u8]>, limit: u64) -> Result<Reply, StoreError> {
        let unavailable = |e: &dyn std::fmt::Display| StoreError::Unavailable {
            service: SERVICE.into(),
            message: format!("{what}: {e}"),
        };
        let creds = self.creds.current()?;
        let (method, sha) = match put {
            Some(bytes) => ("PUT", sigv4::sha256_hex(bytes)),
            None => ("GET", EMPTY_SHA256.to_string()),
        };
        let headers = sigv4::sign(
            method,
            &mut url,
            self.bucket.region(),
            &creds,
            &sha,
            &[],
            chrono::Utc::now(),
        );
        let resp = match put {
            Some(bytes) => {
                let mut req = self.http.put(url.as_str());
                for (k, v) in &headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                req.send(bytes)
            }
            None => {
                let mut req = self.http.get(url.as_str());
                for (k, v) in &headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                req.call()
            }
        };
        let mut resp = resp.map_err(|e| unavailable(&e))?;
        let status = resp.status().as_u16();
        let limit = if (200..300).contains(&status) {
            limit
        } else {
            ERROR_BODY_LIMIT
        };
        let mut body = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| unavailable(&e))?;
        if body.len() as u64 > limit {
            return Err(StoreError::Other {
                service: SERVICE.into(),
                code: "TooLarge".into(),
                message: format!("{what}: the answer is over {limit} bytes"),
            });
        }
        Ok(Reply { status, body })
    }

    fn object_url(&self, key: &str) -> Result<url::Url, StoreError> {
        self.bucket.object_url(key).map_err(|e| StoreError::Other {
            service: SERVICE.into(),
            code: "InvalidKey".into(),
            message: format!("{key:?}: {e}"),
        })
    }

    /// The error for a failed reply, with S3's code; credentials S3 calls expired or unknown
    /// are dropped so the retry signs with fresh ones.
    fn failure(&self, what: &str, r: &Reply) -> StoreError {
        let (code, message) = error_code(&r.body);
        let code = code.unwrap_or_else(|| format!("Http{}", r.status));
        let message = format!("{what}: {} {}", r.status, message.unwrap_or_default());
        let e = classify(r.status, &code, message);
        if matches!(
            code.as_str(),
            "ExpiredToken" | "TokenRefreshRequired" | "InvalidToken" | "InvalidAccessKeyId"
        ) {
            self.creds.invalidate();
        }
        e
    }
}

/// S3's status and code to the port's error kinds.
pub fn classify(status: u16, code: &str, message: String) -> StoreError {
    let service = SERVICE.to_string();
    match (status, code) {
        (429, _) | (_, "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded") => {
            StoreError::Throttled { service, message }
        }
        // Expired credentials heal on the next call (they are fetched again); say so by retrying.
        (500..=599, _) | (_, "ExpiredToken" | "TokenRefreshRequired" | "RequestTimeout" | "InternalError") => {
            StoreError::Unavailable { service, message }
        }
        _ => StoreError::Other {
            service,
            code: code.to_string(),
            message,
        },
    }
}

/// `<Code>` and `<Message>` of an S3 XML error body.
pub fn error_code(body: &[u8]) -> (Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(body);
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{t}>"))? + start;
        Some(text[start..end].trim().to_string())
    };
    (tag("Code"), tag("Message"))
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let what = format!("PUT {key}");
        let r = self.send(&what, self.object_url(key)?, Some(&bytes), ERROR_BODY_LIMIT)?;
        if (200..300).contains(&r.status) {
            Ok(())
        } else {
            Err(self.failure(&what, &r))
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let what = format!("GET {key}");
        let r = self.send(&what, self.object_url(key)?, None, GET_LIMIT)?;
        match r.status {
            200..=299 => Ok(Some(r.body)),
            404 if error_code(&r.body).0.is_none_or(|c| c == "NoSuchKey") => Ok(None),
            _ => Err(self.failure(&what, &r)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(None);
            action.with_prefix(prefix);
            if let Some(t) = &token {
                action.with_continuation_token(t.as_str());
            }
            let url = action.sign(UNSIGNED);
            let what = format!("LIST {prefix}");
            let r = self.send(&what, url, None, 64 * 1024 * 1024)?;
            if !(200..300).contains(&r.status) {
                return Err(self.failure(&what, &r));
            }
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&r.body).map_err(|e| StoreError::Other {
                service: SERVICE.into(),
                code: "MalformedListing".into(),
                message: format!("{what}: {e}"),
            })?;
            keys.extend(page.contents.into_iter().map(|c| c.key));
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::creds::{Creds, Source};
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    fn store(endpoint: &str, style: UrlStyle, bucket: &str, token: Option<&str>) -> S3Store {
        let creds = Provider::new(Source::Env(Creds {
            key: "AKIDEXAMPLE".into(),
            secret: "secret".into(),
            token: token.map(str::to_string),
            expires: None,
        }))
        .unwrap();
        S3Store::new(endpoint.parse().unwrap(), style, bucket, "eu-west-1", creds, None).unwrap()
    }

    #[test]
    fn endpoint_overrides_are_path_style_and_the_s3_one_wins() {
        let e = env(&[(ENDPOINT_ENV, "http://127.0.0.1:5000")]);
        let (u, s) = endpoint(&e, "us-east-1", "bkt").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:5000/");
        assert!(matches!(s, UrlStyle::Path));
        let e = env(&[(ENDPOINT_ENV, "http://a:1"), (ENDPOINT_S3_ENV, "http://b:2")]);
        assert_eq!(endpoint(&e, "us-east-1", "bkt").unwrap().0.as_str(), "http://b:2/");
        let e = env(&[(ENDPOINT_ENV, "ftp://x")]);
        assert_eq!(endpoint(&e, "us-east-1", "bkt").unwrap_err().0, ENDPOINT_ENV);
        let e = env(&[(ENDPOINT_S3_ENV, "not a url")]);
        assert_eq!(endpoint(&e, "us-east-1", "bkt").unwrap_err().0, ENDPOINT_S3_ENV);
    }

    #[test]
    fn aws_endpoints_are_regional_and_virtual_hosted_unless_the_bucket_has_a_dot() {
        let none = env(&[]);
        let (u, s) = endpoint(&none, "eu-west-1", "bkt").unwrap();
        assert_eq!(u.as_str(), "https://s3.eu-west-1.amazonaws.com/");
        assert!(matches!(s, UrlStyle::VirtualHost));
        assert!(matches!(endpoint(&none, "eu-west-1", "a.b").unwrap().1, UrlStyle::Path));
        assert_eq!(
            endpoint(&none, "cn-north-1", "bkt").unwrap().0.as_str(),
            "https://s3.cn-north-1.amazonaws.com.cn/"
        );
    }

    #[test]
    fn regions_come_from_the_environment_and_are_checked() {
        assert_eq!(region(&env(&[])), None);
        assert_eq!(
            region(&env(&[(DEFAULT_REGION_ENV, "us-west-2")])).unwrap().unwrap(),
            "us-west-2"
        );
        assert_eq!(
            region(&env(&[(REGION_ENV, "eu-west-1"), (DEFAULT_REGION_ENV, "us-west-2")]))
                .unwrap()
                .unwrap(),
            "eu-west-1"
        );
        assert_eq!(
            region(&env(&[(REGION_ENV, "evil.com/x")])).unwrap().unwrap_err().0,
            REGION_ENV
        );
    }

    #[test]
    fn object_urls_are_per_bucket_style_and_keys_percent_encoded() {
        // GIVEN a virtual-hosted bucket  WHEN an object URL is built
        let s = store(
            "https://s3.eu-west-1.amazonaws.com",
            UrlStyle::VirtualHost,
            "bkt",
            Some("TOKEN"),
        );
        let url = s
            .object_url("samples/job=j/dt=2026-12-02/run=r 1/part-00000.ndjson.gz")
            .unwrap();
        // THEN the bucket is the host and the key the path, encoded as SigV4 expects
        assert_eq!(url.host_str(), Some("bkt.s3.eu-west-1.amazonaws.com"));
        assert_eq!(
            url.path(),
            "/samples/job%3Dj/dt%3D2026-12-02/run%3Dr%201/part-00000.ndjson.gz"
        );
        // AND path style (an emulator) puts the bucket in the path
        let p = store("http://127.0.0.1:5000", UrlStyle::Path, "bkt", None);
        assert_eq!(
            p.object_url("runs/x.json").unwrap().as_str(),
            "http://127.0.0.1:5000/bkt/runs/x.json"
        );
        // AND a listing URL carries list-type=2 and the prefix
        let mut action = p.bucket.list_objects_v2(None);
        action.with_prefix("runs/job=a/");
        let q: HashMap<String, String> = action.sign(UNSIGNED).query_pairs().into_owned().collect();
        assert_eq!((q["list-type"].as_str(), q["prefix"].as_str()), ("2", "runs/job=a/"));
    }

    #[test]
    fn errors_keep_s3_codes_and_retryability() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The bucket does not exist</Message></Error>";
        assert_eq!(
            error_code(body),
            (Some("NoSuchBucket".into()), Some("The bucket does not exist".into()))
        );
        assert_eq!(error_code(b""), (None, None));
        let e = classify(404, "NoSuchBucket", "m".into());
        assert!(matches!(&e, StoreError::Other { code, .. } if code == "NoSuchBucket") && !e.is_retryable());
        assert!(matches!(
            classify(503, "SlowDown", "m".into()),
            StoreError::Throttled { .. }
        ));
        assert!(matches!(
            classify(429, "Http429", "m".into()),
            StoreError::Throttled { .. }
        ));
        assert!(classify(500, "InternalError", "m".into()).is_retryable());
        assert!(classify(502, "Http502", "m".into()).is_retryable());
        assert!(classify(400, "ExpiredToken", "m".into()).is_retryable());
        assert!(!classify(403, "AccessDenied", "m".into()).is_retryable());
    }

    #[test]
    fn ca_bundles_need_a_certificate() {
        assert!(ca_bundle(b"").unwrap_err().contains("no CERTIFICATE"));
        assert!(ca_bundle(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").is_err());
    }

    #[test]
    fn redirects_are_errors_and_never_followed() {
        use std::io::Write;
        // GIVEN an "S3" that redirects every request to a second server, which counts visits
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other_port = other.local_addr().unwrap().port();
        other.set_nonblocking(true).unwrap();
        let s3 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = s3.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in s3.incoming() {
                let mut c = c.unwrap();
                // The whole request (headers, then Content-Length bytes of body) before the
                // answer: closing on a half-read request resets the client's connection.
                let mut req = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let n = c.read(&mut buf).unwrap_or(0);
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_ascii_lowercase();
                    let done = text.find("\r\n\r\n").is_some_and(|end| {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        req.len() >= end + 4 + len
                    });
                    if n == 0 || done {
                        break;
                    }
                }
                let body = "<Error><Code>TemporaryRedirect</Code><Message>go there</Message></Error>";
                let _ = write!(
                    c,
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{other_port}/bkt/k\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let s = store(
            &format!("http://127.0.0.1:{port}"),
            UrlStyle::Path,
            "bkt",
            Some("SESSION"),
        );
        // WHEN a put is made  THEN it fails with S3's code, and the other server saw nothing
        let e = futures_lite_block(s.put("k", b"x".to_vec())).unwrap_err();
        assert!(
            matches!(&e, StoreError::Other { code, .. } if code == "TemporaryRedirect"),
            "{e}"
        );
        assert!(other.accept().is_err(), "the redirect was followed");
    }

    #[test]
    fn a_dead_endpoint_is_unavailable_not_a_panic() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = store(&format!("http://127.0.0.1:{port}"), UrlStyle::Path, "bkt", None);
        let e = futures_lite_block(s.put("k", b"x".to_vec())).unwrap_err();
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
    }

    /// The store's futures never pend (the request blocks inside), so one poll runs them.
    fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
