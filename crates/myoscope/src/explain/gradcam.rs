//! Grad-CAM on the aggregated classifier, plain and Kabeya et al.'s patch-weighted variant.
//!
//! Both differentiate with respect to the trunk's last feature maps A (one h×w map per patch;
//! 5×5 for DenseNet-121 on 160² patches), treated as leaves so autograd only runs through the
//! heads. The maps are stitched in patch order into the mosaic the heads see (20×20 for 4×4).
//!
//! - **Plain** (Selvaraju et al.): α = spatial mean over the whole mosaic of ∂y^c/∂A, where
//!   y^c is the image's class score (pre-softmax); map = ReLU(Σ_channels α·A).
//! - **Patch-weighted** (Kabeya et al.): for patch k, the gradient is
//!   (y_k^c / Σ_i y_i^c) · ∂y_k^c/∂A_k, with y_k^c patch k's confidence — its softmax
//!   probability for class c, so the weights are positive and sum to one. Each patch gets its own
//!   channel weights from its own gradient (the spatial mean over its h×w map) and its own
//!   map ReLU(Σ α_k·A_k); a patch that barely supports class c contributes little heat.
//!
//! At the trunk's last maps neither gradient needs a backward pass: both heads are a spatial
//! mean followed by a linear layer (and, for the patch head, a softmax), so the gradient is the
//! same at every position of a map. With W the head's weight [K, C] and h×w the map:
//! - plain: ∂y^c/∂A = W_c / (g²·h·w);
//! - patch-weighted: ∂y_k^c/∂A_k = (1/(h·w)) · y_k^c · (W_c − Σ_j y_k^j W_j).
//!
//! [`heat_maps_from_maps`] (and everything built on it) uses these closed forms; the autograd
//! route stays for earlier layers ([`heat_maps_at_layer`]) and as the reference the closed form
//! is tested against ([`heat_maps_by_autograd`]).
use crate::models::AggregatedClassifier;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CamMethod {
    /// Grad-CAM on the image's class score over the whole mosaic.
    Plain,
    /// Kabeya et al.'s patch-weighted gradients.
    PatchWeighted,
}

impl CamMethod {
    pub fn name(self) -> &'static str {
        match self {
            CamMethod::Plain => "plain",
            CamMethod::PatchWeighted => "patch-weighted",
        }
    }
}

/// Heat-maps [B, g·h, g·w] (non-negative, unnormalised) for class `classes[b]` of image b.
/// `images` is a normalised batch [B, C, S, S] on the model's device.
pub fn heat_maps(
    model: &AggregatedClassifier,
    images: &Tensor,
    classes: &[i64],
    method: CamMethod,
) -> Result<Tensor> {
    if !model.pools_maps() {
        // ViT: the class token does not read the final patch tokens; the trunk names the layer.
        let layer = model.default_cam_layer();
        return heat_maps_at_layer(model, images, classes, method, &layer);
    }
    let maps = tch::no_grad(|| model.patch_maps(images, false));
    heat_maps_from_maps(model, &maps, classes, method)
}

