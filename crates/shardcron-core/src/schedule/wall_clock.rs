//! Evaluating a cron expression on local wall-clock time, DST included.
//!
//! A cron expression describes wall-clock times ("02:30 every day"), but a fire
//! is an instant. Around DST transitions the two disagree, and every node must
//! resolve that the same way. The rule implemented here:
//!
//! 1. Find matching wall-clock times by running the `cron` crate in `Utc` over
//!    *naive local* date-times (the wall clock, pretended to be UTC). That
//!    makes the crate's search independent of any offset.
//! 2. Map each wall-clock match to an instant with `tz.from_local_datetime`:
//!    * `Single(t)` — fire at `t`;
//!    * `Ambiguous(a, b)` (the repeated hour when clocks fall back) — fire
//!      **once**, at the earlier instant;
//!    * `None` (the skipped hour when clocks spring forward) — that wall-clock
//!      time never happens; it is skipped, not shifted.
//!
//! The earliest-instant mapping is monotonic in wall-clock time, so the first
//! wall-clock match after the local time of `after` whose instant is strictly
//! later than `after` is the next fire. Candidates whose instant is not later
//! (the second pass through a repeated hour) or that do not exist are skipped
//! in a loop bounded by [`MAX_CANDIDATES`]; a gap is jumped over in one step
//! (see [`first_existing_after`]), so the bound is only approached by
//! per-second schedules inside a repeated period of more than 2.7 hours, which
//! no current zone has. Hitting the bound yields `None` rather than a wrong
//! answer.
//!
//! The `cron` crate only knows years 1970..=2100, so there are no cron fires
//! outside that range; inputs far outside it are clamped or answered `None`
//! early, which also keeps chrono's date arithmetic away from its limits.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// Upper bound on wall-clock candidates examined by one [`next_fire`] call.
pub(crate) const MAX_CANDIDATES: usize = 10_000;

/// 1900-01-01T00:00:00Z. Earlier `after` values are clamped to this: no cron
/// expression fires before 1970 anyway.
const SEARCH_FLOOR_MS: i64 = -2_208_988_800_000;

/// 2102-01-01T00:00:00Z. The last possible cron fire is in local year 2100, so
/// nothing fires after this.
const SEARCH_CEILING_MS: i64 = 4_165_516_800_000;

/// Longest clock gap we expect (Samoa skipped a whole day in 2011); gaps are
/// searched for an end this far ahead.
const MAX_GAP_SECONDS: i64 = 2 * 86_400;

/// The first fire of `cron` strictly after `after_ms`, evaluated in `tz`.
pub(crate) fn next_fire(cron: &cron::Schedule, after_ms: i64, tz: Tz) -> Option<i64> {
    if after_ms >= SEARCH_CEILING_MS {
        return None;
    }
    let start = DateTime::<Utc>::from_timestamp_millis(after_ms.max(SEARCH_FLOOR_MS))?;
    let mut cursor = start.with_timezone(&tz).naive_local();
    for _ in 0..MAX_CANDIDATES {
        // The crate returns the first whole second strictly after `cursor`.
        let wall = cron
            .after(&Utc.from_utc_datetime(&cursor))
            .next()?
            .naive_utc();
        match tz.from_local_datetime(&wall) {
            LocalResult::Single(instant) => {
                let ms = instant.timestamp_millis();
                if ms > after_ms {
                    return Some(ms);
                }
                cursor = wall;
            }
            LocalResult::Ambiguous(a, b) => {
                let ms = a.timestamp_millis().min(b.timestamp_millis());
                if ms > after_ms {
                    return Some(ms);
                }
                cursor = wall;
            }
            LocalResult::None => {
                // Jump to just before the first wall-clock second that exists
                // again, so the next candidate is the first match after the gap.
                cursor = match first_existing_after(tz, wall) {
                    Some(end) => end - TimeDelta::seconds(1),
                    None => wall,
                };
            }
        }
    }
    None
}

/// The first whole-second wall-clock time after `in_gap` (a time that does not
/// exist in `tz`) that does exist, searched up to [`MAX_GAP_SECONDS`] ahead.
///
/// Gallops forward (1 s, 2 s, 4 s, ...) to an existing time, then bisects.
/// Assumes a single contiguous gap in that window, which holds for every
/// transition in the tz database. `None` if nothing exists in the window.
fn first_existing_after(tz: Tz, in_gap: NaiveDateTime) -> Option<NaiveDateTime> {
    let at = |seconds: i64| in_gap + TimeDelta::seconds(seconds);
    let exists = |seconds: i64| !matches!(tz.from_local_datetime(&at(seconds)), LocalResult::None);

    let mut missing = 0i64;
    let mut present = 1i64;
    while !exists(present) {
        if present >= MAX_GAP_SECONDS {
            return None;
        }
        missing = present;
        present = (present * 2).min(MAX_GAP_SECONDS);
    }
    while present - missing > 1 {
        let mid = missing + (present - missing) / 2;
        if exists(mid) {
            present = mid;
        } else {
            missing = mid;
        }
    }
    Some(at(present))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn naive(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|date| date.and_hms_opt(h, mi, s))
            .unwrap()
    }

    #[test]
    fn gap_end_new_york_spring_forward() {
        let end = first_existing_after(chrono_tz::America::New_York, naive(2026, 3, 8, 2, 0, 0));
        assert_eq!(end, Some(naive(2026, 3, 8, 3, 0, 0)));
        let end = first_existing_after(chrono_tz::America::New_York, naive(2026, 3, 8, 2, 59, 59));
        assert_eq!(end, Some(naive(2026, 3, 8, 3, 0, 0)));
    }

    #[test]
    fn gap_end_samoa_skipped_day() {
        // Pacific/Apia skipped 2011-12-30 entirely.
        let end = first_existing_after(chrono_tz::Pacific::Apia, naive(2011, 12, 30, 0, 0, 0));
        assert_eq!(end, Some(naive(2011, 12, 31, 0, 0, 0)));
    }

    #[test]
    fn every_second_across_samoa_gap() {
        let cron: cron::Schedule = "* * * * * *".parse().unwrap();
        let tz = chrono_tz::Pacific::Apia;
        let before = tz
            .from_local_datetime(&naive(2011, 12, 29, 23, 59, 59))
            .single()
            .unwrap()
            .timestamp_millis();
        let next = next_fire(&cron, before, tz).unwrap();
        // The clock jumped from Dec 29 23:59:59 to Dec 31 00:00:00: one second.
        assert_eq!(next - before, 1_000);
    }

    #[test]
    fn far_future_and_far_past() {
        let cron: cron::Schedule = "0 0 0 1 1 *".parse().unwrap();
        assert_eq!(next_fire(&cron, i64::MAX, Tz::UTC), None);
        // 1970-01-01T00:00:00Z is the first fire whatever the start.
        assert_eq!(next_fire(&cron, i64::MIN, Tz::UTC), Some(0));
    }
}
