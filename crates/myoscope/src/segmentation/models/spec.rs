//! What a segmentation model is, as a small serialisable record the CLI writes next to the
//! weights: architecture, encoder and depth, decoder widths, attention, input channels, classes.
//! Every field is checked before anything is built, with a message that says how to fix it.

use super::encoder::{check_encoder_name, DEPTHS};
use super::model::SegmentationModel;
use super::scse::SCSE_REDUCTION;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::str::FromStr;
use tch::nn;

/// Decoder architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    /// UNet: one decoder block per encoder stage.
    #[serde(rename = "unet")]
    Unet,
    /// UNet++: nested, densely connected decoder blocks.
    #[serde(rename = "unetplusplus")]
    UnetPlusPlus,
}

impl FromStr for Arch {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "unet" => Ok(Arch::Unet),
            "unetplusplus" | "unet++" => Ok(Arch::UnetPlusPlus),
            _ => bail!("unknown architecture '{s}'; choose unet or unetplusplus"),
        }
    }
}

/// Attention in the decoder blocks (smp's `decoder_attention_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attention {
    None,
    /// Concurrent spatial and channel squeeze & excitation.
    Scse,
}

impl FromStr for Attention {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Attention::None),
            "scse" => Ok(Attention::Scse),
            _ => bail!("unknown decoder attention '{s}'; choose scse or none"),
        }
    }
}

/// A segmentation model's shape, named as smp's constructor arguments are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentationModelSpec {
    pub arch: Arch,
    /// One of [`super::encoder::ENCODERS`].
    pub encoder: String,
    /// Number of encoder stages used, 3–5; the input must be a multiple of 2^depth.
    pub depth: usize,
    /// Output channels of the decoder blocks, deepest first; one per encoder stage.
    pub decoder_channels: Vec<i64>,
    pub attention: Attention,
    pub in_channels: i64,
    /// Output classes, background included (the logits have this many channels).
    pub classes: i64,
}

/// smp's default decoder widths at depth 5; shallower decoders take the first `depth`.
const DEFAULT_DECODER_CHANNELS: [i64; 5] = [256, 128, 64, 32, 16];

impl SegmentationModelSpec {
    /// The DEDL model (Singh & Cirrone): UNet, ResNet-34 encoder at depth 3, decoder (256, 128,
    /// 64) with scSE, one DAPI channel in, nucleus vs background out.
    pub fn dedl() -> Self {
        SegmentationModelSpec {
            arch: Arch::Unet,
            encoder: "resnet34".into(),
            depth: 3,
            decoder_channels: Self::default_decoder_channels(3),
            attention: Attention::Scse,
            in_channels: 1,
            classes: 2,
        }
    }

    /// smp's default decoder widths for an encoder depth (256, 128, 64, 32, 16 cut to `depth`).
    pub fn default_decoder_channels(depth: usize) -> Vec<i64> {
        DEFAULT_DECODER_CHANNELS
            .iter()
            .copied()
            .take(depth)
            .collect()
    }

    /// Checks every field; the error says what to change.
    pub fn validate(&self) -> Result<()> {
        check_encoder_name(&self.encoder)?;
        if !DEPTHS.contains(&self.depth) {
            bail!(
                "encoder depth {} is outside 3–5; use 3 (the DEDL setting), 4 or 5",
                self.depth
            );
        }
        if self.decoder_channels.len() != self.depth {
            bail!(
                "{} decoder channels given for encoder depth {}: give one per decoder block, e.g. {:?}",
                self.decoder_channels.len(),
                self.depth,
                Self::default_decoder_channels(self.depth)
            );
        }
        if let Some(c) = self.decoder_channels.iter().find(|&&c| c < 1) {
            bail!(
                "decoder channels must be positive (got {c} in {:?})",
                self.decoder_channels
            );
        }
        if self.attention == Attention::Scse {
            if let Some(c) = self.decoder_channels.iter().find(|&&c| c < SCSE_REDUCTION) {
                bail!(
                    "scSE attention reduces channels {SCSE_REDUCTION}-fold, so every decoder block \
                     needs at least {SCSE_REDUCTION} channels (got {c} in {:?}); widen it or use \
                     attention none",
                    self.decoder_channels
                );
            }
        }
        if self.classes < 2 {
            bail!(
                "classes must be at least 2, background included (got {}); use 2 for nucleus vs \
                 background",
                self.classes
            );
        }
        if self.in_channels < 1 {
            bail!(
                "in_channels must be at least 1 (got {}); use 1 for a single DAPI channel",
                self.in_channels
            );
        }
        Ok(())
    }

    /// How many times the encoder halves the input: 2^depth.
    pub fn output_stride(&self) -> i64 {
        1 << self.depth
    }

    /// Refuses an input size the encoder cannot divide evenly, naming the nearest valid sizes.
    pub fn check_input(&self, height: i64, width: i64) -> Result<()> {
        let stride = self.output_stride();
        let mut problems = Vec::new();
        for (axis, size) in [("height", height), ("width", width)] {
            if size >= stride && size % stride == 0 {
                continue;
            }
            let below = size / stride * stride;
            let above = below + stride;
            let fix = if below >= stride {
                format!("use {below} or {above}")
            } else {
                format!("use at least {above}")
            };
            problems.push(format!("{axis} {size}: {fix}"));
        }
        if problems.is_empty() {
            return Ok(());
        }
        bail!(
            "input {height}×{width} does not fit a depth-{} encoder, which halves it {} times: \
             height and width must be multiples of {stride} ({}); pad the image or pick such a \
             tile size",
            self.depth,
            self.depth,
            problems.join("; ")
        )
    }

