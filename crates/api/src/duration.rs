//! The one duration grammar, shared by manifests (`restart.backoff`, `health.interval`,
//! `health.timeout`, `health.initialDelay`) and every CLI flag that takes a duration
//! (`--ttl`, `--grace`, `--heartbeat`, `--since`, `--duration`, the server's timeouts).
//!
//! The grammar is Go's / Kubernetes' compound duration, with days, and with plain seconds:
//!
//! ```text
//! duration = number                 plain seconds: "90", "1.5"
//!          | (number unit)+         a sum of parts: "1h30m", "1m30s", "1.5s", "7d"
//! number   = digits ["." digits] | "." digits
//! unit     = "ms" | "s" | "m" | "h" | "d"        (a day is 86 400 seconds)
//! ```
//!
//! Surrounding whitespace is ignored; nothing else is (no signs, no spaces inside). It is
//! the union of what the three grammars this replaced accepted: manifests' sums of parts
//! with fractions (`1m30s`, `1.5s`), `bench`'s plain seconds (`3`), `audit log --since`'s
//! days (`7d`). Zero is a duration (`0s`, `0`); callers that need more than zero say so
//! ([`parse_nonzero`]). Arithmetic is exact (integer nanoseconds; fraction digits beyond
//! nanoseconds are dropped) and overflow is an error, never a wrap or a panic.
//!
//! [`Duration`]'s `Display` writes the canonical form (`1h30m`, `1m30s500ms`, `7d`, `0s`),
//! which parses back to the same value.

use std::fmt;
use std::str::FromStr;

/// A length of time written in the Meridian duration grammar (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

/// What a duration parser refuses, naming the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError {
    text: String,
    kind: DurationErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum DurationErrorKind {
    Syntax,
    UnknownUnit(String),
    Overflow,
    Zero,
}

/// The example every message ends with.
const EXAMPLE: &str = "expected a duration such as 30s, 5m, 1h30m or 7d";

