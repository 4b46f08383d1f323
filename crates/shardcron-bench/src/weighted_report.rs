//! The weighted comparison's summary: one row per workload and strategy,
//! printed as one table per workload, kept in `sim.json`, and the
//! per-record rows it adds to `sim.csv`.
//!
//! Kept apart from the run ([`crate::weighted`]) so the formats can change
//! without touching the measurements.

use std::fmt::Write as _;

use serde::Serialize;

use crate::report::{csv_field, opt, stats_fields};
use crate::sim::strategy_order;
use crate::weighted::WeightedResults;
use crate::weighted_record::{StepKind, WeightedRecord};
use crate::weighted_workload::WorkloadKind;

/// Aggregate of one strategy over every step of one workload.
#[derive(Clone, Debug, Serialize)]
pub struct WeightedSummaryRow {
    /// Population.
    pub workload: WorkloadKind,
    /// Strategy name.
    pub strategy: String,
    /// Placements aggregated in the balance columns (base fleets and the
    /// fleets after each membership change, every fleet size).
    pub steps: usize,
    /// Mean over those of the busiest member's load ÷ the mean load.
    pub max_over_mean_mean: f64,
    /// Largest load max/mean.
    pub max_over_mean_worst: f64,
    /// Where the largest load max/mean happened (`N=… scenario change`).
    pub worst_step: String,
    /// Largest best-reachable max/mean over the same steps (the same for
    /// every strategy of a workload).
    pub ideal_worst: f64,
    /// Largest `(max/mean) / ideal` over the steps: how far from the best
    /// reachable spread the strategy got (1.0 = as good as possible).
    pub over_ideal_worst: f64,
    /// Membership changes aggregated.
    pub membership_changes: usize,
    /// Mean of load moved ÷ ideal over the membership changes.
    pub load_moved_over_ideal_mean: Option<f64>,
    /// Largest load moved ÷ ideal.
    pub load_moved_over_ideal_worst: Option<f64>,
    /// Mean of load moved ÷ load that had to move (departed members' and
    /// newcomers' shards) over the membership changes.
    pub load_moved_over_forced_mean: Option<f64>,
    /// Where the largest load moved ÷ ideal happened.
    pub load_moved_worst_step: Option<String>,
    /// Job writes replayed (every fleet size).
    pub job_writes: usize,
    /// Mean shards moved per job write.
    pub shards_moved_per_write_mean: Option<f64>,
    /// Most shards moved by one job write.
    pub shards_moved_per_write_max: Option<u64>,
    /// Mean fraction of the total load moved per job write.
    pub load_moved_per_write_mean: Option<f64>,
    /// Mean placement compute time over every step, milliseconds.
    pub compute_ms_mean: f64,
    /// Median compute time of the timing pass, milliseconds (a full
    /// placement; for a stateful strategy one step after one departure).
    pub timing_compute_ms: Option<f64>,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn worst(values: &[f64]) -> Option<f64> {
    values.iter().copied().reduce(f64::max)
}

/// `N=<fleet> <scenario> <change>`: where a record's step happened.
fn step_label(record: &WeightedRecord) -> String {
    format!("N={} {} {}", record.fleet, record.scenario, record.change)
        .trim_end()
        .to_owned()
}

/// One row per workload (in run order) and strategy (in run order).
pub fn summarize(results: &WeightedResults) -> Vec<WeightedSummaryRow> {
    let order = strategy_order(results.records.iter().map(|r| r.strategy.as_str()));
    let mut rows = Vec::new();
    for &workload in &results.config.workloads {
        for strategy in &order {
            let of = |kind: StepKind| -> Vec<&WeightedRecord> {
                results
                    .records
                    .iter()
                    .filter(|r| r.workload == workload && &r.strategy == strategy && r.kind == kind)
                    .collect()
            };
            let balance: Vec<&WeightedRecord> = of(StepKind::Static)
                .into_iter()
                .chain(of(StepKind::Membership))
                .collect();
            if balance.is_empty() {
                continue;
            }
            let membership = of(StepKind::Membership);
            let writes = of(StepKind::JobWrite);
            let timing = of(StepKind::Timing);
            let ratios: Vec<f64> = balance
                .iter()
                .map(|r| r.load_per_node.max_over_mean)
                .collect();
            let worst_record = balance
                .iter()
                .max_by(|a, b| {
                    a.load_per_node
                        .max_over_mean
                        .total_cmp(&b.load_per_node.max_over_mean)
                })
                .copied();
            let moved: Vec<f64> = membership
                .iter()
                .filter_map(|r| r.load_moved_over_ideal)
                .collect();
            let over_forced: Vec<f64> = membership
                .iter()
                .filter_map(|r| r.load_moved_over_forced)
                .collect();
            let write_shards: Vec<f64> = writes
                .iter()
                .filter_map(|r| r.moved_shards.map(|m| m as f64))
                .collect();
            let write_load: Vec<f64> = writes
                .iter()
                .filter_map(|r| r.load_moved_fraction)
                .collect();
            let compute: Vec<f64> = balance
                .iter()
                .chain(&writes)
                .map(|r| r.compute_ms)
                .collect();
            let moved_worst = membership
                .iter()
                .filter_map(|r| r.load_moved_over_ideal.map(|value| (value, *r)))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, r)| step_label(r));
            rows.push(WeightedSummaryRow {
                workload,
                strategy: strategy.clone(),
                steps: balance.len(),
                max_over_mean_mean: mean(&ratios).unwrap_or(0.0),
                max_over_mean_worst: worst(&ratios).unwrap_or(0.0),
                worst_step: worst_record.map_or_else(String::new, step_label),
                ideal_worst: worst(
                    &balance
                        .iter()
                        .map(|r| r.ideal_max_over_mean)
                        .collect::<Vec<_>>(),
                )
                .unwrap_or(1.0),
                over_ideal_worst: worst(
                    &balance
                        .iter()
                        .map(|r| r.load_per_node.max_over_mean / r.ideal_max_over_mean)
                        .collect::<Vec<_>>(),
                )
                .unwrap_or(0.0),
                membership_changes: membership.len(),
                load_moved_over_ideal_mean: mean(&moved),
                load_moved_over_ideal_worst: worst(&moved),
                load_moved_over_forced_mean: mean(&over_forced),
                load_moved_worst_step: moved_worst,
                job_writes: writes.len(),
                shards_moved_per_write_mean: mean(&write_shards),
                shards_moved_per_write_max: writes.iter().filter_map(|r| r.moved_shards).max(),
                load_moved_per_write_mean: mean(&write_load),
                compute_ms_mean: mean(&compute).unwrap_or(0.0),
                timing_compute_ms: timing.first().map(|r| r.compute_ms),
            });
        }
    }
    rows
}

