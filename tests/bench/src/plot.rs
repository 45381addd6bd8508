//! The latency histogram of a case: submit → last receiver of both servers on one log axis, as
//! fractions of events (the runs may have different event counts when one timed out).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{BenchError, Result};
use crate::measure::E2eRun;
use crate::stats::log_bins;

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
    // A log axis from just below the fastest to just above the slowest sample of either run.
    let all = || series.iter().flat_map(|(r, _)| &r.last_receiver_samples_ms);
    let lower = all().copied().fold(f64::INFINITY, f64::min).max(0.01) * 0.9;
    let upper = all().copied().fold(0.0_f64, f64::max).max(lower * 2.0) * 1.1;
    let path = dir.join(format!("{scenario}-{case}.svg"));
    draw(&path, scenario, case, (lower, upper), &series).map_err(|reason| BenchError::Plot {
        path: path.clone(),
        reason,
    })?;
    Ok(Some(path))
}

fn draw(
    path: &Path,
    scenario: &str,
    case: &str,
    (lower, upper): (f64, f64),
    series: &[(&E2eRun, RGBColor)],
) -> Result<(), String> {
    let binned: Vec<(Vec<f64>, Vec<f64>)> = series
        .iter()
        .map(|(r, _)| log_bins(&r.last_receiver_samples_ms, lower, upper, BINS))
        .collect();
    let top = binned
        .iter()
        .flat_map(|(_, f)| f)
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
        .build_cartesian_2d((lower..upper).log_scale(), 0.0..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction of events")
        .draw()
        .map_err(|e| e.to_string())?;
    for ((run, color), (edges, fractions)) in series.iter().zip(&binned) {
        let style = color.mix(0.45).filled();
        chart
            .draw_series(
                fractions
                    .iter()
                    .enumerate()
                    .map(|(i, f)| Rectangle::new([(edges[i], 0.0), (edges[i + 1], *f)], style)),
            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;
    use std::time::Duration;

    fn run(server: &'static str, samples_ms: &[u64]) -> E2eRun {
        let durations: Vec<Duration> = samples_ms
            .iter()
            .map(|&m| Duration::from_millis(m))
            .collect();
        E2eRun {
            server,
            clients: 2,
            sessions: 1,
            events: samples_ms.len(),
            setup_ms: 1.0,
            setup_settled: true,
            expected_deliveries: 0,
            deliveries: 0,
            missing: 0,
            incomplete_events: 0,
            duplicates: 0,
            errors: 0,
            first_errors: Vec::new(),
            closed_sockets: 0,
            timed_out: false,
            all_seen_ms: 0.0,
            deliveries_per_sec: 0.0,
            confirmed: Summary::of(&durations),
            last_receiver: Summary::of(&durations),
            server_rss_kib: None,
            last_receiver_samples_ms: samples_ms.iter().map(|&m| m as f64).collect(),
        }
    }

    #[test]
    fn draws_both_runs_into_one_svg() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (ours, base) = (run("gateway", &[1, 2, 3, 2_000]), run("relay", &[40, 41]));
        let path = latency_histogram(dir.path(), "fanout", "fanout", Some(&ours), Some(&base))
            .expect("drawn")
            .expect("a picture");
        let svg = std::fs::read_to_string(path).expect("the svg");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("gateway: p50") && svg.contains("relay: p50"));
    }

    #[test]
    fn no_samples_no_picture() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let empty = run("gateway", &[]);
        assert!(
            latency_histogram(dir.path(), "x", "y", Some(&empty), None)
                .expect("no error")
                .is_none()
        );
    }
}
