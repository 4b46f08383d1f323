//! Unit tests of parsing and of the non-DST behaviour of [`Schedule`].

use chrono::{Datelike, NaiveDate, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use super::*;

fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .unwrap()
        .timestamp_millis()
}

fn utc(ms: i64) -> chrono::DateTime<Utc> {
    chrono::DateTime::<Utc>::from_timestamp_millis(ms).unwrap()
}

fn sched(expr: &str) -> Schedule {
    Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"))
}

fn next(expr: &str, after_ms: i64) -> i64 {
    sched(expr).next_after(after_ms, Tz::UTC).unwrap()
}

#[test]
fn five_field_fires_at_second_zero() {
    let after = utc_ms(2026, 5, 5, 10, 7, 30);
    assert_eq!(next("*/15 * * * *", after), utc_ms(2026, 5, 5, 10, 15, 0));
}

#[test]
fn six_field_has_seconds_first() {
    let after = utc_ms(2026, 5, 5, 10, 7, 31);
    assert_eq!(next("*/20 * * * * *", after), utc_ms(2026, 5, 5, 10, 7, 40));
    assert_eq!(next("30 0 12 * * *", after), utc_ms(2026, 5, 5, 12, 0, 30));
}

#[test]
fn seven_field_has_year_last() {
    let after = utc_ms(2026, 5, 5, 0, 0, 0);
    assert_eq!(next("0 0 0 1 1 * 2030", after), utc_ms(2030, 1, 1, 0, 0, 0));
    assert_eq!(sched("0 0 0 1 1 * 2020").next_after(after, Tz::UTC), None);
}

#[test]
fn strictly_after_with_millisecond_inputs() {
    let fire = utc_ms(2026, 5, 5, 10, 15, 0);
    assert_eq!(next("*/15 * * * *", fire - 1), fire);
    assert_eq!(next("*/15 * * * *", fire), fire + 15 * 60_000);
    assert_eq!(next("* * * * * *", fire + 999), fire + 1_000);
}

#[test]
fn macros_map_to_explicit_expressions() {
    let after = utc_ms(2026, 5, 5, 10, 7, 30); // a Tuesday
    assert_eq!(next("@hourly", after), utc_ms(2026, 5, 5, 11, 0, 0));
    assert_eq!(next("@daily", after), utc_ms(2026, 5, 6, 0, 0, 0));
    assert_eq!(next("@midnight", after), utc_ms(2026, 5, 6, 0, 0, 0));
    assert_eq!(next("@weekly", after), utc_ms(2026, 5, 10, 0, 0, 0)); // Sunday
    assert_eq!(next("@monthly", after), utc_ms(2026, 6, 1, 0, 0, 0));
    assert_eq!(next("@yearly", after), utc_ms(2027, 1, 1, 0, 0, 0));
    assert_eq!(next("@annually", after), utc_ms(2027, 1, 1, 0, 0, 0));
    assert_eq!(next("  @HOURLY ", after), utc_ms(2026, 5, 5, 11, 0, 0));
}

#[test]
fn weekdays_use_crontab_numbering() {
    // 2026-03-08 is a Sunday, 2026-03-09 a Monday.
    assert_eq!(
        NaiveDate::from_ymd_opt(2026, 3, 9).unwrap().weekday(),
        Weekday::Mon
    );
    let sunday_noon = utc_ms(2026, 3, 8, 12, 0, 0);
    for expr in ["0 9 * * 1-5", "0 0 9 * * 1-5", "0 0 9 * * 1-5 *"] {
        let fires =
            sched(expr).fires_between(sunday_noon, sunday_noon + 7 * 86_400_000, Tz::UTC, 10);
        let days: Vec<Weekday> = fires.iter().map(|&ms| utc(ms).weekday()).collect();
        assert_eq!(
            days,
            [
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri
            ],
            "{expr}"
        );
        assert!(fires.iter().all(|&ms| utc(ms).hour() == 9));
    }
}

#[test]
fn sunday_is_zero_or_seven_and_ranges_may_end_at_seven() {
    let monday = utc_ms(2026, 3, 9, 0, 0, 0);
    for expr in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN"] {
        assert_eq!(utc(next(expr, monday)).weekday(), Weekday::Sun, "{expr}");
    }
    let fires = sched("0 0 * * 5-7").fires_between(monday, monday + 7 * 86_400_000, Tz::UTC, 10);
    let days: Vec<Weekday> = fires.iter().map(|&ms| utc(ms).weekday()).collect();
    assert_eq!(days, [Weekday::Fri, Weekday::Sat, Weekday::Sun]);
}

#[test]
fn day_of_week_steps_and_lists() {
    let sunday = utc_ms(2026, 3, 8, 0, 0, 0) - 1;
    let week = 7 * 86_400_000;
    let days = |expr: &str| -> Vec<Weekday> {
        sched(expr)
            .fires_between(sunday, sunday + week, Tz::UTC, 10)
            .iter()
            .map(|&ms| utc(ms).weekday())
            .collect()
    };
    assert_eq!(
        days("0 0 * * */2"),
        [Weekday::Sun, Weekday::Tue, Weekday::Thu, Weekday::Sat]
    );
    assert_eq!(
        days("0 0 * * 1,3,5"),
        [Weekday::Mon, Weekday::Wed, Weekday::Fri]
    );
    assert_eq!(
        days("0 0 * * MON-WED"),
        [Weekday::Mon, Weekday::Tue, Weekday::Wed]
    );
}

