//! EC2 spot interruption notices through IMDSv2 (token first, then the metadata path with the
//! token). A tiny HTTP/1.1 client on std's TcpStream: IMDS is plain HTTP on a link-local
//! address, and pulling an HTTP stack into the agent for two requests would cost more RSS.

use crate::SpotNotice;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
/// IMDS answers in well under a millisecond on EC2; anything slower means "not on EC2".
const TIMEOUT: Duration = Duration::from_secs(1);
const TOKEN_TTL_S: u64 = 21_600;

/// An IMDSv2 client.
#[derive(Debug)]
pub struct Imds {
    host: String,
    token: Option<(String, Instant)>,
}

/// Parses an IMDS endpoint, `http://host[:port][/]`, into `host:port`; the reason otherwise.
/// IMDS speaks plain HTTP on a link-local address, so nothing else is a valid endpoint.
pub fn parse_endpoint(endpoint: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!(
            "{:?} is not an IMDS endpoint (http://host[:port]): {why}",
            endpoint.chars().take(80).collect::<String>()
        )
    };
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| bad("must start with http://"))?;
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => (hostport, "80"),
    };
    if host.is_empty()
        || host.len() > 253
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        || host.starts_with(['-', '.'])
    {
        return Err(bad("the host must be a name or an IPv4 address"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(format!("{host}:{p}")),
        _ => Err(bad("the port must be 1–65535")),
    }
}

impl Imds {
    /// `endpoint`: `http://host[:port]` (see [`parse_endpoint`]).
    pub fn new(endpoint: &str) -> io::Result<Self> {
        let host = parse_endpoint(endpoint).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Self { host, token: None })
    }

    fn token(&mut self) -> io::Result<String> {
        if let Some((t, at)) = &self.token {
            if at.elapsed() < Duration::from_secs(TOKEN_TTL_S - 60) {
                return Ok(t.clone());
            }
        }
        let ttl = TOKEN_TTL_S.to_string();
        let (status, body) = self.request(
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", &ttl)],
        )?;
        if status != 200 {
            return Err(io::Error::other(format!("IMDS token request answered {status}")));
        }
        let t = body.trim().to_string();
        self.token = Some((t.clone(), Instant::now()));
        Ok(t)
    }

    /// `GET path` with the session token (fetched, and re-fetched when stale, first): status
    /// and body. A 401 drops the token, so the next call asks for a new one. Also what the slim
    /// agent reads its instance-role credentials with.
    pub fn get(&mut self, path: &str) -> io::Result<(u16, String)> {
        let token = self.token()?;
        let (status, body) = self.request("GET", path, &[("X-aws-ec2-metadata-token", &token)])?;
        if status == 401 {
            self.token = None;
        }
        Ok((status, body))
    }

    /// The pending spot interruption, if any (`Ok(None)`: none scheduled).
    pub fn spot_notice(&mut self) -> io::Result<Option<SpotNotice>> {
        let (status, body) = self.get("/latest/meta-data/spot/instance-action")?;
        match status {
            200 => {
                let v: serde_json::Value = serde_json::from_str(&body).map_err(io::Error::other)?;
                Ok(Some(SpotNotice {
                    action: v["action"].as_str().unwrap_or("terminate").to_string(),
                    time: v["time"].as_str().unwrap_or_default().to_string(),
                    seen_at_ms: chrono::Utc::now().timestamp_millis(),
                }))
            }
            404 => Ok(None),
            401 => Err(io::Error::other("IMDS token rejected")),
            s => Err(io::Error::other(format!("IMDS answered {s}"))),
        }
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> io::Result<(u16, String)> {
        let addr = self
            .host
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "IMDS host did not resolve"))?;
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.host
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Content-Length: 0\r\n\r\n");
        s.write_all(req.as_bytes())?;
        let mut resp = Vec::new();
        s.take(64 * 1024).read_to_end(&mut resp)?;
        parse_response(&resp)
    }
}

/// Status and body of a `Connection: close` HTTP/1.x response with a plain body.
fn parse_response(resp: &[u8]) -> io::Result<(u16, String)> {
    let text = String::from_utf8_lossy(resp);
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response from IMDS");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls every `every` on its own thread until `stop`; calls `on_notice` once, on the first notice.
pub(crate) fn spawn_poller(
    endpoint: String,
    every: Duration,
    stop: Arc<AtomicBool>,
    on_notice: impl FnOnce(SpotNotice) + Send + 'static,
) -> io::Result<()> {
    let mut imds = Imds::new(&endpoint)?;
    std::thread::Builder::new().name("spotfit-imds".into()).spawn(move || {
        let mut failures = 0u32;
        while !stop.load(Ordering::Relaxed) {
            match imds.spot_notice() {
                Ok(Some(n)) => {
                    on_notice(n);
                    return;
                }
                Ok(None) => failures = 0,
                Err(e) => {
                    failures += 1;
                    // Off EC2 nothing answers: stop trying after a few attempts instead of forever.
                    if failures == 3 {
                        tracing::info!(error = %e, "IMDS unreachable; spot notices will not be seen");
                        return;
                    }
                }
            }
            std::thread::sleep(every);
        }
    })?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses_and_endpoints() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((s, b.as_str()), (200, "ok"));
        assert!(parse_response(b"garbage").is_err());
        assert_eq!(Imds::new("http://127.0.0.1:8080/").unwrap().host, "127.0.0.1:8080");
        assert!(Imds::new("https://x").is_err());
    }

    #[test]
    fn polls_a_local_imds_with_a_token() {
        // GIVEN a one-connection-at-a-time IMDSv2 stand-in that demands the token
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for (i, c) in l.incoming().enumerate() {
                let mut c = c.unwrap();
                let mut buf = [0u8; 2048];
                let n = c.read(&mut buf).unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let resp = if req.starts_with("PUT /latest/api/token") {
                    "HTTP/1.1 200 OK\r\n\r\nTOKEN123".to_string()
                } else if !req.contains("X-aws-ec2-metadata-token: TOKEN123") {
                    "HTTP/1.1 401 Unauthorized\r\n\r\n".to_string()
                } else if i < 2 {
                    "HTTP/1.1 404 Not Found\r\n\r\n".to_string()
                } else {
                    "HTTP/1.1 200 OK\r\n\r\n{\"action\": \"terminate\", \"time\": \"2026-11-26T02:00:00Z\"}".to_string()
                };
                c.write_all(resp.as_bytes()).unwrap();
            }
        });
        let mut imds = Imds::new(&format!("http://127.0.0.1:{port}")).unwrap();
        // WHEN polled twice  THEN nothing, then the notice
        assert_eq!(imds.spot_notice().unwrap(), None);
        let n = imds.spot_notice().unwrap().unwrap();
        assert_eq!(n.action, "terminate");
        assert_eq!(n.time, "2026-11-26T02:00:00Z");
    }
}
