//! `shardcron status`: the [`StatusReport`] as a table or JSON.

use crate::args::StatusArgs;
use crate::connect::Target;
use crate::exit::CliError;
use crate::output::{json, print, rfc3339_ms, short_duration_ms, table};
use crate::status_report::{collect, MemberStatus, StatusReport};

/// Churn entries listed in text mode (all of them are in the JSON).
const CHURN_SHOWN: usize = 10;

/// Runs `status`.
pub async fn run(target: &Target, args: StatusArgs) -> Result<(), CliError> {
    let coord = target.connect().await?;
    let report = collect(coord.as_ref()).await?;
    if args.json {
        print(&json(&report)?)
    } else {
        print(&render(&report))
    }
}

/// The text form of a report.
pub fn render(r: &StatusReport) -> String {
    let mut text = format!(
        "namespace {:?} at {}: {} member(s), {} shards ({} vnodes), {} job(s), {} fires/min expected\n\n",
        r.namespace,
        rfc3339_ms(r.server_time_ms),
        r.members.len(),
        r.shard_count,
        r.vnodes,
        r.jobs,
        format_rate(r.load.fires_per_minute),
    );
    if r.members.is_empty() {
        text.push_str("no live members: no job fires until a worker joins\n");
    } else {
        text.push_str(&member_table(r));
        text.push('\n');
        text.push_str(&balance_line(r));
        if let Some(note) = heavy_shard_note(r) {
            text.push_str(&note);
        }
    }
    text.push_str(&leader_line(r));
    for (node, n) in &r.leases_of_non_members {
        text.push_str(&format!(
            "{node} is not a live member but still holds {n} lease(s) (they expire or get released)\n"
        ));
    }
    if r.churn_in_progress {
        text.push_str(&format!(
            "churn in progress: {} shard(s) not leased by their expected owner\n",
            r.churn.len()
        ));
        for c in r.churn.iter().take(CHURN_SHOWN) {
            text.push_str(&format!(
                "  shard {}: expected owner {}, lease {}\n",
                c.shard,
                c.ring_owner.as_deref().unwrap_or("none"),
                c.lease_holder
                    .as_deref()
                    .map_or_else(|| "free".to_owned(), |h| format!("held by {h}")),
            ));
        }
        if r.churn.len() > CHURN_SHOWN {
            text.push_str(&format!(
                "  ... and {} more (see --json)\n",
                r.churn.len() - CHURN_SHOWN
            ));
        }
    } else if !r.members.is_empty() {
        text.push_str("churn: none (every shard is leased by its expected owner)\n");
    }
    text
}

/// Who leads, since when, under which token, and what it runs.
fn leader_line(r: &StatusReport) -> String {
    let jobs = format!(
        "{} leader job(s), {} broadcast job(s)",
        r.leader_jobs, r.broadcast_jobs
    );
    match &r.leader {
        Some(l) => format!(
            "leader: {} since {} ({} ago), fencing token {}; {jobs}\n",
            l.node,
            rfc3339_ms(l.since_ms),
            short_duration_ms((r.server_time_ms - l.since_ms).max(0)),
            l.token,
        ),
        None => format!("leader: none (no node holds the leader lease); {jobs}\n"),
    }
}

/// The members as a table: shards, leases, jobs and load.
fn member_table(r: &StatusReport) -> String {
    let loaded = r.load.total_units > 0;
    let rows: Vec<Vec<String>> = r.members.iter().map(|m| member_row(m, loaded)).collect();
    table(
        &[
            "MEMBER",
            "VERSION",
            "AGE",
            "ADDR",
            "SHARDS",
            "LEASES",
            "JOBS",
            "FIRES/MIN",
            "SHARE",
        ],
        &rows,
    )
}

/// One member's row; without any load the share is `-`.
fn member_row(m: &MemberStatus, loaded: bool) -> Vec<String> {
    vec![
        m.id.clone(),
        m.version.clone(),
        short_duration_ms(m.age_ms),
        m.addr.clone().unwrap_or_else(|| "-".to_owned()),
        m.shards.to_string(),
        m.leases.to_string(),
        m.jobs.to_string(),
        format_rate(m.fires_per_minute),
        if loaded {
            format!("{:.1}%", m.load_percent)
        } else {
            "-".to_owned()
        },
    ]
}

/// `balance: fires max/mean 1.03 (PLACEMENT); shards max/mean 1.12`, or
/// that no fire is expected (no job, or every job paused).
fn balance_line(r: &StatusReport) -> String {
    let fires = match r.load.max_over_mean {
        Some(ratio) => format!("fires max/mean {ratio:.2}"),
        None => "no fires expected, no active job".to_owned(),
    };
    format!(
        "balance: {fires} ({}); shards max/mean {:.2}\n",
        r.placement, r.balance.max_over_mean
    )
}

/// A note when one shard alone outweighs the mean load of a member: shards
/// are never split, so no placement can spread that evenly.
fn heavy_shard_note(r: &StatusReport) -> Option<String> {
    let heaviest = r.load.heaviest_shard_fires_per_minute;
    let mean = r.load.mean_fires_per_minute;
    (r.members.len() > 1 && mean > 0.0 && heaviest > mean).then(|| {
        format!(
            "note: one shard alone expects {} fires/min, more than a member's mean of {}; a shard is never split, so its owner stays above the mean\n",
            format_rate(heaviest),
            format_rate(mean)
        )
    })
}

/// A rate with about three significant digits: `1250`, `60.00`, `0.0417`.
pub fn format_rate(per_minute: f64) -> String {
    if !per_minute.is_finite() || per_minute <= 0.0 {
        return "0".to_owned();
    }
    if per_minute >= 100.0 {
        return format!("{per_minute:.0}");
    }
    if per_minute >= 1.0 {
        return format!("{per_minute:.2}");
    }
    // Digits after the point that keep three significant ones (at most 8).
    let decimals = (2.0 - per_minute.log10().floor()).clamp(2.0, 8.0) as usize;
    format!("{per_minute:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::format_rate;

    #[test]
    fn rates_keep_about_three_significant_digits() {
        assert_eq!(format_rate(0.0), "0");
        assert_eq!(format_rate(f64::NAN), "0");
        assert_eq!(format_rate(1250.4), "1250");
        assert_eq!(format_rate(60.0), "60.00");
        assert_eq!(format_rate(1.0), "1.00");
        assert_eq!(format_rate(0.5), "0.500");
        assert_eq!(format_rate(1.0 / 24.0), "0.0417");
        // A daily job: 1/1440 per minute.
        assert_eq!(format_rate(1.0 / 1440.0), "0.000694");
    }
}