/// The same from the trunk's patch maps [B·g², C, h, w], by the closed-form gradients (see the
/// module documentation): no backward pass, so a forward pass's maps can give the probabilities
/// and the heat-maps at once. This is what the PyTorch oracle checks. Trunks whose heads do
/// not read a plain mean (ConvNeXt) go through autograd instead.
pub fn heat_maps_from_maps(
    model: &AggregatedClassifier,
    patch_maps: &Tensor,
    classes: &[i64],
    method: CamMethod,
) -> Result<Tensor> {
    if !model.pools_by_average() {
        // A normalised mean (ConvNeXt's head norm) has no position-independent gradient.
        return heat_maps_by_autograd(model, patch_maps, classes, method);
    }
    let maps = patch_maps.detach();
    let out = tch::no_grad(|| model.head_forward(&maps));
    let index = class_index(model, &out, classes)?;
    let (n, c, h, w) = maps.size4()?;
    tch::no_grad(|| match method {
        CamMethod::Plain => {
            let g2 = model.grid() * model.grid();
            let alpha = model
                .head_weight()
                .to_kind(Kind::Float)
                .index_select(0, &index)
                / (g2 * h * w) as f64;
            let b = alpha.size()[0];
            let mosaic = model.stitch_mosaic(&maps);
            Ok((alpha.view([b, c, 1, 1]) * mosaic)
                .sum_dim_intlist(&[1i64][..], false, Kind::Float)
                .relu())
        }
        CamMethod::PatchWeighted => {
            let (Some(patch_logits), Some(weight)) = (&out.patch_logits, model.patch_head_weight())
            else {
                bail!("patch-weighted Grad-CAM needs a patch grid (this model has grid 1); use the plain method");
            };
            let (conf, share) = patch_confidence(model, patch_logits, &index);
            let probs = patch_logits.softmax(-1, Kind::Float); // [B, g², K]
            let weight = weight.to_kind(Kind::Float);
            let own = weight.index_select(0, &index).unsqueeze(1); // [B, 1, C]
            let expected = probs.matmul(&weight); // [B, g², C]: Σ_j y_k^j W_j
            let grad = (own - expected) * conf.unsqueeze(-1) / (h * w) as f64;
            let alpha = (grad * share.unsqueeze(-1)).view([n, c, 1, 1]);
            let per_patch = (alpha * maps.to_kind(Kind::Float))
                .sum_dim_intlist(&[1i64][..], true, Kind::Float)
                .relu();
            Ok(model.stitch_mosaic(&per_patch).squeeze_dim(1))
        }
    })
}

/// [`heat_maps_from_maps`] through libtorch's autograd: the heads are differentiated with the
/// maps as leaves. The reference for the closed form; kept public so anyone can compare.
pub fn heat_maps_by_autograd(
    model: &AggregatedClassifier,
    patch_maps: &Tensor,
    classes: &[i64],
    method: CamMethod,
) -> Result<Tensor> {
    let maps = patch_maps.detach().set_requires_grad(true);
    let out = model.head_forward(&maps);
    let (target, share) = target_of(model, &out, classes, method)?;
    let grads = Tensor::run_backward(&[target], &[&maps], false, false);
    Ok(cam(model, &maps.detach(), &grads[0], share.as_ref()))
}

/// Heat-maps at a named trunk layer (`explain --layer`; [`AggregatedClassifier::layer_names`]
/// lists them). The score is differentiated back through the rest of the trunk to that
/// layer's patch maps; the last layer gives what [`heat_maps`] gives.
pub fn heat_maps_at_layer(
    model: &AggregatedClassifier,
    images: &Tensor,
    classes: &[i64],
    method: CamMethod,
    layer: &str,
) -> Result<Tensor> {
    let names = model.layer_names();
    let Some(index) = names.iter().position(|n| n == layer) else {
        bail!(
            "the trunk has no layer '{layer}'; its layers are: {}",
            names.join(", ")
        );
    };
    if index + 1 == names.len() {
        if model.pools_maps() {
            return heat_maps(model, images, classes, method);
        }
        bail!(
            "the classifier reads the class token, not the trunk's last layer '{layer}', so its \
             gradient there is zero; use an earlier layer such as {}",
            model.default_cam_layer()
        );
    }
    // Parameters are frozen for inference, so the input carries the graph.
    let input = images.detach().set_requires_grad(true);
    let (maps, pooled) = model.patch_feature_maps_pooled(&input, false);
    let (Some(a), Some(last)) = (maps.get(index), maps.last()) else {
        bail!(
            "the trunk returned {} maps for {} layer names",
            maps.len(),
            names.len()
        );
    };
    let out = model.head_forward_pooled(last, &pooled);
    let (target, share) = target_of(model, &out, classes, method)?;
    let grads = Tensor::run_backward(&[target], &[a], false, false);
    Ok(cam(model, &a.detach(), &grads[0], share.as_ref()))
}

