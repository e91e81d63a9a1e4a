//! Container image references, parsed to the grammar of the distribution project's
//! `reference` package (what Docker and podman accept): `[host[:port]/]path[:tag][@digest]`.
//! A value that parses can never be read as a runtime option: it starts with a letter or a
//! digit and holds no whitespace, `=`, quotes or control characters.

/// The longest repository name (host and path) the registries accept.
pub const MAX_NAME_LEN: usize = 255;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host with optional port (`123456789012.dkr.ecr.us-east-1.amazonaws.com`).
    pub domain: Option<String>,
    /// Repository path (`rocker/r-ver`).
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

fn alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !alnum_lower(b[0]) || !alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let dashes = sep.bytes().all(|x| x == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

/// `host[:port]`, host being dot-separated `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` labels.
fn domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

/// `[\w][\w.-]{0,127}`
fn tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// `algorithm:hex`, algorithm `[A-Za-z][A-Za-z0-9]*([+._-][A-Za-z][A-Za-z0-9]*)*`, hex ≥ 32.
fn digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['+', '.', '_', '-']).all(|c| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(|x| x.is_ascii_alphanumeric())
    });
    alg_ok && hex.len() >= 32 && hex.len() <= 256 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses `s` as an image reference, or says what is wrong with it.
pub fn parse_image_ref(s: &str) -> Result<ImageRef, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.starts_with('-') {
        return Err("must not start with '-' (it would be read as a runtime option)".into());
    }
    let (rest, digest_part) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest_part {
        if !digest(d) {
            return Err("the digest after '@' must be ALGORITHM:HEX (e.g. sha256:<64 hex digits>)".into());
        }
    }
    // A ':' after the last '/' starts the tag; one before it belongs to the registry's port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag_part) = match rest[last_slash..].find(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag_part {
        if !tag(t) {
            return Err("the tag after ':' must be 1–128 of [A-Za-z0-9_.-], not starting with '.' or '-'".into());
        }
    }
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("the repository name must be 1–{MAX_NAME_LEN} characters"));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let domain_part = if parts.len() > 1
        && (parts[0].contains('.')
            || parts[0].contains(':')
            || parts[0] == "localhost"
            || parts[0].bytes().any(|b| b.is_ascii_uppercase()))
    {
        Some(parts.remove(0))
    } else {
        None
    };
    if let Some(d) = domain_part {
        if !domain(d) {
            return Err(format!("{d:?} is not a registry host[:port]"));
        }
    }
    if let Some(bad) = parts.iter().find(|c| !path_component(c)) {
        return Err(format!(
            "path component {bad:?} must be lowercase letters and digits, joined by '.', '_', '__' or '-'"
        ));
    }
    Ok(ImageRef {
        domain: domain_part.map(str::to_string),
        path: parts.join("/"),
        tag: tag_part.map(str::to_string),
        digest: digest_part.map(str::to_string),
    })
}

/// A registry the instance logs in to before the pull, with the region to ask for its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    pub host: String,
    pub region: String,
}

/// The region of an ECR registry host, `<12-digit account>.dkr.ecr[-fips].<region>.amazonaws.com`
/// (or `.amazonaws.com.cn`); None for any other host.
pub fn ecr_region(host: &str) -> Option<&str> {
    let labels: Vec<&str> = host.split('.').collect();
    let [account, "dkr", ecr, region, rest @ ..] = labels.as_slice() else {
        return None;
    };
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && matches!(*ecr, "ecr" | "ecr-fips")
        && region_ok
        && matches!(rest, ["amazonaws", "com"] | ["amazonaws", "com", "cn"]))
    .then_some(*region)
}

