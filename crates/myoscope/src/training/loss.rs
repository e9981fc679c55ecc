//! Kabeya et al.'s training loss: L = CE(final) + λ·Σ_j CE(patch_j), every patch carrying the
//! image's label. The sum over patches (not a mean) follows the paper; λ defaults to 1.
use crate::models::AggregatedOutput;
use tch::{Reduction, Tensor};

pub fn aggregated_loss(out: &AggregatedOutput, labels: &Tensor, patch_weight: f64) -> Tensor {
    let image_loss =
        out.logits
            .cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0);
    match &out.patch_logits {
        Some(patch) if patch_weight != 0.0 => {
            let (b, m, k) = patch.size3().expect("patch logits are [B, M, K]");
            let patch_labels = labels.unsqueeze(1).expand([b, m], false).reshape([b * m]);
            // Mean over B·M patches × M = Σ_j mean_b CE(patch_j).
            let patch_loss = patch.reshape([b * m, k]).cross_entropy_loss::<Tensor>(
                &patch_labels,
                None,
                Reduction::Mean,
                -100,
                0.0,
            ) * (m as f64);
            image_loss + patch_loss * patch_weight
        }
        _ => image_loss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn patch_terms_are_summed_over_patches() {
        let logits = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
        let labels = Tensor::from_slice(&[0i64, 1]);
        // Two images × three patches, all with the same logits as the image: the loss is 1 + 3 CE.
        let patch = logits.unsqueeze(1).expand([2, 3, 2], false).contiguous();
        let out = AggregatedOutput {
            logits: logits.shallow_clone(),
            patch_logits: Some(patch),
            mosaic: Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        };
        let ce = logits.cross_entropy_for_logits(&labels).double_value(&[]);
        let total = aggregated_loss(&out, &labels, 1.0).double_value(&[]);
        assert!((total - 4.0 * ce).abs() < 1e-6, "{total} vs {ce}");
        let half = aggregated_loss(&out, &labels, 0.5).double_value(&[]);
        assert!((half - 2.5 * ce).abs() < 1e-6);
    }
}
