//! Fire times across DST transitions, and an independent brute-force oracle.
//!
//! The rule under test (see `schedule.rs`): cron expressions match local
//! wall-clock time; a wall-clock time skipped by spring-forward does not fire;
//! one repeated by fall-back fires once, at its first (earlier) instant.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use shardcron_core::{parse_time_zone, Schedule};

const NY: Tz = chrono_tz::America::New_York;
const BERLIN: Tz = chrono_tz::Europe::Berlin;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn sched(expr: &str) -> Schedule {
    Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"))
}

fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .timestamp_millis()
}

/// The instant of local midnight starting `date` in `tz` (never in a gap for
/// the zones used here).
fn local_midnight(tz: Tz, y: i32, mo: u32, d: u32) -> i64 {
    tz.with_ymd_and_hms(y, mo, d, 0, 0, 0)
        .unwrap()
        .timestamp_millis()
}

/// All fires during the local calendar day `y-mo-d` in `tz`.
fn fires_on_local_day(expr: &str, tz: Tz, y: i32, mo: u32, d: u32) -> Vec<i64> {
    let start = local_midnight(tz, y, mo, d);
    let next = NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .succ_opt()
        .unwrap();
    let end = local_midnight(tz, next.year(), next.month(), next.day());
    sched(expr).fires_between(start - 1, end - 1, tz, 10_000)
}

fn local(ms: i64, tz: Tz) -> NaiveDateTime {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&tz)
        .naive_local()
}

// ---- America/New_York, spring forward 2026-03-08 02:00 EST -> 03:00 EDT ----

#[test]
fn new_york_spring_forward_skips_the_missing_half_hour() {
    let from = local_midnight(NY, 2026, 3, 7) - 1;
    let to = local_midnight(NY, 2026, 3, 10) - 1;
    let fires = sched("30 2 * * *").fires_between(from, to, NY, 10);
    assert_eq!(
        fires,
        [
            utc_ms(2026, 3, 7, 7, 30), // 02:30 EST the day before
            utc_ms(2026, 3, 9, 6, 30), // 02:30 EDT the day after
        ]
    );
}

#[test]
fn new_york_spring_forward_day_has_23_hourly_fires() {
    let fires = fires_on_local_day("0 * * * *", NY, 2026, 3, 8);
    assert_eq!(fires.len(), 23);
    let hours: Vec<u32> = fires.iter().map(|&ms| local(ms, NY).hour()).collect();
    assert!(!hours.contains(&2));
    assert!(fires.windows(2).all(|w| w[1] - w[0] == HOUR));
    assert_eq!(fires_on_local_day("@hourly", NY, 2026, 3, 8), fires);
}

#[test]
fn seconds_field_in_the_gap_is_skipped_too() {
    let fires = fires_on_local_day("15 30 2 * * *", NY, 2026, 3, 8);
    assert!(fires.is_empty(), "{fires:?}");
    let fires = fires_on_local_day("15 30 2 * * *", NY, 2026, 3, 9);
    assert_eq!(fires, [utc_ms(2026, 3, 9, 6, 30) + 15_000]);
}

// ---- America/New_York, fall back 2026-11-01 02:00 EDT -> 01:00 EST ----

#[test]
fn new_york_fall_back_fires_repeated_time_once_at_first_instant() {
    let fires = fires_on_local_day("30 1 * * *", NY, 2026, 11, 1);
    assert_eq!(fires, [utc_ms(2026, 11, 1, 5, 30)]); // 01:30 EDT
}

