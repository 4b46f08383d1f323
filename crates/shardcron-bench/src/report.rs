//! Turning records into the summary table, `sim.json` and CSV files (the
//! weighted comparison's table and rows: [`crate::weighted_report`]).
//!
//! JSON keeps everything (config, every event, the sweep, the summary) for
//! later analysis; the CSVs are flat, one row per record, for spreadsheets;
//! the table on stdout is what goes into `docs/BENCHMARKS.md`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::error::BenchError;
use crate::metrics::LoadStats;
use crate::scenario::Scenario;
use crate::sim::{strategy_order, BalanceRecord, EventRecord, SimResults};
use crate::weighted_record::WeightedRecord;
use crate::weighted_report::{self, WeightedSummaryRow};

/// Aggregate of one strategy over all events of one scenario at one shard count.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryRow {
    /// Shard count of the block (job-keyed strategies appear in every block).
    pub shards: u32,
    /// Strategy name.
    pub strategy: String,
    /// Scenario.
    pub scenario: Scenario,
    /// Number of events aggregated.
    pub events: usize,
    /// Mean of `moved / ideal`.
    pub moved_over_ideal_mean: f64,
    /// Largest `moved / ideal`.
    pub moved_over_ideal_max: f64,
    /// Mean over events of max/mean shards per node (`None` for dcron).
    pub shards_max_over_mean: Option<f64>,
    /// Mean over events of max/mean jobs per node.
    pub jobs_max_over_mean: f64,
    /// Mean time to compute a placement, milliseconds.
    pub compute_ms_mean: f64,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}

/// Summary rows: per shard count, per strategy (in run order), per scenario.
pub fn summarize(results: &SimResults) -> Vec<SummaryRow> {
    let order = strategy_order(results.events.iter().map(|e| e.strategy.as_str()));
    let mut rows = Vec::new();
    for &shards in &results.config.shards {
        for strategy in &order {
            for scenario in Scenario::ALL {
                let events: Vec<&EventRecord> = results
                    .events
                    .iter()
                    .filter(|e| {
                        &e.strategy == strategy
                            && e.scenario == scenario
                            && e.shards.is_none_or(|s| s == shards)
                    })
                    .collect();
                if events.is_empty() {
                    continue;
                }
                let shard_ratios: Vec<f64> = events
                    .iter()
                    .filter_map(|e| e.shards_per_node.map(|s| s.max_over_mean))
                    .collect();
                rows.push(SummaryRow {
                    shards,
                    strategy: strategy.clone(),
                    scenario,
                    events: events.len(),
                    moved_over_ideal_mean: mean(events.iter().map(|e| e.moved_over_ideal)),
                    moved_over_ideal_max: events
                        .iter()
                        .map(|e| e.moved_over_ideal)
                        .fold(0.0, f64::max),
                    shards_max_over_mean: (!shard_ratios.is_empty())
                        .then(|| mean(shard_ratios.iter().copied())),
                    jobs_max_over_mean: mean(events.iter().map(|e| e.jobs_per_node.max_over_mean)),
                    compute_ms_mean: mean(events.iter().map(|e| e.compute_ms)),
                });
            }
        }
    }
    rows
}

/// The summary as fixed-width text tables, one per shard count.
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let mut out = String::new();
    let mut current = None;
    for row in rows {
        if current != Some(row.shards) {
            current = Some(row.shards);
            let _ = writeln!(
                out,
                "\nS = {} shards (dcron is keyed by job and identical in every block)",
                row.shards
            );
            let _ = writeln!(
                out,
                "{:<24} {:<16} {:>6} {:>10} {:>10} {:>11} {:>10} {:>11}",
                "strategy",
                "scenario",
                "events",
                "moved/ideal",
                "worst",
                "shards max/",
                "jobs max/",
                "compute ms"
            );
            let _ = writeln!(
                out,
                "{:<24} {:<16} {:>6} {:>10} {:>10} {:>11} {:>10} {:>11}",
                "", "", "", "(mean)", "", "mean", "mean", "(mean)"
            );
        }
        let shards = row
            .shards_max_over_mean
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:>6} {:>10.3} {:>10.3} {:>11} {:>10.3} {:>11.3}",
            row.strategy,
            row.scenario.as_str(),
            row.events,
            row.moved_over_ideal_mean,
            row.moved_over_ideal_max,
            shards,
            row.jobs_max_over_mean,
            row.compute_ms_mean
        );
    }
    out
}

