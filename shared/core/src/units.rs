//! Byte units used across the domain. Memory is carried as bytes (u64) everywhere inside;
//! job specs and the CLI speak GiB (2^30) because that is how people size machines.

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// GiB (may be fractional) to bytes, saturating; negative or NaN gives 0.
pub fn gib_to_bytes(gib: f64) -> u64 {
    if gib.is_nan() || gib <= 0.0 {
        0
    } else {
        (gib * GIB as f64).min(u64::MAX as f64) as u64
    }
}

pub fn bytes_to_gib(bytes: u64) -> f64 {
    bytes as f64 / GIB as f64
}

/// Parses a human memory size: `16GiB`, `512MiB`, `1.5G`, `2048M`, `1T`, or a bare number of GiB.
/// Decimal (GB) and binary (GiB) suffixes are both taken as binary: instance memory is sold in GiB.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a memory size (e.g. 16GiB, 512MiB)"))?;
    let mult = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "g" | "gb" | "gib" => GIB,
        "m" | "mb" | "mib" => MIB,
        "k" | "kb" | "kib" => KIB,
        "t" | "tb" | "tib" => 1024 * GIB,
        "b" => 1,
        other => {
            return Err(format!(
                "unknown memory unit `{other}` in `{s}` (use KiB, MiB, GiB or TiB)"
            ))
        }
    };
    if !value.is_finite() || value < 0.0 {
        return Err(format!("`{s}` must be a non-negative size"));
    }
    Ok((value * mult as f64) as u64)
}

/// Formats bytes for tables: `1.50 GiB`, `300.0 MiB`.
pub fn fmt_bytes(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{:.2} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / KIB as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_sizes() {
        assert_eq!(parse_memory("16GiB"), Ok(16 * GIB));
        assert_eq!(parse_memory("512MiB"), Ok(512 * MIB));
        assert_eq!(parse_memory("1.5G"), Ok(GIB + 512 * MIB));
        assert_eq!(parse_memory("8"), Ok(8 * GIB));
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("3 parsecs").is_err());
    }
}
