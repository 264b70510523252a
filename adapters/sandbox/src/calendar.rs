//! Dates and times in Vietnam, with the `time` crate. Vietnam keeps one
//! offset all year (UTC+7, Asia/Ho_Chi_Minh, no daylight saving since
//! 1975), so a fixed offset is its time zone for every date the sandbox
//! shows.

use std::time::{Duration, SystemTime};

use lienthong_adapter_core::api;
use time::{Date, Month, OffsetDateTime, Time, UtcOffset, Weekday};

/// Vietnam's offset from UTC.
pub(crate) const VIETNAM: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

/// `t` in Vietnam.
pub(crate) fn local(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t).to_offset(VIETNAM)
}

/// `YYMMDD` of `t` in Vietnam, as dossier codes write a date.
pub(crate) fn yymmdd(t: SystemTime) -> String {
    let d = local(t).date();
    format!("{:02}{:02}{:02}", d.year().rem_euclid(100), u8::from(d.month()), d.day())
}

/// Parses `YYYY-MM-DD`, checking the day exists.
pub(crate) fn parse_date(text: &str) -> Option<api::Date> {
    let mut parts = text.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    if !(1..=9999).contains(&year) {
        return None;
    }
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
    Some(api::Date { year: date.year(), month: i32::from(u8::from(date.month())), day: i32::from(date.day()) })
}

/// Midnight in Vietnam at the start of `date`, as a timestamp (the epoch
/// for a date that does not exist).
pub(crate) fn local_midnight(date: &api::Date) -> prost_types::Timestamp {
    let day = u8::try_from(date.month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .zip(u8::try_from(date.day).ok())
        .and_then(|(month, day)| Date::from_calendar_date(date.year, month, day).ok());
    let seconds = day.map_or(0, |d| d.with_time(Time::MIDNIGHT).assume_offset(VIETNAM).unix_timestamp());
    prost_types::Timestamp { seconds, nanos: 0 }
}

/// Midnight in Vietnam at the start of the day `t` falls on.
pub(crate) fn start_of_day(t: SystemTime) -> SystemTime {
    SystemTime::from(local(t).replace_time(Time::MIDNIGHT))
}

/// A `SystemTime` as a protobuf timestamp.
pub(crate) fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let t = OffsetDateTime::from(t);
    prost_types::Timestamp { seconds: t.unix_timestamp(), nanos: t.nanosecond() as i32 }
}

/// `start` plus `days` working days (Monday to Friday, in Vietnam).
pub(crate) fn add_working_days(start: SystemTime, days: u32) -> SystemTime {
    let mut t = start;
    let mut left = days;
    while left > 0 {
        t += Duration::from_secs(86_400);
        if !matches!(local(t).weekday(), Weekday::Saturday | Weekday::Sunday) {
            left -= 1;
        }
    }
    t
}

/// Parses `HH:MM`.
pub(crate) fn parse_time_of_day(text: &str) -> Option<api::TimeOfDay> {
    let (h, m) = text.split_once(':')?;
    let time = Time::from_hms(h.parse().ok()?, m.parse().ok()?, 0).ok()?;
    Some(api::TimeOfDay { hours: i32::from(time.hour()), minutes: i32::from(time.minute()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_date_as_dossier_codes_write_it_in_vietnam() {
        // 2025-11-14 20:00 UTC is already the 15th in Vietnam.
        assert_eq!(yymmdd(at(1_763_150_400)), "251115");
        assert_eq!(yymmdd(SystemTime::UNIX_EPOCH), "700101");
    }

    #[test]
    fn midnight_in_vietnam() {
        assert_eq!(local_midnight(&api::Date { year: 1970, month: 1, day: 2 }).seconds, 86_400 - 7 * 3600);
        // 2025-11-19 00:00 in Vietnam is 2025-11-18 17:00 UTC.
        assert_eq!(local_midnight(&api::Date { year: 2025, month: 11, day: 19 }).seconds, 1_763_485_200);
        assert_eq!(timestamp(start_of_day(at(1_763_485_200 + 5 * 3_600))).seconds, 1_763_485_200);
        assert_eq!(timestamp(start_of_day(at(1_763_485_200 - 1))).seconds, 1_763_485_200 - 86_400);
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
        // Friday 2025-11-14 08:00 in Vietnam + 1 working day = Monday 2025-11-17.
        let friday = at(local_midnight(&api::Date { year: 2025, month: 11, day: 14 }).seconds as u64 + 8 * 3_600);
        let next = add_working_days(friday, 1);
        assert_eq!(next.duration_since(friday).unwrap().as_secs(), 3 * 86_400);
        assert_eq!(local(next).weekday(), Weekday::Monday);
    }
}