const NANOS_PER_SEC: u128 = 1_000_000_000;
const UNITS: [(&str, u128); 5] = [
    ("ms", 1_000_000),
    ("s", NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("d", 86_400 * NANOS_PER_SEC),
];

impl DurationError {
    fn new(text: &str, kind: DurationErrorKind) -> Self {
        DurationError {
            text: text.to_string(),
            kind,
        }
    }

    /// The text that was refused.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = &self.text;
        match &self.kind {
            DurationErrorKind::Syntax => write!(f, "{text:?} is not a duration: {EXAMPLE}"),
            DurationErrorKind::UnknownUnit(u) => write!(
                f,
                "{text:?} is not a duration: unknown unit {u:?} (use ms, s, m, h or d); {EXAMPLE}"
            ),
            DurationErrorKind::Overflow => {
                write!(f, "{text:?} is too long a duration: {EXAMPLE}")
            }
            DurationErrorKind::Zero => write!(f, "{text:?} must be more than 0: {EXAMPLE}"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses `s` in the duration grammar (zero allowed).
pub fn parse(s: &str) -> Result<std::time::Duration, DurationError> {
    let text = s;
    let s = s.trim();
    let syntax = || DurationError::new(text, DurationErrorKind::Syntax);
    let overflow = || DurationError::new(text, DurationErrorKind::Overflow);
    if s.is_empty() {
        return Err(syntax());
    }
    let mut rest = s;
    let mut total: u128 = 0;
    let mut parts = 0;
    while !rest.is_empty() {
        let (int, frac, after) = number(rest).ok_or_else(syntax)?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let unit = &after[..unit_len];
        let scale = if unit.is_empty() {
            // Plain seconds: a bare number, alone.
            if parts > 0 || !after.is_empty() {
                return Err(syntax());
            }
            NANOS_PER_SEC
        } else {
            match UNITS.iter().find(|(u, _)| *u == unit) {
                Some((_, scale)) => *scale,
                None if unit.chars().all(|c| c.is_ascii_alphabetic()) => {
                    return Err(DurationError::new(
                        text,
                        DurationErrorKind::UnknownUnit(unit.to_string()),
                    ));
                }
                None => return Err(syntax()),
            }
        };
        let part = part_nanos(int, frac, scale).ok_or_else(overflow)?;
        total = total.checked_add(part).ok_or_else(overflow)?;
        rest = &after[unit_len..];
        parts += 1;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| overflow())?;
    let nanos = (total % NANOS_PER_SEC) as u32;
    Ok(std::time::Duration::new(secs, nanos))
}

/// Parses `s` in the duration grammar and refuses zero (intervals, timeouts, periods).
pub fn parse_nonzero(s: &str) -> Result<std::time::Duration, DurationError> {
    let d = parse(s)?;
    if d.is_zero() {
        return Err(DurationError::new(s, DurationErrorKind::Zero));
    }
    Ok(d)
}

/// Splits a leading `digits[.digits]` (or `.digits`) off `s`: integer digits, fraction
/// digits, the rest. `None` when there is no digit.
fn number(s: &str) -> Option<(&str, &str, &str)> {
    let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (int, rest) = s.split_at(int_len);
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            if n == 0 {
                return None;
            }
            r.split_at(n)
        }
        None => ("", rest),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    Some((int, frac, rest))
}

/// `int.frac` times `scale` nanoseconds, exactly (fraction digits beyond what `scale`
/// can resolve are dropped). `None` on overflow.
fn part_nanos(int: &str, frac: &str, scale: u128) -> Option<u128> {
    let mut nanos: u128 = 0;
    for d in int.bytes() {
        nanos = nanos
            .checked_mul(10)?
            .checked_add(u128::from(d - b'0') * scale)?;
    }
    let mut unit = scale;
    for d in frac.bytes() {
        unit /= 10;
        if unit == 0 {
            break;
        }
        nanos = nanos.checked_add(u128::from(d - b'0') * unit)?;
    }
    Some(nanos)
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    /// The `std` duration.
    pub fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).map(Duration)
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl fmt::Display for Duration {
    /// Canonical form: days, hours, minutes, seconds, milliseconds, largest first, zero
    /// parts left out (`1h30m`, `1m30s500ms`, `7d`); `0s` for zero. Sub-millisecond
    /// precision is written as fractional seconds (`1.000000500s`). Parses back exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        let secs = d.as_secs();
        let nanos = d.subsec_nanos();
        let mut out = String::new();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (hours, rem) = (rem / 3_600, rem % 3_600);
        let (minutes, seconds) = (rem / 60, rem % 60);
        for (n, unit) in [(days, "d"), (hours, "h"), (minutes, "m")] {
            if n > 0 {
                out.push_str(&format!("{n}{unit}"));
            }
        }
        if nanos.is_multiple_of(1_000_000) {
            if seconds > 0 {
                out.push_str(&format!("{seconds}s"));
            }
            if nanos > 0 {
                out.push_str(&format!("{}ms", nanos / 1_000_000));
            }
        } else {
            let frac = format!("{nanos:09}");
            out.push_str(&format!("{seconds}.{}s", frac.trim_end_matches('0')));
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    fn ok(s: &str) -> Std {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn accepts_the_union_of_the_old_grammars() {
        // Manifests: sums of parts, fractions.
        assert_eq!(ok("10s"), Std::from_secs(10));
        assert_eq!(ok("500ms"), Std::from_millis(500));
        assert_eq!(ok("1m30s"), Std::from_secs(90));
        assert_eq!(ok("1.5s"), Std::from_millis(1500));
        assert_eq!(ok("2h"), Std::from_secs(7200));
        assert_eq!(ok("1h30m"), Std::from_secs(5400));
        assert_eq!(ok("0s"), Std::ZERO);
        // bench: plain seconds, surrounding whitespace.
        assert_eq!(ok("3"), Std::from_secs(3));
        assert_eq!(ok("1.5"), Std::from_millis(1500));
        assert_eq!(ok(" 20s "), Std::from_secs(20));
        // audit log --since: days.
        assert_eq!(ok("7d"), Std::from_secs(7 * 86_400));
        assert_eq!(ok("2d12h"), Std::from_secs(60 * 3600));
        // Exact, not floating point.
        assert_eq!(ok("0.1s"), Std::from_millis(100));
        assert_eq!(ok(".5m"), Std::from_secs(30));
        assert_eq!(ok("1.000000001s"), Std::new(1, 1));
        assert_eq!(ok("1.0000000019s"), Std::new(1, 1));
        assert_eq!(ok("1s1s"), Std::from_secs(2));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "",
            " ",
            "s",
            "10x",
            "1m30",
            "-1s",
            "+1s",
            "1..2s",
            "1.s",
            ".s",
            "1 s",
            "1m 30s",
            "ms",
            "5 parsecs",
            "5y",
            "soon",
            "1s-",
            "1e3s",
            "١s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        let e = parse("ten").unwrap_err().to_string();
        assert_eq!(
            e,
            "\"ten\" is not a duration: expected a duration such as 30s, 5m, 1h30m or 7d"
        );
        let e = parse("5y").unwrap_err().to_string();
        assert!(
            e.contains("unknown unit \"y\"") && e.contains("such as 30s"),
            "{e}"
        );
        assert_eq!(parse("5y").unwrap_err().text(), "5y");
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(ok("18446744073709551615s"), Std::from_secs(u64::MAX));
        for big in [
            "18446744073709551616s",
            "18446744073709551615s1s",
            "213503982334602d",
            "99999999999999999999999999999999999999999999d",
            "340282366920938463463374607431768211456ms",
        ] {
            let e = parse(big).unwrap_err();
            assert!(e.to_string().contains("too long"), "{big:?}: {e}");
        }
    }

    #[test]
    fn nonzero_refuses_zero() {
        assert_eq!(parse_nonzero("1ms"), Ok(Std::from_millis(1)));
        for zero in ["0", "0s", "0h0m", "0.0000000001s"] {
            let e = parse_nonzero(zero).unwrap_err().to_string();
            assert!(e.contains("must be more than 0"), "{zero:?}: {e}");
        }
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        for (d, s) in [
            (Std::ZERO, "0s"),
            (Std::from_millis(500), "500ms"),
            (Std::from_secs(90), "1m30s"),
            (Std::from_secs(5400), "1h30m"),
            (Std::from_secs(7 * 86_400), "7d"),
            (Std::from_millis(90_500), "1m30s500ms"),
            (Std::new(1, 500), "1.0000005s"),
            (Std::new(0, 1), "0.000000001s"),
            (Std::new(86_400 + 1, 0), "1d1s"),
        ] {
            assert_eq!(Duration(d).to_string(), s);
            assert_eq!(s.parse::<Duration>(), Ok(Duration(d)), "{s}");
        }
        for d in [
            Std::MAX,
            Std::new(u64::MAX, 0),
            Std::new(123_456_789, 987_654_321),
            Std::new(3_599, 1_000_000),
        ] {
            let s = Duration(d).to_string();
            assert_eq!(s.parse::<Duration>(), Ok(Duration(d)), "{s}");
        }
        // Text in any accepted form parses to the value its canonical form writes.
        for s in ["90s", "1.5h", "3", "0.25d", "1500ms"] {
            let d: Duration = s.parse().expect(s);
            assert_eq!(d.to_string().parse::<Duration>(), Ok(d), "{s}");
        }
    }
}
