//! `lateness_over_time.svg`: per-second p50 / p99 / max lateness over the
//! measured window, with the churn events marked.
//!
//! The y axis is logarithmic because the interesting range spans three
//! orders of magnitude: tens of milliseconds in steady state, seconds after
//! a crash. Each event is a dashed vertical line with its label; the time
//! it took the fleet to settle is shaded (red for a crash, grey otherwise),
//! so a reader can see which late fires belong to which event. Same
//! plotters SVG backend as the `sim` charts (no system fonts needed).

use std::path::Path;

use plotters::prelude::*;

use super::timeline::SecondLateness;
use crate::charts::{chart_error, LIGHT_GRID};
use crate::error::BenchError;

/// A churn event as drawn on the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    /// Seconds since the start of the window.
    pub at_s: f64,
    /// When the fleet had settled again, seconds since the window start.
    pub settled_s: Option<f64>,
    /// Text next to the line, e.g. `crash w3 (takeover 5.8 s)`.
    pub label: String,
    /// Drawn in red.
    pub crash: bool,
}

const P50: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(255, 127, 14);
const MAX: RGBColor = RGBColor(214, 39, 40);
const EVENT: RGBColor = RGBColor(90, 90, 90);

/// Draws the chart into `path`. `caption` names the run; `window_s` is the
/// length of the window in seconds.
pub fn lateness_over_time(
    path: &Path,
    caption: &str,
    window_s: f64,
    series: &[SecondLateness],
    markers: &[Marker],
) -> Result<(), BenchError> {
    let err = chart_error(path);
    let floor = 1.0;
    let top = series.iter().map(|s| s.max_ms as f64).fold(100.0, f64::max) * 4.0;
    let root = SVGBackend::new(path, (1200, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..window_s.max(1.0), (floor..top).log_scale())
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start of the measured window (by scheduled time)")
        .y_desc("lateness, ms (log scale)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(LIGHT_GRID)
        .draw()
        .map_err(&err)?;

    for (index, marker) in markers.iter().enumerate() {
        let color = if marker.crash { MAX } else { EVENT };
        if let Some(settled) = marker.settled_s.filter(|s| *s > marker.at_s) {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(marker.at_s, floor), (settled, top)],
                    color.mix(0.12).filled(),
                )))
                .map_err(&err)?;
        }
        chart
            .draw_series(DashedLineSeries::new(
                vec![(marker.at_s, floor), (marker.at_s, top)],
                6,
                4,
                color.stroke_width(1),
            ))
            .map_err(&err)?;
        // Stagger labels so close events stay readable.
        let y = top / [1.6, 3.2, 6.4][index % 3];
        chart
            .draw_series(std::iter::once(Text::new(
                marker.label.clone(),
                (marker.at_s + window_s * 0.004, y),
                ("sans-serif", 13).into_font().color(&color),
            )))
            .map_err(&err)?;
    }

    let line = |pick: fn(&SecondLateness) -> i64| -> Vec<(f64, f64)> {
        series
            .iter()
            .map(|s| (f64::from(s.second), (pick(s) as f64).max(floor)))
            .collect()
    };
    // Max last and thin, so it stays visible where it equals p99.
    for (name, color, width, pick) in [
        (
            "p50",
            P50,
            2,
            (|s: &SecondLateness| s.p50_ms) as fn(&SecondLateness) -> i64,
        ),
        ("p99", P99, 3, |s: &SecondLateness| s.p99_ms),
        ("max", MAX, 1, |s: &SecondLateness| s.max_ms),
    ] {
        let points = line(pick);
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))
            .map_err(&err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 2, color.filled())))
            .map_err(&err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&err)?;
    root.present().map_err(&err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_markers() {
        let dir =
            std::env::temp_dir().join(format!("shardcron-bench-chart-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("lateness_over_time.svg");
        let series: Vec<SecondLateness> = (0..10)
            .map(|second| SecondLateness {
                second,
                fires: 100,
                min_ms: 5,
                p50_ms: 20,
                p99_ms: if second == 5 { 4000 } else { 60 },
                max_ms: if second == 5 { 5000 } else { 80 },
            })
            .collect();
        let markers = [
            Marker {
                at_s: 2.0,
                settled_s: Some(2.3),
                label: "leave w1".to_owned(),
                crash: false,
            },
            Marker {
                at_s: 5.0,
                settled_s: Some(8.0),
                label: "crash w2 (takeover 3.0 s)".to_owned(),
                crash: true,
            },
        ];
        let drawn = lateness_over_time(&path, "test run", 10.0, &series, &markers);
        assert!(drawn.is_ok(), "{drawn:?}");
        let svg = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(svg.contains("crash w2 (takeover 3.0 s)"));
        assert!(svg.contains("<svg"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
