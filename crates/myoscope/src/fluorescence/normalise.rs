//! Scaling one channel to [0, 1] before it reaches a network.
//!
//! 16-bit camera counts and float unmixed intensities have no fixed range: one slide's DAPI
//! spans 0–40, another's 0–4000, and a few hot pixels set the maximum. Stretching between low
//! and high percentiles (1st and 99.8th by default, as in common nucleus-segmentation
//! practice) puts background near 0 and bright nuclei near 1 whatever the exposure, and the
//! clamp keeps hot pixels from compressing everything else. 8-bit images already live on a
//! fixed 0–255 scale that the export chose, so by default they are only divided by 255.
use super::plane::{Plane, SampleType};
use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Normalisation {
    /// 8-bit: divide by 255. Anything else: percentiles 1 / 99.8.
    #[default]
    Auto,
    /// Stretch `[P(low), P(high)]` to [0, 1] and clamp, for every sample type. Percentiles
    /// in 0..=100 with linear interpolation between order statistics (NumPy's default).
    Percentiles { low: f64, high: f64 },
    /// Values as stored, converted to `f32` (for label-like or pre-normalised data).
    None,
}

/// The percentiles [`Normalisation::Auto`] uses for non-8-bit data.
pub const DEFAULT_PERCENTILES: (f64, f64) = (1.0, 99.8);

impl Normalisation {
    /// Percentile stretching with checked bounds.
    pub fn percentiles(low: f64, high: f64) -> Result<Normalisation> {
        check_percentiles(low, high)?;
        Ok(Normalisation::Percentiles { low, high })
    }

    /// Scales `plane`, whose values were stored as `sample_type`.
    pub fn apply(&self, plane: &Plane, sample_type: SampleType) -> Result<Plane> {
        let data = match *self {
            Normalisation::None => plane.data.clone(),
            Normalisation::Auto if sample_type == SampleType::U8 => {
                plane.data.iter().map(|v| v / 255.0).collect()
            }
            Normalisation::Auto => {
                let (low, high) = DEFAULT_PERCENTILES;
                stretch(&plane.data, low, high)?
            }
            Normalisation::Percentiles { low, high } => {
                check_percentiles(low, high)?;
                stretch(&plane.data, low, high)?
            }
        };
        Plane::new(plane.width, plane.height, data)
    }
}

impl FromStr for Normalisation {
    type Err = anyhow::Error;

    /// `auto`, `none`, or two percentiles such as `1,99.8` (also `p1,99.8` or `1:99.8`).
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" | "default" => return Ok(Normalisation::Auto),
            "none" | "raw" => return Ok(Normalisation::None),
            _ => {}
        }
        let body = t.strip_prefix('p').unwrap_or(&t);
        let parts: Vec<&str> = body.split([',', ':']).map(str::trim).collect();
        let parsed: Option<Vec<f64>> = parts.iter().map(|p| p.parse().ok()).collect();
        match parsed.as_deref() {
            Some(&[low, high]) => Normalisation::percentiles(low, high),
            _ => bail!(
                "normalisation '{s}' not understood: use auto, none, or two percentiles such as \
                 1,99.8"
            ),
        }
    }
}

impl fmt::Display for Normalisation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Normalisation::Auto => write!(f, "auto (8-bit /255, otherwise percentiles 1–99.8)"),
            Normalisation::Percentiles { low, high } => write!(f, "percentiles {low}–{high}"),
            Normalisation::None => write!(f, "none"),
        }
    }
}

fn check_percentiles(low: f64, high: f64) -> Result<()> {
    let in_range = |p: f64| (0.0..=100.0).contains(&p);
    if !in_range(low) || !in_range(high) || low >= high {
        bail!(
            "percentiles must satisfy 0 <= low < high <= 100 (got {low} and {high}); the \
             default is 1 and 99.8"
        );
    }
    Ok(())
}

/// `clamp((v − P(low)) / (P(high) − P(low)), 0, 1)`. A plane with no spread between the two
/// percentiles carries no signal to stretch and becomes all zeros.
fn stretch(data: &[f32], low: f64, high: f64) -> Result<Vec<f32>> {
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        bail!("pixel {i} is {}: percentiles need finite values", data[i]);
    }
    let mut scratch = data.to_vec();
    let lo = percentile(&mut scratch, low);
    let hi = percentile(&mut scratch, high);
    let span = hi - lo;
    if span.is_nan() || span <= 0.0 {
        return Ok(vec![0.0; data.len()]);
    }
    Ok(data
        .iter()
        .map(|&v| ((f64::from(v) - lo) / span).clamp(0.0, 1.0) as f32)
        .collect())
}

