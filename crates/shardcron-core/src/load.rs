//! How much work a job is: its expected fires per day times its cost.
//!
//! Placement balances *work*, not shard counts: a shard holding an
//! every-second job weighs 86,400 times one holding a daily job. The unit is
//! an integer, [`LoadUnits`], so that sums in the store are exact and every
//! node that reads the same stored weights computes the same placement on any
//! platform (a float sum depends on the order of its terms).
//!
//! A job's weight is computed once, by whoever writes the job, and stored
//! beside it; readers never recompute it. So the estimate below only has to
//! be sensible, not identical across versions.
//!
//! Fires per day come from the schedule:
//!
//! * `@every P` is exact: `86,400,000 / P_ms` per day.
//! * A cron schedule is walked from a fixed reference instant (Monday
//!   2024-01-01 00:00 UTC) in the job's time zone over a week, which
//!   averages weekday restrictions; walking stops after
//!   [`RATE_SAMPLE_FIRES`] fires, so a schedule that fires every second costs
//!   a bounded walk, and the rate is the fires counted over the time they
//!   spanned. A schedule with no fire in that week is walked over 366 days,
//!   then over five years (February 29), before it counts as never firing.
//!
//! A walk costs up to 20,000 steps of the cron iterator (about 10 ms), and
//! fleets register thousands of jobs on a handful of schedules (`0 * * * *`
//! on every tenant), so the rate of each cron expression and zone is kept
//! in a bounded process-wide cache: registering 100,000 jobs on one
//! schedule walks it once.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::job::Job;
use crate::schedule::Schedule;
use chrono_tz::Tz;

/// Cron rates kept at most; the cache is emptied when it is full.
const RATE_CACHE_ENTRIES: usize = 4096;

/// Rates of cron expressions by (expression, zone).
fn rate_cache() -> &'static Mutex<HashMap<(String, Tz), f64>> {
    static CACHE: OnceLock<Mutex<HashMap<(String, Tz), f64>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// Weight in thousandths of a fire per day at cost 1: an every-second job of
/// cost 1 weighs 86,400,000, a daily one 1,000.
pub type LoadUnits = u64;

/// Load units of one fire per day at cost 1.
pub const UNITS_PER_DAILY_FIRE: f64 = 1000.0;

/// The largest accepted job `cost`. Keeps one job's weight far below 2^53, so
/// weights stay exact in every store (Lua numbers are doubles).
pub const MAX_COST: f64 = 10_000.0;

/// Fires sampled at most when estimating a cron schedule's rate.
pub const RATE_SAMPLE_FIRES: usize = 20_000;

/// Monday 2024-01-01 00:00:00 UTC, the start of every rate estimate, so that
/// the estimate of a schedule never depends on when it was computed.
const REFERENCE_MS: i64 = 1_704_067_200_000;

const DAY_MS: i64 = 86_400_000;

/// Expected fires per day of `schedule` evaluated in `tz` (see the module
/// docs for how it is estimated). 0.0 for a schedule that never fires.
pub fn fires_per_day(schedule: &Schedule, tz: Tz) -> f64 {
    if let Some(period_ms) = schedule.every_period_ms() {
        return DAY_MS as f64 / period_ms as f64;
    }
    let key = (schedule.expr().to_owned(), tz);
    let cached = rate_cache()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .copied();
    if let Some(rate) = cached {
        return rate;
    }
    let rate = walk_rate(schedule, tz);
    let mut cache = rate_cache().lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= RATE_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(key, rate);
    rate
}

/// Fires per day of a cron schedule, by walking it (see the module docs).
fn walk_rate(schedule: &Schedule, tz: Tz) -> f64 {
    for window_days in [7, 366, 5 * 366] {
        let end = REFERENCE_MS + window_days * DAY_MS;
        let mut count = 0usize;
        let mut cursor = REFERENCE_MS;
        while count < RATE_SAMPLE_FIRES {
            match schedule.next_after(cursor, tz) {
                Some(fire) if fire <= end => {
                    count += 1;
                    cursor = fire;
                }
                _ => break,
            }
        }
        if count == RATE_SAMPLE_FIRES {
            // Capped: the rate over the span the sampled fires covered.
            let span_ms = (cursor - REFERENCE_MS).max(1);
            return count as f64 * DAY_MS as f64 / span_ms as f64;
        }
        if count > 0 {
            return count as f64 * DAY_MS as f64 / (end - REFERENCE_MS) as f64;
        }
    }
    0.0
}

