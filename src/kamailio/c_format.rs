//! C's `%g`, for the values the RPC interposition reports as the command's
//! transport prints them. Plain Rust, so that it is checked against the C
//! library without a server.

/// `v` as C's `printf("%g", v)` writes it: 6 significant digits, without
/// trailing zeros, in exponent form below 1e-4 and from 1e6 up.
pub fn format_g(v: f64) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf" } else { "inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // The exponent of the value rounded to 6 significant digits.
    let scientific = format!("{v:.5e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..6).contains(&exponent) {
        let decimals = (5 - exponent) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_zeros(mantissa), exponent.unsigned_abs())
    }
}

/// Drops the zeros after the decimal point, and the point if nothing is left.
fn trim_zeros(text: &str) -> &str {
    if !text.contains('.') {
        return text;
    }
    text.trim_end_matches('0').trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use super::format_g;

    fn c_g(v: f64) -> String {
        let mut buf = [0u8; 64];
        // SAFETY: a fixed format with its one double, into a buffer of the
        // size given.
        let n =
            unsafe { libc::snprintf(buf.as_mut_ptr() as *mut libc::c_char, buf.len(), c"%g".as_ptr(), v) };
        String::from_utf8_lossy(&buf[..n as usize]).into_owned()
    }

    #[test]
    fn matches_the_c_library() {
        let values = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            0.1,
            1.5,
            2.25,
            1.2345678,
            100.0,
            123456.0,
            999999.0,
            999999.5,
            1234567.0,
            1e6,
            1e-4,
            0.0001234,
            0.00001,
            1e-5,
            9.9999e-5,
            1e21,
            1.7976931348623157e308,
            5e-324,
            123.456,
            -98765.4321,
            0.000123456789,
            1e100,
            2.5e-7,
            65536.0,
            4294967296.0,
        ];
        for v in values {
            assert_eq!(format_g(v), c_g(v), "for {v:e}");
        }
        assert_eq!(format_g(f64::INFINITY), c_g(f64::INFINITY));
        assert_eq!(format_g(f64::NEG_INFINITY), c_g(f64::NEG_INFINITY));
        assert_eq!(format_g(f64::NAN), c_g(f64::NAN));
    }
}
