//! GPU amounts: [`GpuCount`], whole GPUs (`2`) or a share of one GPU (`0.25`), counted
//! in milli-GPUs.
//!
//! A request of `gpu: {count: 0.25}` asks for a quarter of one device (shared with other
//! fractional requests, time-sliced by the driver); `count: 2` asks for two whole
//! devices. Above 1 a count must be whole: a fraction shares *one* device, it never spans
//! two (validation says so). Whole counts serialise as integers, exactly as before
//! fractions existed, so every manifest and stored object reads and writes unchanged;
//! fractions serialise as decimals (`0.25`). The wire also accepts strings (`"0.25"`,
//! `"250m"`, `"2"`), as cpu quantities do.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of GPUs in milli-GPUs: `1` is 1000, `0.25` is 250.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GpuCount(u32);

/// Milli-GPUs in one GPU.
pub const MILLI_PER_GPU: u32 = 1000;

impl GpuCount {
    /// `n` whole GPUs (saturating).
    pub const fn whole(n: u32) -> GpuCount {
        GpuCount(n.saturating_mul(MILLI_PER_GPU))
    }
    /// From milli-GPUs: `from_milli(250)` is a quarter of a GPU.
    pub const fn from_milli(milli: u32) -> GpuCount {
        GpuCount(milli)
    }
    /// Milli-GPUs.
    pub const fn milli(self) -> u32 {
        self.0
    }
    /// Whether the amount is a whole number of GPUs (0 included).
    pub const fn is_whole(self) -> bool {
        self.0.is_multiple_of(MILLI_PER_GPU)
    }
    /// Whether it is a share of one GPU: more than 0 and less than 1.
    pub const fn is_fraction(self) -> bool {
        self.0 > 0 && self.0 < MILLI_PER_GPU
    }
    /// Whole GPUs, rounded up (a fraction occupies part of one device).
    pub const fn devices(self) -> u32 {
        self.0.div_ceil(MILLI_PER_GPU)
    }
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
    /// `self + other`, saturating.
    pub const fn saturating_add(self, other: GpuCount) -> GpuCount {
        GpuCount(self.0.saturating_add(other.0))
    }
    /// `self - other`, saturating at 0.
    pub const fn saturating_sub(self, other: GpuCount) -> GpuCount {
        GpuCount(self.0.saturating_sub(other.0))
    }
}

impl From<u32> for GpuCount {
    /// Whole GPUs.
    fn from(n: u32) -> GpuCount {
        GpuCount::whole(n)
    }
}

impl PartialEq<u32> for GpuCount {
    /// Compares with a number of whole GPUs.
    fn eq(&self, other: &u32) -> bool {
        u64::from(self.0) == u64::from(*other) * u64::from(MILLI_PER_GPU)
    }
}

impl PartialOrd<u32> for GpuCount {
    /// Compares with a number of whole GPUs (a quota of `gpus: 1`).
    fn partial_cmp(&self, other: &u32) -> Option<std::cmp::Ordering> {
        u64::from(self.0).partial_cmp(&(u64::from(*other) * u64::from(MILLI_PER_GPU)))
    }
}

impl fmt::Display for GpuCount {
    /// `2`, `0.25`, `1.5` (at most three decimals, trailing zeros dropped).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / MILLI_PER_GPU;
        let milli = self.0 % MILLI_PER_GPU;
        if milli == 0 {
            return write!(f, "{whole}");
        }
        let decimals = format!("{milli:03}");
        write!(f, "{whole}.{}", decimals.trim_end_matches('0'))
    }
}

/// A GPU count that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a GPU count: use whole GPUs (1, 2, 8) or a share of one GPU with at most three decimals (0.25, or 250m)"
)]
pub struct GpuCountError {
    pub input: String,
}

impl std::str::FromStr for GpuCount {
    type Err = GpuCountError;

