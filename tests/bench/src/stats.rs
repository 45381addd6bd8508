//! Latency summaries and histogram bins.
//!
//! Percentiles come from an HDR histogram (microsecond resolution, 3 significant digits): it is
//! exact enough for millisecond reporting and its quantile definition is the usual one, so the
//! numbers of both servers are computed the same way.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The highest latency the histogram tracks (longer samples are clamped to it): every wait of
/// the bench is bounded well below this.
const MAX_TRACKED_US: u64 = 3_600 * 1_000_000;

/// p50/p95/p99/max of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

impl Summary {
    /// The summary of `samples` (all zeros when there are none).
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut h = Histogram::<u64>::new_with_bounds(1, MAX_TRACKED_US, 3)
            .expect("valid histogram bounds");
        for s in samples {
            let us = u64::try_from(s.as_micros()).unwrap_or(u64::MAX);
            h.saturating_record(us.clamp(1, MAX_TRACKED_US));
        }
        let ms = |us: u64| us as f64 / 1_000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1_000.0,
        }
    }
}

/// A histogram on a logarithmic axis: `bins + 1` edges spaced evenly in log10 from `lower` to
/// `upper`, and the fraction of `samples_ms` in each bin (samples outside the range are clamped
/// into the first or last bin, so the fractions add up to 1, or are all 0 without samples).
/// Log bins let a 1 ms run and a 10 s run share one picture; fractions let runs with different
/// event counts share one axis.
pub fn log_bins(samples_ms: &[f64], lower: f64, upper: f64, bins: usize) -> (Vec<f64>, Vec<f64>) {
    assert!(
        bins > 0 && lower > 0.0 && upper > lower,
        "a valid log range"
    );
    let (lo, hi) = (lower.log10(), upper.log10());
    let step = (hi - lo) / bins as f64;
    let edges = (0..=bins)
        .map(|i| 10f64.powf(lo + step * i as f64))
        .collect();
    let mut counts = vec![0u64; bins];
    for &s in samples_ms {
        let x = (s.max(lower).log10() - lo) / step;
        counts[(x.max(0.0) as usize).min(bins - 1)] += 1;
    }
    let total = samples_ms.len().max(1) as f64;
    (
        edges,
        counts.into_iter().map(|c| c as f64 / total).collect(),
    )
}

/// `ours / baseline`, or `None` when the baseline is zero or either is not a number.
pub fn ratio(ours: f64, baseline: f64) -> Option<f64> {
    (baseline > 0.0 && ours.is_finite() && baseline.is_finite()).then(|| ours / baseline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_ms() {
        let samples: Vec<Duration> = (1..=100).map(ms).collect();
        let s = Summary::of(&samples);
        assert_eq!(s.count, 100);
        // HDR keeps 3 significant digits: values are exact to within 0.1%.
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 1e-9;
        assert!(close(s.p50_ms, 50.0), "{s:?}");
        assert!(close(s.p95_ms, 95.0), "{s:?}");
        assert!(close(s.p99_ms, 99.0), "{s:?}");
        assert!(close(s.max_ms, 100.0), "{s:?}");
        assert!(close(s.mean_ms, 50.5), "{s:?}");
    }

    #[test]
    fn empty_and_single_samples() {
        assert_eq!(Summary::of(&[]), Summary::default());
        let one = Summary::of(&[Duration::from_micros(1_500)]);
        assert_eq!(one.count, 1);
        assert_eq!(one.p50_ms, one.max_ms);
        assert!((one.p99_ms - 1.5).abs() < 0.01);
    }

    #[test]
    fn log_bins_split_decades_and_sum_to_one() {
        let (edges, f) = log_bins(&[0.5, 2.0, 5.0, 20.0, 50.0, 500.0], 1.0, 100.0, 2);
        assert_eq!(edges.len(), 3);
        assert!((edges[1] - 10.0).abs() < 1e-9, "{edges:?}");
        // 0.5 is clamped into the first bin, 500 into the last.
        assert_eq!(f, vec![3.0 / 6.0, 3.0 / 6.0]);
        let (_, none) = log_bins(&[], 1.0, 10.0, 3);
        assert_eq!(none, vec![0.0; 3]);
    }

    #[test]
    fn ratio_needs_a_baseline() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }
}
