//! Dates and times in Vietnam's time zone (UTC+7, no daylight saving),
//! without a date-time crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lienthong_adapter_core::api;

/// Vietnam's offset from UTC in seconds.
pub(crate) const VN_OFFSET_SECS: i64 = 7 * 3600;

/// `YYMMDD` of `t` in Vietnam (UTC+7), as dossier codes write a date.
pub(crate) fn yymmdd(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + 7 * 3_600;
    let days = (secs / 86_400) as i64;
    let guess = 1970 + days / 365;
    for year in [guess - 1, guess, guess + 1] {
        for month in 1..=12u32 {
            let start = days_from_civil(year, month, 1);
            let next = if month == 12 { days_from_civil(year + 1, 1, 1) } else { days_from_civil(year, month + 1, 1) };
            if (start..next).contains(&days) {
                return format!("{:02}{month:02}{:02}", year.rem_euclid(100), days - start + 1);
            }
        }
    }
    "000000".to_owned()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD`, checking the day exists.
pub(crate) fn parse_date(text: &str) -> Option<api::Date> {
    let mut parts = text.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: i32 = parts.next()?.parse().ok()?;
    let day: i32 = parts.next()?.parse().ok()?;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    ((1..=9999).contains(&year) && (1..=days_in_month).contains(&day)).then_some(api::Date { year, month, day })
}

/// Midnight in Vietnam at the start of `date`, as a timestamp.
pub(crate) fn local_midnight(date: &api::Date) -> prost_types::Timestamp {
    let days = days_from_civil(i64::from(date.year), date.month as u32, date.day as u32);
    prost_types::Timestamp { seconds: days * 86_400 - VN_OFFSET_SECS, nanos: 0 }
}

/// A `SystemTime` as a protobuf timestamp.
pub(crate) fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 },
        Err(e) => prost_types::Timestamp { seconds: -(e.duration().as_secs() as i64), nanos: 0 },
    }
}

/// `start` plus `days` working days (Monday to Friday).
pub(crate) fn add_working_days(start: SystemTime, days: u32) -> SystemTime {
    let mut t = start;
    let mut left = days;
    while left > 0 {
        t += Duration::from_secs(86_400);
        let local_days =
            (t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64 + VN_OFFSET_SECS) / 86_400;
        // 1970-01-01 was a Thursday: day 0 -> 4 (Mon=1 … Sun=7).
        let weekday = (local_days + 3).rem_euclid(7) + 1;
        if weekday <= 5 {
            left -= 1;
        }
    }
    t
}

/// Parses `HH:MM`.
pub(crate) fn parse_time_of_day(text: &str) -> Option<api::TimeOfDay> {
    let (h, m) = text.split_once(':')?;
    let (hours, minutes): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&hours) && (0..60).contains(&minutes)).then_some(api::TimeOfDay { hours, minutes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_as_dossier_codes_write_it_in_vietnam() {
        // 2025-11-14 20:00 UTC is already the 15th in Vietnam.
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_763_150_400);
        assert_eq!(yymmdd(t), "251115");
        assert_eq!(yymmdd(SystemTime::UNIX_EPOCH), "700101");
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2025, 7, 1), 20_270);
        assert_eq!(local_midnight(&api::Date { year: 1970, month: 1, day: 2 }).seconds, 86_400 - 7 * 3600);
    }

    #[test]
    fn dates_are_checked() {
        assert!(parse_date("2024-02-29").is_some());
        assert!(parse_date("2025-02-29").is_none());
        assert!(parse_date("2025-13-01").is_none());
        assert!(parse_date("soon").is_none());
        assert_eq!(parse_time_of_day("05:30"), Some(api::TimeOfDay { hours: 5, minutes: 30 }));
        assert!(parse_time_of_day("24:00").is_none());
    }

    #[test]
    fn working_days_skip_weekends() {
        // Friday 2025-11-14 08:00 local + 1 working day = Monday 2025-11-17.
        let friday = UNIX_EPOCH + Duration::from_secs((days_from_civil(2025, 11, 14) * 86_400 + 3600) as u64);
        let next = add_working_days(friday, 1);
        assert_eq!(next.duration_since(friday).unwrap().as_secs(), 3 * 86_400);
    }
}
