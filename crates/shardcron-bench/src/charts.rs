//! SVG charts of a `sim` run (plotters' SVG backend: no system fonts needed,
//! text is left to the viewer).
//!
//! * `balance_vs_vnodes.svg`: max/mean shards per node against virtual nodes
//!   per member, one panel per (shard count, fleet size) of the balance
//!   sweep. Strategies without virtual nodes (rendezvous, maglev, jump) are
//!   horizontal dashed lines; the weighted placement `place` (one point per
//!   load bound) is left to the tables;
//!   dcron (job-keyed, fixed 50 vnodes) is a single marker of max/mean *jobs*.
//! * `moved_vs_ideal.svg`: fraction of units moved against the ideal
//!   fraction, one marker per event, log-log, one panel per shard count; the
//!   diagonal is optimal.

use std::path::Path;

use plotters::prelude::*;

use crate::error::BenchError;
use crate::sim::{strategy_order, BalanceRecord, EventRecord};

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(index: usize) -> RGBColor {
    COLORS[index % COLORS.len()]
}

/// Axis label of a value on a log axis: integers without decimals, small
/// fractions with three significant digits.
fn tick(value: &f64) -> String {
    if *value >= 10.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        text.to_owned()
    }
}

pub(crate) const LIGHT_GRID: RGBColor = RGBColor(236, 236, 236);

pub(crate) fn chart_error<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> BenchError + '_ {
    move |e| BenchError::Chart {
        path: path.to_path_buf(),
        message: format!("{e:?}"),
    }
}

/// Draws `balance_vs_vnodes.svg` from the balance sweep.
pub fn balance_vs_vnodes(path: &Path, records: &[BalanceRecord]) -> Result<(), BenchError> {
    let err = chart_error(path);
    let mut shard_counts: Vec<u32> = records.iter().filter_map(|r| r.shards).collect();
    shard_counts.sort_unstable();
    shard_counts.dedup();
    let mut fleet_sizes: Vec<u32> = records.iter().map(|r| r.nodes).collect();
    fleet_sizes.sort_unstable();
    fleet_sizes.dedup();
    if shard_counts.is_empty() || fleet_sizes.is_empty() {
        return Ok(());
    }
    let families = ["ring", "bounded", "rendezvous", "maglev", "jump", "dcron"];
    let vnodes: Vec<f64> = records
        .iter()
        .filter_map(|r| r.vnodes.map(f64::from))
        .collect();
    let x_min = vnodes
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(50.0)
        * 0.8;
    let x_max = vnodes.iter().copied().fold(0.0, f64::max).max(50.0) * 1.25;

    let (cols, rows) = (fleet_sizes.len(), shard_counts.len());
    let size = (560 * cols as u32, 420 * rows as u32);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let root = root
        .titled(
            "Load spread vs virtual nodes, mean of the trials (lower is better; 1.0 = perfect)",
            ("sans-serif", 22),
        )
        .map_err(&err)?;
    let panels = root.split_evenly((rows, cols));
    for (panel_index, panel) in panels.iter().enumerate() {
        let shards = shard_counts[panel_index / cols];
        let nodes = fleet_sizes[panel_index % cols];
        let here: Vec<&BalanceRecord> = records
            .iter()
            .filter(|r| r.nodes == nodes && r.shards.is_none_or(|s| s == shards))
            .collect();
        let value = |r: &BalanceRecord| {
            r.shards_per_node
                .map_or(r.jobs_per_node.max_over_mean, |s| s.max_over_mean)
        };
        let y_max = here.iter().map(|r| value(r)).fold(1.0, f64::max) * 1.08;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("S = {shards} shards, N = {nodes} nodes"),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d((x_min..x_max).log_scale(), 1.0..y_max)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("virtual nodes per member (log scale)")
            .y_desc("max / mean shards per node")
            .x_label_formatter(&tick)
            .light_line_style(LIGHT_GRID)
            .draw()
            .map_err(&err)?;
        for (family_index, family) in families.iter().enumerate() {
            let style = color(family_index);
            // Mean over the trials of each strategy (one point per vnodes value).
            let mut series: Vec<(f64, f64, String)> = Vec::new();
            for name in strategy_order(
                here.iter()
                    .filter(|r| r.family == *family)
                    .map(|r| r.strategy.as_str()),
            ) {
                let runs: Vec<&&BalanceRecord> =
                    here.iter().filter(|r| r.strategy == name).collect();
                let mean = runs.iter().map(|r| value(r)).sum::<f64>() / runs.len().max(1) as f64;
                let x = runs.first().and_then(|r| r.vnodes).map_or(0.0, f64::from);
                series.push((x, mean, name));
            }
            series.sort_by(|a, b| a.0.total_cmp(&b.0));
            let Some((_, first_y, first_name)) = series.first().cloned() else {
                continue;
            };
            match *family {
                "ring" | "bounded" => {
                    let label = if *family == "ring" {
                        "ring as shipped".to_owned()
                    } else {
                        first_name.split(' ').next().unwrap_or("bounded").to_owned() + ")"
                    };
                    let points: Vec<(f64, f64)> = series.iter().map(|(x, y, _)| (*x, *y)).collect();
                    chart
                        .draw_series(LineSeries::new(points.clone(), style.stroke_width(2)))
                        .map_err(&err)?
                        .label(label)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(2))
                        });
                    chart
                        .draw_series(points.iter().map(|&p| Circle::new(p, 3, style.filled())))
                        .map_err(&err)?;
                }
                "dcron" => {
                    let x = series[0].0;
                    chart
                        .draw_series(std::iter::once(TriangleMarker::new(
                            (x, first_y),
                            7,
                            style.filled(),
                        )))
                        .map_err(&err)?
                        .label("dcron-like (jobs/node, v=50, CRC32)")
                        .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, style.filled()));
                }
                _ => {
                    chart
                        .draw_series(DashedLineSeries::new(
                            vec![(x_min, first_y), (x_max, first_y)],
                            8,
                            5,
                            style.stroke_width(2),
                        ))
                        .map_err(&err)?
                        .label(format!("{first_name} (no vnodes)"))
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(2))
                        });
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(&err)?;
    }
    root.present().map_err(&err)?;
    Ok(())
}

