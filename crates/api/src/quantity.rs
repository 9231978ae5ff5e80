//! Kubernetes-style resource quantities: [`Cpu`] (`250m`, `2`, `0.5`) and [`Memory`]
//! (`512Mi`, `4Gi`, `1G`, `1.5Gi`, plain bytes).
//!
//! Both parse from a string or a number and serialize as the canonical Kubernetes string,
//! so what a user wrote and what `get -o yaml` shows look alike. Fractions that do not land
//! on a whole unit round up, as Kubernetes does (`0.0001` cpu is `1m`).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A quantity that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a number with a known suffix.
    #[error("{input:?} is not a quantity (use e.g. {hint})")]
    Invalid { input: String, hint: &'static str },
    /// A negative amount.
    #[error("{input:?} is negative; a quantity must be zero or more (use e.g. {hint})")]
    Negative { input: String, hint: &'static str },
    /// Larger than Meridian can count.
    #[error("{input:?} is too large to be a quantity (use e.g. {hint})")]
    Overflow { input: String, hint: &'static str },
}

const CPU_HINT: &str = "250m, 2";
const MEMORY_HINT: &str = "512Mi, 4Gi";

/// CPU in millicores: `250m` is 250, `2` is 2000, `0.5` is 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cpu(pub u64);

/// Memory or storage in bytes: `1Ki` is 1024, `1k` is 1000, `1.5Gi` is 1610612736.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Memory(pub u64);

impl Cpu {
    /// From millicores.
    pub const fn from_millis(millis: u64) -> Self {
        Cpu(millis)
    }
    /// From whole cores.
    pub const fn from_cores(cores: u64) -> Self {
        Cpu(cores * 1000)
    }
    /// Millicores.
    pub const fn millis(self) -> u64 {
        self.0
    }
    /// Cores, as a float (for display and scoring only).
    pub fn cores(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    /// `self - other`, or `None` if that would be negative.
    pub fn checked_sub(self, other: Cpu) -> Option<Cpu> {
        self.0.checked_sub(other.0).map(Cpu)
    }
    /// `self + other`, saturating.
    pub fn saturating_add(self, other: Cpu) -> Cpu {
        Cpu(self.0.saturating_add(other.0))
    }
}

impl Memory {
    pub const KI: u64 = 1 << 10;
    pub const MI: u64 = 1 << 20;
    pub const GI: u64 = 1 << 30;
    pub const TI: u64 = 1 << 40;

    /// From bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Memory(bytes)
    }

    /// For a table: the exact form when it is short (`64Gi`), else one decimal of the
    /// largest binary unit the value reaches (`16331788Ki` is `15.6Gi`).
    pub fn approx(self) -> String {
        let exact = self.to_string();
        if exact.len() <= 6 {
            return exact;
        }
        MEMORY_SUFFIXES[..6]
            .iter()
            .rev()
            .find(|(_, m)| u128::from(self.0) >= *m)
            .map_or(exact, |(name, m)| {
                format!("{:.1}{name}", self.0 as f64 / *m as f64)
            })
    }
    /// From mebibytes.
    pub const fn from_mib(mib: u64) -> Self {
        Memory(mib * Self::MI)
    }
    /// From gibibytes.
    pub const fn from_gib(gib: u64) -> Self {
        Memory(gib * Self::GI)
    }
    /// Bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
    /// Gibibytes, as a float (for display, pricing and scoring only).
    pub fn gib(self) -> f64 {
        self.0 as f64 / Self::GI as f64
    }
    /// `self - other`, or `None` if that would be negative.
    pub fn checked_sub(self, other: Memory) -> Option<Memory> {
        self.0.checked_sub(other.0).map(Memory)
    }
    /// `self + other`, saturating.
    pub fn saturating_add(self, other: Memory) -> Memory {
        Memory(self.0.saturating_add(other.0))
    }
}

/// Splits `1.5Gi` into the number and the suffix, and parses the number into an integer
/// part and fractional digits. Returns `None` on garbage.
fn split_number(s: &str) -> Option<(u64, &str, &str)> {
    let end = s
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.'))
        .map_or(s.len(), |(i, _)| i);
    let (number, suffix) = s.split_at(end);
    let (int, frac) = match number.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (number, ""),
    };
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let int_value = if int.is_empty() {
        0
    } else {
        int.parse::<u64>().ok()?
    };
    Some((int_value, frac, suffix))
}

/// `int.frac * multiplier / divisor`, rounded up, in integers; `Err(())` on overflow.
fn scale(int: u64, frac: &str, multiplier: u128, divisor: u128) -> Result<u64, ()> {
    let mut value = (int as u128).checked_mul(multiplier).ok_or(())?;
    if !frac.is_empty() {
        // Digits beyond 30 cannot change a u64 result after rounding up except by making
        // it non-zero, which keeping 30 of them preserves.
        let digits = &frac[..frac.len().min(30)];
        let trailing_nonzero = frac[digits.len()..].bytes().any(|b| b != b'0');
        let numerator: u128 = digits.parse().map_err(|_| ())?;
        let denominator = 10u128.pow(digits.len() as u32);
        let product = numerator.checked_mul(multiplier).ok_or(())?;
        let mut frac_value = product / denominator;
        if product % denominator != 0 || trailing_nonzero {
            frac_value += 1;
        }
        value = value.checked_add(frac_value).ok_or(())?;
    }
    let mut out = value / divisor;
    if value % divisor != 0 {
        out += 1;
    }
    u64::try_from(out).map_err(|_| ())
}

impl FromStr for Cpu {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err =
            |make: fn(String, &'static str) -> QuantityError| make(input.to_string(), CPU_HINT);
        let s = input.trim();
        if s.starts_with('-') {
            return Err(err(|input, hint| QuantityError::Negative { input, hint }));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        let Some((int, frac, suffix)) = split_number(s) else {
            return Err(err(|input, hint| QuantityError::Invalid { input, hint }));
        };
        let (multiplier, divisor) = match suffix {
            "" => (1000, 1),
            "m" => (1, 1),
            // Kubernetes also accepts decimal suffixes on cpu; `1k` cores is unusual but valid.
            "k" => (1_000_000, 1),
            _ => return Err(err(|input, hint| QuantityError::Invalid { input, hint })),
        };
        scale(int, frac, multiplier, divisor)
            .map(Cpu)
            .map_err(|()| err(|input, hint| QuantityError::Overflow { input, hint }))
    }
}

const MEMORY_SUFFIXES: &[(&str, u128)] = &[
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
];

impl FromStr for Memory {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err =
            |make: fn(String, &'static str) -> QuantityError| make(input.to_string(), MEMORY_HINT);
        let s = input.trim();
        if s.starts_with('-') {
            return Err(err(|input, hint| QuantityError::Negative { input, hint }));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        let Some((int, frac, suffix)) = split_number(s) else {
            return Err(err(|input, hint| QuantityError::Invalid { input, hint }));
        };
        let multiplier = if suffix.is_empty() {
            1
        } else if let Some(&(_, m)) = MEMORY_SUFFIXES.iter().find(|(name, _)| *name == suffix) {
            m
        } else {
            return Err(err(|input, hint| QuantityError::Invalid { input, hint }));
        };
        scale(int, frac, multiplier, 1)
            .map(Memory)
            .map_err(|()| err(|input, hint| QuantityError::Overflow { input, hint }))
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

impl fmt::Display for Memory {
    /// The canonical form: the largest suffix that divides the value exactly, binary
    /// (`Ki`…`Ei`) preferred over decimal (`k`…`E`) when both reach the same power.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v == 0 {
            return f.write_str("0");
        }
        let best = |suffixes: &[(&'static str, u128)]| {
            suffixes
                .iter()
                .enumerate()
                .rev()
                .find(|(_, (_, m))| (v as u128).is_multiple_of(*m))
                .map(|(i, &(name, m))| (i, name, m))
        };
        let binary = best(&MEMORY_SUFFIXES[..6]);
        let decimal = best(&MEMORY_SUFFIXES[6..]);
        let chosen = match (binary, decimal) {
            (Some(b), Some(d)) => Some(if d.0 > b.0 { d } else { b }),
            (b, d) => b.or(d),
        };
        match chosen {
            Some((_, name, m)) => write!(f, "{}{}", v as u128 / m, name),
            None => write!(f, "{v}"),
        }
    }
}

macro_rules! quantity_serde {
    ($ty:ident, $expecting:literal, $description:literal, $example:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                }
                deserializer.deserialize_any(V)
            }
        }

        impl schemars::JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($ty))
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "description": $description,
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                    "x-kubernetes-int-or-string": true,
                    "examples": [$example],
                })
            }
        }
    };
}

