//! One channel of an image as row-major `f32`, and the sample type it was stored with.
use anyhow::{bail, Result};
use std::fmt;

/// A single-channel image, row-major (`data[y * width + x]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Plane {
    /// Checks that `data` holds exactly `width × height` values.
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Result<Plane> {
        if width == 0 || height == 0 {
            bail!("a plane needs at least one pixel (got {width}×{height})");
        }
        if data.len() != width * height {
            bail!(
                "a {width}×{height} plane needs {} values, got {}",
                width * height,
                data.len()
            );
        }
        Ok(Plane {
            width,
            height,
            data,
        })
    }

    /// The value at column `x`, row `y`, or `None` outside the plane.
    pub fn get(&self, x: usize, y: usize) -> Option<f32> {
        (x < self.width && y < self.height).then(|| self.data[y * self.width + x])
    }

    /// Minimum, maximum and mean over all pixels (NaNs are never stored in a plane read by
    /// this module: decoding rejects them).
    pub fn stats(&self) -> PlaneStats {
        let mut min = f32::INFINITY;
        let mut max = f32::NEG_INFINITY;
        let mut sum = 0f64;
        for &v in &self.data {
            min = min.min(v);
            max = max.max(v);
            sum += f64::from(v);
        }
        PlaneStats {
            min,
            max,
            mean: (sum / self.data.len().max(1) as f64) as f32,
        }
    }
}

/// Summary numbers of a plane, for sanity checks and log lines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlaneStats {
    pub min: f32,
    pub max: f32,
    pub mean: f32,
}

/// How the samples were stored in the file, before conversion to `f32`. It decides the
/// default normalisation: 8-bit data is already on a fixed 0–255 scale, 16-bit and float
/// data (camera counts, unmixed component intensities) are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleType {
    U8,
    U16,
    U32,
    I8,
    I16,
    I32,
    F16,
    F32,
    F64,
}

impl SampleType {
    pub fn is_float(self) -> bool {
        matches!(self, SampleType::F16 | SampleType::F32 | SampleType::F64)
    }

    pub fn is_signed_integer(self) -> bool {
        matches!(self, SampleType::I8 | SampleType::I16 | SampleType::I32)
    }

    pub fn bits(self) -> u16 {
        match self {
            SampleType::U8 | SampleType::I8 => 8,
            SampleType::U16 | SampleType::I16 | SampleType::F16 => 16,
            SampleType::U32 | SampleType::I32 | SampleType::F32 => 32,
            SampleType::F64 => 64,
        }
    }
}

impl fmt::Display for SampleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            SampleType::U8 => "uint8",
            SampleType::U16 => "uint16",
            SampleType::U32 => "uint32",
            SampleType::I8 => "int8",
            SampleType::I16 => "int16",
            SampleType::I32 => "int32",
            SampleType::F16 => "float16",
            SampleType::F32 => "float32",
            SampleType::F64 => "float64",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_the_length() {
        assert!(Plane::new(2, 3, vec![0.0; 6]).is_ok());
        let e = Plane::new(2, 3, vec![0.0; 5]).unwrap_err().to_string();
        assert!(e.contains("needs 6 values, got 5"), "{e}");
        assert!(Plane::new(0, 3, vec![]).is_err());
    }

    #[test]
    fn get_and_stats() {
        let p = Plane::new(2, 2, vec![1.0, 2.0, 3.0, 6.0]).unwrap();
        assert_eq!(p.get(1, 1), Some(6.0));
        assert_eq!(p.get(2, 0), None);
        let s = p.stats();
        assert_eq!((s.min, s.max, s.mean), (1.0, 6.0, 3.0));
    }
}
