//! `shardcron runs`: the recent run history as a table or JSON.

use crate::args::RunsArgs;
use crate::connect::Target;
use crate::exit::CliError;
use crate::output::{json, print, rfc3339_ms, short_duration_ms, table};
use shardcron_coord::RunRecord;

/// Longest error message shown in a table cell.
const ERROR_WIDTH: usize = 80;

/// Runs `runs`.
pub async fn run(target: &Target, args: RunsArgs) -> Result<(), CliError> {
    let coord = target.connect().await?;
    let runs =
        shardcron_coord::Coordinator::recent_runs(coord.as_ref(), args.job.as_deref(), args.limit)
            .await?;
    if args.json {
        print(&json(&runs)?)
    } else {
        print(&render(&runs))
    }
}

/// The text form of a list of runs.
pub fn render(runs: &[RunRecord]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let mut error = r.error.clone().unwrap_or_default().replace('\n', " ");
            if error.chars().count() > ERROR_WIDTH {
                error = error.chars().take(ERROR_WIDTH - 3).collect::<String>() + "...";
            }
            vec![
                r.job_id.clone(),
                r.fire_id.clone(),
                r.node_id.clone(),
                rfc3339_ms(r.scheduled_ms),
                rfc3339_ms(r.started_ms),
                short_duration_ms(r.finished_ms - r.started_ms),
                r.outcome.as_str().to_owned(),
                error,
            ]
        })
        .collect();
    table(
        &[
            "JOB",
            "FIRE",
            "NODE",
            "SCHEDULED",
            "STARTED",
            "DURATION",
            "OUTCOME",
            "ERROR",
        ],
        &rows,
    )
}