fn or_dash(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn list(values: &[u32]) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The legend printed once above the weighted tables.
pub fn legend() -> String {
    "\nWeighted comparison: load = fires/s × cost of the shards a node owns.\n\
     fires/s max/mean: busiest node ÷ mean, over every fleet size and step (base fleet and\n\
     after each membership change); ideal: best reachable max/mean (a shard cannot be split:\n\
     max(mean, heaviest shard)/mean), worst over the same steps; max/ideal: worst of\n\
     (max/mean)/ideal; load moved/ideal: load on shards that changed owner ÷ total load ÷ the\n\
     ideal fraction (k/N), over the membership changes; shards/job write: shards that changed\n\
     owner per put or delete of one job (placement recomputed after each write); load moved\n\
     per write: % of the total load on those shards; compute ms: mean placement time at the\n\
     run's shard count, and the median at the timing pass's S and N.\n\
     sticky = ShardMap::rebalance from the strategy's own previous placement (bootstrap:\n\
     place then rebalance), chained through each scenario's steps and write after write;\n\
     its timing figure is one rebalance after one departure (the others: a full placement).\n"
        .to_owned()
}

/// The summary as one fixed-width table per workload.
pub fn table(results: &WeightedResults, rows: &[WeightedSummaryRow]) -> String {
    let config = &results.config;
    let mut out = String::new();
    let timing = format!("S={} N={}", config.timing_shards, config.timing_nodes);
    let here = format!("S={}", config.shards);
    for &workload in &config.workloads {
        let jobs: Vec<u64> = config
            .nodes
            .iter()
            .map(|&n| u64::from(n) * u64::from(config.per_node(workload)))
            .collect();
        let _ = writeln!(
            out,
            "\nworkload {}: {} jobs per node (jobs = {}), S = {}, N = {}",
            workload.as_str(),
            config.per_node(workload),
            jobs.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
            config.shards,
            list(&config.nodes),
        );
        let _ = writeln!(
            out,
            "{:<22} {:>16} {:>6} {:>9} {:>16} {:>7} {:>16} {:>10} {:>10} {:>14}",
            "strategy",
            "fires/s max/mean",
            "ideal",
            "max/ideal",
            "load moved/ideal",
            "/forced",
            "shards/job write",
            "load moved",
            "compute ms",
            "compute ms"
        );
        let _ = writeln!(
            out,
            "{:<22} {:>7} {:>8} {:>6} {:>9} {:>7} {:>8} {:>7} {:>8} {:>7} {:>10} {:>10} {:>14}",
            "",
            "mean",
            "worst",
            "worst",
            "worst",
            "mean",
            "worst",
            "mean",
            "mean",
            "max",
            "per write",
            here,
            timing
        );
        for row in rows.iter().filter(|r| r.workload == workload) {
            let _ = writeln!(
                out,
                "{:<22} {:>7.3} {:>8.3} {:>6.3} {:>9.3} {:>7} {:>8} {:>7} {:>8} {:>7} {:>10} {:>10.3} {:>14}",
                row.strategy,
                row.max_over_mean_mean,
                row.max_over_mean_worst,
                row.ideal_worst,
                row.over_ideal_worst,
                or_dash(row.load_moved_over_ideal_mean, 3),
                or_dash(row.load_moved_over_ideal_worst, 3),
                or_dash(row.load_moved_over_forced_mean, 3),
                or_dash(row.shards_moved_per_write_mean, 3),
                row.shards_moved_per_write_max
                    .map_or_else(|| "-".to_owned(), |m| m.to_string()),
                row.load_moved_per_write_mean
                    .map_or_else(|| "-".to_owned(), |f| format!("{:.3}%", f * 100.0)),
                row.compute_ms_mean,
                or_dash(row.timing_compute_ms, 3),
            );
        }
    }
    out
}

/// Header of the columns the weighted records add to `sim.csv`.
pub const EXTRA_CSV_HEADER: &str = "workload,kind,fleet,jobs,load_max,load_mean,load_stddev,\
     load_max_over_mean,ideal_max_over_mean,max_fires_per_s,mean_fires_per_s,\
     load_moved_fraction,load_moved_over_ideal,load_moved_over_forced";

fn kind_name(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Static => "static",
        StepKind::Membership => "membership",
        StepKind::JobWrite => "job-write",
        StepKind::Timing => "timing",
    }
}

