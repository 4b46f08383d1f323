//! The `sim` subcommand: validate arguments, run, print and write results.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::charts;
use crate::cli::SimArgs;
use crate::error::BenchError;
use crate::report;
use crate::scenario::ScenarioConfig;
use crate::sim::{self, SimConfig, SimResults, FAMILIES};
use crate::workload::Workload;

/// Largest fleet size accepted.
pub const MAX_NODES: u32 = 10_000;

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
    Ok(SimConfig {
        nodes: args.nodes.0.clone(),
        shards: args.shards.0.clone(),
        jobs: args.jobs,
        vnodes: args.vnodes.0.clone(),
        epsilon: args.epsilon,
        bounded_vnodes: args.bounded_vnodes,
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

/// Runs `sim`: prints the summary table and writes `sim.json`, `sim.csv`,
/// `balance.csv` and (unless `--no-charts`) the two SVG charts into `--out`.
/// Returns the files written.
///
/// # Errors
///
/// Invalid arguments, or failure to write an output file or chart.
pub fn run(args: &SimArgs) -> Result<Vec<PathBuf>, BenchError> {
    let config = config_from_args(args)?;
    let started = Instant::now();

    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!(
        "hashing {} jobs into {:?} shards",
        config.jobs, config.shards
    ));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let workload = Workload::new(config.jobs, &config.shards);
    spinner.finish_and_clear();

    let progress = bar(sim::planned_event_work(&config), "events");
    let events = sim::run_events(&config, &workload, &progress);
    progress.finish_and_clear();
    let progress = bar(sim::planned_balance_work(&config), "sweep");
    let balance = sim::run_balance(&config, &workload, &progress);
    progress.finish_and_clear();

    let results = SimResults {
        config,
        events,
        balance,
    };
    let summary = report::summarize(&results);
    println!("{}", report::summary_table(&summary));
    println!("{}", report::balance_table(&results.balance));
    println!(
        "{} event records, {} sweep records in {:.1}s",
        results.events.len(),
        results.balance.len(),
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
    write("sim.json", report::to_json(&results, &summary)?)?;
    write("sim.csv", report::events_csv(&results.events))?;
    write("balance.csv", report::balance_csv(&results.balance))?;
    if !args.no_charts {
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