quantity_serde!(
    Cpu,
    "a cpu quantity such as 250m or 2",
    "CPU: cores (`2`, `0.5`) or millicores (`250m`).",
    "250m"
);
quantity_serde!(
    Memory,
    "a memory quantity such as 512Mi or 4Gi",
    "Bytes, with an optional suffix: binary `Ki Mi Gi Ti Pi Ei` or decimal `k M G T P E`.",
    "512Mi"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cpu_parses() {
        assert_eq!("250m".parse::<Cpu>().unwrap(), Cpu(250));
        assert_eq!("2".parse::<Cpu>().unwrap(), Cpu(2000));
        assert_eq!("0.5".parse::<Cpu>().unwrap(), Cpu(500));
        assert_eq!("1.5".parse::<Cpu>().unwrap(), Cpu(1500));
        assert_eq!(".5".parse::<Cpu>().unwrap(), Cpu(500));
        assert_eq!("0.0001".parse::<Cpu>().unwrap(), Cpu(1), "rounds up");
        assert_eq!("0".parse::<Cpu>().unwrap(), Cpu(0));
    }

    #[test]
    fn cpu_rejects() {
        for bad in ["", "m", "abc", "1.2.3", "2 cores", "1Gi", "1e3", "."] {
            let e = bad.parse::<Cpu>().unwrap_err();
            assert!(matches!(e, QuantityError::Invalid { .. }), "{bad}: {e}");
        }
        assert_eq!(
            "x".parse::<Cpu>().unwrap_err().to_string(),
            r#""x" is not a quantity (use e.g. 250m, 2)"#
        );
        assert!(matches!(
            "-1".parse::<Cpu>().unwrap_err(),
            QuantityError::Negative { .. }
        ));
        assert!(matches!(
            "99999999999999999999".parse::<Cpu>().unwrap_err(),
            QuantityError::Invalid { .. } | QuantityError::Overflow { .. }
        ));
        assert!(matches!(
            "18446744073709552".parse::<Cpu>().unwrap_err(),
            QuantityError::Overflow { .. }
        ));
    }

    #[test]
    fn memory_parses() {
        assert_eq!("512Mi".parse::<Memory>().unwrap(), Memory(512 << 20));
        assert_eq!("4Gi".parse::<Memory>().unwrap(), Memory(4 << 30));
        assert_eq!("1G".parse::<Memory>().unwrap(), Memory(1_000_000_000));
        assert_eq!("1k".parse::<Memory>().unwrap(), Memory(1000));
        assert_eq!("1.5Gi".parse::<Memory>().unwrap(), Memory(3 << 29));
        assert_eq!("123".parse::<Memory>().unwrap(), Memory(123));
        assert_eq!("1Ei".parse::<Memory>().unwrap(), Memory(1 << 60));
        assert_eq!("0.5".parse::<Memory>().unwrap(), Memory(1), "rounds up");
    }

    #[test]
    fn memory_rejects() {
        assert_eq!(
            "12Zi".parse::<Memory>().unwrap_err().to_string(),
            r#""12Zi" is not a quantity (use e.g. 512Mi, 4Gi)"#
        );
        assert!(matches!(
            "-1Gi".parse::<Memory>().unwrap_err(),
            QuantityError::Negative { .. }
        ));
        assert!(matches!(
            "16Ei".parse::<Memory>().unwrap_err(),
            QuantityError::Overflow { .. }
        ));
        for bad in ["", "Gi", "1 Gi x", "1gi", "1.2.3Mi", "one"] {
            assert!("x".parse::<Memory>().is_err(), "{bad}");
            assert!(bad.parse::<Memory>().is_err(), "{bad}");
        }
    }

    #[test]
    fn canonical_display() {
        assert_eq!(Cpu(500).to_string(), "500m");
        assert_eq!(Cpu(2000).to_string(), "2");
        assert_eq!(Memory(256 << 20).to_string(), "256Mi");
        assert_eq!(Memory(1_000_000_000).to_string(), "1G");
        assert_eq!(Memory(1024).to_string(), "1Ki");
        assert_eq!(Memory(16_331_788 * 1024).approx(), "15.6Gi");
        assert_eq!(Memory::from_gib(64).approx(), "64Gi");
        assert_eq!(Memory(1_000_000_007).approx(), "953.7Mi");
        assert_eq!(Memory(1000).approx(), "1k");
        assert_eq!(Memory(1000).to_string(), "1k");
        assert_eq!(Memory(1536 << 20).to_string(), "1536Mi");
        assert_eq!(Memory(7).to_string(), "7");
        assert_eq!(Memory(0).to_string(), "0");
    }

    #[test]
    fn serde_accepts_strings_and_numbers() {
        let c: Cpu = serde_json::from_str("0.5").unwrap();
        assert_eq!(c, Cpu(500));
        let c: Cpu = serde_json::from_str("2").unwrap();
        assert_eq!(c, Cpu(2000));
        let m: Memory = serde_json::from_str("\"4Gi\"").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"4Gi\"");
        let m: Memory = serde_json::from_str("1048576").unwrap();
        assert_eq!(m.to_string(), "1Mi");
        assert!(serde_json::from_str::<Memory>("-5").is_err());
    }

    proptest! {
        #[test]
        fn cpu_roundtrip(millis in any::<u64>()) {
            let c = Cpu(millis);
            prop_assert_eq!(c.to_string().parse::<Cpu>().unwrap(), c);
        }

        #[test]
        fn memory_roundtrip(bytes in any::<u64>()) {
            let m = Memory(bytes);
            prop_assert_eq!(m.to_string().parse::<Memory>().unwrap(), m);
        }

        #[test]
        fn memory_roundtrip_round_values(n in 0u64..100_000, shift in prop::sample::select(vec![0u32, 10, 20, 30, 40])) {
            let m = Memory(n << shift);
            prop_assert_eq!(m.to_string().parse::<Memory>().unwrap(), m);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,12}") {
            let _ = s.parse::<Cpu>();
            let _ = s.parse::<Memory>();
        }
    }
}