/// One `sim.csv` row of a weighted record: the job-count grid's columns
/// (units are shards; `moved_*` empty where nothing changed) followed by
/// [`EXTRA_CSV_HEADER`].
pub fn csv_row(r: &WeightedRecord) -> String {
    let float =
        |v: Option<f64>, decimals: usize| v.map(|v| format!("{v:.decimals$}")).unwrap_or_default();
    let mut fields = vec![
        r.shards.to_string(),
        csv_field(&r.strategy),
        r.family.clone(),
        opt(r.vnodes),
        r.scenario.clone(),
        r.step.to_string(),
        csv_field(&r.change),
        r.nodes_before.to_string(),
        r.nodes_after.to_string(),
        r.shards.to_string(),
        opt(r.moved_shards),
        float(r.moved_fraction, 6),
        float(r.ideal_fraction, 6),
        float(r.moved_over_ideal, 4),
        opt(r.moved_jobs),
    ];
    fields.extend(stats_fields(Some(r.shards_per_node)));
    fields.extend(stats_fields(Some(r.jobs_per_node)));
    fields.push(format!("{:.3}", r.compute_ms));
    let load = r.load_per_node;
    fields.extend([
        r.workload.as_str().to_owned(),
        kind_name(r.kind).to_owned(),
        r.fleet.to_string(),
        r.jobs.to_string(),
        load.max.to_string(),
        format!("{:.1}", load.mean),
        format!("{:.1}", load.stddev),
        format!("{:.4}", load.max_over_mean),
        format!("{:.4}", r.ideal_max_over_mean),
        format!("{:.4}", r.max_fires_per_s),
        format!("{:.4}", r.mean_fires_per_s),
        float(r.load_moved_fraction, 6),
        float(r.load_moved_over_ideal, 4),
        float(r.load_moved_over_forced, 4),
    ]);
    fields.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Scenario, ScenarioConfig};
    use crate::weighted::{run, WeightedConfig, WEIGHTED_FAMILIES};
    use indicatif::ProgressBar;

    #[test]
    fn summary_table_and_csv() {
        let config = WeightedConfig {
            workloads: vec![WorkloadKind::Mixed],
            nodes: vec![3],
            shards: 64,
            vnodes: 8,
            load_bounds: vec![50],
            epsilon: 0.25,
            jobs_per_node: 20,
            few_jobs_per_node: 8,
            write_percent: 10.0,
            timing_shards: 64,
            timing_nodes: 3,
            timing_reps: 1,
            families: WEIGHTED_FAMILIES.iter().map(|f| (*f).to_owned()).collect(),
            scenarios: ScenarioConfig {
                scenarios: Scenario::ALL.to_vec(),
                crash_k: vec![1],
                restart_sample: 0,
                seed: 1,
            },
        };
        let records = run(&config, &ProgressBar::hidden());
        let results = WeightedResults { config, records };
        let rows = summarize(&results);
        assert_eq!(rows.len(), WEIGHTED_FAMILIES.len());
        for row in &rows {
            assert!(row.max_over_mean_worst >= row.max_over_mean_mean);
            assert!(row.over_ideal_worst >= 1.0 - 1e-9, "{row:?}");
            assert_eq!(row.job_writes, 6);
            assert!(row.timing_compute_ms.is_some());
        }
        let text = table(&results, &rows);
        assert!(text.contains("workload mixed: 20 jobs per node (jobs = 60), S = 64, N = 3"));
        assert!(text.contains("place(e=0.05 v=8)"));
        assert!(text.contains("sticky(e=0.05 v=8)"));
        let header_columns = crate::report::events_csv_header().split(',').count();
        for record in &results.records {
            assert_eq!(csv_row(record).split(',').count(), header_columns);
        }
    }
}
