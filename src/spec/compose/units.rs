//! Durations (`1m30s`), byte sizes (`512m`) and CPU counts (`0.5`), read the way compose and
//! Docker read them.

/// A Go-style duration (`10s`, `1m30s`, `500ms`, `1.5h`, `0`) in nanoseconds.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("`{s}` is not a duration; write it like 10s, 1m30s or 500ms");
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    if t.is_empty() || t.starts_with('-') {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    let mut rest = t.strip_prefix('+').unwrap_or(t);
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if total > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(total.round() as i64)
}

/// A byte size as Docker reads `--memory`: a number with an optional unit b, k, m, g, t, p
/// (powers of 1024; `kb`, `KiB` and so on too).
pub(crate) fn parse_bytes(s: &str) -> Result<i64, String> {
    let bad = || format!("`{s}` is not a size; write it like 512m, 1g or a number of bytes");
    let t = s.trim();
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    if num_len == 0 {
        return Err(bad());
    }
    let number: f64 = t[..num_len].parse().map_err(|_| bad())?;
    let unit = t[num_len..].trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(bad()),
    };
    let bytes = number * 1024f64.powi(power);
    if bytes > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// A CPU count (`0.5`, `2`) as nano-CPUs.
pub(crate) fn cpus_to_nano(x: f64) -> Result<i64, String> {
    if !x.is_finite() || x <= 0.0 || x > 1e6 {
        return Err(format!(
            "`{x}` is not a CPU count; write a positive number like 0.5 or 2"
        ));
    }
    Ok((x * 1e9).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok: &[(&str, i64)] = &[
            ("10s", 10_000_000_000),
            ("1m30s", 90_000_000_000),
            ("500ms", 500_000_000),
            ("1h", 3_600_000_000_000),
            ("1.5s", 1_500_000_000),
            ("2us", 2_000),
            ("0", 0),
            ("0s", 0),
        ];
        for (s, want) in ok {
            assert_eq!(parse_duration(s), Ok(*want), "{s}");
        }
        for s in ["", "10", "s", "-1s", "1x", "1m30", "abc"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn byte_sizes() {
        let ok: &[(&str, i64)] = &[
            ("512m", 512 * 1024 * 1024),
            ("1g", 1 << 30),
            ("1G", 1 << 30),
            ("1gb", 1 << 30),
            ("2GiB", 2 << 30),
            ("100k", 102_400),
            ("1024", 1024),
            ("1024b", 1024),
            ("1.5g", 3 << 29),
        ];
        for (s, want) in ok {
            assert_eq!(parse_bytes(s), Ok(*want), "{s}");
        }
        for s in ["", "m", "1x", "-1m", "1 gigabyte"] {
            assert!(parse_bytes(s).is_err(), "{s}");
        }
    }

    #[test]
    fn cpus() {
        assert_eq!(cpus_to_nano(0.5), Ok(500_000_000));
        assert_eq!(cpus_to_nano(2.0), Ok(2_000_000_000));
        assert!(cpus_to_nano(0.0).is_err());
        assert!(cpus_to_nano(-1.0).is_err());
    }
}