#[test]
fn new_york_fall_back_quarter_hours_each_wall_clock_once() {
    let fires = fires_on_local_day("*/15 * * * *", NY, 2026, 11, 1);
    assert_eq!(fires.len(), 24 * 4);
    let walls: BTreeSet<(u32, u32)> = fires
        .iter()
        .map(|&ms| {
            let t = local(ms, NY);
            (t.hour(), t.minute())
        })
        .collect();
    assert_eq!(walls.len(), 96, "every wall-clock quarter exactly once");
    // Nothing fires during the second pass through 01:xx (06:00-07:00 UTC).
    let second_pass = utc_ms(2026, 11, 1, 6, 0)..utc_ms(2026, 11, 1, 7, 0);
    assert!(fires.iter().all(|ms| !second_pass.contains(ms)));
    assert!(fires.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn new_york_fall_back_hourly_has_24_fires_in_a_25_hour_day() {
    let fires = fires_on_local_day("0 * * * *", NY, 2026, 11, 1);
    assert_eq!(fires.len(), 24);
    // 01:00 EDT (05:00 UTC) then 02:00 EST (07:00 UTC): a two-hour step.
    assert!(fires.contains(&utc_ms(2026, 11, 1, 5, 0)));
    assert!(!fires.contains(&utc_ms(2026, 11, 1, 6, 0)));
    assert!(fires.contains(&utc_ms(2026, 11, 1, 7, 0)));
}

#[test]
fn starting_inside_the_repeated_hour_does_not_refire() {
    let second_pass = utc_ms(2026, 11, 1, 6, 10); // 01:10 EST
    assert_eq!(
        sched("30 1 * * *").next_after(second_pass, NY),
        Some(utc_ms(2026, 11, 2, 6, 30)) // 01:30 EST next day
    );
    assert_eq!(
        sched("*/15 * * * *").next_after(second_pass, NY),
        Some(utc_ms(2026, 11, 1, 7, 0)) // 02:00 EST
    );
    let first_pass = utc_ms(2026, 11, 1, 5, 10); // 01:10 EDT
    assert_eq!(
        sched("30 1 * * *").next_after(first_pass, NY),
        Some(utc_ms(2026, 11, 1, 5, 30))
    );
}

// ---- Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST, 2026-10-25 03:00 CEST -> 02:00 CET ----

#[test]
fn berlin_spring_forward() {
    assert!(fires_on_local_day("30 2 * * *", BERLIN, 2026, 3, 29).is_empty());
    assert_eq!(
        fires_on_local_day("30 2 * * *", BERLIN, 2026, 3, 28),
        [utc_ms(2026, 3, 28, 1, 30)] // CET
    );
    assert_eq!(
        fires_on_local_day("30 2 * * *", BERLIN, 2026, 3, 30),
        [utc_ms(2026, 3, 30, 0, 30)] // CEST
    );
    assert_eq!(
        fires_on_local_day("0 * * * *", BERLIN, 2026, 3, 29).len(),
        23
    );
}

#[test]
fn berlin_fall_back() {
    assert_eq!(
        fires_on_local_day("30 2 * * *", BERLIN, 2026, 10, 25),
        [utc_ms(2026, 10, 25, 0, 30)] // 02:30 CEST, not 02:30 CET
    );
    let quarters = fires_on_local_day("*/15 * * * *", BERLIN, 2026, 10, 25);
    assert_eq!(quarters.len(), 96);
    let hourly = fires_on_local_day("0 * * * *", BERLIN, 2026, 10, 25);
    assert_eq!(hourly.len(), 24);
    assert!(!hourly.contains(&utc_ms(2026, 10, 25, 1, 0))); // 02:00 CET
}

// ---- walking, @every, time zones ----

#[test]
fn repeated_next_after_walks_strictly_increasing() {
    let exprs = [
        "*/15 * * * *",
        "30 1 * * *",
        "30 2 * * *",
        "0 * * * *",
        "*/20 * * * * *",
    ];
    for tz in [NY, BERLIN, Tz::UTC] {
        for expr in exprs {
            let s = sched(expr);
            let mut cursor = utc_ms(2026, 10, 24, 0, 0);
            let end = utc_ms(2026, 11, 3, 0, 0);
            let mut walked = Vec::new();
            while let Some(next) = s.next_after(cursor, tz) {
                assert!(next > cursor, "{expr} {tz}: {next} <= {cursor}");
                if next > end {
                    break;
                }
                walked.push(next);
                cursor = next;
            }
            let start = utc_ms(2026, 10, 24, 0, 0);
            assert_eq!(
                s.fires_between(start, end, tz, usize::MAX),
                walked,
                "{expr} {tz}"
            );
        }
    }
}

#[test]
fn every_is_aligned_to_the_epoch_in_any_zone() {
    let s = sched("@every 5s");
    let after = utc_ms(2026, 3, 8, 6, 59) + 1_234;
    for tz in [Tz::UTC, NY, BERLIN, chrono_tz::Asia::Kolkata] {
        let fires = s.fires_between(after, after + 60_000, tz, 100);
        assert_eq!(fires.len(), 12);
        assert!(fires.iter().all(|ms| ms % 5_000 == 0));
        assert_eq!(fires[0], after - after % 5_000 + 5_000);
    }
}

#[test]
fn unknown_time_zone_is_an_error() {
    let err = parse_time_zone("Mars/Base").unwrap_err();
    assert_eq!(err.to_string(), "unknown time zone \"Mars/Base\"");
    assert_eq!(parse_time_zone("UTC"), Ok(Tz::UTC));
}

#[test]
fn bad_expressions_name_the_expression() {
    for expr in ["61 * * * *", "* * *", "@every 0s", "@every soon", ""] {
        let err = Schedule::parse(expr).unwrap_err();
        assert!(err.to_string().contains(&format!("{expr:?}")), "{err}");
    }
}

// ---- brute-force oracle ----

/// A cron field for the generator: its text and the values it matches.
type Field = (&'static str, Vec<u32>);

fn minute_fields() -> Vec<Field> {
    vec![
        ("0", vec![0]),
        ("30", vec![30]),
        ("*/15", vec![0, 15, 30, 45]),
        ("5,35", vec![5, 35]),
        ("*/7", (0..60).step_by(7).collect()),
        ("58-59", vec![58, 59]),
    ]
}

fn hour_fields() -> Vec<Field> {
    vec![
        ("*", (0..24).collect()),
        ("1", vec![1]),
        ("2", vec![2]),
        ("0-3", vec![0, 1, 2, 3]),
        ("*/2", (0..24).step_by(2).collect()),
        ("1,2,3", vec![1, 2, 3]),
    ]
}

/// Day-of-week fields with their days as `Weekday::num_days_from_sunday`.
fn dow_fields() -> Vec<Field> {
    vec![
        ("*", (0..7).collect()),
        ("1-5", vec![1, 2, 3, 4, 5]),
        ("0", vec![0]),
        ("7", vec![0]),
        ("5-7", vec![5, 6, 0]),
        ("*/2", vec![0, 2, 4, 6]),
        ("SAT,SUN", vec![6, 0]),
    ]
}

fn zones() -> Vec<Tz> {
    transitions().into_iter().map(|(tz, _)| tz).collect()
}

/// Zones paired with instants near one of their transitions (or an ordinary
/// day for zones without DST), to start searches from.
fn transitions() -> Vec<(Tz, i64)> {
    let lord_howe = chrono_tz::Australia::Lord_Howe; // 30-minute DST shift
    let santiago = chrono_tz::America::Santiago; // transitions at midnight
    vec![
        (NY, utc_ms(2026, 3, 8, 7, 0)),           // spring forward
        (NY, utc_ms(2026, 11, 1, 6, 0)),          // fall back
        (BERLIN, utc_ms(2026, 3, 29, 1, 0)),      // spring forward
        (BERLIN, utc_ms(2026, 10, 25, 1, 0)),     // fall back
        (lord_howe, utc_ms(2026, 4, 4, 15, 0)),   // fall back (local 02:00)
        (lord_howe, utc_ms(2026, 10, 3, 15, 30)), // spring forward
        (santiago, utc_ms(2026, 4, 5, 3, 0)),     // fall back
        (santiago, utc_ms(2026, 9, 6, 4, 0)),     // spring forward
        (chrono_tz::Asia::Kolkata, utc_ms(2026, 6, 15, 12, 0)), // +05:30, no DST
        (Tz::UTC, utc_ms(2026, 6, 15, 12, 0)),
    ]
}

/// Independent model of the fire rule: the first minute-aligned instant
/// `t > after` whose wall-clock time matches, and which is the *earliest*
/// instant of that wall-clock time. Scans up to `horizon` minutes.
fn oracle(
    after: i64,
    tz: Tz,
    minutes: &[u32],
    hours: &[u32],
    days: &[u32],
    horizon: i64,
) -> Option<i64> {
    let first = (after.div_euclid(60_000) + 1) * 60_000;
    (0..horizon).map(|i| first + i * 60_000).find(|&t| {
        let wall = local(t, tz);
        let matches = minutes.contains(&wall.minute())
            && hours.contains(&wall.hour())
            && days.contains(&wall.weekday().num_days_from_sunday());
        let earliest = match tz.from_local_datetime(&wall) {
            LocalResult::Single(x) => Some(x.timestamp_millis()),
            LocalResult::Ambiguous(a, b) => Some(a.timestamp_millis().min(b.timestamp_millis())),
            LocalResult::None => None,
        };
        matches && earliest == Some(t)
    })
}

fn expression_parts() -> impl Strategy<Value = (Field, Field, Field)> {
    (
        prop::sample::select(minute_fields()),
        prop::sample::select(hour_fields()),
        prop::sample::select(dow_fields()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn next_after_agrees_with_brute_force_oracle(
        (minute, hour, dow) in expression_parts(),
        (tz, anchor) in prop::sample::select(transitions()),
        offset in prop_oneof![3 => -3 * HOUR..3 * HOUR, 1 => -40 * HOUR..40 * HOUR],
    ) {
        let expr = format!("{} {} * * {}", minute.0, hour.0, dow.0);
        let schedule = sched(&expr);
        let after = anchor + offset;
        const HORIZON_MINUTES: i64 = 9 * 24 * 60;
        let expected = oracle(after, tz, &minute.1, &hour.1, &dow.1, HORIZON_MINUTES);
        let actual = schedule.next_after(after, tz);
        match expected {
            Some(e) => prop_assert_eq!(actual, Some(e), "{} in {} after {}", expr, tz, after),
            None => prop_assert!(
                actual.is_none_or(|a| a >= after + HORIZON_MINUTES * 60_000),
                "{} in {} after {}: got {:?}, oracle found nothing", expr, tz, after, actual
            ),
        }
    }

    #[test]
    fn next_after_is_strict_and_consistent_with_fires_between(
        (minute, hour, dow) in expression_parts(),
        seconds in prop::sample::select(vec!["", "0 ", "*/20 ", "59 "]),
        every in prop::sample::select(vec!["", "@every 5s", "@every 1m30s", "@every 7s", "@hourly", "@daily"]),
        tz in prop::sample::select(zones()),
        after in utc_ms(2024, 1, 1, 0, 0)..utc_ms(2030, 1, 1, 0, 0),
    ) {
        let expr = if every.is_empty() {
            format!("{seconds}{} {} * * {}", minute.0, hour.0, dow.0)
        } else {
            every.to_string()
        };
        let schedule = sched(&expr);
        let r = schedule.next_after(after, tz);
        prop_assert!(r.is_some(), "{} never fires after {}", expr, after);
        let r = r.unwrap_or_default();
        prop_assert!(r > after);
        prop_assert_eq!(schedule.fires_between(after, r, tz, 10), vec![r]);
        prop_assert!(schedule.fires_between(after, r - 1, tz, 10).is_empty());
        let following = schedule.next_after(r, tz).unwrap_or(i64::MAX);
        prop_assert!(following > r);
        prop_assert!(following - r <= 15 * DAY, "{} gap {} too long", expr, following - r);
    }
}
