//! Schedules: when a job fires.
//!
//! Every node computes fire times on its own and must get exactly the same
//! instants, so a [`Schedule`] is a pure function from `(after, time zone)` to
//! the next fire, in Unix milliseconds, with no clock reads and with every
//! ambiguity resolved by a fixed rule:
//!
//! * **Cron expressions** are evaluated on local wall-clock time in the job's
//!   time zone. Across DST changes a wall-clock time that is skipped (spring
//!   forward) does not fire, and one that repeats (fall back) fires once, at
//!   its first occurrence. (Implementation notes: the private `wall_clock`
//!   module.)
//! * **`@every <duration>`** fires at every instant that is a multiple of the
//!   duration since the Unix epoch. Alignment to the epoch (not to when a node
//!   started) is what lets nodes agree; the time zone is irrelevant.
//!
//! Accepted syntax:
//!
//! * 5 fields `minute hour day-of-month month day-of-week` (crontab; fires at
//!   second 0),
//! * 6 fields `second minute hour day-of-month month day-of-week`,
//! * 7 fields, the 6 above plus `year` (1970–2100),
//! * `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`,
//!   `@hourly`, and `@every <duration>` (humantime syntax such as `5s`,
//!   `1m30s`, `2h`; at least 1 s, whole milliseconds).
//!
//! In every field form the day-of-week field uses crontab numbering (0–7, 0 and
//! 7 = Sunday; names also work): `0 9 * * 1-5` is Monday to Friday and `5-7`
//! is Friday to Sunday (private module `day_of_week`). Day-of-month and
//! day-of-week restrictions combine with AND (the `cron` crate's rule), not
//! with classic Vixie cron's OR when both are restricted.

mod day_of_week;
mod wall_clock;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;

/// Why a schedule expression or time zone was rejected. Fix the expression
/// or the zone (an IANA name such as `Europe/Berlin`) as the message says.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ScheduleError {
    /// The cron expression (or `@` macro) is not valid.
    #[error("invalid schedule {expr:?}: {reason}")]
    InvalidExpression {
        /// The expression as given.
        expr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The time zone is not an IANA time zone name.
    #[error("unknown time zone {name:?}")]
    UnknownTimeZone {
        /// The name as given.
        name: String,
    },
    /// An `@every` expression has an unusable duration.
    #[error("invalid schedule {expr:?}: {reason}")]
    InvalidEvery {
        /// The expression as given.
        expr: String,
        /// What is wrong with the duration.
        reason: String,
    },
}

/// Parses an IANA time zone name such as `"Europe/Berlin"` or `"UTC"`.
///
/// Names are matched exactly (case-sensitive), as in the tz database.
///
/// # Errors
///
/// [`ScheduleError::UnknownTimeZone`] naming `name` if it is not a zone of the
/// bundled tz database.
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError::UnknownTimeZone {
        name: name.to_string(),
    })
}

/// A parsed schedule expression.
///
/// Two schedules are equal when their expressions are identical strings.
#[derive(Clone, Debug)]
pub struct Schedule {
    expr: String,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    /// A cron expression, normalized to the `cron` crate's dialect.
    Cron(Box<cron::Schedule>),
    /// `@every`: fires at every multiple of `period_ms` since the epoch.
    Every { period_ms: i64 },
}

impl Schedule {
    /// Parses `expr` (see the [module docs](self) for the accepted syntax).
    ///
    /// # Errors
    ///
    /// Errors name the expression: [`ScheduleError::InvalidExpression`] for
    /// empty or malformed cron expressions and unknown macros,
    /// [`ScheduleError::InvalidEvery`] for a missing, unparsable, sub-second
    /// or sub-millisecond `@every` duration.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidExpression {
            expr: expr.to_string(),
            reason,
        };
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(invalid("empty expression".to_string()));
        }
        let kind = if let Some(body) = trimmed.strip_prefix('@') {
            parse_macro(expr, body)?
        } else {
            Kind::Cron(Box::new(parse_cron(trimmed).map_err(invalid)?))
        };
        Ok(Schedule {
            expr: expr.to_string(),
            kind,
        })
    }

    /// The expression as given to [`Schedule::parse`].
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first fire strictly after `after_ms` (Unix milliseconds), with cron
    /// expressions evaluated on wall-clock time in `tz`.
    ///
    /// Calling it again with the previous result walks the fires in strictly
    /// increasing order without repeats. `None` when there is no later fire
    /// (cron years end at 2100) or, for `@every`, on `i64` overflow.
    pub fn next_after(&self, after_ms: i64, tz: Tz) -> Option<i64> {
        match &self.kind {
            Kind::Cron(cron) => wall_clock::next_fire(cron, after_ms, tz),
            Kind::Every { period_ms } => after_ms
                .div_euclid(*period_ms)
                .checked_add(1)?
                .checked_mul(*period_ms),
        }
    }

    /// The period of an `@every` schedule in ms; `None` for cron expressions.
    pub fn every_period_ms(&self) -> Option<i64> {
        match &self.kind {
            Kind::Every { period_ms } => Some(*period_ms),
            Kind::Cron(_) => None,
        }
    }

    /// The first fire in `(after_ms, after_ms + horizon]`, or `None` when the
    /// schedule does not fire in that window (e.g. `0 0 31 2 *`, which names
    /// a day that does not exist, or a year field that has passed).
    pub fn first_fire_within(&self, after_ms: i64, tz: Tz, horizon: Duration) -> Option<i64> {
        let horizon_ms = i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX);
        let end = after_ms.saturating_add(horizon_ms);
        self.next_after(after_ms, tz).filter(|fire| *fire <= end)
    }

    /// The fires in `(from_exclusive_ms, to_inclusive_ms]`, ascending, at most
    /// `limit` of them.
    pub fn fires_between(
        &self,
        from_exclusive_ms: i64,
        to_inclusive_ms: i64,
        tz: Tz,
        limit: usize,
    ) -> Vec<i64> {
        let mut fires = Vec::new();
        let mut cursor = from_exclusive_ms;
        while fires.len() < limit {
            match self.next_after(cursor, tz) {
                Some(fire) if fire <= to_inclusive_ms => {
                    fires.push(fire);
                    cursor = fire;
                }
                _ => break,
            }
        }
        fires
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl Eq for Schedule {}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(expr: &str) -> Result<Self, Self::Err> {
        Schedule::parse(expr)
    }
}

