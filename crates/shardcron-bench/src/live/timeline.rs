//! Lateness over time: per-second percentiles and per-event spans.
//!
//! A single p99 over a 50 s window hides what churn does: a crash makes a
//! few seconds of fires seconds late and leaves the rest untouched. So the
//! recorded fires are also cut by scheduled time — into one bucket per
//! second of the window (the `lateness_over_time.svg` chart and
//! `lateness.csv`) and into the span of each churn event (the per-event
//! table). Pure functions over the recorder's log, unit-tested.

use serde::Serialize;

use super::audit::{percentile, Fire};

/// A fire counts as late in the per-event table above this lateness.
pub const LATE_MS: i64 = 1000;

/// Lateness of the fires scheduled in one second of the window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SecondLateness {
    /// Seconds since the start of the window (bucket `[s, s+1)`).
    pub second: u32,
    /// Runs scheduled in the bucket.
    pub fires: u64,
    /// Smallest lateness, ms: for a burst, how late its first run started
    /// (the wake-up), apart from how long the burst took to start.
    pub min_ms: i64,
    /// Median lateness, ms.
    pub p50_ms: i64,
    /// 99th percentile, ms.
    pub p99_ms: i64,
    /// Largest, ms.
    pub max_ms: i64,
}

/// Per-second lateness of the runs scheduled in `[from_ms, to_ms)`; seconds
/// without a scheduled run are left out.
pub fn per_second(fires: &[Fire], from_ms: i64, to_ms: i64) -> Vec<SecondLateness> {
    let seconds = usize::try_from((to_ms - from_ms).max(0) / 1000 + 1).unwrap_or(0);
    let mut buckets: Vec<Vec<i64>> = vec![Vec::new(); seconds];
    for fire in fires
        .iter()
        .filter(|f| f.scheduled_ms >= from_ms && f.scheduled_ms < to_ms)
    {
        let second = usize::try_from((fire.scheduled_ms - from_ms) / 1000).unwrap_or(0);
        if let Some(bucket) = buckets.get_mut(second) {
            bucket.push(fire.started_ms - fire.scheduled_ms);
        }
    }
    (0u32..)
        .zip(buckets.iter_mut())
        .filter(|(_, b)| !b.is_empty())
        .map(|(second, bucket)| {
            bucket.sort_unstable();
            SecondLateness {
                second,
                fires: bucket.len() as u64,
                min_ms: bucket.first().copied().unwrap_or(0),
                p50_ms: percentile(bucket, 0.50),
                p99_ms: percentile(bucket, 0.99),
                max_ms: bucket.last().copied().unwrap_or(0),
            }
        })
        .collect()
}

/// Lateness of the runs scheduled in one span of time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SpanLateness {
    /// Runs scheduled in the span.
    pub fires: u64,
    /// Of those, runs that started more than [`LATE_MS`] late.
    pub late: u64,
    /// Largest lateness, ms (0 without runs).
    pub max_ms: i64,
}

/// Lateness of the runs scheduled in `[from_ms, to_ms]` (both ends
/// included, so an event at a fire instant that settles within the same
/// millisecond still covers that instant).
pub fn span(fires: &[Fire], from_ms: i64, to_ms: i64) -> SpanLateness {
    let mut out = SpanLateness::default();
    for fire in fires
        .iter()
        .filter(|f| f.scheduled_ms >= from_ms && f.scheduled_ms <= to_ms)
    {
        let late = fire.started_ms - fire.scheduled_ms;
        out.fires += 1;
        out.late += u64::from(late > LATE_MS);
        out.max_ms = out.max_ms.max(late);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(scheduled_ms: i64, late: i64) -> Fire {
        Fire {
            job: 0,
            scheduled_ms,
            started_ms: scheduled_ms + late,
            worker: 0,
        }
    }

    #[test]
    fn buckets_by_scheduled_second() {
        let fires = [
            fire(10_000, 5),
            fire(10_000, 7),
            fire(10_500, 100),
            fire(12_000, 3000),
            fire(9_999, 1),
            fire(13_000, 1),
        ];
        let series = per_second(&fires, 10_000, 13_000);
        assert_eq!(series.len(), 2);
        assert_eq!(
            series[0],
            SecondLateness {
                second: 0,
                fires: 3,
                min_ms: 5,
                p50_ms: 7,
                p99_ms: 100,
                max_ms: 100
            }
        );
        assert_eq!((series[1].second, series[1].max_ms), (2, 3000));
        assert!(per_second(&[], 0, 0).is_empty());
    }

    #[test]
    fn spans_include_both_ends() {
        let fires = [
            fire(1000, 10),
            fire(2000, 1500),
            fire(3000, 2500),
            fire(4000, 1),
        ];
        assert_eq!(
            span(&fires, 2000, 3000),
            SpanLateness {
                fires: 2,
                late: 2,
                max_ms: 2500
            }
        );
        assert_eq!(span(&fires, 1000, 1000).late, 0);
        assert_eq!(span(&fires, 5000, 6000), SpanLateness::default());
    }
}
