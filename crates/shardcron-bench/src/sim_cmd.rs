//! The `sim` subcommand: validate arguments, run the selected parts (the
//! job-count grid of [`crate::sim`], the weighted comparison of
//! [`crate::weighted`]), print and write results.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::charts;
use crate::cli::{Part, SimArgs};
use crate::error::BenchError;
use crate::report;
use crate::scenario::ScenarioConfig;
use crate::sim::{self, SimConfig, SimResults, FAMILIES};
use crate::weighted::{self, WeightedConfig, WeightedResults, WEIGHTED_FAMILIES};
use crate::weighted_report;
use crate::weighted_workload::WorkloadKind;
use crate::workload::Workload;

/// Largest fleet size accepted.
pub const MAX_NODES: u32 = 10_000;

/// Most jobs in one weighted population (`N × jobs per node`).
pub const MAX_WEIGHTED_JOBS: u64 = 10_000_000;

/// Largest shard count of the weighted part and its timing pass.
pub const MAX_WEIGHTED_SHARDS: u32 = 1 << 20;

/// Turns command-line options into a checked [`SimConfig`].
///
/// # Errors
///
/// [`BenchError::InvalidArgs`] naming the first bad option.
pub fn config_from_args(args: &SimArgs) -> Result<SimConfig, BenchError> {
    let invalid = |message: String| Err(BenchError::InvalidArgs(message));
    if args.nodes.0.iter().any(|&n| n == 0 || n > MAX_NODES) {
        return invalid(format!("--nodes must be within 1..={MAX_NODES}"));
    }
    if args.shards.0.contains(&0) {
        return invalid("--shards must be at least 1".to_owned());
    }
    if args.vnodes.0.contains(&0) || args.sweep_vnodes.0.contains(&0) || args.bounded_vnodes == 0 {
        return invalid("virtual-node counts must be at least 1".to_owned());
    }
    if args
        .balance_nodes
        .0
        .iter()
        .any(|&n| n == 0 || n > MAX_NODES)
    {
        return invalid(format!("--balance-nodes must be within 1..={MAX_NODES}"));
    }
    if !args.epsilon.is_finite() || args.epsilon < 0.0 {
        return invalid("--epsilon must be a finite number >= 0".to_owned());
    }
    if let Some(unknown) = args
        .strategies
        .iter()
        .find(|s| !FAMILIES.contains(&s.as_str()))
    {
        return invalid(format!(
            "unknown strategy {unknown:?} (known: {})",
            FAMILIES.join(", ")
        ));
    }
    if args.scenarios.is_empty() {
        return invalid("--scenarios is empty".to_owned());
    }
    if args.load_bounds.0.iter().any(|&p| p > 10_000) {
        return invalid("--load-bounds must be within 0..=10000 (thousandths)".to_owned());
    }
    Ok(SimConfig {
        nodes: args.nodes.0.clone(),
        shards: args.shards.0.clone(),
        jobs: args.jobs,
        vnodes: args.vnodes.0.clone(),
        epsilon: args.epsilon,
        bounded_vnodes: args.bounded_vnodes,
        load_bounds: args.load_bounds.0.clone(),
        balance_nodes: args.balance_nodes.0.clone(),
        sweep_vnodes: args.sweep_vnodes.0.clone(),
        trials: args.trials,
        families: args.strategies.clone(),
        scenarios: ScenarioConfig {
            scenarios: args.scenarios.clone(),
            crash_k: args.crash.0.clone(),
            restart_sample: args.restart_sample,
            seed: args.seed,
        },
    })
}

/// The weighted part's configuration from the command line (`config` is
/// the checked job-count configuration, whose scenarios and families it
/// shares). `few` also selects `few-mixed`.
///
/// # Errors
///
/// [`BenchError::InvalidArgs`] naming the first bad option.
pub fn weighted_config_from_args(
    args: &SimArgs,
    config: &SimConfig,
) -> Result<WeightedConfig, BenchError> {
    let invalid = |message: String| Err(BenchError::InvalidArgs(message));
    if args
        .weighted_nodes
        .0
        .iter()
        .any(|&n| n == 0 || n > MAX_NODES)
    {
        return invalid(format!("--weighted-nodes must be within 1..={MAX_NODES}"));
    }
    if args.weighted_shards == 0 || args.weighted_shards > MAX_WEIGHTED_SHARDS {
        return invalid(format!(
            "--weighted-shards must be within 1..={MAX_WEIGHTED_SHARDS}"
        ));
    }
    if args.timing_shards == 0 || args.timing_shards > MAX_WEIGHTED_SHARDS {
        return invalid(format!(
            "--timing-shards must be within 1..={MAX_WEIGHTED_SHARDS}"
        ));
    }
    if args.timing_nodes == 0 || args.timing_nodes > MAX_NODES {
        return invalid(format!("--timing-nodes must be within 1..={MAX_NODES}"));
    }
    if args.weighted_vnodes == 0 {
        return invalid("--weighted-vnodes must be at least 1".to_owned());
    }
    if args.jobs_per_node == 0 || args.few_jobs_per_node == 0 {
        return invalid("jobs per node must be at least 1".to_owned());
    }
    if !args.write_percent.is_finite() || args.write_percent < 0.0 || args.write_percent > 100.0 {
        return invalid("--write-percent must be within 0..=100".to_owned());
    }
    let largest_fleet = args
        .weighted_nodes
        .0
        .iter()
        .copied()
        .chain([args.timing_nodes])
        .max()
        .unwrap_or(0);
    let per_node = args.jobs_per_node.max(args.few_jobs_per_node);
    if u64::from(largest_fleet) * u64::from(per_node) > MAX_WEIGHTED_JOBS {
        return invalid(format!(
            "N × jobs per node must be at most {MAX_WEIGHTED_JOBS}"
        ));
    }
    if args.workload.is_empty() {
        return invalid("--workload is empty".to_owned());
    }
    let mut workloads = Vec::new();
    for &kind in &args.workload {
        let expanded: &[WorkloadKind] = if kind == WorkloadKind::Few {
            &[WorkloadKind::Few, WorkloadKind::FewMixed]
        } else {
            std::slice::from_ref(&kind)
        };
        for &kind in expanded {
            if !workloads.contains(&kind) {
                workloads.push(kind);
            }
        }
    }
    Ok(WeightedConfig {
        workloads,
        nodes: args.weighted_nodes.0.clone(),
        shards: args.weighted_shards,
        vnodes: args.weighted_vnodes,
        load_bounds: config.load_bounds.clone(),
        epsilon: config.epsilon,
        jobs_per_node: args.jobs_per_node,
        few_jobs_per_node: args.few_jobs_per_node,
        write_percent: args.write_percent,
        timing_shards: args.timing_shards,
        timing_nodes: args.timing_nodes,
        timing_reps: args.timing_reps,
        families: config
            .families
            .iter()
            .filter(|f| WEIGHTED_FAMILIES.contains(&f.as_str()))
            .cloned()
            .collect(),
        scenarios: config.scenarios.clone(),
    })
}

