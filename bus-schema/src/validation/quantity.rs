//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`), exact to the nano unit.
//!
//! Semantics follow `k8s.io/apimachinery/pkg/api/resource`: values finer than `1n` are
//! rounded up (away from zero) so a tiny request is never zero, magnitudes are capped at
//! `2^63-1`, and [`Quantity`]'s `Display` is Kubernetes' canonical form (`1000m` -> `1`,
//! `1024Mi` -> `1Gi`), which is what error messages print.

use std::cmp::Ordering;
use std::fmt;

/// Nano units per unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// Kubernetes caps quantities at `2^63-1` units.
const MAX_NANOS: i128 = (i64::MAX as i128) * NANOS_PER_UNIT;
/// Integer digits beyond this many always exceed [`MAX_NANOS`] (about 9.2e27).
const MAX_INT_DIGITS: usize = 30;

const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const SUFFIX_ERROR: &str = "unable to parse quantity's suffix";

/// How a quantity was written, which decides how it prints back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// Decimal SI suffixes: `n`, `u`, `m`, `k`, `M`, `G`, `T`, `P`, `E`, or none.
    DecimalSI,
    /// Binary suffixes: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`.
    BinarySI,
    /// A decimal exponent: `1e3`, `5E-3`.
    DecimalExponent,
}

/// A parsed resource quantity. Equality and ordering compare the amount only, so
/// `1` == `1000m` and `1Ki` == `1024`.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    /// The amount in units of 10^-9, already rounded and capped.
    nanos: i128,
    format: QuantityFormat,
}

impl Quantity {
    /// The amount in thousandths, rounded away from zero like Kubernetes' `MilliValue`
    /// (`1n` -> 1, `-1n` -> -1).
    pub fn milli_value(&self) -> i128 {
        div_away_from_zero(self.nanos, 1_000_000)
    }

    /// The amount in whole units, rounded away from zero like Kubernetes' `Value`.
    pub fn value(&self) -> i128 {
        div_away_from_zero(self.nanos, NANOS_PER_UNIT)
    }

    /// The exact amount in units of 10^-9.
    pub fn nano_value(&self) -> i128 {
        self.nanos
    }

    /// A quantity of `nanos` units of 10^-9 written in `format`: what sums and differences
    /// of quantities (quota usage) are built from. Capped at Kubernetes' bounds like a
    /// parsed one.
    pub fn from_nanos(nanos: i128, format: QuantityFormat) -> Quantity {
        Quantity {
            nanos: nanos.clamp(-MAX_NANOS, MAX_NANOS),
            format,
        }
    }

    /// How the quantity was written.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

fn div_away_from_zero(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n > 0 {
        q + 1
    } else {
        q - 1
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl std::hash::Hash for Quantity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::str::FromStr for Quantity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_quantity(s)
    }
}

/// Parses a quantity with the full Kubernetes grammar: an optionally signed decimal number
/// (`1`, `1.5`, `.5`, `1.`) followed by a decimal SI suffix (`n u m k M G T P E`), a binary
/// suffix (`Ki Mi Gi Ti Pi Ei`), a decimal exponent (`e3`, `E-3`), or nothing.
///
/// Slightly stricter than Kubernetes, which reads a number without digits (`"m"`, `"-"`) as
/// zero: here the number needs at least one digit.
pub fn parse_quantity(s: &str) -> Result<Quantity, String> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            pos += 1;
            true
        }
        Some(b'+') => {
            pos += 1;
            false
        }
        _ => false,
    };
    let int_start = pos;
    while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
        pos += 1;
    }
    let int_digits = &s[int_start..pos];
    let mut frac_digits = "";
    if bytes.get(pos) == Some(&b'.') {
        pos += 1;
        let frac_start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        frac_digits = &s[frac_start..pos];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(FORMAT_ERROR.to_string());
    }
    let suffix = &s[pos..];
    if !suffix_is_well_formed(suffix) {
        return Err(FORMAT_ERROR.to_string());
    }
    let (decimal_exponent, binary_exponent, format) = interpret_suffix(suffix)?;

    let mut digits = String::with_capacity(int_digits.len() + frac_digits.len());
    digits.push_str(int_digits);
    digits.push_str(frac_digits);
    let frac_len = i64::try_from(frac_digits.len()).unwrap_or(i64::MAX);
    // Power of ten that turns the digit string into nano units.
    let nano_exponent = decimal_exponent.saturating_sub(frac_len).saturating_add(9);

    let magnitude = scaled_magnitude(&digits, binary_exponent, nano_exponent);
    let nanos = if negative { -magnitude } else { magnitude };
    // Kubernetes: a binary quantity below one unit prints as decimal.
    let format = if format == QuantityFormat::BinarySI && magnitude < NANOS_PER_UNIT {
        QuantityFormat::DecimalSI
    } else {
        format
    };
    Ok(Quantity { nanos, format })
}

