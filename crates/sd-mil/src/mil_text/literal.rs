//! Scalar literals of MIL text: hexadecimal floats (what Apple's compiler writes, exact for
//! every fp16/fp32/fp64 value), decimal floats, and quoted strings.

/// Formats a float the way C's `%a` does: `0x1.8p+1`, `-0x1p-17`, `0x0p+0`, `inf`, `nan`.
/// Every finite f64 is written exactly.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    let sign = if v.is_sign_negative() { "-" } else { "" };
    if v.is_infinite() {
        return format!("{sign}inf");
    }
    if v == 0.0 {
        return format!("{sign}0x0p+0");
    }
    let bits = v.to_bits();
    let mut exp = ((bits >> 52) & 0x7ff) as i64;
    let mut mant = bits & ((1u64 << 52) - 1);
    if exp == 0 {
        // An f64 subnormal: normalize so the leading digit is 1.
        let shift = mant.leading_zeros() as i64 - 11;
        mant = (mant << shift) & ((1u64 << 52) - 1);
        exp = 1 - shift;
    }
    let e = exp - 1023;
    let mut frac = format!("{mant:013x}");
    while frac.ends_with('0') {
        frac.pop();
    }
    let dot = if frac.is_empty() { "" } else { "." };
    let esign = if e >= 0 { "+" } else { "-" };
    format!("{sign}0x1{dot}{frac}p{esign}{}", e.abs())
}

/// Parses a float literal: hexadecimal (`0x1.8p+1`, exact), decimal (`0.125`, `1e-5`),
/// `inf`, `-inf` or `nan`. `None` when the text is not one.
pub fn parse_float(s: &str) -> Option<f64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = match body {
        "inf" | "infinity" => f64::INFINITY,
        "nan" => f64::NAN,
        _ => match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            Some(hex) => parse_hex(hex)?,
            None => {
                if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
                    return None;
                }
                body.parse::<f64>().ok()?
            }
        },
    };
    Some(if neg { -v } else { v })
}

fn parse_hex(s: &str) -> Option<f64> {
    let (digits, exp) = match s.find(['p', 'P']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut mant: u64 = 0;
    let mut significant = 0;
    for c in int.chars().chain(frac.chars()) {
        let d = c.to_digit(16)? as u64;
        if mant == 0 && d == 0 {
            continue;
        }
        significant += 1;
        if significant > 14 {
            // More than 53 bits of mantissa: no MIL value needs that.
            return None;
        }
        mant = mant * 16 + d;
    }
    let e = exp.checked_sub(i32::try_from(frac.len()).ok()?.checked_mul(4)?)?;
    Some(scale_by_power_of_two(mant as f64, e))
}

/// `m × 2^e`, in steps so that neither factor overflows or underflows on the way.
fn scale_by_power_of_two(mut m: f64, mut e: i32) -> f64 {
    while e > 1000 {
        m *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        m *= 2f64.powi(-1000);
        e += 1000;
    }
    m * 2f64.powi(e)
}

/// A string literal: quoted, with `\\`, `\"`, `\n`, `\t`, `\r` and `\u{…}` escapes.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn hex_floats_round_trip_exactly() {
        for v in [
            1.0,
            -1.5,
            0.1f32 as f64,
            f16::MIN_POSITIVE_SUBNORMAL.to_f64(),
            f32::MIN_POSITIVE as f64 / 8.0,
            f32::MAX as f64,
            65504.0,
            1e-300,
            f64::MIN_POSITIVE / 16.0,
            -0.0,
            0.0,
        ] {
            let s = format_float(v);
            let back = parse_float(&s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(back.to_bits(), v.to_bits(), "{v} -> {s}");
        }
        assert_eq!(format_float(1.0), "0x1p+0");
        assert_eq!(format_float(-10.0), "-0x1.4p+3");
        assert_eq!(format_float(2f64.powi(-17)), "0x1p-17");
        assert_eq!(parse_float("0x1.5p-17"), Some(1.3125 * 2f64.powi(-17)));
        assert!(parse_float("nan").unwrap().is_nan());
        assert_eq!(parse_float("-inf"), Some(f64::NEG_INFINITY));
    }

    #[test]
    fn decimal_floats_parse_and_junk_does_not() {
        assert_eq!(parse_float("0.125"), Some(0.125));
        assert_eq!(parse_float("500.0"), Some(500.0));
        assert_eq!(parse_float("-1e-5"), Some(-1e-5));
        assert_eq!(parse_float("7"), Some(7.0));
        for bad in [
            "",
            "-",
            "0x",
            "0xp1",
            "0x1.gp0",
            "abc",
            "1..2",
            "0x1p",
            "0x1234567890abcdefp0",
        ] {
            assert_eq!(parse_float(bad), None, "{bad}");
        }
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u{1}\"");
    }
}
