//! Durations as Centrifugo writes them: Go's `time.ParseDuration` syntax (`"300s"`, `"1m30s"`,
//! `"500ms"`, `"720h"`), plus a bare whole number meaning seconds (`300` or `"300"`).
//!
//! Centrifugo v6 itself only takes strings; accepting integers too costs nothing and spares a
//! surprise for anyone who writes `history_ttl = 300`. Negative durations are refused: Centrifugo
//! uses `-1` to switch a few timers off, Gyre uses `0` for that where it is allowed.
//! Fields use this module through `#[serde(with = "duration")]`, so the structs keep plain
//! [`std::time::Duration`]s and their users never see a wrapper type.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Why a duration text was refused. The text itself is added by the caller that knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("negative durations are not supported")]
    Negative,
    #[error("a number must be followed by a unit (ns, us, ms, s, m, h)")]
    MissingUnit,
    #[error("unknown unit (use ns, us, ms, s, m or h)")]
    UnknownUnit,
    #[error("expected a number")]
    MissingNumber,
    #[error("duration too large")]
    Overflow,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses `"1h2m3.5s"`-style text, or a whole number of seconds (`"30"`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = s.parse().map_err(|_| DurationError::Overflow)?;
        return Ok(Duration::from_secs(secs));
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DurationError::MissingNumber);
        }
        let unit_len = after
            .char_indices()
            .find(|&(_, c)| c.is_ascii_digit() || c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "" => return Err(DurationError::MissingUnit),
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            _ => return Err(DurationError::UnknownUnit),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| DurationError::Overflow)?
        };
        let mut nanos = int.checked_mul(unit_nanos).ok_or(DurationError::Overflow)?;
        // Fractions beyond nanosecond precision are dropped, as Go does.
        let mut scale = unit_nanos;
        for digit in frac_part.bytes().take(30) {
            scale /= 10;
            nanos += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or(DurationError::Overflow)?;
        rest = after;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| DurationError::Overflow)?;
    Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

/// Formats text [`parse_duration`] reads back to the same value, in the style of Centrifugo's
/// defaults: whole hours as `"720h"`, less than an hour in seconds (`"60s"`, `"300s"`), other
/// values composed (`"1h30m"`), fractions as `ms`/`us`/`ns` (`"500ms"`, `"1s500ms"`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let secs = d.as_secs();
    let parts: [(u64, &str); 3] = if secs < 3600 {
        [(0, "h"), (0, "m"), (secs, "s")]
    } else {
        [(secs / 3600, "h"), (secs / 60 % 60, "m"), (secs % 60, "s")]
    };
    let sub = u64::from(d.subsec_nanos());
    let fraction = [
        (sub / 1_000_000, "ms"),
        (sub / 1_000 % 1_000, "us"),
        (sub % 1_000, "ns"),
    ];
    let mut out = String::new();
    for (value, unit) in parts.into_iter().chain(fraction) {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

/// Serde adapter for `Duration` fields: `#[serde(with = "duration")]`.
pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*d))
}

/// Serde adapter for `Duration` fields: accepts a duration string or whole seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a duration such as "25s", "1m30s", "500ms" or "720h", or whole seconds"#)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(|e| E::custom(format_args!("invalid duration `{v}`: {e}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom("negative durations are not supported"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_go_syntax() {
        assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("25s"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_duration("720h"), Ok(Duration::from_secs(720 * 3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("1h0m0s"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_duration("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("1s500ms"), Ok(ms(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 30 "), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn refuses_bad_text() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("-1s"), Err(DurationError::Negative));
        assert_eq!(parse_duration("10x"), Err(DurationError::UnknownUnit));
        assert_eq!(parse_duration("10d"), Err(DurationError::UnknownUnit));
        assert_eq!(parse_duration("1m30"), Err(DurationError::MissingUnit));
        assert_eq!(parse_duration("s"), Err(DurationError::MissingNumber));
        assert_eq!(parse_duration("1.5"), Err(DurationError::MissingUnit));
        assert_eq!(
            parse_duration("99999999999999999999h"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn formats_shortest_and_round_trips() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(25), "25s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(60), "60s"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(3601), "1h1s"),
            (Duration::from_secs(720 * 3600), "720h"),
            (ms(500), "500ms"),
            (ms(1500), "1s500ms"),
            (Duration::new(3661, 1_001), "1h1m1s1us1ns"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn serde_accepts_strings_and_whole_seconds() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct T {
            #[serde(with = "super")]
            d: Duration,
        }
        let t: T = serde_json::from_str(r#"{"d":"1m"}"#).unwrap();
        assert_eq!(t.d, Duration::from_secs(60));
        let t: T = serde_json::from_str(r#"{"d":42}"#).unwrap();
        assert_eq!(t.d, Duration::from_secs(42));
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"d":"42s"}"#);
        let err = serde_json::from_str::<T>(r#"{"d":-5}"#).err().unwrap();
        assert!(err.to_string().contains("negative"), "{err}");
        let err = serde_json::from_str::<T>(r#"{"d":"5 parsecs"}"#)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("invalid duration `5 parsecs`"),
            "{err}"
        );
        let err = serde_json::from_str::<T>(r#"{"d":true}"#).err().unwrap();
        assert!(err.to_string().contains("a duration such as"), "{err}");
    }
}
