//! The input a set of weights was trained on. Feeding ImageNet weights the wrong colour order or
//! statistics still runs, silently worse, so every imported weight file carries this record and
//! training takes its normalisation from it.
use crate::data::augment::Normalization;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Channel order the network takes (after any order folded into the first conv).
    pub colour_order: ColourOrder,
    /// Pixel scale `mean` and `std` refer to: 1 for [0, 1] inputs, 255 for raw 8-bit values.
    pub pixel_range: f64,
    /// Per-channel mean subtracted, in `colour_order`, in `pixel_range` units.
    pub mean: [f64; 3],
    /// Per-channel divisor after the mean, in `pixel_range` units (1.0 = mean subtraction only).
    pub std: [f64; 3],
    /// Native square input side.
    pub input_size: i64,
    /// Resampling the weights' authors used (informative: myoscope resizes bilinearly).
    pub interpolation: String,
    /// Fraction of the resized image kept by the reference centre crop (timm `crop_pct`).
    pub crop_fraction: f64,
    /// Batch-norm epsilon the architecture runs with.
    pub bn_eps: f64,
    /// `symmetric` (PyTorch) or `tf-same` (TensorFlow "SAME", bottom/right-heavy).
    pub padding: String,
    /// What the source expected before import and what the import changed, in words.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourOrder {
    Rgb,
    Bgr,
}

pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];
/// Caffe's BGR ImageNet means in 0–255 units, the `preprocess_input(mode="caffe")` of Keras.
pub const CAFFE_MEAN_BGR: [f64; 3] = [103.939, 116.779, 123.68];

impl Preprocessing {
    /// torchvision's ImageNet recipe: RGB in [0, 1], ImageNet statistics, resize 256 → crop 224.
    pub fn torchvision() -> Self {
        Self {
            colour_order: ColourOrder::Rgb,
            pixel_range: 1.0,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            input_size: 224,
            interpolation: "bilinear".into(),
            crop_fraction: 0.875,
            bn_eps: 1e-5,
            padding: "symmetric".into(),
            notes: Vec::new(),
        }
    }

    /// The normalisation the training and inference pipeline applies to [0, 1] RGB pixels.
    /// BGR weights are turned into RGB weights at import, so only RGB reaches this point.
    pub fn normalization(&self) -> Result<Normalization> {
        if self.colour_order != ColourOrder::Rgb {
            bail!("these weights take BGR input; re-import them so the channel order is folded into the first convolution");
        }
        let r = self.pixel_range;
        Ok(Normalization {
            mean: self.mean.map(|m| (m / r) as f32),
            std: self.std.map(|s| (s / r) as f32),
        })
    }

    /// Normalises a float batch [N, 3, H, W] of 0–255 pixel values in the arithmetic order the
    /// reference scripts use, so parity checks compare networks and not rounding.
    pub fn normalise_pixels(&self, pixels: &Tensor) -> Tensor {
        let column = |v: [f64; 3]| Tensor::from_slice(&v.map(|x| x as f32)).view([1, 3, 1, 1]);
        let scaled = if self.pixel_range == 255.0 {
            pixels.to_kind(Kind::Float)
        } else {
            pixels.to_kind(Kind::Float) / 255.0
        };
        (scaled - column(self.mean)) / column(self.std)
    }

    /// One line for `weights list`.
    pub fn summary(&self) -> String {
        let fmt = |v: [f64; 3]| {
            v.iter()
                .map(|x| format!("{x:.4}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let range = if self.pixel_range == 255.0 {
            "0-255"
        } else {
            "0-1"
        };
        format!(
            "{} {range} mean [{}] std [{}], {}², BN eps {:e}, {} padding",
            match self.colour_order {
                ColourOrder::Rgb => "RGB",
                ColourOrder::Bgr => "BGR",
            },
            fmt(self.mean),
            fmt(self.std),
            self.input_size,
            self.bn_eps,
            self.padding
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_normalisation_follows_the_record() {
        let tv = Preprocessing::torchvision();
        let px = Tensor::from_slice(&[255.0f32, 0.0, 127.5]).view([1, 3, 1, 1]);
        let y = tv.normalise_pixels(&px);
        let want = [
            (1.0 - 0.485) / 0.229,
            (0.0 - 0.456) / 0.224,
            (0.5 - 0.406) / 0.225,
        ];
        for (c, w) in want.iter().enumerate() {
            assert!((y.double_value(&[0, c as i64, 0, 0]) - w).abs() < 1e-5);
        }
        let n = tv.normalization().unwrap();
        assert_eq!(n.mean, [0.485, 0.456, 0.406]);

        let caffe = Preprocessing {
            pixel_range: 255.0,
            mean: [123.68, 116.779, 103.939],
            std: [1.0; 3],
            ..Preprocessing::torchvision()
        };
        let y = caffe.normalise_pixels(&px);
        assert!((y.double_value(&[0, 0, 0, 0]) - (255.0 - 123.68)).abs() < 1e-4);
        let n = caffe.normalization().unwrap();
        assert!((n.mean[0] - 123.68 / 255.0).abs() < 1e-7 && (n.std[1] - 1.0 / 255.0).abs() < 1e-9);
        let bgr = Preprocessing {
            colour_order: ColourOrder::Bgr,
            ..caffe
        };
        assert!(bgr.normalization().is_err());
    }
}
