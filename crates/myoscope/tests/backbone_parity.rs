//! myoscope's classification backbones against timm 1.0.29.
//!
//! `scripts/backbone_oracle.py` builds each timm model with a 5-class head, fills every
//! parameter and buffer from a formula and writes, per case, a checksum of timm's state-dict
//! names and shapes and the eval-mode final maps, pooled vector and logits on a formula input to
//! `tests/fixtures/backbones.json`. Here the registry builds the same architecture inside the
//! classifier the multi-label protocol trains (1×1 grid, 5 classes), which must have exactly
//! timm's names and shapes, is filled by the same formula (bit-identical float32 weights) and
//! must reproduce all three to 1e-4, relative to the largest value where values are large.
use myoscope::models::{build_backbone, AggregatedClassifier};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::{nn, Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-4;

#[derive(Deserialize)]
struct Fill {
    weight_multiplier: u64,
    tensor_offset: u64,
    input_offset: u64,
}

#[derive(Deserialize)]
struct Summary {
    shape: Vec<i64>,
    stride: usize,
    samples: Vec<f64>,
    sum: f64,
    abs_sum: f64,
    weighted_sum: f64,
}

#[derive(Deserialize)]
struct Case {
    arch: String,
    input_shape: Vec<i64>,
    gain: f64,
    bias_scale: f64,
    tensors: usize,
    names_sha256: String,
    features: Summary,
    pooled: Summary,
    logits: Vec<f64>,
}

#[derive(Deserialize)]
struct Fixture {
    classes: i64,
    fill: Fill,
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backbones.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/backbone_oracle.py)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// ((i · multiplier + offset) mod 2³²) / 2³² for i in 0..n, exactly as the oracle computes it.
fn hash_units(n: usize, multiplier: u64, offset: u64) -> impl Iterator<Item = f64> {
    let offset = offset % (1 << 32);
    (0..n as u64).map(move |i| ((i * multiplier + offset) % (1 << 32)) as f64 / 4_294_967_296.0)
}

/// The oracle's value formula for the k-th sorted parameter name.
fn fill_values(name: &str, k: usize, shape: &[i64], case: &Case, fill: &Fill) -> Vec<f32> {
    let n: i64 = shape.iter().product();
    let last = name.rsplit('.').next().unwrap_or(name);
    let fan_in = (n / shape.first().copied().unwrap_or(1).max(1)) as f64;
    hash_units(
        n as usize,
        fill.weight_multiplier,
        k as u64 * fill.tensor_offset,
    )
    .map(|u| {
        let v = match last {
            "running_mean" | "bias" => case.bias_scale * 0.2 * (u - 0.5),
            "running_var" => 0.5 + u,
            "weight" if shape.len() == 1 => 0.5 + 0.5 * u,
            "gamma" => 0.5 + 0.5 * u,
            "cls_token" | "pos_embed" | "relative_position_bias_table" => u - 0.5,
            _ => case.gain * (2.0 * u - 1.0) * (3.0 / fan_in).sqrt(),
        };
        v as f32
    })
    .collect()
}

/// Max |Δ| over the stored samples and the checksums, each against its tolerance (1e-4 times
/// the largest sampled value when that exceeds 1; the sums scale with √N); panics on a miss.
fn compare(what: &str, ours: &Tensor, theirs: &Summary) -> f64 {
    assert_eq!(ours.size(), theirs.shape, "{what}: shape");
    let flat = Vec::<f64>::try_from(ours.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    let samples: Vec<f64> = flat.iter().step_by(theirs.stride).copied().collect();
    assert_eq!(samples.len(), theirs.samples.len(), "{what}: samples");
    let scale = theirs.samples.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let tol = TOLERANCE * scale;
    let max_diff = samples
        .iter()
        .zip(&theirs.samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(max_diff <= tol, "{what}: max |Δ| {max_diff:e} > {tol:e}");
    let sum_tol = tol * (flat.len() as f64).sqrt();
    let sum: f64 = flat.iter().sum();
    let abs_sum: f64 = flat.iter().map(|v| v.abs()).sum();
    let weighted: f64 = flat
        .iter()
        .enumerate()
        .map(|(i, v)| v * (i % 97) as f64 / 97.0)
        .sum();
    for (name, a, b) in [
        ("sum", sum, theirs.sum),
        ("|sum|", abs_sum, theirs.abs_sum),
        ("weighted sum", weighted, theirs.weighted_sum),
    ] {
        assert!((a - b).abs() <= sum_tol, "{what}: {name} {a} vs {b}");
    }
    max_diff / scale
}

fn check(arch: &str, side: i64) {
    let fx = fixture();
    let case = fx
        .cases
        .iter()
        .find(|c| c.arch == arch && c.input_shape[2] == side)
        .unwrap_or_else(|| panic!("no fixture case {arch} at {side}²"));
    let vs = nn::VarStore::new(Device::Cpu);
    let trunk = build_backbone(arch, &vs.root(), 3).unwrap();
    let model = AggregatedClassifier::new(&vs.root(), trunk, 1, fx.classes);

    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let listing: String = vars
        .iter()
        .map(|(n, t)| {
            let dims: Vec<String> = t.size().iter().map(i64::to_string).collect();
            format!("{n} {}\n", dims.join(" "))
        })
        .collect();
    let digest = format!("{:x}", Sha256::digest(listing.as_bytes()));
    assert_eq!(vars.len(), case.tensors, "{arch}: tensor count");
    assert_eq!(
        digest, case.names_sha256,
        "{arch}: names/shapes differ from timm's:\n{listing}"
    );

    tch::no_grad(|| {
        for (k, (name, t)) in vars.iter().enumerate() {
            let values = fill_values(name, k, &t.size(), case, &fx.fill);
            t.shallow_clone()
                .copy_(&Tensor::from_slice(&values).view(t.size().as_slice()));
        }
    });
    let n_in: i64 = case.input_shape.iter().product();
    let input: Vec<f32> = hash_units(
        n_in as usize,
        fx.fill.weight_multiplier,
        fx.fill.input_offset,
    )
    .map(|u| (2.0 * u - 1.0) as f32)
    .collect();
    let xs = Tensor::from_slice(&input).view(case.input_shape.as_slice());
    let (maps, pooled) = tch::no_grad(|| model.patch_feature_maps_pooled(&xs, false));
    let logits = tch::no_grad(|| model.forward_t(&xs, false)).logits;

    let d_maps = compare(
        &format!("{arch} maps"),
        maps.last().unwrap(),
        &case.features,
    );
    let d_pooled = compare(&format!("{arch} pooled"), &pooled, &case.pooled);
    let logits = Vec::<f64>::try_from(logits.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    let scale = case.logits.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let d_logits = logits
        .iter()
        .zip(&case.logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / scale;
    eprintln!(
        "{arch:<32} {side}²: {} tensors; relative max |Δ| maps {d_maps:.1e}, pooled {d_pooled:.1e}, \
         logits {d_logits:.1e}",
        vars.len()
    );
    assert!(
        d_logits <= TOLERANCE,
        "{arch}: logits {logits:?} vs {:?}",
        case.logits
    );
}

#[test]
fn resnet101_matches_timm() {
    check("resnet101", 64);
}

#[test]
fn efficientnet_b0_to_b7_match_timm() {
    for b in 0..8 {
        check(&format!("efficientnet_b{b}"), 64);
    }
}

#[test]
fn convnext_matches_timm() {
    for arch in ["convnext_tiny", "convnext_small", "convnext_base"] {
        check(arch, 64);
    }
}

#[test]
fn vit_b16_with_resampled_position_embedding_matches_timm() {
    check("vit_base_patch16_224", 64);
}

#[test]
fn vit_b32_native_and_resampled_match_timm() {
    check("vit_base_patch32_224", 224);
    check("vit_base_patch32_224", 96);
}

#[test]
fn swin_tiny_matches_timm_with_and_without_padding() {
    check("swin_tiny_patch4_window7_224", 224);
    check("swin_tiny_patch4_window7_224", 256);
}

#[test]
fn swin_base_window7_matches_timm() {
    check("swin_base_patch4_window7_224", 224);
}

#[test]
fn swin_base_window12_matches_timm() {
    check("swin_base_patch4_window12_384", 384);
}