/// The scalar whose gradient is taken, and for the patch-weighted method each patch's share
/// of the class confidence [B, g²] (a constant: the paper weights the gradient by it).
fn target_of(
    model: &AggregatedClassifier,
    out: &crate::models::AggregatedOutput,
    classes: &[i64],
    method: CamMethod,
) -> Result<(Tensor, Option<Tensor>)> {
    let index = class_index(model, out, classes)?;
    match method {
        CamMethod::Plain => {
            let score = out
                .logits
                .gather(1, &index.unsqueeze(1), false)
                .sum(Kind::Float);
            Ok((score, None))
        }
        CamMethod::PatchWeighted => {
            let Some(patch_logits) = &out.patch_logits else {
                bail!("patch-weighted Grad-CAM needs a patch grid (this model has grid 1); use the plain method");
            };
            let (conf, share) = patch_confidence(model, patch_logits, &index);
            // Patch k's confidence depends only on its own maps, so one backward pass of the
            // sum yields every ∂y_k/∂A_k at once.
            Ok((conf.sum(Kind::Float), Some(share)))
        }
    }
}

/// The requested classes as an index tensor, after checking there is one per image and each
/// is one of the model's.
fn class_index(
    model: &AggregatedClassifier,
    out: &crate::models::AggregatedOutput,
    classes: &[i64],
) -> Result<Tensor> {
    let b = out.logits.size()[0];
    if classes.len() as i64 != b {
        bail!("{} classes for {b} images", classes.len());
    }
    if let Some(&c) = classes.iter().find(|&&c| c < 0 || c >= model.num_classes()) {
        bail!(
            "class index {c} is outside the model's {} classes",
            model.num_classes()
        );
    }
    Ok(Tensor::from_slice(classes).to_device(out.logits.device()))
}

/// Each patch's confidence y_k^c [B, g²] (still attached to the graph) and its share of the
/// image's total, y_k^c / Σ_i y_i^c (detached: the paper weights the gradient by it).
fn patch_confidence(
    model: &AggregatedClassifier,
    patch_logits: &Tensor,
    index: &Tensor,
) -> (Tensor, Tensor) {
    let b = patch_logits.size()[0];
    let g2 = model.grid() * model.grid();
    let probs = patch_logits.softmax(-1, Kind::Float);
    let per_class = index.view([b, 1, 1]).expand([b, g2, 1], false);
    let conf = probs.gather(2, &per_class, false).squeeze_dim(2);
    let share = (&conf / conf.sum_dim_intlist(&[1i64][..], true, Kind::Float)).detach();
    (conf, share)
}

/// Channel weights from the gradients, weighted maps, ReLU, stitched: [B, g·h, g·w].
fn cam(model: &AggregatedClassifier, a: &Tensor, grads: &Tensor, share: Option<&Tensor>) -> Tensor {
    match share {
        None => {
            let a = model.stitch_mosaic(a);
            let g = model.stitch_mosaic(grads);
            let alpha = g.mean_dim(&[2i64, 3][..], true, Kind::Float);
            (alpha * a)
                .sum_dim_intlist(&[1i64][..], false, Kind::Float)
                .relu()
        }
        Some(share) => {
            let n = a.size()[0];
            let alpha =
                grads.mean_dim(&[2i64, 3][..], true, Kind::Float) * share.view([n, 1, 1, 1]);
            let per_patch = (alpha * a)
                .sum_dim_intlist(&[1i64][..], true, Kind::Float)
                .relu();
            model.stitch_mosaic(&per_patch).squeeze_dim(1)
        }
    }
}

/// Mean of several models' maps for the same images, each first scaled to a maximum of 1 per
/// image so that no fold model dominates through the scale of its activations.
pub fn ensemble_mean(maps: &[Tensor]) -> Result<Tensor> {
    let Some(first) = maps.first() else {
        bail!("no heat-maps to average");
    };
    let mut sum = Tensor::zeros_like(first);
    for m in maps {
        sum += scaled_to_unit_max(m);
    }
    Ok(sum / maps.len() as f64)
}

