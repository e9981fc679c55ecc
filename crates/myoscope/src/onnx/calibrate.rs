//! Activation ranges for int8 quantization, from the values seen on calibration photos.
//!
//! `MinMax` takes the extremes. A ReLU output's maximum is a rare outlier (on a DenseNet, about
//! twice its 99.99th percentile), so min/max spends half of the 256 levels on values that
//! almost never occur and rounds every common value twice as coarsely. `Percentile(p)` clips
//! the `(100 − p)`% tails instead. Both collect in one pass with bounded memory: each side of
//! zero keeps a histogram of |x| whose bin width doubles (merging neighbour bins) whenever a
//! larger value arrives, so the percentile is exact to one bin in [`BINS`].
use std::collections::HashMap;

/// Histogram resolution: the percentile is found to within 1/BINS of the side's range.
pub const BINS: usize = 2048;

/// How activation ranges are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calibration {
    /// The smallest and largest value seen.
    MinMax,
    /// The values at the `p`th percentile from each end (e.g. 99.99).
    Percentile(f64),
}

impl Calibration {
    /// For the sidecar and the log.
    pub fn describe(&self) -> String {
        match self {
            Calibration::MinMax => "min/max".into(),
            Calibration::Percentile(p) => format!("{p}th percentile"),
        }
    }
}

/// |x| counts on one side of zero, over `[0, width · BINS)`.
#[derive(Debug, Clone)]
struct Side {
    width: f32,
    bins: Vec<u64>,
    max: f32,
}

impl Side {
    fn new() -> Self {
        Self {
            width: 0.0,
            bins: vec![0; BINS],
            max: 0.0,
        }
    }

    fn add(&mut self, v: f32) {
        if v > self.max {
            self.max = v;
        }
        if self.width == 0.0 {
            // The first value sets a range with room above it; later values widen it.
            self.width = (v * 2.0 / BINS as f32).max(f32::MIN_POSITIVE);
        }
        while v >= self.width * BINS as f32 {
            self.widen();
        }
        self.bins[(v / self.width) as usize] += 1;
    }

    /// Doubles the bin width: bins 2i and 2i+1 become bin i.
    fn widen(&mut self) {
        for i in 0..BINS / 2 {
            self.bins[i] = self.bins[2 * i] + self.bins[2 * i + 1];
        }
        self.bins[BINS / 2..].fill(0);
        self.width *= 2.0;
    }

    /// The smallest bound with at most `tail` values above it (never above the maximum).
    fn bound(&self, tail: f64) -> f32 {
        let mut above = 0u64;
        for (i, &c) in self.bins.iter().enumerate().rev() {
            if (above + c) as f64 > tail {
                return ((i + 1) as f32 * self.width).min(self.max);
            }
            above += c;
        }
        0.0
    }
}

/// The values of one tensor over all calibration batches.
#[derive(Debug, Clone)]
pub struct Collector {
    positive: Side,
    negative: Side,
    count: u64,
    min: f32,
    max: f32,
}

impl Default for Collector {
    fn default() -> Self {
        Self {
            positive: Side::new(),
            negative: Side::new(),
            count: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }
}

impl Collector {
    pub fn add(&mut self, values: &[f32]) {
        for &v in values {
            if !v.is_finite() {
                continue;
            }
            self.count += 1;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            if v > 0.0 {
                self.positive.add(v);
            } else if v < 0.0 {
                self.negative.add(-v);
            }
        }
    }

    /// The range to quantize, always containing 0 (so zero padding stays exact).
    pub fn range(&self, how: Calibration) -> (f32, f32) {
        if self.count == 0 {
            return (0.0, 0.0);
        }
        match how {
            Calibration::MinMax => (self.min.min(0.0), self.max.max(0.0)),
            Calibration::Percentile(p) => {
                let tail = self.count as f64 * (100.0 - p.clamp(0.0, 100.0)) / 100.0;
                (-self.negative.bound(tail), self.positive.bound(tail))
            }
        }
    }
}

/// Collectors by tensor name.
pub type Collectors = HashMap<String, Collector>;

/// Every tensor's range by `how`.
pub fn ranges(collectors: &Collectors, how: Calibration) -> HashMap<String, (f32, f32)> {
    collectors
        .iter()
        .map(|(name, c)| (name.clone(), c.range(how)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_max_takes_the_extremes_and_keeps_zero() {
        let mut c = Collector::default();
        c.add(&[1.0, 3.0, 2.5]);
        assert_eq!(c.range(Calibration::MinMax), (0.0, 3.0));
        c.add(&[-0.5, f32::NAN]);
        assert_eq!(c.range(Calibration::MinMax), (-0.5, 3.0));
    }

    /// 1..=10000 and one outlier: the 99.9th percentile sits near 9990, to one bin's width,
    /// whatever order the values come in (the histogram widens as larger ones arrive).
    #[test]
    fn percentile_clips_the_outlier_to_within_one_bin() {
        let mut values: Vec<f32> = (1..=10_000).map(|v| v as f32).collect();
        values.push(1e6);
        for order in [false, true] {
            let mut c = Collector::default();
            if order {
                values.reverse();
            }
            for chunk in values.chunks(777) {
                c.add(chunk);
            }
            let (lo, hi) = c.range(Calibration::Percentile(99.9));
            assert_eq!(lo, 0.0);
            let bin = 2.0 * 1e6 / BINS as f32;
            assert!((hi - 9990.0).abs() <= bin, "hi {hi} (bin {bin})");
            assert_eq!(c.range(Calibration::MinMax).1, 1e6);
        }
    }

    #[test]
    fn percentile_works_on_each_side_and_never_passes_the_extremes() {
        let mut c = Collector::default();
        let values: Vec<f32> = (-1000..=1000).map(|v| v as f32 / 100.0).collect();
        c.add(&values);
        let (lo, hi) = c.range(Calibration::Percentile(99.0));
        // 1% of 2001 values ≈ 20 per tail: about 9.8 on each side.
        assert!((hi - 9.8).abs() < 0.05, "{hi}");
        assert!((lo + 9.8).abs() < 0.05, "{lo}");
        let (lo, hi) = c.range(Calibration::Percentile(100.0));
        assert_eq!((lo, hi), (-10.0, 10.0));
        assert_eq!(Collector::default().range(Calibration::MinMax), (0.0, 0.0));
    }
}