    fn from_str(s: &str) -> Result<GpuCount, GpuCountError> {
        let bad = || GpuCountError {
            input: s.to_string(),
        };
        let t = s.trim();
        if let Some(m) = t.strip_suffix('m') {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            return m.parse().map(GpuCount).map_err(|_| bad());
        }
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || frac.trim_end_matches('0').len() > 3
        {
            return Err(bad());
        }
        let whole: u32 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let digits = frac.trim_end_matches('0');
        let milli: u32 = if digits.is_empty() {
            0
        } else {
            format!("{digits:0<3}").parse().map_err(|_| bad())?
        };
        whole
            .checked_mul(MILLI_PER_GPU)
            .and_then(|w| w.checked_add(milli))
            .map(GpuCount)
            .ok_or_else(bad)
    }
}

impl Serialize for GpuCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_whole() {
            s.serialize_u32(self.0 / MILLI_PER_GPU)
        } else {
            // Exact: a value with at most three decimals prints as written (0.25).
            s.serialize_f64(f64::from(self.0) / f64::from(MILLI_PER_GPU))
        }
    }
}

impl<'de> Deserialize<'de> for GpuCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GpuCount, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GpuCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a GPU count such as 1, 2 or 0.25")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GpuCount, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GpuCount, E> {
                u32::try_from(v)
                    .ok()
                    .and_then(|n| n.checked_mul(MILLI_PER_GPU))
                    .map(GpuCount)
                    .ok_or_else(|| E::custom(format!("{v} GPUs is too many")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GpuCount, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "{v} is negative; a GPU count is 0 or more"
                    ))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<GpuCount, E> {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(E::custom(format!("{v} is not a GPU count")));
                }
                let milli = (v * f64::from(MILLI_PER_GPU)).round();
                if (milli - v * f64::from(MILLI_PER_GPU)).abs() > 1e-6
                    || milli > f64::from(u32::MAX)
                {
                    return Err(E::custom(format!(
                        "{v} is not a GPU count: use at most three decimals (0.25)"
                    )));
                }
                Ok(GpuCount(milli as u32))
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for GpuCount {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("GpuCount")
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "GPUs: whole GPUs (`2`) or a share of one GPU with at most three decimals (`0.25`, or `\"250m\"`).",
            "anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}],
            "examples": [1, 0.25],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_counts_read_and_write_as_before() {
        let n: GpuCount = serde_json::from_value(json!(8)).unwrap();
        assert_eq!(n, GpuCount::whole(8));
        assert_eq!(serde_json::to_value(n).unwrap(), json!(8));
        assert_eq!(n.to_string(), "8");
        assert!(n == 8 && n > 7 && n < 9);
    }

    #[test]
    fn fractions_read_as_milli_and_write_as_decimals() {
        for (input, milli) in [
            (json!(0.25), 250),
            (json!("0.25"), 250),
            (json!("250m"), 250),
            (json!(0.5), 500),
            (json!(".1"), 100),
            (json!(1.5), 1500),
            (json!("2"), 2000),
            (json!(0.001), 1),
        ] {
            let g: GpuCount = serde_json::from_value(input.clone()).unwrap();
            assert_eq!(g.milli(), milli, "{input}");
        }
        let q = GpuCount::from_milli(250);
        assert_eq!(serde_json::to_value(q).unwrap(), json!(0.25));
        assert_eq!(q.to_string(), "0.25");
        assert_eq!(GpuCount::from_milli(1500).to_string(), "1.5");
        assert_eq!(GpuCount::from_milli(1).to_string(), "0.001");
        assert!(q.is_fraction() && !q.is_whole() && q.devices() == 1);
        assert!(q < 1);
    }

    #[test]
    fn bad_counts_say_what_to_write() {
        for bad in [
            json!(-1),
            json!(0.0001),
            json!("1/4"),
            json!("x"),
            json!(""),
        ] {
            let e = serde_json::from_value::<GpuCount>(bad.clone()).unwrap_err();
            assert!(e.to_string().contains("GPU count"), "{bad}: {e}");
        }
    }
}
