//! Crontab day-of-week numbering on top of the `cron` crate.
//!
//! The `cron` crate numbers days 1–7 = Sunday–Saturday (Quartz style), while
//! crontab users write 0–6 with 0 *or* 7 meaning Sunday. Handing `0 9 * * 1-5`
//! to the crate unchanged would silently fire Sunday–Thursday. We therefore
//! rewrite every *numeric* item of the day-of-week field ourselves, using
//! crontab semantics, into an explicit list of day names (`MON,TUE,...`), which
//! the crate understands unambiguously.
//!
//! Crontab semantics implemented for one comma-separated item:
//!
//! * values are `0..=7`, and `v % 7` is the day (0 = 7 = Sunday);
//! * `A-B` is every value from `A` to `B` inclusive (`A <= B`), so `5-7` is
//!   Friday, Saturday, Sunday;
//! * `/S` steps through the base: `*/S` over `0..=7`, `A-B/S` over `A..=B`,
//!   and `A/S` over `A..=7` (the cronie reading of a bare start);
//! * `*` and `?` without a step, and items made of day names (`MON-FRI`,
//!   `SUN`, `MON-FRI/2`), are passed through untouched: names mean the same
//!   thing in both numberings.
//!
//! Anything else is passed through as well and left for the `cron` crate to
//! reject, so the error still names the expression.

/// Day names in crontab order: index = crontab number (0 = Sunday).
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Highest crontab day-of-week value (7 = Sunday again).
const MAX_DOW: u32 = 7;

/// Rewrites a crontab day-of-week field into the `cron` crate's dialect.
///
/// Returns a human-readable reason when a numeric item is invalid.
pub(crate) fn rewrite_field(field: &str) -> Result<String, String> {
    let items = field
        .split(',')
        .map(rewrite_item)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(items.join(","))
}

fn rewrite_item(item: &str) -> Result<String, String> {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(step)),
        None => (item, None),
    };
    let wildcard = base == "*" || base == "?";
    let numeric = !base.is_empty() && base.bytes().all(|b| b.is_ascii_digit() || b == b'-');
    let expand = numeric || (wildcard && step.is_some());
    if !expand {
        // Names, bare `*`/`?`, or something the cron crate will reject.
        return Ok(item.to_string());
    }

    let step = match step {
        None => 1,
        Some(text) => match text.parse::<u32>() {
            Ok(0) => return Err(format!("day-of-week step in {item:?} must be at least 1")),
            Ok(step) => step,
            Err(_) => return Err(format!("invalid day-of-week step in {item:?}")),
        },
    };

    let (low, high) = if wildcard {
        (0, MAX_DOW)
    } else if let Some((low, high)) = base.split_once('-') {
        (parse_value(low, item)?, parse_value(high, item)?)
    } else {
        let value = parse_value(base, item)?;
        let has_step = item.contains('/');
        (value, if has_step { MAX_DOW } else { value })
    };
    if low > high {
        return Err(format!(
            "day-of-week range {item:?} runs backwards (write it as two items, e.g. \"5-6,0\")"
        ));
    }

    let mut days = [false; 7];
    for value in (low..=high).step_by(step as usize) {
        days[(value % 7) as usize] = true;
    }
    let names: Vec<&str> = DAY_NAMES
        .iter()
        .zip(days)
        .filter_map(|(name, on)| on.then_some(*name))
        .collect();
    Ok(names.join(","))
}

fn parse_value(text: &str, item: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(value) if value <= MAX_DOW => Ok(value),
        Ok(value) => Err(format!(
            "day-of-week value {value} in {item:?} is out of range 0-7"
        )),
        Err(_) => Err(format!("invalid day-of-week value in {item:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite_field;

    fn ok(field: &str) -> String {
        match rewrite_field(field) {
            Ok(rewritten) => rewritten,
            Err(reason) => panic!("{field:?} rejected: {reason}"),
        }
    }

    #[test]
    fn single_values_use_crontab_numbering() {
        assert_eq!(ok("0"), "SUN");
        assert_eq!(ok("1"), "MON");
        assert_eq!(ok("6"), "SAT");
        assert_eq!(ok("7"), "SUN");
    }

    #[test]
    fn ranges_lists_and_steps() {
        assert_eq!(ok("1-5"), "MON,TUE,WED,THU,FRI");
        assert_eq!(ok("5-7"), "SUN,FRI,SAT");
        assert_eq!(ok("0,6"), "SUN,SAT");
        assert_eq!(ok("*/2"), "SUN,TUE,THU,SAT");
        assert_eq!(ok("?/3"), "SUN,WED,SAT");
        assert_eq!(ok("1-5/2"), "MON,WED,FRI");
        assert_eq!(ok("1/2"), "SUN,MON,WED,FRI");
        assert_eq!(ok("0-7"), "SUN,MON,TUE,WED,THU,FRI,SAT");
        assert_eq!(ok("1,3-4"), "MON,WED,THU");
    }

    #[test]
    fn names_and_wildcards_pass_through() {
        assert_eq!(ok("*"), "*");
        assert_eq!(ok("?"), "?");
        assert_eq!(ok("MON-FRI"), "MON-FRI");
        assert_eq!(ok("sun,1"), "sun,MON");
        assert_eq!(ok("MON-FRI/2"), "MON-FRI/2");
    }

    #[test]
    fn invalid_numeric_items_are_rejected() {
        for bad in ["8", "1-8", "5-1", "*/0", "1-5/x", "-1", "1-", "99999999999"] {
            assert!(rewrite_field(bad).is_err(), "{bad:?} accepted");
        }
    }
}