/// Which registry, if any, to log in to before pulling `image`: its host when that is an ECR
/// registry (a token from `ecr get-login-password` in the registry's own region), or one of
/// the deployment's other ECR-compatible hosts (`extra`: hosts that answer to the same token,
/// e.g. the emulator's loopback registry in tests; asked in the deployment's `region`). None
/// for public images (Docker Hub, ghcr.io …) and images without a registry host.
pub fn registry_login(image: &str, extra: &[String], region: &str) -> Option<RegistryLogin> {
    let host = parse_image_ref(image).ok()?.domain?;
    if let Some(r) = ecr_region(&host) {
        return Some(RegistryLogin {
            host: host.clone(),
            region: r.to_string(),
        });
    }
    extra
        .iter()
        .any(|e| e.eq_ignore_ascii_case(&host))
        .then(|| RegistryLogin {
            host,
            region: region.to_string(),
        })
}

/// The deployment's extra ECR-compatible registry hosts: `host[:port]` entries separated by
/// commas or whitespace (the empty text is none). A bad entry is refused by position.
pub fn parse_registry_hosts(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, h) in text.split([',', ' ', '\n', '\t']).filter(|h| !h.is_empty()).enumerate() {
        if h.len() > 128 || !domain(h) {
            return Err(format!(
                "entry {i} ({:?}) is not a registry host[:port]",
                h.chars().take(64).collect::<String>()
            ));
        }
        out.push(h.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_hosts_and_the_configured_ones_are_logged_in_to_others_not() {
        let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/etl/daily:2024.06.01";
        assert_eq!(
            registry_login(ecr, &[], "us-east-1"),
            Some(RegistryLogin {
                host: "123456789012.dkr.ecr.eu-west-1.amazonaws.com".into(),
                region: "eu-west-1".into()
            })
        );
        assert_eq!(
            ecr_region("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"),
            Some("us-gov-west-1")
        );
        assert_eq!(
            ecr_region("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            Some("cn-north-1")
        );
        // look-alikes are not ECR: a short account, another domain, a suffix added
        for not in [
            "12345.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io",
            "123456789012.dkr.ecr.us-east-1.example.com",
            "public.ecr.aws",
        ] {
            assert_eq!(ecr_region(not), None, "{not}");
        }
        // public images log in nowhere; a configured stand-in host does, in the deployment's region
        assert_eq!(registry_login("rocker/r-ver:4.4", &[], "us-east-1"), None);
        assert_eq!(registry_login("ghcr.io/org/img:1", &[], "us-east-1"), None);
        let extra = parse_registry_hosts("127.0.0.1:5000, registry.internal").unwrap();
        assert_eq!(extra, ["127.0.0.1:5000", "registry.internal"]);
        assert_eq!(
            registry_login("127.0.0.1:5000/burn:1", &extra, "us-east-1"),
            Some(RegistryLogin {
                host: "127.0.0.1:5000".into(),
                region: "us-east-1".into()
            })
        );
        assert_eq!(registry_login("127.0.0.1:5001/burn:1", &extra, "us-east-1"), None);
        assert_eq!(parse_registry_hosts("").unwrap(), Vec::<String>::new());
        let e = parse_registry_hosts("ok.io,host;rm").unwrap_err();
        assert!(e.contains("entry 1"), "{e}");
    }

    #[test]
    fn real_references_parse() {
        for ok in [
            "ubuntu",
            "rocker/r-ver:4.4",
            "python:3.12-slim",
            "localhost:5000/team/job:v1",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/etl/daily:2024.06.01",
            "ghcr.io/org/img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "a__b/c--d/e.f:_x",
        ] {
            assert!(parse_image_ref(ok).is_ok(), "{ok}: {:?}", parse_image_ref(ok));
        }
    }

    #[test]
    fn options_and_junk_are_refused() {
        // GIVEN values that a runtime would read as options or that no registry serves
        for bad in [
            "--volume=/:/host",
            "-v/:/host",
            "--privileged",
            "ubuntu --privileged",
            "Ubuntu",
            "ubuntu:",
            "ubuntu:-x",
            "a//b",
            "a/.b",
            "ubuntu@sha256:12",
            "x\ny",
            "img;rm",
            "",
        ] {
            // THEN each is refused with a reason
            assert!(parse_image_ref(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
