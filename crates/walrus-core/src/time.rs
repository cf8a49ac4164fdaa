//! Clock and calendar helpers shared by the format, the sources and the sinks: the wall
//! clock in the units Debezium's timestamps use, and the proleptic Gregorian calendar that
//! PostgreSQL's and Java's dates count in.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, now (0 on a clock before 1970).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Milliseconds since the Unix epoch, now (0 on a clock before 1970).
pub fn now_ms() -> i64 {
    now_us() / 1000
}

/// Proleptic Gregorian (year, month, day) of a day count from 1970-01-01, astronomical years
/// (1 BC is 0). Howard Hinnant's `civil_from_days`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_around_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        // 0001-01-01 and the day before it, 1 BC (year 0) Dec 31.
        assert_eq!(civil_from_days(-719_162), (1, 1, 1));
        assert_eq!(civil_from_days(-719_163), (0, 12, 31));
    }

    #[test]
    fn clocks_agree() {
        let (us, ms) = (now_us(), now_ms());
        assert!(us > 1_600_000_000_000_000);
        assert!((ms - us / 1000).abs() < 1000);
    }
}
