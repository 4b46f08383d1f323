//! `shardcron status`: the [`StatusReport`] as a table or JSON.

use crate::args::StatusArgs;
use crate::connect::Target;
use crate::exit::CliError;
use crate::output::{json, print, rfc3339_ms, short_duration_ms, table};
use crate::status_report::{collect, StatusReport};

/// Churn entries listed in text mode (all of them are in the JSON).
const CHURN_SHOWN: usize = 10;

/// Runs `status`.
pub async fn run(target: &Target, args: StatusArgs) -> Result<(), CliError> {
    let coord = target.connect().await?;
    let report = collect(&coord).await?;
    if args.json {
        print(&json(&report)?)
    } else {
        print(&render(&report))
    }
}

/// The text form of a report.
pub fn render(r: &StatusReport) -> String {
    let mut text = format!(
        "namespace {:?} at {}: {} member(s), {} shards ({} vnodes), {} job(s)\n\n",
        r.namespace,
        rfc3339_ms(r.server_time_ms),
        r.members.len(),
        r.shard_count,
        r.vnodes,
        r.jobs,
    );
    if r.members.is_empty() {
        text.push_str("no live members: no job fires until a worker joins\n");
    } else {
        let rows: Vec<Vec<String>> = r
            .members
            .iter()
            .map(|m| {
                vec![
                    m.id.clone(),
                    m.version.clone(),
                    short_duration_ms(m.age_ms),
                    m.addr.clone().unwrap_or_else(|| "-".to_owned()),
                    m.shards.to_string(),
                    m.leases.to_string(),
                    m.jobs.to_string(),
                ]
            })
            .collect();
        text.push_str(&table(
            &[
                "MEMBER", "VERSION", "AGE", "ADDR", "SHARDS", "LEASES", "JOBS",
            ],
            &rows,
        ));
        text.push_str(&format!(
            "\nbalance: max {} / mean {:.1} = {:.2} (min {})\n",
            r.balance.max, r.balance.mean, r.balance.max_over_mean, r.balance.min
        ));
    }
    for (node, n) in &r.leases_of_non_members {
        text.push_str(&format!(
            "{node} is not a live member but still holds {n} lease(s) (they expire or get released)\n"
        ));
    }
    if r.churn_in_progress {
        text.push_str(&format!(
            "churn in progress: {} shard(s) not leased by their ring owner\n",
            r.churn.len()
        ));
        for c in r.churn.iter().take(CHURN_SHOWN) {
            text.push_str(&format!(
                "  shard {}: ring owner {}, lease {}\n",
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
        text.push_str("churn: none (every shard is leased by its ring owner)\n");
    }
    text
}