/// The `q`-th percentile (0..=100) with linear interpolation between the two nearest order
/// statistics, like `numpy.percentile`. Reorders `values`.
pub fn percentile(values: &mut [f32], q: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = q / 100.0 * (n - 1) as f64;
    let k = rank.floor() as usize;
    let frac = rank - k as f64;
    let (_, kth, right) = values.select_nth_unstable_by(k, f32::total_cmp);
    let a = f64::from(*kth);
    if frac == 0.0 || right.is_empty() {
        return a;
    }
    let b = right.iter().copied().fold(f32::INFINITY, f32::min);
    a + frac * (f64::from(b) - a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile(np.arange(1, 11), [0, 1, 25, 50, 99.8, 100]) =
        // [1.0, 1.09, 3.25, 5.5, 9.982, 10.0]
        let base: Vec<f32> = (1..=10).rev().map(|v| v as f32).collect();
        for (q, want) in [
            (0.0, 1.0),
            (1.0, 1.09),
            (25.0, 3.25),
            (50.0, 5.5),
            (99.8, 9.982),
            (100.0, 10.0),
        ] {
            let got = percentile(&mut base.clone(), q);
            assert!((got - want).abs() < 1e-9, "q={q}: {got} vs {want}");
        }
    }

    #[test]
    fn auto_divides_8_bit_and_stretches_the_rest() {
        let p = Plane::new(4, 1, vec![0.0, 51.0, 102.0, 255.0]).unwrap();
        let n = Normalisation::Auto.apply(&p, SampleType::U8).unwrap();
        assert_eq!(n.data, [0.0, 0.2, 0.4, 1.0]);
        // 16-bit: 1000 values 0..999 plus a hot pixel; the hot pixel clamps to 1.
        let mut v: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        v.push(60000.0);
        let p = Plane::new(v.len(), 1, v).unwrap();
        let n = Normalisation::Auto.apply(&p, SampleType::U16).unwrap();
        assert!(n.data.iter().all(|x| (0.0..=1.0).contains(x)));
        assert_eq!(n.data[0], 0.0);
        assert_eq!(*n.data.last().unwrap(), 1.0);
        // The 500th value sits half-way between P1 ≈ 10 and P99.8 ≈ 998.
        assert!((n.data[500] - (500.0 - 10.0) / (998.0 - 10.0)).abs() < 1e-3);
        // Explicit percentiles apply to 8-bit too.
        let p8 = Plane::new(4, 1, vec![10.0, 20.0, 30.0, 40.0]).unwrap();
        let n = Normalisation::percentiles(0.0, 100.0)
            .unwrap()
            .apply(&p8, SampleType::U8)
            .unwrap();
        assert_eq!(n.data, [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]);
    }

    #[test]
    fn constant_planes_become_zero_and_bad_bounds_are_refused() {
        let p = Plane::new(3, 1, vec![7.0; 3]).unwrap();
        let n = Normalisation::Auto.apply(&p, SampleType::F32).unwrap();
        assert_eq!(n.data, [0.0; 3]);
        for (lo, hi) in [(50.0, 50.0), (-1.0, 99.0), (1.0, 101.0), (f64::NAN, 99.0)] {
            let e = Normalisation::percentiles(lo, hi).unwrap_err().to_string();
            assert!(e.contains("0 <= low < high <= 100"), "{e}");
        }
        let bad = Normalisation::Percentiles {
            low: 90.0,
            high: 10.0,
        };
        assert!(bad.apply(&p, SampleType::F32).is_err());
    }

    #[test]
    fn parses_cli_spellings() {
        assert_eq!(
            "auto".parse::<Normalisation>().unwrap(),
            Normalisation::Auto
        );
        assert_eq!(
            "None".parse::<Normalisation>().unwrap(),
            Normalisation::None
        );
        for s in ["1,99.8", "p1,99.8", "1:99.8", " 1 , 99.8 "] {
            assert_eq!(
                s.parse::<Normalisation>().unwrap(),
                Normalisation::Percentiles {
                    low: 1.0,
                    high: 99.8
                }
            );
        }
        let e = "minmax".parse::<Normalisation>().unwrap_err().to_string();
        assert!(e.contains("auto, none"), "{e}");
        assert!("99,1".parse::<Normalisation>().is_err());
    }
}
