//! What belongs to each architecture's published weights apart from the tensors: the input
//! they expect and which convolution sees the image (for channel adaptation).
use super::preprocessing::Preprocessing;

/// Name of the convolution that takes the image, per architecture.
pub fn first_conv(arch: &str) -> Option<&'static str> {
    Some(match arch {
        a if a.starts_with("densenet") => "features.conv0.weight",
        a if a.starts_with("resnet") => "conv1.weight",
        "mobilenet_v2" => "features.0.0.weight",
        a if a.starts_with("efficientnet_") => "conv_stem.weight",
        a if a.starts_with("convnext_") => "stem.0.weight",
        a if a.starts_with("vit_") || a.starts_with("swin_") => "patch_embed.proj.weight",
        _ => return None,
    })
}

/// The preprocessing the reference implementation publishes with ImageNet weights for `arch`:
/// torchvision's recipe, or timm's `pretrained_cfg` for the TensorFlow-ported Lite models
/// (Inception statistics, native size per variant, bicubic, TF "SAME" padding, BN eps 1e-3).
pub fn default_preprocessing(arch: &str) -> Preprocessing {
    let tv = Preprocessing::torchvision();
    let lite = |input_size, crop_fraction| {
        Preprocessing {
        mean: [0.5; 3],
        std: [0.5; 3],
        input_size,
        interpolation: "bicubic".into(),
        crop_fraction,
        bn_eps: 1e-3,
        padding: "tf-same".into(),
        notes: vec![
            "ported from TensorFlow: 'SAME' padding puts the odd pixel of strided convs bottom/right".into(),
            "Lite variant: ReLU6, no squeeze-excitation, stem and head widths fixed".into(),
        ],
        ..tv.clone()
    }
    };
    let timm = |input_size, crop_fraction| Preprocessing {
        input_size,
        interpolation: "bicubic".into(),
        crop_fraction,
        ..tv.clone()
    };
    match arch {
        "efficientnet_lite0" => lite(224, 0.875),
        "efficientnet_lite1" => lite(240, 0.882),
        "efficientnet_lite2" => lite(260, 0.890),
        // timm's pretrained_cfg of each architecture's default weights (timm 1.0.29).
        a if a.starts_with("efficientnet_b") => timm(224, 0.875),
        "convnext_tiny" | "convnext_small" => timm(224, 0.95),
        "convnext_base" => timm(224, 0.875),
        "swin_tiny_patch4_window7_224" | "swin_base_patch4_window7_224" => timm(224, 0.9),
        "swin_base_patch4_window12_384" => timm(384, 1.0),
        a if a.starts_with("vit_base") => Preprocessing {
            mean: [0.5; 3],
            std: [0.5; 3],
            ..timm(224, 0.9)
        },
        "resnet50_keras" => Preprocessing {
            pixel_range: 255.0,
            // Caffe's BGR means, listed in RGB order because the import reverses conv1's input.
            mean: [123.68, 116.779, 103.939],
            std: [1.0; 3],
            bn_eps: 1e-3,
            notes: vec![
                "original ResNet v1 layout: downsampling blocks stride on their first 1×1 conv"
                    .into(),
            ],
            ..tv
        },
        _ => tv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_trunk_has_a_first_conv_in_its_variables() {
        for (arch, _) in crate::models::ARCHITECTURES {
            let vs = tch::nn::VarStore::new(tch::Device::Cpu);
            let _net = crate::models::build_backbone(arch, &vs.root(), 3).unwrap();
            let name = first_conv(arch).unwrap_or_else(|| panic!("{arch} has no first conv"));
            assert_eq!(vs.variables()[name].size()[1], 3, "{arch}");
        }
    }

    #[test]
    fn keras_input_is_caffe_style() {
        let p = default_preprocessing("resnet50_keras");
        assert_eq!(p.pixel_range, 255.0);
        assert_eq!(p.std, [1.0; 3]);
        assert_eq!(default_preprocessing("efficientnet_lite2").input_size, 260);
        assert_eq!(
            default_preprocessing("densenet121").mean,
            super::super::preprocessing::IMAGENET_MEAN
        );
    }
}
