//! myoscope's UNet / UNet++ against segmentation_models_pytorch 0.6.0.
//!
//! `scripts/smp_oracle.py` builds each smp model, fills every parameter and buffer from a formula
//! and writes its parameter names and shapes and its eval-mode logits on a formula input to
//! `tests/fixtures/smp_*.json`. Here the same model is built from its spec, must have exactly
//! smp's names and shapes, is filled by the same formula (bit-identical float32 weights) and must
//! give the same logits to 1e-4.
use myoscope::segmentation::models::{Arch, Attention, SegmentationModelSpec};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-4;

#[derive(Deserialize)]
struct Fill {
    gain: f64,
    weight_multiplier: u64,
    tensor_offset: u64,
    input_offset: u64,
}

#[derive(Deserialize)]
struct Fixture {
    variant: String,
    model: SegmentationModelSpec,
    fill: Fill,
    input_shape: Vec<i64>,
    parameters: Vec<(String, Vec<i64>)>,
    output_shape: Vec<i64>,
    output_stride: usize,
    output_samples: Vec<f64>,
    output_sum: f64,
    output_abs_sum: f64,
    output_weighted_sum: f64,
    output_min: f64,
    output_max: f64,
}

fn fixture(variant: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("smp_{variant}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/smp_oracle.py)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// ((i · multiplier + offset) mod 2³²) / 2³² for i in 0..n, exactly as the oracle computes it.
fn hash_units(n: usize, multiplier: u64, offset: u64) -> impl Iterator<Item = f64> {
    let offset = offset % (1 << 32);
    (0..n as u64).map(move |i| ((i * multiplier + offset) % (1 << 32)) as f64 / 4_294_967_296.0)
}

/// The oracle's value formula for the k-th sorted parameter name.
fn fill_values(
    name: &str,
    k: usize,
    shape: &[i64],
    names: &BTreeSet<&str>,
    fill: &Fill,
) -> Vec<f32> {
    let n: i64 = shape.iter().product();
    let units = hash_units(
        n as usize,
        fill.weight_multiplier,
        k as u64 * fill.tensor_offset,
    );
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let is_bn_weight =
        name.ends_with(".weight") && names.contains(format!("{stem}.running_mean").as_str());
    let fan_in = (n / shape[0].max(1)) as f64;
    units
        .map(|u| {
            let v = if name.ends_with(".running_mean") || name.ends_with(".bias") {
                0.2 * (u - 0.5)
            } else if name.ends_with(".running_var") {
                0.5 + u
            } else if is_bn_weight {
                0.5 + 0.5 * u
            } else {
                fill.gain * (2.0 * u - 1.0) * (3.0 / fan_in).sqrt()
            };
            v as f32
        })
        .collect()
}

/// Builds the fixture's model, checks its names and shapes against smp's, fills it and returns
/// the max |Δ| over the stored output samples.
fn check_variant(variant: &str) -> f64 {
    let fx = fixture(variant);
    assert_eq!(fx.variant, variant);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = fx.model.build(&vs.root()).unwrap();

    let ours: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let theirs: BTreeMap<&str, &[i64]> = fx
        .parameters
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let missing: Vec<&&str> = theirs.keys().filter(|n| !ours.contains_key(**n)).collect();
    let extra: Vec<&String> = ours
        .keys()
        .filter(|n| !theirs.contains_key(n.as_str()))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{variant}: names differ from smp's; missing {missing:?}, extra {extra:?}"
    );
    for (name, shape) in &theirs {
        assert_eq!(ours[*name].size(), *shape, "{variant}: shape of {name}");
    }

    let names: BTreeSet<&str> = theirs.keys().copied().collect();
    tch::no_grad(|| {
        for (k, (name, shape)) in theirs.iter().enumerate() {
            let values = fill_values(name, k, shape, &names, &fx.fill);
            ours[*name]
                .shallow_clone()
                .copy_(&Tensor::from_slice(&values).view(*shape));
        }
    });

    let n_in: i64 = fx.input_shape.iter().product();
    let input: Vec<f32> = hash_units(
        n_in as usize,
        fx.fill.weight_multiplier,
        fx.fill.input_offset,
    )
    .map(|u| (2.0 * u - 1.0) as f32)
    .collect();
    let xs = Tensor::from_slice(&input).view(fx.input_shape.as_slice());
    let ys = tch::no_grad(|| model.try_forward_t(&xs, false)).unwrap();
    assert_eq!(ys.size(), fx.output_shape, "{variant}");

    let flat: Vec<f64> = Vec::<f64>::try_from(ys.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    let samples: Vec<f64> = flat.iter().step_by(fx.output_stride).copied().collect();
    assert_eq!(samples.len(), fx.output_samples.len(), "{variant}");
    let max_diff = samples
        .iter()
        .zip(&fx.output_samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    // Checksums over every value: float32 noise of ~1e-6 per value adds up to ~1e-6 √N, so
    // 1e-4 √N only fails on a real difference somewhere in the map.
    let sum_tol = TOLERANCE * (flat.len() as f64).sqrt();
    let sum: f64 = flat.iter().sum();
    let abs_sum: f64 = flat.iter().map(|v| v.abs()).sum();
    let weighted: f64 = flat
        .iter()
        .enumerate()
        .map(|(i, v)| v * (i % 97) as f64 / 97.0)
        .sum();
    let min = flat.iter().copied().fold(f64::INFINITY, f64::min);
    let max = flat.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    eprintln!(
        "{variant:<40} {} tensors, max |Δ| {max_diff:.2e} over {} samples, Δsum {:.1e}, \
         Δ|sum| {:.1e}, Δweighted {:.1e}, range [{min:.3}, {max:.3}]",
        theirs.len(),
        samples.len(),
        (sum - fx.output_sum).abs(),
        (abs_sum - fx.output_abs_sum).abs(),
        (weighted - fx.output_weighted_sum).abs(),
    );
    assert!(max_diff <= TOLERANCE, "{variant}: max |Δ| {max_diff:e}");
    assert!(
        (sum - fx.output_sum).abs() <= sum_tol,
        "{variant}: sum {sum} vs {}",
        fx.output_sum
    );
    assert!(
        (abs_sum - fx.output_abs_sum).abs() <= sum_tol,
        "{variant}: |sum| {abs_sum} vs {}",
        fx.output_abs_sum
    );
    assert!(
        (weighted - fx.output_weighted_sum).abs() <= sum_tol,
        "{variant}: weighted sum {weighted} vs {}",
        fx.output_weighted_sum
    );
    assert!((min - fx.output_min).abs() <= TOLERANCE && (max - fx.output_max).abs() <= TOLERANCE);
    max_diff
}

#[test]
fn unet_resnet34_scse_matches_smp() {
    check_variant("unet_resnet34");
}

#[test]
fn unetplusplus_resnet34_scse_matches_smp() {
    check_variant("unetplusplus_resnet34");
}

#[test]
fn unet_resnet50_matches_smp() {
    check_variant("unet_resnet50");
}

#[test]
fn unet_resnet18_depth5_without_attention_matches_smp() {
    check_variant("unet_resnet18_depth5");
}

#[test]
fn unet_efficientnet_b0_matches_smp() {
    check_variant("unet_efficientnet_b0");
}

#[test]
fn unetplusplus_efficientnet_b3_depth4_matches_smp() {
    check_variant("unetplusplus_efficientnet_b3_depth4");
}

#[test]
fn unet_tf_efficientnet_lite0_matches_smp_with_tf_padding() {
    check_variant("unet_tf_efficientnet_lite0");
}

fn spec(
    arch: Arch,
    encoder: &str,
    depth: usize,
    in_channels: i64,
    classes: i64,
) -> SegmentationModelSpec {
    SegmentationModelSpec {
        arch,
        encoder: encoder.into(),
        depth,
        decoder_channels: SegmentationModelSpec::default_decoder_channels(depth),
        attention: Attention::Scse,
        in_channels,
        classes,
    }
}

#[test]
fn logits_have_the_input_size_for_every_encoder_family_and_depth() {
    let cases = [
        spec(Arch::Unet, "resnet18", 3, 1, 2),
        spec(Arch::UnetPlusPlus, "resnet50", 4, 3, 3),
        spec(Arch::Unet, "resnet101", 5, 4, 2),
        spec(Arch::Unet, "timm-efficientnet-b1", 5, 2, 2),
        spec(Arch::UnetPlusPlus, "timm-efficientnet-b0", 3, 1, 2),
        spec(Arch::UnetPlusPlus, "tf_efficientnet_lite0", 5, 1, 5),
    ];
    for s in cases {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = s.build(&vs.root()).unwrap();
        let xs = Tensor::randn([2, s.in_channels, 64, 96], (Kind::Float, Device::Cpu));
        let ys = tch::no_grad(|| model.try_forward_t(&xs, false)).unwrap();
        assert_eq!(ys.size(), [2, s.classes, 64, 96], "{s:?}");
    }
}

#[test]
fn bad_batches_are_refused_with_a_fix() {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SegmentationModelSpec::dedl().build(&vs.root()).unwrap();
    let first = model.first_conv_weight_name();
    assert_eq!(vs.variables()[&first].size(), [64, 1, 7, 7], "{first}");
    let rgb = Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu));
    let e = model.try_forward_t(&rgb, false).unwrap_err().to_string();
    assert!(
        e.contains("1 input channel(s)") && e.contains("has 3"),
        "{e}"
    );
    let odd = Tensor::zeros([1, 1, 60, 64], (Kind::Float, Device::Cpu));
    let e = model.try_forward_t(&odd, false).unwrap_err().to_string();
    assert!(e.contains("height 60: use 56 or 64"), "{e}");
    let flat = Tensor::zeros([1, 64, 64], (Kind::Float, Device::Cpu));
    assert!(model.try_forward_t(&flat, false).is_err());
    let bad = SegmentationModelSpec {
        classes: 1,
        ..SegmentationModelSpec::dedl()
    };
    assert!(bad.build(&(vs.root() / "other")).is_err());
}

/// One optimiser step in training mode reaches every part of the network and lowers the loss.
#[test]
fn trains_end_to_end() {
    for arch in [Arch::Unet, Arch::UnetPlusPlus] {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let s = SegmentationModelSpec {
            arch,
            ..SegmentationModelSpec::dedl()
        };
        let model = s.build(&vs.root()).unwrap();
        let xs = Tensor::randn([2, 1, 32, 32], (Kind::Float, Device::Cpu));
        // A learnable target: nucleus where the input is bright.
        let target = xs.gt(0.5).to_kind(Kind::Int64).view([-1]);
        // Per-pixel cross-entropy: pixels as rows, classes as columns.
        let loss_of = |train: bool| {
            model
                .forward_t(&xs, train)
                .permute([0, 2, 3, 1])
                .reshape([-1, 2])
                .cross_entropy_for_logits(&target)
        };
        let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
        let loss = loss_of(true);
        opt.zero_grad();
        loss.backward();
        let vars = vs.variables();
        let head = if arch == Arch::Unet {
            "decoder.blocks.0"
        } else {
            "decoder.blocks.x_0_0"
        };
        for name in [
            "encoder.conv1.weight".to_string(),
            "encoder.layer2.0.conv1.weight".into(),
            format!("{head}.attention1.attention.cSE.1.weight"),
            format!("{head}.attention2.attention.sSE.0.weight"),
            "segmentation_head.0.weight".into(),
        ] {
            let g = vars[&name].grad();
            assert!(
                g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
                "{arch:?} {name}"
            );
        }
        // Depth 3 does not use layer3/layer4 (smp keeps them only so checkpoints load).
        let unused = vars["encoder.layer4.0.conv1.weight"].grad();
        assert!(!unused.defined() || unused.abs().sum(Kind::Float).double_value(&[]) == 0.0);
        let before = loss.double_value(&[]);
        let running = vars[&format!("{head}.conv1.1.running_mean")]
            .abs()
            .sum(Kind::Float);
        assert!(
            running.double_value(&[]) > 0.0,
            "{arch:?}: decoder BN statistics did not move"
        );
        for _ in 0..3 {
            opt.backward_step(&loss_of(true));
        }
        let after = loss_of(true).double_value(&[]);
        assert!(after < before, "{arch:?}: loss {before} → {after}");
    }
}