    /// Builds the model under `p`; with `p` a var store's root its parameter names are smp's
    /// (`encoder.…`, `decoder.…`, `segmentation_head.0.…`).
    pub fn build(&self, p: &nn::Path) -> Result<SegmentationModel> {
        SegmentationModel::new(p, self)
    }

    /// Writes the spec as JSON (e.g. `model.json` beside the weights).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write the model spec {}", path.display()))
    }

    /// Reads and validates a spec written by [`SegmentationModelSpec::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the model spec {}", path.display()))?;
        let spec: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a segmentation model spec", path.display()))?;
        spec.validate()
            .with_context(|| format!("invalid model spec {}", path.display()))?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &SegmentationModelSpec) -> String {
        format!("{:#}", spec.validate().unwrap_err())
    }

    #[test]
    fn dedl_preset_is_valid_and_serialises_with_smp_names() {
        let spec = SegmentationModelSpec::dedl();
        spec.validate().unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"arch": "unet", "encoder": "resnet34", "depth": 3,
                "decoder_channels": [256, 128, 64], "attention": "scse", "in_channels": 1,
                "classes": 2})
        );
        let back: SegmentationModelSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, spec);
        let pp: SegmentationModelSpec = serde_json::from_str(
            r#"{"arch":"unetplusplus","encoder":"timm-efficientnet-b2","depth":4,
                "decoder_channels":[256,128,64,32],"attention":"none","in_channels":3,"classes":4}"#,
        )
        .unwrap();
        assert_eq!(pp.arch, Arch::UnetPlusPlus);
        pp.validate().unwrap();
        assert!(serde_json::from_str::<SegmentationModelSpec>(r#"{"arch":"fpn"}"#).is_err());
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("myoscope-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.json");
        let spec = SegmentationModelSpec {
            arch: Arch::UnetPlusPlus,
            ..SegmentationModelSpec::dedl()
        };
        spec.save(&path).unwrap();
        assert_eq!(SegmentationModelSpec::load(&path).unwrap(), spec);
        std::fs::write(&path, r#"{"arch":"unet","encoder":"resnet34","depth":7,"decoder_channels":[1],"attention":"scse","in_channels":1,"classes":2}"#).unwrap();
        let e = format!("{:#}", SegmentationModelSpec::load(&path).unwrap_err());
        assert!(e.contains("invalid model spec") && e.contains("3–5"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_bad_field_says_how_to_fix_it() {
        let ok = SegmentationModelSpec::dedl();
        let e = err(&SegmentationModelSpec {
            encoder: "vgg16".into(),
            ..ok.clone()
        });
        assert!(
            e.contains("unknown encoder 'vgg16'") && e.contains("resnet101"),
            "{e}"
        );
        let e = err(&SegmentationModelSpec {
            depth: 2,
            ..ok.clone()
        });
        assert!(e.contains("outside 3–5"), "{e}");
        let e = err(&SegmentationModelSpec {
            depth: 4,
            ..ok.clone()
        });
        assert!(
            e.contains("3 decoder channels given for encoder depth 4")
                && e.contains("[256, 128, 64, 32]"),
            "{e}"
        );
        let e = err(&SegmentationModelSpec {
            decoder_channels: vec![256, 128, 8],
            ..ok.clone()
        });
        assert!(
            e.contains("at least 16") && e.contains("attention none"),
            "{e}"
        );
        let small = SegmentationModelSpec {
            decoder_channels: vec![256, 128, 8],
            attention: Attention::None,
            ..ok.clone()
        };
        small.validate().unwrap();
        let e = err(&SegmentationModelSpec {
            decoder_channels: vec![256, 0, 64],
            ..ok.clone()
        });
        assert!(e.contains("positive"), "{e}");
        let e = err(&SegmentationModelSpec {
            classes: 1,
            ..ok.clone()
        });
        assert!(e.contains("at least 2"), "{e}");
        let e = err(&SegmentationModelSpec {
            in_channels: 0,
            ..ok.clone()
        });
        assert!(e.contains("in_channels must be at least 1"), "{e}");
        assert!("unet++".parse::<Arch>().unwrap() == Arch::UnetPlusPlus);
        assert!("linknet"
            .parse::<Arch>()
            .unwrap_err()
            .to_string()
            .contains("unetplusplus"));
        assert!("cbam"
            .parse::<Attention>()
            .unwrap_err()
            .to_string()
            .contains("scse"));
    }

    #[test]
    fn input_sizes_must_divide_by_two_to_the_depth() {
        let spec = SegmentationModelSpec::dedl();
        spec.check_input(480, 480).unwrap();
        spec.check_input(64, 1920).unwrap();
        let e = spec.check_input(100, 480).unwrap_err().to_string();
        assert!(
            e.contains("multiples of 8") && e.contains("height 100: use 96 or 104"),
            "{e}"
        );
        assert!(!e.contains("width 480"), "{e}");
        let e = spec.check_input(4, 90).unwrap_err().to_string();
        assert!(
            e.contains("height 4: use at least 8") && e.contains("width 90: use 88 or 96"),
            "{e}"
        );
        let deep = SegmentationModelSpec {
            depth: 5,
            decoder_channels: SegmentationModelSpec::default_decoder_channels(5),
            ..spec
        };
        assert_eq!(deep.output_stride(), 32);
        deep.check_input(480, 1440).unwrap();
        let e = deep.check_input(1000, 480).unwrap_err().to_string();
        assert!(
            e.contains("multiples of 32") && e.contains("use 992 or 1024"),
            "{e}"
        );
    }
}