/// Each map [B, H, W] divided by its maximum (maps that are all zero stay zero).
pub fn scaled_to_unit_max(maps: &Tensor) -> Tensor {
    let b = maps.size()[0];
    let max = maps
        .view([b, -1])
        .amax(&[1i64][..], false)
        .clamp_min(1e-12)
        .view([b, 1, 1]);
    maps / max
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::build_backbone;
    use tch::{nn, Device};

    fn model(grid: i64) -> (nn::VarStore, AggregatedClassifier) {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let trunk = build_backbone("densenet-tiny", &vs.root(), 3).unwrap();
        let m = AggregatedClassifier::new(&vs.root(), trunk, grid, 3);
        (vs, m)
    }

    #[test]
    fn maps_cover_the_mosaic_and_are_non_negative() {
        let (_vs, m) = model(4);
        let xs = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        for method in [CamMethod::Plain, CamMethod::PatchWeighted] {
            let h = heat_maps(&m, &xs, &[0, 2], method).unwrap();
            assert_eq!(h.size(), [2, 8, 8], "{method:?}");
            assert!(h.min().double_value(&[]) >= 0.0);
            assert!(h.max().double_value(&[]) > 0.0, "{method:?} is all zero");
        }
    }

    /// The single summed backward pass gives what one backward pass per patch gives: patch k's
    /// map is ReLU(Σ_ch share_k · mean(∂y_k/∂A_k) · A_k), assembled here patch by patch.
    #[test]
    fn patch_weighted_equals_per_patch_gradients() {
        let (_vs, m) = model(2);
        let xs = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        let class = 1i64;
        let got = heat_maps(&m, &xs, &[class], CamMethod::PatchWeighted).unwrap();

        let maps = tch::no_grad(|| m.patch_maps(&xs, false));
        let conf_of = |a: &Tensor| {
            m.head_forward(a)
                .patch_logits
                .unwrap()
                .softmax(-1, Kind::Float)
                .select(2, class)
                .squeeze_dim(0)
        };
        let conf = tch::no_grad(|| conf_of(&maps));
        let total = conf.sum(Kind::Float).double_value(&[]);
        let mut per_patch = Vec::new();
        for k in 0..4 {
            let a = maps.detach().set_requires_grad(true);
            let y = conf_of(&a).get(k);
            let g = Tensor::run_backward(&[y], &[&a], false, false);
            let share = conf.double_value(&[k]) / total;
            let alpha = g[0].get(k).mean_dim(&[1i64, 2][..], true, Kind::Float) * share;
            per_patch.push(
                (alpha * maps.get(k))
                    .sum_dim_intlist(&[0i64][..], true, Kind::Float)
                    .relu(),
            );
        }
        let want = m
            .stitch_mosaic(&Tensor::stack(&per_patch, 0))
            .squeeze_dim(1);
        assert!(got.allclose(&want, 1e-6, 1e-7, false), "{got} vs {want}");
    }

    /// ViT's classifier reads the class token, which does not read the final patch tokens: by
    /// default the maps come from the tokens entering the last block, and the last layer is
    /// refused with that advice.
    #[test]
    fn vit_maps_come_from_tokens_its_class_token_reads() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let trunk = build_backbone("vit_base_patch32_224", &vs.root(), 3).unwrap();
        let m = AggregatedClassifier::new(&vs.root(), trunk, 1, 3);
        assert!(!m.pools_maps());
        assert_eq!(m.default_cam_layer(), "blocks.10");
        let xs = Tensor::randn([1, 3, 96, 96], (Kind::Float, Device::Cpu));
        let peaks: Vec<f64> = (0..3)
            .map(|c| {
                let h = heat_maps(&m, &xs, &[c], CamMethod::Plain).unwrap();
                assert_eq!(h.size(), [1, 3, 3]);
                h.max().double_value(&[])
            })
            .collect();
        assert!(peaks.iter().any(|&p| p > 0.0), "{peaks:?}");
        let err = heat_maps_at_layer(&m, &xs, &[0], CamMethod::Plain, "norm")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("class token") && err.contains("blocks.10"),
            "{err}"
        );
    }

    /// The closed-form gradients give what libtorch's autograd gives, for both methods, on
    /// several images and classes at once.
    #[test]
    fn closed_form_equals_autograd() {
        // A random model's ReLU'd map can be all zero for one draw (the tests share libtorch's
        // global generator, so draws vary from run to run); each method must give a non-zero
        // map somewhere, so that the comparison is not vacuous.
        let mut nonzero = [false; 2];
        for grid in [2, 4] {
            let (_vs, m) = model(grid);
            let xs = Tensor::randn([3, 3, 16 * grid, 16 * grid], (Kind::Float, Device::Cpu));
            let maps = tch::no_grad(|| m.patch_maps(&xs, false));
            for classes in [[0i64, 1, 2], [2, 2, 0]] {
                for method in [CamMethod::Plain, CamMethod::PatchWeighted] {
                    let fast = heat_maps_from_maps(&m, &maps, &classes, method).unwrap();
                    let slow = heat_maps_by_autograd(&m, &maps, &classes, method).unwrap();
                    assert_eq!(fast.size(), slow.size());
                    let diff = (&fast - &slow).abs().max().double_value(&[]);
                    let scale = slow.abs().max().double_value(&[]);
                    nonzero[(method == CamMethod::PatchWeighted) as usize] |= scale > 0.0;
                    assert!(
                        diff <= 1e-6 * scale.max(1.0),
                        "{method:?} grid {grid} {classes:?}: max diff {diff:e} (scale {scale:e})"
                    );
                }
            }
        }
        assert_eq!(
            nonzero,
            [true, true],
            "[plain, patch-weighted]: an all-zero map everywhere"
        );
    }

    /// At the last layer the layer path equals the leaf path; at an earlier layer the map has
    /// that layer's (finer) resolution.
    #[test]
    fn maps_at_named_layers() {
        let (_vs, m) = model(2);
        let xs = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let names = m.layer_names();
        assert_eq!(
            names,
            [
                "stem",
                "denseblock1",
                "transition1",
                "denseblock2",
                "transition2",
                "denseblock3",
                "norm5"
            ]
        );
        for method in [CamMethod::Plain, CamMethod::PatchWeighted] {
            let last = heat_maps(&m, &xs, &[1], method).unwrap();
            let via = heat_maps_at_layer(&m, &xs, &[1], method, "norm5").unwrap();
            assert!(last.allclose(&via, 1e-6, 1e-7, false));
            let early = heat_maps_at_layer(&m, &xs, &[1], method, "denseblock2").unwrap();
            // 32² patches: stride-2 stem, one transition → 8² per patch, 16² stitched.
            assert_eq!(early.size(), [1, 16, 16], "{method:?}");
            assert!(early.max().double_value(&[]) > 0.0);
        }
        let err = heat_maps_at_layer(&m, &xs, &[1], CamMethod::Plain, "layer9")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("denseblock1") && err.contains("norm5"),
            "{err}"
        );
    }

    #[test]
    fn bad_requests_are_errors() {
        let (_vs, m) = model(1);
        let xs = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert!(heat_maps(&m, &xs, &[0], CamMethod::PatchWeighted).is_err());
        assert!(heat_maps(&m, &xs, &[7], CamMethod::Plain).is_err());
        assert!(heat_maps(&m, &xs, &[0, 1], CamMethod::Plain).is_err());
    }

    #[test]
    fn ensemble_mean_scales_each_model() {
        let a = Tensor::from_slice(&[0.0f32, 2.0, 4.0, 0.0]).view([1, 2, 2]);
        let b = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0]).view([1, 2, 2]);
        let m = ensemble_mean(&[a, b]).unwrap();
        let got: Vec<f32> = Vec::try_from(m.view([-1])).unwrap();
        assert_eq!(got, [0.5, 0.25, 0.5, 0.0]);
    }
}