fn bar(total: u64, prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{prefix:>9} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta}) {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(prefix);
    bar
}

/// The job-count grid and balance sweep.
fn run_count(config: &SimConfig) -> (Vec<sim::EventRecord>, Vec<sim::BalanceRecord>) {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!(
        "hashing {} jobs into {:?} shards",
        config.jobs, config.shards
    ));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let workload = Workload::new(config.jobs, &config.shards);
    spinner.finish_and_clear();

    let progress = bar(sim::planned_event_work(config), "events");
    let events = sim::run_events(config, &workload, &progress);
    progress.finish_and_clear();
    let progress = bar(sim::planned_balance_work(config), "sweep");
    let balance = sim::run_balance(config, &workload, &progress);
    progress.finish_and_clear();
    (events, balance)
}

/// Runs `sim`: prints the summary tables and writes `sim.json`, `sim.csv`,
/// `balance.csv` and (unless `--no-charts`, and only with the job-count
/// part) the two SVG charts into `--out`. Returns the files written.
///
/// # Errors
///
/// Invalid arguments, or failure to write an output file or chart.
pub fn run(args: &SimArgs) -> Result<Vec<PathBuf>, BenchError> {
    let config = config_from_args(args)?;
    let weighted_config = weighted_config_from_args(args, &config)?;
    if args.parts.is_empty() {
        return Err(BenchError::InvalidArgs("--parts is empty".to_owned()));
    }
    let count = args.parts.contains(&Part::Count);
    if args.parts.contains(&Part::Weighted) && weighted_config.families.is_empty() {
        return Err(BenchError::InvalidArgs(format!(
            "the weighted part needs one of the strategies {}",
            WEIGHTED_FAMILIES.join(", ")
        )));
    }
    let started = Instant::now();

    let (events, balance) = if count {
        run_count(&config)
    } else {
        (Vec::new(), Vec::new())
    };
    let weighted = if args.parts.contains(&Part::Weighted) {
        let progress = bar(weighted::planned_work(&weighted_config), "weighted");
        let records = weighted::run(&weighted_config, &progress);
        progress.finish_and_clear();
        Some(WeightedResults {
            config: weighted_config,
            records,
        })
    } else {
        None
    };

    let results = SimResults {
        config,
        events,
        balance,
        weighted,
    };
    let summary = report::summarize(&results);
    if count {
        println!("{}", report::summary_table(&summary));
        println!("{}", report::balance_table(&results.balance));
    }
    let weighted_summary = match &results.weighted {
        Some(weighted) => {
            let rows = weighted_report::summarize(weighted);
            print!("{}", weighted_report::legend());
            println!("{}", weighted_report::table(weighted, &rows));
            rows
        }
        None => Vec::new(),
    };
    println!(
        "{} event records, {} sweep records, {} weighted records in {:.1}s",
        results.events.len(),
        results.balance.len(),
        results.weighted.as_ref().map_or(0, |w| w.records.len()),
        started.elapsed().as_secs_f64()
    );

    fs::create_dir_all(&args.out)
        .map_err(|e| BenchError::io("creating directory", &args.out, e))?;
    let mut written = Vec::new();
    let mut write = |name: &str, text: String| -> Result<(), BenchError> {
        let path = args.out.join(name);
        report::write_file(&path, &text)?;
        written.push(path);
        Ok(())
    };
    write(
        "sim.json",
        report::to_json(&results, &summary, &weighted_summary)?,
    )?;
    let weighted_records = results
        .weighted
        .as_ref()
        .map_or(&[][..], |w| w.records.as_slice());
    write(
        "sim.csv",
        report::events_csv(&results.events, weighted_records),
    )?;
    if count {
        write("balance.csv", report::balance_csv(&results.balance))?;
    }
    if count && !args.no_charts {
        let balance_chart = args.out.join("balance_vs_vnodes.svg");
        charts::balance_vs_vnodes(&balance_chart, &results.balance)?;
        written.push(balance_chart);
        let moved_chart = args.out.join("moved_vs_ideal.svg");
        charts::moved_vs_ideal(&moved_chart, &results.events)?;
        written.push(moved_chart);
    }
    for path in &written {
        println!("wrote {}", path.display());
    }
    Ok(written)
}
