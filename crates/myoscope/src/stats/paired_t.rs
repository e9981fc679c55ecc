//! The paired (dependent-samples) t-test, as scipy.stats.ttest_rel with its confidence
//! interval: on the differences d = a − b, t = √n · mean(d) / sd(d) with n − 1 degrees of
//! freedom, a two-sided p-value, and mean(d) ± t_{(1+c)/2, n−1} · sd(d)/√n.

use super::student_t::StudentT;
use serde::{Deserialize, Serialize};

/// Result of a paired t-test of a against b (differences a − b).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedTTest {
    /// Number of pairs.
    pub n: usize,
    /// Mean of a − b.
    pub mean_difference: f64,
    /// Standard deviation of a − b (n − 1 denominator).
    pub sd_difference: f64,
    /// sd_difference / √n.
    pub standard_error: f64,
    pub t: f64,
    /// n − 1.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Coverage of the interval, e.g. 0.95.
    pub confidence: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TTestError {
    #[error("a paired t-test needs at least 2 pairs, got {0}")]
    TooFewPairs(usize),
    #[error("the samples do not pair up: {a} values against {b}")]
    UnequalLengths { a: usize, b: usize },
    #[error(
        "value {index} of the {sample} sample is {value}; every value must be a finite number"
    )]
    NonFinite {
        sample: &'static str,
        index: usize,
        value: f64,
    },
    #[error("the confidence level must lie strictly between 0 and 1, got {0}")]
    BadConfidence(f64),
    #[error(
        "the differences have no spread: every pair differs by the same amount ({difference}), \
         so their variance is zero and the t statistic (and its p-value) is undefined"
    )]
    ZeroVariance { difference: f64 },
}

pub type Result<T> = std::result::Result<T, TTestError>;

/// How much spread the differences may show and still count as none: a few units of rounding
/// in the largest value, scaled by n for the rounding of the mean. Differences computed from
/// numbers like 0.8 − 0.7 and 0.9 − 0.8 differ by ~1e-17 although they are "the same";
/// SciPy then reports t ≈ 10¹⁵ and p ≈ 10⁻³¹ (with a "catastrophic cancellation" warning,
/// which it raises when max |d − mean| < 10 ε |mean|). Our rule is relative to the data, not
/// the mean, so that it also catches the mean ≈ 0 case.
fn spread_is_rounding_noise(sd: f64, n: usize, a: &[f64], b: &[f64]) -> bool {
    let scale = a.iter().chain(b).fold(0.0f64, |m, v| m.max(v.abs()));
    sd <= 4.0 * (n as f64 + 2.0) * f64::EPSILON * scale
}

fn check_inputs(a: &[f64], b: &[f64], confidence: f64) -> Result<()> {
    if a.len() != b.len() {
        return Err(TTestError::UnequalLengths {
            a: a.len(),
            b: b.len(),
        });
    }
    if a.len() < 2 {
        return Err(TTestError::TooFewPairs(a.len()));
    }
    for (sample, values) in [("first", a), ("second", b)] {
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(TTestError::NonFinite {
                sample,
                index,
                value,
            });
        }
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(TTestError::BadConfidence(confidence));
    }
    Ok(())
}

/// Mean and sample standard deviation, two-pass with the mean's rounding corrected by the
/// sum of residuals (so the result does not depend on the data's offset).
fn mean_and_sd(d: &[f64]) -> (f64, f64) {
    let n = d.len() as f64;
    let rough = d.iter().sum::<f64>() / n;
    let mean = rough + d.iter().map(|v| v - rough).sum::<f64>() / n;
    let ss: f64 = d.iter().map(|v| (v - mean) * (v - mean)).sum();
    (mean, (ss / (n - 1.0)).sqrt())
}

