//! Typed scalars of the spec — durations, byte sizes, CPU amounts, endpoints — each parsed
//! from the text a person writes (`1m30s`, `512Mi`, `500m`) with a message that says what is
//! accepted.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

macro_rules! string_scalar {
    ($ty:ident, $schema_name:literal, $pattern:literal, $description:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = RawScalar::deserialize(d)?;
                $ty::parse(&raw.0).map_err(de::Error::custom)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($schema_name)
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                schemars::json_schema!({
                    "type": ["string", "number"],
                    "pattern": $pattern,
                    "description": $description,
                })
            }
        }
    };
}

/// Accepts a string or a number and hands over its text, so `cpu: 2` and `cpu: "2"` agree.
struct RawScalar(String);

impl<'de> Deserialize<'de> for RawScalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = RawScalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A span of time, written `500ms`, `10s`, `5m`, `1h`, or combined: `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// The longest duration accepted: 100 years of 365 days. Longer than any schedule or
    /// timeout means, and short enough that adding it to any `Instant` or `SystemTime` cannot
    /// overflow (which panics).
    pub const MAX: Duration = Duration(std::time::Duration::from_secs(876_000 * 3600));

    /// Reads `500ms`, `10s`, `1.5m`, `1h30m`… exactly, in integer nanoseconds (digits beyond a
    /// nanosecond are dropped), with checked arithmetic: a value above [`Duration::MAX`] is
    /// an error, never a panic or a wrap.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let bad = || {
            format!(
                "malformed duration `{text}`: write a number and a unit (ms, s, m, h, d), e.g. `500ms`, `10s`, `1m30s`, `30d`"
            )
        };
        let too_large = || format!("duration `{text}` is too large: at most {} (100 years)", Duration::MAX);
        let max_nanos = Duration::MAX.0.as_nanos();
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let end = rest
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(rest.len());
            let (number, tail) = rest.split_at(end);
            let unit_end = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_end);
            rest = tail;
            let unit_nanos: u128 = match unit {
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "d" => 86_400_000_000_000,
                _ => return Err(bad()),
            };
            let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
            if whole.len() + fraction.len() == 0 || fraction.contains('.') {
                return Err(bad());
            }
            let digits = |s: &str| {
                s.bytes()
                    .try_fold(0u128, |n, d| n.checked_mul(10)?.checked_add(u128::from(d - b'0')))
            };
            // 18 fractional digits are finer than a nanosecond of an hour and keep the
            // product below u128::MAX.
            let fraction = &fraction[..fraction.len().min(18)];
            let fraction_nanos = digits(fraction).ok_or_else(bad)? * unit_nanos / 10u128.pow(fraction.len() as u32);
            total = digits(whole)
                .and_then(|w| w.checked_mul(unit_nanos))
                .and_then(|n| n.checked_add(fraction_nanos))
                .and_then(|n| n.checked_add(total))
                .filter(|n| *n <= max_nanos)
                .ok_or_else(too_large)?;
        }
        let nanos = u64::try_from(total).map_err(|_| too_large())?;
        Ok(Duration(std::time::Duration::from_nanos(nanos)))
    }

    pub fn from_millis(ms: u64) -> Duration {
        Duration(std::time::Duration::from_millis(ms))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 != 0 || ms == 0 {
            write!(f, "{ms}ms")
        } else if ms % 60_000 != 0 {
            write!(f, "{}s", ms / 1000)
        } else if ms % 3_600_000 != 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms % 86_400_000 != 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else {
            write!(f, "{}d", ms / 86_400_000)
        }
    }
}

string_scalar!(
    Duration,
    "Duration",
    "^([0-9.]+(ms|s|m|h|d))+$",
    "A duration: a number and a unit (ms, s, m, h, d), e.g. `500ms`, `10s`, `1m30s`, `30d`."
);

/// An amount of memory or storage in bytes, written `512Mi`, `2Gi`, `1G`, or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let bad = || {
            format!("malformed size `{text}`: write a number and an optional unit (Ki, Mi, Gi, Ti, k, M, G, T), e.g. `512Mi`")
        };
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
        let number: f64 = t[..split].parse().map_err(|_| bad())?;
        let scale: u64 = match &t[split..] {
            "" => 1,
            "k" | "K" => 1000,
            "M" => 1000_u64.pow(2),
            "G" => 1000_u64.pow(3),
            "T" => 1000_u64.pow(4),
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => return Err(bad()),
        };
        let bytes = (number * scale as f64).round();
        // `as u64` would saturate: a size that large is refused, not read as 16 EiB.
        if bytes >= u64::MAX as f64 {
            return Err(format!("size `{text}` is too large"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (unit, scale) in [("Ti", 1u64 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
            if self.0 >= scale && self.0 % scale == 0 {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}", self.0)
    }
}

string_scalar!(
    ByteSize,
    "ByteSize",
    "^[0-9.]+(Ki|Mi|Gi|Ti|k|K|M|G|T)?$",
    "A size in bytes: a number and an optional unit (Ki, Mi, Gi, Ti, k, M, G, T), e.g. `512Mi`."
);

/// An amount of CPU in thousandths of a core, written `2`, `1.5` or `500m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cpu(pub u64);