/// The suffix must look like `[eEinumkKMGTP]*[-+]?[0-9]*`.
fn suffix_is_well_formed(suffix: &str) -> bool {
    let rest = suffix.trim_start_matches(|c: char| "eEinumkKMGTP".contains(c));
    let rest = rest.strip_prefix(['-', '+']).unwrap_or(rest);
    rest.bytes().all(|b| b.is_ascii_digit())
}

/// `(decimal exponent, binary exponent, format)` of a suffix.
fn interpret_suffix(suffix: &str) -> Result<(i64, u32, QuantityFormat), String> {
    use QuantityFormat::*;
    let decimal = |e| Ok((e, 0, DecimalSI));
    let binary = |e| Ok((0, e, BinarySI));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix
                .strip_prefix(['e', 'E'])
                .filter(|rest| !rest.is_empty())
                .and_then(|rest| rest.parse::<i64>().ok())
                .ok_or_else(|| SUFFIX_ERROR.to_string())?;
            Ok((exponent, 0, DecimalExponent))
        }
    }
}

/// `digits * 2^binary_exponent * 10^nano_exponent`, rounded up to a whole number and capped
/// at [`MAX_NANOS`]. Works on decimal strings so that no input, however long, can overflow.
fn scaled_magnitude(digits: &str, binary_exponent: u32, nano_exponent: i64) -> i128 {
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return 0;
    }
    let digits = if binary_exponent == 0 {
        digits.to_string()
    } else {
        multiply_decimal(digits, 1u64 << binary_exponent)
    };
    let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    let int_len = len.saturating_add(nano_exponent);
    if int_len > MAX_INT_DIGITS as i64 {
        return MAX_NANOS;
    }
    let (int_part, int_zeros, fraction) = if nano_exponent >= 0 {
        // At most MAX_INT_DIGITS in total, so the exponent is small here.
        (digits.as_str(), nano_exponent as usize, "")
    } else if int_len > 0 {
        let split = int_len as usize;
        (&digits[..split], 0, &digits[split..])
    } else {
        ("", 0, digits.as_str())
    };
    let mut value: i128 = 0;
    for b in int_part.bytes() {
        value = value * 10 + i128::from(b - b'0');
    }
    for _ in 0..int_zeros {
        value *= 10;
    }
    if fraction.bytes().any(|b| b != b'0') {
        value += 1;
    }
    value.min(MAX_NANOS)
}

/// Multiplies a decimal digit string by `factor`, returning decimal digits.
fn multiply_decimal(digits: &str, factor: u64) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(digits.len() + 20);
    let mut carry: u128 = 0;
    for b in digits.bytes().rev() {
        let product = u128::from(b - b'0') * u128::from(factor) + carry;
        out.push((product % 10) as u8 + b'0');
        carry = product / 10;
    }
    while carry > 0 {
        out.push((carry % 10) as u8 + b'0');
        carry /= 10;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

impl fmt::Display for Quantity {
    /// Kubernetes' canonical form (`Quantity.String()`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let whole_units = self.nanos % NANOS_PER_UNIT == 0;
        let small = self.nanos.abs() < 1024 * NANOS_PER_UNIT;
        if self.format == QuantityFormat::BinarySI && whole_units && !small {
            let mut amount = self.nanos / NANOS_PER_UNIT;
            let mut exponent = 0;
            while amount % 1024 == 0 && exponent < 6 {
                amount /= 1024;
                exponent += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exponent];
            return write!(f, "{amount}{suffix}");
        }
        // Decimal: strip factors of ten, then move the exponent to a multiple of three.
        let mut amount = self.nanos;
        let mut exponent: i32 = -9;
        while amount % 10 == 0 {
            amount /= 10;
            exponent += 1;
        }
        match exponent.rem_euclid(3) {
            1 => {
                amount *= 10;
                exponent -= 1;
            }
            2 => {
                amount *= 100;
                exponent -= 2;
            }
            _ => {}
        }
        if self.format == QuantityFormat::DecimalExponent {
            return if exponent == 0 {
                write!(f, "{amount}")
            } else {
                write!(f, "{amount}e{exponent}")
            };
        }
        let suffix = match exponent {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            // Unreachable given the cap, but an exponent form is still a valid quantity.
            _ => return write!(f, "{amount}e{exponent}"),
        };
        write!(f, "{amount}{suffix}")
    }
}