/// Paired t-test of `a` against `b` (differences a − b), with a two-sided p-value and the
/// `confidence` interval of the mean difference.
///
/// Degenerate inputs are errors, not numbers: fewer than 2 pairs, unequal lengths, NaN or
/// infinite values, a confidence outside (0, 1), and differences without spread. For the
/// last, SciPy returns NaN when every difference is 0, t = ±∞ with p = 0 when every
/// difference is the same non-zero number, and a meaningless huge t when the differences
/// differ only by rounding; none of these is a result one should report, so we refuse
/// (see `TTestError::ZeroVariance`).
pub fn paired_t_test(a: &[f64], b: &[f64], confidence: f64) -> Result<PairedTTest> {
    check_inputs(a, b, confidence)?;
    let n = a.len();
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let (mean, sd) = mean_and_sd(&d);
    if spread_is_rounding_noise(sd, n, a, b) {
        return Err(TTestError::ZeroVariance { difference: mean });
    }
    let df = (n - 1) as f64;
    let dist = StudentT::new(df).map_err(|_| TTestError::TooFewPairs(n))?;
    let se = sd / (n as f64).sqrt();
    let t = mean / se;
    let half_width = dist.quantile(0.5 * (1.0 + confidence)) * se;
    Ok(PairedTTest {
        n,
        mean_difference: mean,
        sd_difference: sd,
        standard_error: se,
        t,
        df,
        p_value: dist.two_sided_p(t),
        confidence,
        ci_low: mean - half_width,
        ci_high: mean + half_width,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_example() {
        // d = [1, 2, 3]: mean 2, sd 1, t = 2√3, df 2. With two degrees of freedom the CDF is
        // ½ + t / (2√(2 + t²)), so P(|T| > t) = 1 − t/√(2 + t²) and t_{0.975} = q√(2/(1 − q²))
        // with q = 0.95.
        let r = paired_t_test(&[2.0, 4.0, 6.0], &[1.0, 2.0, 3.0], 0.95).unwrap();
        let t = 2.0 * 3f64.sqrt();
        assert_eq!(r.n, 3);
        assert!((r.mean_difference - 2.0).abs() < 1e-15);
        assert!((r.sd_difference - 1.0).abs() < 1e-15);
        assert!((r.t - t).abs() < 1e-14);
        assert_eq!(r.df, 2.0);
        let p = 1.0 - t / (2.0 + t * t).sqrt();
        assert!((r.p_value - p).abs() < 1e-14 * p);
        let q = 0.95f64;
        let t975 = q * (2.0 / (1.0 - q * q)).sqrt();
        let half = t975 / 3f64.sqrt();
        assert!((r.ci_low - (2.0 - half)).abs() < 1e-13);
        assert!((r.ci_high - (2.0 + half)).abs() < 1e-13);
    }

    #[test]
    fn sign_follows_the_order_of_the_samples() {
        let a = [0.7, 0.8, 0.75, 0.9];
        let b = [0.6, 0.8, 0.7, 0.7];
        let ab = paired_t_test(&a, &b, 0.9).unwrap();
        let ba = paired_t_test(&b, &a, 0.9).unwrap();
        assert!(ab.t > 0.0 && (ab.t + ba.t).abs() < 1e-14);
        assert!((ab.p_value - ba.p_value).abs() < 1e-15);
        assert!((ab.ci_low + ba.ci_high).abs() < 1e-14);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(
            paired_t_test(&[1.0], &[2.0], 0.95),
            Err(TTestError::TooFewPairs(1))
        );
        assert_eq!(
            paired_t_test(&[1.0, 2.0], &[2.0], 0.95),
            Err(TTestError::UnequalLengths { a: 2, b: 1 })
        );
        let err = paired_t_test(&[1.0, f64::NAN], &[2.0, 3.0], 0.95).unwrap_err();
        assert!(matches!(
            err,
            TTestError::NonFinite {
                sample: "first",
                index: 1,
                ..
            }
        ));
        let err = paired_t_test(&[1.0, 2.0], &[2.0, f64::INFINITY], 0.95).unwrap_err();
        assert!(err
            .to_string()
            .contains("value 1 of the second sample is inf"));
        for c in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(matches!(
                paired_t_test(&[1.0, 2.0], &[0.0, 0.5], c),
                Err(TTestError::BadConfidence(_))
            ));
        }
    }

    #[test]
    fn differences_without_spread_are_refused() {
        let same = paired_t_test(&[0.5, 0.75, 0.6], &[0.5, 0.75, 0.6], 0.95).unwrap_err();
        assert_eq!(same, TTestError::ZeroVariance { difference: 0.0 });
        let shifted = paired_t_test(&[3.0, 5.0, 4.0], &[2.0, 4.0, 3.0], 0.95).unwrap_err();
        assert!(shifted
            .to_string()
            .contains("every pair differs by the same amount (1)"));
        // Rounding noise only: 8/10 − 7/10 ≠ 9/10 − 8/10 in doubles.
        let noisy = paired_t_test(&[0.8, 0.9, 0.7], &[0.7, 0.8, 0.6], 0.95).unwrap_err();
        assert!(matches!(noisy, TTestError::ZeroVariance { .. }));
        // …but a real spread of one part in 10⁹ is kept.
        assert!(paired_t_test(&[0.8, 0.9 + 1e-9, 0.7], &[0.7, 0.8, 0.6], 0.95).is_ok());
    }
}