/// Draws `moved_vs_ideal.svg` from the event grid.
pub fn moved_vs_ideal(path: &Path, events: &[EventRecord]) -> Result<(), BenchError> {
    let err = chart_error(path);
    let mut shard_counts: Vec<u32> = events.iter().filter_map(|e| e.shards).collect();
    shard_counts.sort_unstable();
    shard_counts.dedup();
    if shard_counts.is_empty() {
        return Ok(());
    }
    let order = strategy_order(events.iter().map(|e| e.strategy.as_str()));
    let floor = 1e-4;
    let x_min = events
        .iter()
        .map(|e| e.ideal_fraction)
        .fold(1.0, f64::min)
        .max(floor)
        * 0.7;
    let limit = 1.0;

    let cols = shard_counts.len();
    let root = SVGBackend::new(path, (640 * cols as u32, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let root = root
        .titled(
            "Units moved per membership change vs the ideal (diagonal)",
            ("sans-serif", 22),
        )
        .map_err(&err)?;
    let panels = root.split_evenly((1, cols));
    for (panel, &shards) in panels.iter().zip(&shard_counts) {
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("S = {shards} shards (dcron: jobs)"),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d((x_min..limit).log_scale(), (x_min..limit).log_scale())
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("ideal fraction moved (log)")
            .y_desc("actual fraction moved (log)")
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .light_line_style(LIGHT_GRID)
            .draw()
            .map_err(&err)?;
        chart
            .draw_series(LineSeries::new(
                vec![(x_min, x_min), (limit, limit)],
                BLACK.stroke_width(1),
            ))
            .map_err(&err)?
            .label("ideal")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        for (index, strategy) in order.iter().enumerate() {
            let style = color(index);
            let points: Vec<(f64, f64)> = events
                .iter()
                .filter(|e| &e.strategy == strategy && e.shards.is_none_or(|s| s == shards))
                .map(|e| (e.ideal_fraction, e.moved_fraction.clamp(x_min, limit)))
                .collect();
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&p| Circle::new(p, 3, style.mix(0.6).filled())),
                )
                .map_err(&err)?
                .label(strategy.clone())
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, style.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(&err)?;
    }
    root.present().map_err(&err)?;
    Ok(())
}
