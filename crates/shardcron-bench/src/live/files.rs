//! Writing a `live` run's files: `live.json`, `live.csv`, `lateness.csv`
//! and, unless `--no-charts`, `lateness_over_time.svg` (whose event
//! markers and caption are built here from the report).

use std::fs;

use super::chart;
use super::churn::ChurnAction;
use super::output::{self, LiveReport};
use crate::cli::LiveArgs;
use crate::error::BenchError;
use crate::report::write_file;

pub(super) fn write_outputs(args: &LiveArgs, report: &LiveReport) -> Result<(), BenchError> {
    fs::create_dir_all(&args.out)
        .map_err(|e| BenchError::io("creating directory", &args.out, e))?;
    let mut written = Vec::new();
    for (name, text) in [
        ("live.json", serde_json::to_string_pretty(report)?),
        ("live.csv", output::events_csv(&report.churn)),
        (
            "lateness.csv",
            output::lateness_csv(&report.lateness_per_second),
        ),
    ] {
        let path = args.out.join(name);
        write_file(&path, &text)?;
        written.push(path);
    }
    if !args.no_charts {
        let path = args.out.join("lateness_over_time.svg");
        let markers: Vec<chart::Marker> = report
            .churn
            .iter()
            .map(|e| {
                let at_s = e.started_offset_ms as f64 / 1000.0;
                let settled = e.settle_ms.map_or_else(
                    || "never settled".to_owned(),
                    |ms| {
                        if ms < 1000 {
                            format!("{} {ms} ms", e.kind)
                        } else {
                            format!("{} {:.1} s", e.kind, ms as f64 / 1000.0)
                        }
                    },
                );
                chart::Marker {
                    at_s,
                    settled_s: e.settle_ms.map(|ms| at_s + ms as f64 / 1000.0),
                    label: format!("{} ({settled})", e.event),
                    crash: e.event.action == ChurnAction::Crash,
                }
            })
            .collect();
        let caption = format!(
            "Lateness per second: {} workers, {} jobs {}, {} settings{}",
            report.workers,
            report.jobs,
            report.schedule,
            report.settings,
            if report.churn.is_empty() {
                String::new()
            } else {
                format!(", {} churn events", report.churn.len())
            }
        );
        let window_s = (report.window.1 - report.window.0) as f64 / 1000.0;
        chart::lateness_over_time(
            &path,
            &caption,
            window_s,
            &report.lateness_per_second,
            &markers,
        )?;
        written.push(path);
    }
    for path in &written {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
