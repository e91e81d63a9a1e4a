//! AWS Signature Version 4 in the `Authorization` header: for S3 (AWS's "Signature
//! Calculations for the Authorization Header"), and for the JSON APIs the agent reads secrets
//! from (SSM, Secrets Manager: [`sign_service`]). `rusty-s3` signs only as presigned URLs (the
//! signature in the query string); S3 accepts those, but an emulator enforcing IAM (moto with
//! `INITIAL_NO_AUTH_ACTION_COUNT`, as the pipeline tests run it) authenticates from the header
//! alone, and the header form is what the SDKs send. So `rusty-s3` builds the URLs (its path
//! encoding is SigV4's) and parses listings; this module signs, with the same `hmac`/`sha2`.
//! Checked against AWS's published examples in the tests below.

use crate::creds::Creds;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// SigV4's URI encoding: every byte but the unreserved `A-Za-z0-9-_.~` as `%XX`.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Rewrites `url`'s query in canonical form (each name and value encoded, sorted), so what is
/// sent is byte for byte what is signed; returns it.
fn canonical_query(url: &mut url::Url) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
        .collect();
    pairs.sort();
    let q = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    url.set_query(if q.is_empty() { None } else { Some(&q) });
    q
}

/// The headers that sign a request to `url` (its path already percent-encoded, as `rusty-s3`
/// builds it) with `payload_sha256` the hex SHA-256 of the body: `authorization`, `x-amz-date`,
/// `x-amz-content-sha256` and, for temporary credentials, `x-amz-security-token`. `extra`
/// headers are signed too (and must be sent). The URL's query is rewritten canonically.
pub fn sign(
    method: &str,
    url: &mut url::Url,
    region: &str,
    creds: &Creds,
    payload_sha256: &str,
    extra: &[(&str, &str)],
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    sign_service("s3", method, url, region, creds, payload_sha256, extra, now)
}

/// [`sign`] for any service. S3 alone gets (and requires) `x-amz-content-sha256`; the other
/// services sign the payload's hash in the canonical request only.
#[allow(clippy::too_many_arguments)]
pub fn sign_service(
    service: &str,
    method: &str,
    url: &mut url::Url,
    region: &str,
    creds: &Creds,
    payload_sha256: &str,
    extra: &[(&str, &str)],
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let mut headers: Vec<(String, String)> = vec![("host".into(), host), ("x-amz-date".into(), amz_date.clone())];
    if service == "s3" {
        headers.push(("x-amz-content-sha256".into(), payload_sha256.to_string()));
    }
    if let Some(t) = &creds.token {
        headers.push(("x-amz-security-token".into(), t.clone()));
    }
    headers.extend(
        extra
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string())),
    );
    headers.sort();
    let signed: String = headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let query = canonical_query(url);
    let path = if url.path().is_empty() { "/" } else { url.path() };
    let canonical_request = format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{payload_sha256}");
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac(format!("AWS4{}", creds.secret).as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, service);
    let k_signing = hmac(&k_service, "aws4_request");
    let signature = hex(&hmac(&k_signing, &string_to_sign));
    let mut out: Vec<(String, String)> = headers
        .into_iter()
        .filter(|(k, _)| k != "host" && !extra.iter().any(|(e, _)| e.eq_ignore_ascii_case(k)))
        .collect();
    out.push((
        "authorization".into(),
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            creds.key
        ),
    ));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn example_creds() -> Creds {
        Creds {
            key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            token: None,
            expires: None,
        }
    }

    fn may_24_2013() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn signature(headers: &[(String, String)]) -> String {
        let auth = &headers.iter().find(|(k, _)| k == "authorization").unwrap().1;
        auth.rsplit("Signature=").next().unwrap().to_string()
    }

    // The examples of AWS's "Signature Calculations for the Authorization Header: Transferring
    // Payload in a Single Chunk" (S3 API reference), computed with the keys and date given there.

    #[test]
    fn aws_example_get_object() {
        let mut url: url::Url = "https://examplebucket.s3.amazonaws.com/test.txt".parse().unwrap();
        let h = sign(
            "GET",
            &mut url,
            "us-east-1",
            &example_creds(),
            EMPTY_SHA256,
            &[("Range", "bytes=0-9")],
            may_24_2013(),
        );
        assert_eq!(
            signature(&h),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        let auth = &h.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        ), "{auth}");
    }

    #[test]
    fn aws_example_put_object() {
        let body = b"Welcome to Amazon S3.";
        let sha = sha256_hex(body);
        assert_eq!(sha, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        let mut url: url::Url = "https://examplebucket.s3.amazonaws.com/test%24file.text"
            .parse()
            .unwrap();
        let extra = [
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ];
        let h = sign(
            "PUT",
            &mut url,
            "us-east-1",
            &example_creds(),
            &sha,
            &extra,
            may_24_2013(),
        );
        assert_eq!(
            signature(&h),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn aws_example_list_objects_query_is_canonical() {
        let mut url: url::Url = "https://examplebucket.s3.amazonaws.com/?prefix=J&max-keys=2"
            .parse()
            .unwrap();
        let h = sign(
            "GET",
            &mut url,
            "us-east-1",
            &example_creds(),
            EMPTY_SHA256,
            &[],
            may_24_2013(),
        );
        assert_eq!(
            signature(&h),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
        // the URL sent carries the query exactly as signed
        assert_eq!(url.query(), Some("max-keys=2&prefix=J"));
    }

    #[test]
    fn aws_example_get_bucket_lifecycle_empty_value() {
        let mut url: url::Url = "https://examplebucket.s3.amazonaws.com/?lifecycle".parse().unwrap();
        let h = sign(
            "GET",
            &mut url,
            "us-east-1",
            &example_creds(),
            EMPTY_SHA256,
            &[],
            may_24_2013(),
        );
        assert_eq!(
            signature(&h),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
    }

    // AWS's worked example of SigV4 for a service other than S3 ("Create a signed AWS API
    // request", IAM ListUsers, 2015-08-30T12:36:00Z): no x-amz-content-sha256 header.
    #[test]
    fn aws_example_iam_list_users() {
        let creds = Creds {
            key: "AKIDEXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            token: None,
            expires: None,
        };
        let mut url: url::Url = "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08"
            .parse()
            .unwrap();
        let now = DateTime::parse_from_rfc3339("2015-08-30T12:36:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let h = sign_service(
            "iam",
            "GET",
            &mut url,
            "us-east-1",
            &creds,
            EMPTY_SHA256,
            &[("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
            now,
        );
        assert_eq!(
            signature(&h),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
        let auth = &h.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(
            auth.contains("Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, "),
            "{auth}"
        );
        assert!(!h.iter().any(|(k, _)| k == "x-amz-content-sha256"));
    }

    #[test]
    fn temporary_credentials_sign_and_send_the_token_and_ports_are_in_the_host() {
        let mut c = example_creds();
        c.token = Some("session/token+=".into());
        let mut url: url::Url = "http://127.0.0.1:5000/bkt/a%3Db/x.json?prefix=a b/c".parse().unwrap();
        let h = sign("GET", &mut url, "us-east-1", &c, EMPTY_SHA256, &[], may_24_2013());
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("x-amz-security-token").as_deref(), Some("session/token+="));
        assert!(get("authorization")
            .unwrap()
            .contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));
        assert_eq!(get("host"), None, "the HTTP client sends Host itself");
        assert_eq!(url.query(), Some("prefix=a%20b%2Fc"));
        assert_eq!(url.path(), "/bkt/a%3Db/x.json");
    }
}