/// Parses `@<body>`; `expr` is the full original expression for errors.
fn parse_macro(expr: &str, body: &str) -> Result<Kind, ScheduleError> {
    let (keyword, rest) = match body.split_once(char::is_whitespace) {
        Some((keyword, rest)) => (keyword, rest.trim()),
        None => (body, ""),
    };
    let keyword = keyword.to_ascii_lowercase();
    if keyword == "every" {
        return parse_every(expr, rest);
    }
    // Explicit 6-field equivalents, so the behaviour is visible here rather
    // than hidden in the cron crate (day-of-week is already in its numbering).
    let cron_expr = match keyword.as_str() {
        "yearly" | "annually" => "0 0 0 1 1 *",
        "monthly" => "0 0 0 1 * *",
        "weekly" => "0 0 0 * * SUN",
        "daily" | "midnight" => "0 0 0 * * *",
        "hourly" => "0 0 * * * *",
        _ => {
            return Err(ScheduleError::InvalidExpression {
                expr: expr.to_string(),
                reason: format!("unknown macro \"@{keyword}\""),
            })
        }
    };
    if !rest.is_empty() {
        return Err(ScheduleError::InvalidExpression {
            expr: expr.to_string(),
            reason: format!("\"@{keyword}\" takes no arguments"),
        });
    }
    cron::Schedule::from_str(cron_expr)
        .map(|cron| Kind::Cron(Box::new(cron)))
        .map_err(|e| ScheduleError::InvalidExpression {
            expr: expr.to_string(),
            reason: e.to_string(),
        })
}

/// Parses the duration of `@every <duration>`.
fn parse_every(expr: &str, duration: &str) -> Result<Kind, ScheduleError> {
    let invalid = |reason: String| ScheduleError::InvalidEvery {
        expr: expr.to_string(),
        reason,
    };
    if duration.is_empty() {
        return Err(invalid(
            "@every needs a duration, e.g. \"@every 5m\"".to_string(),
        ));
    }
    let parsed = humantime::parse_duration(duration)
        .map_err(|e| invalid(format!("bad duration {duration:?}: {e}")))?;
    if parsed < Duration::from_secs(1) {
        return Err(invalid(format!(
            "duration {duration:?} is shorter than the 1s minimum"
        )));
    }
    if parsed.subsec_nanos() % 1_000_000 != 0 {
        return Err(invalid(format!(
            "duration {duration:?} is not a whole number of milliseconds"
        )));
    }
    let period_ms = i64::try_from(parsed.as_millis())
        .map_err(|_| invalid(format!("duration {duration:?} is too long")))?;
    Ok(Kind::Every { period_ms })
}

/// Parses a 5-, 6- or 7-field cron expression into the `cron` crate.
fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let mut fields: Vec<String> = expr.split_whitespace().map(str::to_string).collect();
    match fields.len() {
        5 => fields.insert(0, "0".to_string()),
        6 | 7 => {}
        n => return Err(format!("expected 5, 6 or 7 fields, found {n}")),
    }
    if let Some(dow) = fields.get_mut(5) {
        *dow = day_of_week::rewrite_field(dow)?;
    }
    let normalized = fields.join(" ");
    cron::Schedule::from_str(&normalized).map_err(|e| describe_cron_error(&normalized, &e))
}

/// Turns a `cron` crate error (a multi-line caret diagram over the normalized
/// expression, ending in a message when there is one) into a one-line reason.
fn describe_cron_error(normalized: &str, error: &cron::error::Error) -> String {
    let text = error.to_string();
    let detail = text
        .lines()
        .map(str::trim)
        .next_back()
        .filter(|line| !line.is_empty() && *line != "^" && *line != normalized);
    match detail {
        Some(detail) => format!("{detail} (parsed as \"{normalized}\")"),
        None => format!("not a valid cron expression (parsed as \"{normalized}\")"),
    }
}

#[cfg(test)]
mod tests;
