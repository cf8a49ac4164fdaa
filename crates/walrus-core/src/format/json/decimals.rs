//! Decimals: PostgreSQL's decimal text split into sign and digits, the unscaled big-endian
//! two's complement bytes of Connect's `Decimal`, and numeric's special values.

/// Splits canonical decimal text (`-12.340`) into sign, integer and fraction digits.
pub(super) fn split_decimal(text: &str) -> Option<(bool, &[u8], &[u8])> {
    let b = text.as_bytes();
    let (neg, body) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let (int, frac) = match body.iter().position(|&c| c == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &body[body.len()..]),
    };
    let digits_ok = |d: &[u8]| d.iter().all(u8::is_ascii_digit);
    if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) {
        return None;
    }
    Some((neg, int, frac))
}

/// The unscaled value of `text` at `scale` (rounding half up, like `BigDecimal.setScale`
/// with `HALF_UP`) as decimal digits in `out`, without leading zeros (empty for zero).
/// Returns whether it is negative (never for zero).
pub(super) fn unscaled_digits(text: &str, scale: i32, out: &mut Vec<u8>) -> Option<bool> {
    let (neg, int, frac) = split_decimal(text)?;
    out.clear();
    out.extend_from_slice(int);
    out.extend_from_slice(frac);
    let keep = int.len() as i64 + i64::from(scale);
    let round_up;
    if keep >= out.len() as i64 {
        let pad = (keep - out.len() as i64) as usize;
        out.extend(std::iter::repeat_n(b'0', pad));
        round_up = false;
    } else if keep < 0 {
        out.clear();
        round_up = false;
    } else {
        let k = keep as usize;
        round_up = out[k] >= b'5';
        out.truncate(k);
    }
    if round_up {
        let mut i = out.len();
        loop {
            if i == 0 {
                out.insert(0, b'1');
                break;
            }
            i -= 1;
            if out[i] == b'9' {
                out[i] = b'0';
            } else {
                out[i] += 1;
                break;
            }
        }
    }
    let lead = out.iter().take_while(|&&d| d == b'0').count();
    out.drain(..lead);
    Some(neg && !out.is_empty())
}

/// Java's `BigInteger.toByteArray()` of `±digits`: minimal big-endian two's complement.
pub(super) fn twos_complement(neg: bool, digits: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if digits.len() <= 38 {
        // Fast path: fits an i128 (10^38 < 2^127).
        let mut v: i128 = 0;
        for &d in digits {
            v = v * 10 + i128::from(d - b'0');
        }
        let bytes = if neg { -v } else { v }.to_be_bytes();
        let mut start = 0;
        while start < 15 {
            let (b0, b1) = (bytes[start], bytes[start + 1]);
            if (b0 == 0x00 && b1 & 0x80 == 0) || (b0 == 0xff && b1 & 0x80 != 0) {
                start += 1;
            } else {
                break;
            }
        }
        out.extend_from_slice(&bytes[start..]);
        return;
    }
    // Big numbers (numeric allows 131072 digits before the point and 16383 after): the
    // magnitude in 64-bit limbs, little-endian, fed 19 decimal digits at a time (10^19 <
    // 2^64), then written big-endian and negated. Digit by digit into bytes would be ~50x
    // more work: seconds for one 131072-digit value, found by the value_parse fuzz target.
    const CHUNK: usize = 19;
    let mut limbs: Vec<u64> = Vec::with_capacity(digits.len() / CHUNK + 1);
    for chunk in digits.chunks(CHUNK) {
        let mut mul: u64 = 1;
        let mut add: u64 = 0;
        for &d in chunk {
            mul *= 10;
            add = add * 10 + u64::from(d - b'0');
        }
        let mut carry = u128::from(add);
        for limb in limbs.iter_mut() {
            let v = u128::from(*limb) * u128::from(mul) + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
        if carry > 0 {
            limbs.push(carry as u64);
        }
    }
    out.extend(limbs.iter().rev().flat_map(|l| l.to_be_bytes()));
    let lead = out.iter().take_while(|&&b| b == 0).count();
    out.drain(..lead);
    if out.is_empty() {
        out.push(0);
        return;
    }
    if neg {
        let mut carry = 1u16;
        for byte in out.iter_mut().rev() {
            let v = u16::from(!*byte) + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        if out[0] & 0x80 == 0 {
            out.insert(0, 0xff);
        }
    } else if out[0] & 0x80 != 0 {
        out.insert(0, 0x00);
    }
}

pub(super) fn is_special_numeric(text: &str) -> Option<&'static str> {
    // Debezium's SpecialValueDecimal names, which string mode writes.
    match text {
        "NaN" => Some("NAN"),
        "Infinity" => Some("POSITIVE_INFINITY"),
        "-Infinity" => Some("NEGATIVE_INFINITY"),
        _ => None,
    }
}