#[test]
fn every_is_aligned_to_the_epoch() {
    let every = sched("@every 5s");
    assert_eq!(every.next_after(12_345, Tz::UTC), Some(15_000));
    assert_eq!(every.next_after(15_000, Tz::UTC), Some(20_000));
    assert_eq!(every.next_after(-1, Tz::UTC), Some(0));
    assert_eq!(every.next_after(-5_000, Tz::UTC), Some(0));
    assert_eq!(every.next_after(-5_001, Tz::UTC), Some(-5_000));
    assert_eq!(every.next_after(i64::MAX - 1, Tz::UTC), None);
    assert_eq!(sched("@every 1m30s").next_after(0, Tz::UTC), Some(90_000));
    assert_eq!(sched("@every 1500ms").next_after(0, Tz::UTC), Some(1_500));
    assert_eq!(sched("@every 2h").next_after(1, Tz::UTC), Some(7_200_000));
}

#[test]
fn bad_every_durations_are_rejected() {
    for expr in [
        "@every 0s",
        "@every 250ms",
        "@every soon",
        "@every",
        "@every 1s 500us",
    ] {
        match Schedule::parse(expr) {
            Err(ScheduleError::InvalidEvery {
                expr: named,
                reason,
            }) => {
                assert_eq!(named, expr);
                assert!(!reason.is_empty());
            }
            other => panic!("{expr:?} gave {other:?}"),
        }
    }
}

#[test]
fn bad_expressions_are_rejected_and_named() {
    for expr in [
        "61 * * * *",
        "* * *",
        "",
        "   ",
        "* * * * * * * *",
        "0 0 * * 8",
        "0 0 * * 5-1",
        "0 0 * * FUNDAY",
        "0 0 32 * *",
        "@reboot",
        "@daily now",
        "hello world",
    ] {
        match Schedule::parse(expr) {
            Err(ScheduleError::InvalidExpression {
                expr: named,
                reason,
            }) => {
                assert_eq!(named, expr);
                assert!(!reason.is_empty(), "{expr:?}");
            }
            other => panic!("{expr:?} gave {other:?}"),
        }
    }
}

#[test]
fn error_messages_name_the_input() {
    let err = Schedule::parse("x y").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid schedule \"x y\": expected 5, 6 or 7 fields, found 2"
    );
    let err = Schedule::parse("@every soon").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid schedule \"@every soon\": "),
        "{err}"
    );
    let err = parse_time_zone("Mars/Base").unwrap_err();
    assert_eq!(
        err,
        ScheduleError::UnknownTimeZone {
            name: "Mars/Base".into()
        }
    );
    assert_eq!(err.to_string(), "unknown time zone \"Mars/Base\"");
}

#[test]
fn time_zones_parse_by_iana_name() {
    assert_eq!(parse_time_zone("UTC"), Ok(Tz::UTC));
    assert_eq!(parse_time_zone("Europe/Berlin"), Ok(Tz::Europe__Berlin));
    assert_eq!(
        parse_time_zone("America/New_York"),
        Ok(Tz::America__New_York)
    );
    assert!(parse_time_zone("").is_err());
}

#[test]
fn equality_and_display_use_the_expression() {
    assert_eq!(sched("@daily"), sched("@daily"));
    assert_ne!(sched("@daily"), sched("0 0 * * *"));
    assert_eq!(sched("0 9 * * 1-5").to_string(), "0 9 * * 1-5");
    assert_eq!(sched("0 9 * * 1-5").expr(), "0 9 * * 1-5");
    assert_eq!("@hourly".parse::<Schedule>().ok(), Some(sched("@hourly")));
}

#[test]
fn fires_between_respects_bounds_and_limit() {
    let s = sched("0 * * * *");
    let from = utc_ms(2026, 1, 1, 0, 0, 0);
    let to = utc_ms(2026, 1, 1, 5, 0, 0);
    let fires = s.fires_between(from, to, Tz::UTC, 100);
    assert_eq!(fires.len(), 5, "from is exclusive, to inclusive");
    assert_eq!(fires.first(), Some(&(from + 3_600_000)));
    assert_eq!(fires.last(), Some(&to));
    assert_eq!(s.fires_between(from, to, Tz::UTC, 2).len(), 2);
    assert!(s.fires_between(from, to, Tz::UTC, 0).is_empty());
    assert!(s.fires_between(to, from, Tz::UTC, 10).is_empty());
}

#[test]
fn cron_errors_are_one_line_and_specific() {
    let err = Schedule::parse("61 * * * *").unwrap_err().to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(err.contains("'61'"), "{err}");
    let err = Schedule::parse("1,,2 * * * *").unwrap_err().to_string();
    assert!(!err.contains('\n'), "{err}");
}