impl Cpu {
    pub fn parse(text: &str) -> Result<Cpu, String> {
        let bad = || format!("malformed CPU amount `{text}`: write cores (`2`, `0.5`) or millicores (`500m`)");
        let t = text.trim();
        if let Some(milli) = t.strip_suffix('m') {
            return milli.parse::<u64>().map(Cpu).map_err(|_| bad());
        }
        let cores: f64 = t.parse().map_err(|_| bad())?;
        if !cores.is_finite() || cores < 0.0 {
            return Err(bad());
        }
        if cores * 1000.0 >= u64::MAX as f64 {
            return Err(format!("CPU amount `{text}` is too large"));
        }
        Ok(Cpu((cores * 1000.0).round() as u64))
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.0 % 1000 == 0 {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

string_scalar!(
    Cpu,
    "Cpu",
    "^([0-9.]+|[0-9]+m)$",
    "CPU: cores (`2`, `0.5`) or millicores (`500m`)."
);

/// Checks a repository URL: `file:///abs/path`, a plain absolute path, or
/// `s3://bucket[/prefix][?endpoint=http://host:port&region=r]`.
pub fn check_repository_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| format!("malformed repository URL `{url}`: {why}");
    if url.starts_with('/') {
        return Ok(());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad("expected `file:///path`, `/path` or `s3://bucket/prefix`"));
    };
    match scheme {
        "file" if rest.starts_with('/') => Ok(()),
        "file" => Err(bad("a file URL needs an absolute path, e.g. `file:///var/backups/a`")),
        "s3" => {
            let (bucket_path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let bucket = bucket_path.split('/').next().unwrap_or("");
            if bucket.is_empty()
                || !bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            {
                return Err(bad("the bucket name must be lowercase letters, digits, `-` and `.`"));
            }
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("endpoint", v)) => check_http_url(v).map_err(|e| bad(&e))?,
                    Some(("region", _)) => {}
                    _ => return Err(bad(&format!("unknown parameter `{pair}` (known: endpoint, region)"))),
                }
            }
            Ok(())
        }
        other => Err(bad(&format!("unsupported scheme `{other}` (supported: file, s3)"))),
    }
}

/// Checks an `http://host[:port][/path]` or `https://…` URL.
pub fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("malformed URL `{url}`: expected http:// or https://"))?;
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return Err(format!("malformed URL `{url}`: no host"));
    }
    if let Some(p) = port {
        p.parse::<u16>()
            .map_err(|_| format!("malformed URL `{url}`: bad port `{p}`"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("1m30s").unwrap().0.as_secs(), 90);
        assert_eq!(Duration::parse("500ms").unwrap().0.as_millis(), 500);
        assert_eq!(Duration::parse("1.5s").unwrap().0.as_millis(), 1500);
        assert!(Duration::parse("10").is_err());
        assert!(Duration::parse("5x").is_err());
        assert!(Duration::parse("").is_err());
        assert_eq!(Duration::parse("90s").unwrap().to_string(), "90s");
        assert_eq!(
            Duration::parse("0.1s").unwrap().0.as_nanos(),
            100_000_000,
            "exact, no float"
        );
        assert_eq!(Duration::parse(".5s").unwrap().0.as_millis(), 500);
        assert_eq!(Duration::parse("1.5m").unwrap().0.as_secs(), 90);
        assert_eq!(Duration::parse("876000h").unwrap(), Duration::MAX);
        assert!(Duration::parse("876000h1ms").unwrap_err().contains("too large"));
    }

    /// Regression: these panicked in `from_secs_f64` or `+=` (issue 8, item 7).
    #[test]
    fn durations_too_large_are_refused_not_panics() {
        for text in [
            "99999999999999999999h",
            "18446744073709551615s1s",
            "5124095576030431h5124095576030431h",
            "9999999999999999999999999999999999999999ms",
        ] {
            let e = Duration::parse(text).expect_err(text);
            assert!(e.contains("too large") && e.contains(text), "{text}: {e}");
        }
    }

    #[test]
    fn malformed_durations_are_refused() {
        for text in [
            "", " ", "10", "5x", "s", "1.2.3s", ".s", "1s2", "-1s", "1e3s", "1e400s", "NaNs", "infs", "1 s", "1m 30s",
        ] {
            let e = Duration::parse(text).expect_err(text);
            assert!(e.starts_with(&format!("malformed duration `{text}`")), "{text}: {e}");
        }
    }

    #[test]
    fn sizes_and_cpu() {
        assert_eq!(ByteSize::parse("512Mi").unwrap().0, 512 << 20);
        assert_eq!(ByteSize::parse("1G").unwrap().0, 1_000_000_000);
        assert!(ByteSize::parse("12XB").is_err());
        assert_eq!(Cpu::parse("500m").unwrap().0, 500);
        assert_eq!(Cpu::parse("1.5").unwrap().0, 1500);
        assert!(Cpu::parse("lots").is_err());
        assert!(ByteSize::parse("99999999999999999999Ti")
            .unwrap_err()
            .contains("too large"));
        assert!(Cpu::parse("99999999999999999999").unwrap_err().contains("too large"));
    }

    #[test]
    fn urls() {
        assert!(check_repository_url("file:///var/b").is_ok());
        assert!(check_repository_url("s3://bkt/pre?endpoint=http://127.0.0.1:9000").is_ok());
        assert!(check_repository_url("ftp://x").is_err());
        assert!(check_repository_url("s3://Bad_Bucket").is_err());
        assert!(check_http_url("http://127.0.0.1:99999/").is_err());
    }
}