/// The balance sweep as text: per shard count and fleet size, each strategy's
/// max/mean shards (and jobs) per node, mean and worst over the trials.
pub fn balance_table(records: &[BalanceRecord]) -> String {
    let mut out = String::new();
    let mut keys: Vec<(u32, u32)> = records
        .iter()
        .filter_map(|r| r.shards.map(|s| (s, r.nodes)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let order = strategy_order(records.iter().map(|r| r.strategy.as_str()));
    for (shards, nodes) in keys {
        let _ = writeln!(
            out,
            "\nbalance sweep: S = {shards} shards, N = {nodes} nodes"
        );
        let _ = writeln!(
            out,
            "{:<24} {:>6} {:>12} {:>12} {:>12} {:>11}",
            "strategy", "trials", "shards max/", "worst", "jobs max/", "compute ms"
        );
        let _ = writeln!(
            out,
            "{:<24} {:>6} {:>12} {:>12} {:>12} {:>11}",
            "", "", "mean (mean)", "", "mean (mean)", "(mean)"
        );
        for strategy in &order {
            let runs: Vec<&BalanceRecord> = records
                .iter()
                .filter(|r| {
                    &r.strategy == strategy
                        && r.nodes == nodes
                        && r.shards.is_none_or(|s| s == shards)
                })
                .collect();
            if runs.is_empty() {
                continue;
            }
            let ratios: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.shards_per_node.map(|s| s.max_over_mean))
                .collect();
            let (shard_mean, shard_worst) = if ratios.is_empty() {
                ("-".to_owned(), "-".to_owned())
            } else {
                (
                    format!("{:.3}", mean(ratios.iter().copied())),
                    format!("{:.3}", ratios.iter().copied().fold(0.0, f64::max)),
                )
            };
            let _ = writeln!(
                out,
                "{:<24} {:>6} {:>12} {:>12} {:>12.3} {:>11.3}",
                strategy,
                runs.len(),
                shard_mean,
                shard_worst,
                mean(runs.iter().map(|r| r.jobs_per_node.max_over_mean)),
                mean(runs.iter().map(|r| r.compute_ms))
            );
        }
    }
    out
}

/// Writes `text` to `path`.
pub fn write_file(path: &Path, text: &str) -> Result<(), BenchError> {
    fs::write(path, text).map_err(|e| BenchError::io("writing", path, e))
}

/// `sim.json`: config, summary, events and balance sweep of the job-count
/// grid, and the weighted comparison (config, summary, records).
pub fn to_json(
    results: &SimResults,
    summary: &[SummaryRow],
    weighted_summary: &[WeightedSummaryRow],
) -> Result<String, BenchError> {
    #[derive(Serialize)]
    struct Weighted<'a> {
        config: &'a crate::weighted::WeightedConfig,
        summary: &'a [WeightedSummaryRow],
        records: &'a [WeightedRecord],
    }
    #[derive(Serialize)]
    struct Document<'a> {
        config: &'a crate::sim::SimConfig,
        summary: &'a [SummaryRow],
        events: &'a [EventRecord],
        balance: &'a [BalanceRecord],
        weighted: Option<Weighted<'a>>,
    }
    Ok(serde_json::to_string_pretty(&Document {
        config: &results.config,
        summary,
        events: &results.events,
        balance: &results.balance,
        weighted: results.weighted.as_ref().map(|w| Weighted {
            config: &w.config,
            summary: weighted_summary,
            records: &w.records,
        }),
    })?)
}

/// Quotes a CSV field when it needs it.
pub(crate) fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

pub(crate) fn opt<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

pub(crate) fn stats_fields(stats: Option<LoadStats>) -> [String; 4] {
    match stats {
        Some(s) => [
            s.max.to_string(),
            format!("{:.3}", s.mean),
            format!("{:.3}", s.stddev),
            format!("{:.4}", s.max_over_mean),
        ],
        None => Default::default(),
    }
}

/// Columns of the job-count grid's rows of `sim.csv`.
pub const COUNT_CSV_HEADER: &str = "shards,strategy,family,vnodes,scenario,step,change,\
     nodes_before,nodes_after,units,moved_units,moved_fraction,ideal_fraction,\
     moved_over_ideal,moved_jobs,shards_max,shards_mean,shards_stddev,shards_max_over_mean,\
     jobs_max,jobs_mean,jobs_stddev,jobs_max_over_mean,compute_ms";

/// Header of `sim.csv`: the job-count grid's columns, then those only
/// weighted records fill ([`weighted_report::EXTRA_CSV_HEADER`]).
pub fn events_csv_header() -> String {
    format!("{COUNT_CSV_HEADER},{}", weighted_report::EXTRA_CSV_HEADER)
}

/// `sim.csv`: one row per `(event, strategy)` of the job-count grid (the
/// weighted columns empty), then one per weighted record.
pub fn events_csv(events: &[EventRecord], weighted: &[WeightedRecord]) -> String {
    let mut out = events_csv_header();
    out.push('\n');
    let weighted_columns = weighted_report::EXTRA_CSV_HEADER.split(',').count();
    for e in events {
        let mut fields = vec![
            opt(e.shards),
            csv_field(&e.strategy),
            e.family.clone(),
            opt(e.vnodes),
            e.scenario.as_str().to_owned(),
            e.step.to_string(),
            csv_field(&e.change),
            e.nodes_before.to_string(),
            e.nodes_after.to_string(),
            e.units.to_string(),
            e.moved_units.to_string(),
            format!("{:.6}", e.moved_fraction),
            format!("{:.6}", e.ideal_fraction),
            format!("{:.4}", e.moved_over_ideal),
            e.moved_jobs.to_string(),
        ];
        fields.extend(stats_fields(e.shards_per_node));
        fields.extend(stats_fields(Some(e.jobs_per_node)));
        fields.push(format!("{:.3}", e.compute_ms));
        fields.extend(std::iter::repeat_n(String::new(), weighted_columns));
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    for record in weighted {
        out.push_str(&weighted_report::csv_row(record));
        out.push('\n');
    }
    out
}

/// `balance.csv`: one row per balance-sweep placement.
pub fn balance_csv(records: &[BalanceRecord]) -> String {
    let mut out = String::from(
        "shards,nodes,trial,strategy,family,vnodes,shards_max,shards_mean,shards_stddev,\
         shards_max_over_mean,jobs_max,jobs_mean,jobs_stddev,jobs_max_over_mean,compute_ms\n",
    );
    for r in records {
        let mut fields = vec![
            opt(r.shards),
            r.nodes.to_string(),
            r.trial.to_string(),
            csv_field(&r.strategy),
            r.family.clone(),
            opt(r.vnodes),
        ];
        fields.extend(stats_fields(r.shards_per_node));
        fields.extend(stats_fields(Some(r.jobs_per_node)));
        fields.push(format!("{:.3}", r.compute_ms));
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("ring(v=160)"), "ring(v=160)");
        assert_eq!(csv_field("-a -b"), "-a -b");
        assert_eq!(csv_field("x,\"y\""), "\"x,\"\"y\"\"\"");
    }
}