impl Job {
    /// The job's weight: expected fires per day times its cost, in
    /// [`LoadUnits`]; 0 for a paused job. A job that fires at all weighs at
    /// least 1, so it is never mistaken for an empty shard.
    ///
    /// A `leader` or `broadcast` job weighs 0: placement balances the ring's
    /// shards, and those jobs are not in one (the leader runs its jobs on
    /// top of its ring share; see "Placement per job" in
    /// docs/ARCHITECTURE.md).
    pub fn load_units(&self) -> LoadUnits {
        if self.spec.paused || self.spec.placement != crate::job::Placement::Sharded {
            return 0;
        }
        let per_day = fires_per_day(&self.schedule, self.tz);
        if per_day <= 0.0 {
            return 0;
        }
        let units = (per_day * self.spec.cost() * UNITS_PER_DAILY_FIRE).round();
        // Bounded by 86,400 fires/day/s-period x MAX_COST x 1000 < 2^40.
        (units as LoadUnits).max(1)
    }
}

/// Load units as expected fires per minute at cost 1 (what status shows).
pub fn units_to_fires_per_minute(units: LoadUnits) -> f64 {
    units as f64 / UNITS_PER_DAILY_FIRE / 1440.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobSpec;

    fn units(schedule: &str, tz: &str, cost: Option<f64>, paused: bool) -> LoadUnits {
        let mut spec = JobSpec::new("j", schedule, "noop");
        spec.tz = tz.to_owned();
        spec.cost = cost;
        spec.paused = paused;
        spec.validate().expect("valid").load_units()
    }

    #[test]
    fn every_is_exact() {
        assert_eq!(units("@every 1s", "UTC", None, false), 86_400_000);
        assert_eq!(units("@every 10s", "UTC", None, false), 8_640_000);
        assert_eq!(units("@every 7s", "UTC", None, false), 12_342_857);
    }

    #[test]
    fn cron_rates_average_over_a_week() {
        assert_eq!(units("* * * * * *", "UTC", None, false), 86_400_000);
        assert_eq!(units("* * * * *", "UTC", None, false), 1_440_000);
        assert_eq!(units("@hourly", "UTC", None, false), 24_000);
        assert_eq!(units("@daily", "Europe/Berlin", None, false), 1_000);
        // Weekdays only: 5 fires a week.
        assert_eq!(units("0 9 * * 1-5", "UTC", None, false), 714);
        assert_eq!(units("@weekly", "UTC", None, false), 143);
        assert_eq!(units("@monthly", "UTC", None, false), 33);
        assert_eq!(units("@yearly", "UTC", None, false), 3);
        // February 29 only: 1 or 2 fires in five years of 366 days.
        assert!(units("0 0 29 2 *", "UTC", None, false) >= 1);
    }

    #[test]
    fn cost_scales_and_paused_weighs_nothing() {
        assert_eq!(units("@every 1s", "UTC", Some(2.5), false), 216_000_000);
        assert_eq!(units("@every 1s", "UTC", Some(3.0), true), 0);
        // A tiny cost still weighs something.
        assert_eq!(units("@yearly", "UTC", Some(0.001), false), 1);
    }

    #[test]
    fn fires_per_minute_conversion() {
        assert!((units_to_fires_per_minute(86_400_000) - 60.0).abs() < 1e-9);
    }

    #[test]
    fn a_cached_rate_is_the_walked_one() {
        let schedule = Schedule::parse("0 */7 * * * 1-5").expect("valid");
        let tz: Tz = "Europe/Paris".parse().expect("zone");
        let walked = walk_rate(&schedule, tz);
        assert_eq!(fires_per_day(&schedule, tz), walked);
        assert_eq!(fires_per_day(&schedule, tz), walked, "from the cache");
        let utc = fires_per_day(&schedule, chrono_tz::UTC);
        assert!(utc > 0.0 && (utc - walked).abs() < 1.0, "{utc} vs {walked}");
    }
}