/// Formats a time as RFC 3339 in UTC with `digits` fractional digits (0 to 9):
/// `2026-11-21T10:15:00Z`, `…:00.123Z`, `…:00.123456Z`. Times before 1970 are supported.
pub fn format_rfc3339(t: std::time::SystemTime, digits: u8) -> String {
    // Beyond jiff's years -9999..=9999 only with a corrupt clock or record: shown at the edge.
    let at = jiff::Timestamp::try_from(t).unwrap_or(if t < std::time::UNIX_EPOCH {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    });
    format!("{at:.0$}", usize::from(digits.min(9)))
}

/// Parses an RFC 3339 time with an offset (`2026-11-21T10:15:00Z`,
/// `2026-11-21T11:15:00.5+01:00`) into seconds since the Unix epoch, to the microsecond. An
/// impossible date or time (`2026-02-31`, `24:00:01`) is refused, never carried over.
pub fn parse_rfc3339(text: &str) -> Result<f64, String> {
    let at: jiff::Timestamp = text.trim().parse().map_err(|e| {
        format!("invalid time `{text}`: {e} (write RFC 3339 with an offset, e.g. `2026-11-21T10:15:00Z`)")
    })?;
    Ok(at.as_microsecond() as f64 / 1e6)
}

#[cfg(test)]
mod time_tests {
    use super::parse_rfc3339;

    #[test]
    fn rfc3339_formats() {
        use super::format_rfc3339;
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(format_rfc3339(UNIX_EPOCH, 3), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_000_000_123), 3),
            "2026-11-18T11:06:40.123Z"
        );
        assert_eq!(
            format_rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400), 0),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            format_rfc3339(UNIX_EPOCH + Duration::from_micros(1_500_001), 6),
            "1970-01-01T00:00:01.500001Z"
        );
        assert_eq!(
            format_rfc3339(UNIX_EPOCH - Duration::from_secs(1), 0),
            "1969-12-31T23:59:59Z"
        );
        let t = UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456);
        assert_eq!(parse_rfc3339(&format_rfc3339(t, 6)).unwrap(), 1_795_000_000.123456);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap(), 0.0);
        assert_eq!(parse_rfc3339("2026-11-18T11:06:40.123Z").unwrap(), 1_795_000_000.123);
        assert_eq!(parse_rfc3339("2026-11-18T12:06:40+01:00").unwrap(), 1_795_000_000.0);
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z").unwrap(), 951_782_400.0);
        assert_eq!(parse_rfc3339("2026-11-18 11:06:40.5z").unwrap(), 1_795_000_000.5);
    }

    /// Regression: `2026-02-31` was read as 2026-03-03, so `restore --at` restored another
    /// point in time (issue 8, item 7).
    #[test]
    fn impossible_or_malformed_times_are_refused_naming_the_text() {
        for (text, why) in [
            ("2026-02-31T00:00:00Z", "day"),
            ("2025-02-29T00:00:00Z", "day"),
            ("2026-04-31T00:00:00Z", "day"),
            ("2026-13-01T00:00:00Z", "month"),
            ("2026-00-01T00:00:00Z", "month"),
            ("2026-01-01T24:00:01Z", "hour"),
            ("2026-01-01T23:60:00Z", "minute"),
            ("2026-11-18T12:06:40", "offset"),
            ("2026-11-18", "time"),
            ("yesterday", "year"),
            ("", "year"),
        ] {
            let e = parse_rfc3339(text).expect_err(text);
            assert!(e.starts_with(&format!("invalid time `{text}`: ")), "{e}");
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
