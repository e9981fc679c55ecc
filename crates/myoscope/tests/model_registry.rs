//! Every architecture of the registry (`myoscope models`) as the multi-label protocol uses it:
//! a 1×1-grid classifier with one logit per class. For each: the output and feature shapes, one
//! gradient step that changes the weights and keeps them finite, and a save → load round trip
//! that gives the same outputs. At 32² with a batch of two so that even the ~90M-parameter
//! trunks take a few seconds; numerical correctness against the references is the job of the
//! parity tests (`backbone_parity.rs`, `weights_parity.rs`).
mod common;

use myoscope::config::ModelConfig;
use myoscope::explain::gradcam::{
    heat_maps_at_layer, heat_maps_by_autograd, heat_maps_from_maps, CamMethod,
};
use myoscope::models::ARCHITECTURES;
use myoscope::training::checkpoint::{save_tensors, sorted_variables};
use myoscope::training::{LoadedModel, ModelSpec};
use std::time::Instant;
use tch::nn;
use tch::{Device, Kind, Tensor};

const SIDE: i64 = 32;
const CLASSES: usize = 3;

fn spec(arch: &str) -> ModelSpec {
    ModelSpec {
        model: ModelConfig {
            arch: arch.into(),
            grid: 1,
            input_size: SIDE,
            patch_loss_weight: 0.0,
            in_channels: 3,
            ..Default::default()
        },
        classes: (0..CLASSES).map(|c| format!("class{c}")).collect(),
    }
}

fn all_finite(vs: &nn::VarStore) -> bool {
    vs.trainable_variables()
        .iter()
        .all(|t| t.isfinite().all().int64_value(&[]) == 1)
}

