//! The latency histogram of a case: submit → last receiver of both servers on one axis, as
//! fractions of events (the runs may have different event counts when one timed out).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{BenchError, Result};
use crate::measure::E2eRun;
use crate::stats::bin_fractions;

/// Bins of a histogram.
const BINS: usize = 40;

/// Draws `<dir>/<scenario>-<case>.svg`; returns its path, or `None` when neither side has
/// samples.
pub fn latency_histogram(
    dir: &Path,
    scenario: &str,
    case: &str,
    ours: Option<&E2eRun>,
    baseline: Option<&E2eRun>,
) -> Result<Option<PathBuf>> {
    let series: Vec<(&E2eRun, RGBColor)> = [(ours, RED), (baseline, BLUE)]
        .into_iter()
        .filter_map(|(r, c)| {
            r.filter(|r| !r.last_receiver_samples_ms.is_empty())
                .map(|r| (r, c))
        })
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    // The axis ends a little past the larger p99: the tail beyond it is folded into the last bin.
    let upper = series
        .iter()
        .map(|(r, _)| r.last_receiver.p99_ms)
        .fold(0.0_f64, f64::max)
        .max(0.1)
        * 1.25;
    let path = dir.join(format!("{scenario}-{case}.svg"));
    draw(&path, scenario, case, upper, &series).map_err(|reason| BenchError::Plot {
        path: path.clone(),
        reason,
    })?;
    Ok(Some(path))
}

fn draw(
    path: &Path,
    scenario: &str,
    case: &str,
    upper: f64,
    series: &[(&E2eRun, RGBColor)],
) -> Result<(), String> {
    let binned: Vec<Vec<f64>> = series
        .iter()
        .map(|(r, _)| bin_fractions(&r.last_receiver_samples_ms, upper, BINS))
        .collect();
    let top = binned
        .iter()
        .flatten()
        .copied()
        .fold(0.0_f64, f64::max)
        .max(0.01)
        * 1.1;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario} / {case}: submit -> last receiver"),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..upper, 0.0..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "latency (ms; the last bin also holds everything above {upper:.1})"
        ))
        .y_desc("fraction of events")
        .draw()
        .map_err(|e| e.to_string())?;
    let width = upper / BINS as f64;
    for ((run, color), fractions) in series.iter().zip(&binned) {
        let style = color.mix(0.45).filled();
        chart
            .draw_series(fractions.iter().enumerate().map(|(i, f)| {
                let x0 = i as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, *f)], style)
            }))
            .map_err(|e| e.to_string())?
            .label(format!(
                "{}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} events)",
                run.server,
                run.last_receiver.p50_ms,
                run.last_receiver.p99_ms,
                run.last_receiver.max_ms,
                run.last_receiver.count
            ))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