fn check(arch: &str, dir: &std::path::Path) {
    let started = Instant::now();
    tch::manual_seed(0);
    let spec = spec(arch);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = spec.build(&vs).unwrap();
    let xs = Tensor::rand([2, 3, SIDE, SIDE], (Kind::Float, Device::Cpu));
    let targets = Tensor::from_slice(&[1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0]).view([2, 3]);

    // Shapes: logits per class; the trunk's maps have the channels it reports.
    let out = net.forward_t(&xs, true);
    assert_eq!(out.logits.size(), [2, CLASSES as i64], "{arch}");
    let maps = net.patch_maps(&xs, false);
    assert_eq!(maps.size()[0], 2, "{arch}");
    assert_eq!(maps.dim(), 4, "{arch}");

    // One gradient step on the multi-label loss: every trainable tensor that received a gradient
    // moves, and nothing becomes NaN or infinite. (Checksums, not copies, of the weights before:
    // copying 90M parameters costs more than the step.)
    let checksum = |t: &Tensor| {
        let t = t.to_kind(Kind::Double);
        (
            t.sum(Kind::Double).double_value(&[]),
            t.abs().sum(Kind::Double).double_value(&[]),
            (&t * &t).sum(Kind::Double).double_value(&[]),
        )
    };
    let before: Vec<(f64, f64, f64)> = vs.trainable_variables().iter().map(checksum).collect();
    let loss = out.logits.binary_cross_entropy_with_logits::<Tensor>(
        &targets,
        None,
        None,
        tch::Reduction::Mean,
    );
    let first_loss = loss.double_value(&[]);
    assert!(first_loss.is_finite(), "{arch}: loss {first_loss}");
    loss.backward();
    let with_grad: Vec<bool> = vs
        .trainable_variables()
        .iter()
        .map(|t| t.grad().defined() && t.grad().abs().max().double_value(&[]) > 0.0)
        .collect();
    // A sign-gradient step: bounded like Adam's first step, without its 2×90M moments.
    tch::no_grad(|| {
        for mut t in vs.trainable_variables() {
            let g = t.grad();
            if g.defined() {
                let _ = t.f_sub_(&(g.sign() * 1e-4)).unwrap();
            }
        }
    });
    let moved = vs
        .trainable_variables()
        .iter()
        .zip(&before)
        .zip(&with_grad)
        .filter(|((now, then), &g)| g && checksum(now) != **then)
        .count();
    let graded = with_grad.iter().filter(|&&g| g).count();
    assert!(
        graded * 10 >= with_grad.len() * 9,
        "{arch}: only {graded} of {} tensors got a gradient",
        with_grad.len()
    );
    assert!(
        moved * 100 >= graded * 99,
        "{arch}: only {moved} of {graded} tensors with a gradient moved"
    );
    assert!(all_finite(&vs), "{arch}: non-finite weights after one step");
    let second_loss = net
        .forward_t(&xs, true)
        .logits
        .binary_cross_entropy_with_logits::<Tensor>(&targets, None, None, tch::Reduction::Mean)
        .double_value(&[]);
    assert!(second_loss.is_finite(), "{arch}");

    // Grad-CAM at the default layer and at one in the middle of the trunk: the score is
    // differentiable there and the maps are finite, one per image.
    let names = net.layer_names();
    for layer in [net.default_cam_layer(), names[names.len() / 2].clone()] {
        let heat = heat_maps_at_layer(&net, &xs, &[0, 1], CamMethod::Plain, &layer).unwrap();
        assert_eq!(heat.size()[0], 2, "{arch} {layer}");
        assert!(
            heat.isfinite().all().int64_value(&[]) == 1,
            "{arch} {layer}: {heat}"
        );
    }

    // The closed-form gradients at the last maps (or, for a head that does not read a plain
    // mean, the autograd fallback) give what autograd gives through this family's heads.
    if net.pools_maps() {
        let maps = tch::no_grad(|| net.patch_maps(&xs, false));
        // Patch-weighted needs a patch grid; these classifiers have grid 1.
        let methods: &[CamMethod] = if net.grid() > 1 {
            &[CamMethod::Plain, CamMethod::PatchWeighted]
        } else {
            &[CamMethod::Plain]
        };
        for &method in methods {
            let fast = heat_maps_from_maps(&net, &maps, &[0, 1], method).unwrap();
            let slow = heat_maps_by_autograd(&net, &maps, &[0, 1], method).unwrap();
            let scale = slow.abs().max().double_value(&[]).max(1e-12);
            let diff = (&fast - &slow).abs().max().double_value(&[]);
            assert!(
                diff <= 1e-5 * scale,
                "{arch} {method:?}: {diff:e} of {scale:e}"
            );
        }
    }

    // Save → load: the loaded model gives the same evaluation outputs, bit for bit.
    let weights = dir.join(format!("{arch}.safetensors"));
    save_tensors(&weights, &sorted_variables(&vs)).unwrap();
    let loaded = LoadedModel::from_parts(spec, &weights, Device::Cpu).unwrap();
    let want = tch::no_grad(|| net.forward_t(&xs, false).logits);
    let got = tch::no_grad(|| loaded.net.forward_t(&xs, false).logits);
    assert!(
        want.isfinite().all().int64_value(&[]) == 1,
        "{arch}: {want}"
    );
    assert!(got.equal(&want), "{arch}: {got} vs {want}");
    std::fs::remove_file(&weights).unwrap();
    eprintln!(
        "{arch:<32} {:>11} parameters, loss {first_loss:.4} → {second_loss:.4}, {:.1}s",
        vs.trainable_variables()
            .iter()
            .map(Tensor::numel)
            .sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
}

fn check_family(tag: &str, keep: impl Fn(&str) -> bool) -> usize {
    let dir = common::scratch(&format!("model-registry-{tag}"));
    let mut checked = 0;
    for (arch, _) in ARCHITECTURES.iter().filter(|(a, _)| keep(a)) {
        check(arch, &dir);
        checked += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    checked
}

fn is_transformer(arch: &str) -> bool {
    arch.starts_with("vit_") || arch.starts_with("swin_")
}

fn is_big_cnn(arch: &str) -> bool {
    arch.starts_with("convnext_") || arch.starts_with("efficientnet_b") || arch == "resnet101"
}

// Split in three so the test harness's two threads share the ~30 architectures.
#[test]
fn every_transformer_trains_saves_and_loads() {
    assert!(check_family("transformers", is_transformer) >= 5);
}

#[test]
fn every_large_cnn_trains_saves_and_loads() {
    assert!(check_family("large-cnn", is_big_cnn) >= 12);
}

#[test]
fn every_other_architecture_trains_saves_and_loads() {
    let n = check_family("other", |a| !is_transformer(a) && !is_big_cnn(a));
    // Together the three tests cover the whole registry.
    let covered = ARCHITECTURES
        .iter()
        .filter(|(a, _)| is_transformer(a) || is_big_cnn(a))
        .count();
    assert_eq!(n + covered, ARCHITECTURES.len());
}

/// An input too small for the trunk is a clear error before any tensor is made, not a libtorch
/// failure in the forward pass.
#[test]
fn too_small_inputs_are_refused_with_the_minimum() {
    for (arch, side, min) in [
        ("vit_base_patch32_224", 16, "32²"),
        ("convnext_tiny", 16, "32²"),
    ] {
        let mut s = spec(arch);
        s.model.input_size = side;
        let vs = nn::VarStore::new(Device::Cpu);
        let err = s.build(&vs).unwrap_err().to_string();
        assert!(
            err.contains(min) && err.contains("raise the input size"),
            "{err}"
        );
    }
    let mut s = spec("vit_base_patch16_224");
    s.model.input_size = 16;
    assert!(s.build(&nn::VarStore::new(Device::Cpu)).is_ok());
}
