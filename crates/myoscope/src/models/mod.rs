//! Model registry: every trunk by name, and the aggregated classifier that wraps them.
pub mod aggregated;
pub mod backbone;
pub mod conv_bn;
pub mod convnext;
pub mod densenet;
pub mod efficientnet;
pub mod efficientnet_lite;
pub mod layers;
pub mod mobile_trunk;
pub mod mobilenet_v2;
pub mod resnet;
pub mod swin;
pub mod vit;

pub use aggregated::{AggregatedClassifier, AggregatedOutput};
pub use backbone::Backbone;

use anyhow::{bail, Result};
use tch::nn;

/// Trunks the registry can build, by the names used in configs and on the command line.
pub const ARCHITECTURES: &[(&str, &str)] = &[
    (
        "densenet121",
        "DenseNet-121 (torchvision layout), Kabeya et al.'s trunk",
    ),
    (
        "densenet-tiny",
        "3-block DenseNet, growth 12: the CPU demo trunk",
    ),
    ("resnet18", "ResNet-18 (torchvision layout)"),
    ("resnet34", "ResNet-34 (torchvision layout)"),
    ("resnet50", "ResNet-50 (torchvision layout)"),
    ("resnet101", "ResNet-101 (torchvision / timm layout)"),
    (
        "resnet50_keras",
        "ResNet-50 as Keras ships it (stride on the first 1×1, BN eps 1e-3)",
    ),
    ("mobilenet_v2", "MobileNetV2 1.0 (torchvision layout)"),
    (
        "efficientnet_lite0",
        "EfficientNet-Lite0 (timm tf_efficientnet_lite0 layout)",
    ),
    (
        "efficientnet_lite1",
        "EfficientNet-Lite1 (timm tf_efficientnet_lite1 layout)",
    ),
    (
        "efficientnet_lite2",
        "EfficientNet-Lite2 (timm tf_efficientnet_lite2 layout)",
    ),
    (
        "efficientnet_b0",
        "EfficientNet-B0 (timm layout: SE, swish)",
    ),
    (
        "efficientnet_b1",
        "EfficientNet-B1 (timm layout: SE, swish)",
    ),
    (
        "efficientnet_b2",
        "EfficientNet-B2 (timm layout: SE, swish)",
    ),
    (
        "efficientnet_b3",
        "EfficientNet-B3 (timm layout: SE, swish)",
    ),
    (
        "efficientnet_b4",
        "EfficientNet-B4 (timm layout: SE, swish)",
    ),
    (
        "efficientnet_b5",
        "EfficientNet-B5 (timm layout: SE, swish)",
    ),
    (
        "efficientnet_b6",
        "EfficientNet-B6 (timm layout: SE, swish)",
    ),
    (
        "efficientnet_b7",
        "EfficientNet-B7 (timm layout: SE, swish)",
    ),
    ("convnext_tiny", "ConvNeXt-T (timm convnext_tiny layout)"),
    ("convnext_small", "ConvNeXt-S (timm convnext_small layout)"),
    ("convnext_base", "ConvNeXt-B (timm convnext_base layout)"),
    (
        "vit_base_patch16_224",
        "ViT-B/16 (timm layout; class token; position embedding resampled for other sizes)",
    ),
    (
        "vit_base_patch32_224",
        "ViT-B/32 (timm layout; class token; position embedding resampled for other sizes)",
    ),
    (
        "swin_tiny_patch4_window7_224",
        "Swin-T, window 7 (timm layout; shifted windows, relative position bias)",
    ),
    (
        "swin_base_patch4_window7_224",
        "Swin-B, window 7 (timm layout; shifted windows, relative position bias)",
    ),
    (
        "swin_base_patch4_window12_384",
        "Swin-B, window 12, for 384² (timm layout; shifted windows, relative position bias)",
    ),
];

/// Builds the named trunk with its parameters under `root`, named as in the reference
/// implementation so reference weights load by name.
pub fn build_backbone(arch: &str, root: &nn::Path, in_channels: i64) -> Result<Box<dyn Backbone>> {
    Ok(match arch {
        "densenet121" => Box::new(densenet::DenseNet::new(
            root,
            &densenet::DenseNetConfig::densenet121(),
            in_channels,
        )),
        "densenet-tiny" => Box::new(densenet::DenseNet::new(
            root,
            &densenet::DenseNetConfig::tiny(),
            in_channels,
        )),
        "resnet18" => Box::new(resnet::resnet18(root, in_channels)),
        "resnet34" => Box::new(resnet::resnet34(root, in_channels)),
        "resnet50" => Box::new(resnet::resnet50(root, in_channels)),
        "resnet101" => Box::new(resnet::resnet101(root, in_channels)),
        "resnet50_keras" => Box::new(resnet::resnet50_keras(root, in_channels)),
        "mobilenet_v2" => Box::new(mobilenet_v2::mobilenet_v2(root, in_channels)),
        "efficientnet_lite0" => Box::new(efficientnet_lite::efficientnet_lite0(root, in_channels)),
        "efficientnet_lite1" => Box::new(efficientnet_lite::efficientnet_lite1(root, in_channels)),
        "efficientnet_lite2" => Box::new(efficientnet_lite::efficientnet_lite2(root, in_channels)),
        "convnext_tiny" => Box::new(convnext::convnext_tiny(root, in_channels)),
        "convnext_small" => Box::new(convnext::convnext_small(root, in_channels)),
        "convnext_base" => Box::new(convnext::convnext_base(root, in_channels)),
        "vit_base_patch16_224" => Box::new(vit::vit_base_patch16_224(root, in_channels)),
        "vit_base_patch32_224" => Box::new(vit::vit_base_patch32_224(root, in_channels)),
        "swin_tiny_patch4_window7_224" => {
            Box::new(swin::swin_tiny_patch4_window7_224(root, in_channels))
        }
        "swin_base_patch4_window7_224" => {
            Box::new(swin::swin_base_patch4_window7_224(root, in_channels))
        }
        "swin_base_patch4_window12_384" => {
            Box::new(swin::swin_base_patch4_window12_384(root, in_channels))
        }
        b if efficientnet_variant(b).is_some() => Box::new(efficientnet::efficientnet_b(
            root,
            in_channels,
            efficientnet_variant(b).unwrap_or_default(),
        )),
        other => {
            let known: Vec<&str> = ARCHITECTURES.iter().map(|(n, _)| *n).collect();
            bail!(
                "unknown architecture '{other}'; choose one of: {}",
                known.join(", ")
            )
        }
    })
}

/// The B-number of `efficientnet_b0` … `efficientnet_b7`.
fn efficientnet_variant(arch: &str) -> Option<usize> {
    arch.strip_prefix("efficientnet_b")
        .and_then(|b| b.parse::<usize>().ok())
        .filter(|&b| b < 8)
}

/// Checks a model shape before any tensor is made, so a bad config fails with a fix, not a
/// libtorch shape error deep in the forward pass.
pub fn validate_geometry(input_size: i64, grid: i64) -> Result<()> {
    if grid < 1 {
        bail!("grid must be at least 1 (got {grid}); use 1 for a plain classifier, 4 for Kabeya's 4×4");
    }
    if input_size < grid * 16 {
        bail!("input size {input_size} is too small for a {grid}×{grid} grid: each patch needs at least 16 pixels");
    }
    if input_size % grid != 0 {
        let lo = input_size / grid * grid;
        bail!(
            "input size {input_size} is not divisible by the grid {grid}; use {lo} or {} instead",
            lo + grid
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    fn trainable_count(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }

    #[test]
    fn densenet121_has_torchvision_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let trunk = build_backbone("densenet121", &vs.root(), 3).unwrap();
        let _head = nn::linear(
            vs.root() / "classifier",
            trunk.out_channels(),
            1000,
            Default::default(),
        );
        assert_eq!(trainable_count(&vs), 7_978_856);
        let names = vs.variables();
        assert_eq!(
            names["features.denseblock3.denselayer24.conv2.weight"].size(),
            vec![32, 128, 3, 3]
        );
        assert_eq!(
            names["features.transition3.conv.weight"].size(),
            vec![512, 1024, 1, 1]
        );
        assert_eq!(names["features.norm5.running_var"].size(), vec![1024]);
    }

    #[test]
    fn every_registered_trunk_builds_and_classifies() {
        for (name, _) in ARCHITECTURES {
            let vs = nn::VarStore::new(Device::Cpu);
            let trunk = build_backbone(name, &vs.root(), 3).unwrap();
            let model = AggregatedClassifier::new(&vs.root(), trunk, 2, 3);
            let out = model.forward_t(
                &Tensor::rand([1, 3, 64, 64], (Kind::Float, Device::Cpu)),
                false,
            );
            assert_eq!(out.logits.size(), vec![1, 3], "{name}");
        }
    }

    #[test]
    fn every_trunk_names_its_layers_and_ends_with_its_features() {
        for (name, _) in ARCHITECTURES {
            let vs = nn::VarStore::new(Device::Cpu);
            let trunk = build_backbone(name, &vs.root(), 3).unwrap();
            let xs = Tensor::rand([1, 3, 64, 64], (Kind::Float, Device::Cpu));
            let maps = tch::no_grad(|| trunk.feature_maps(&xs, false));
            let names = trunk.layer_names();
            assert_eq!(maps.len(), names.len(), "{name}: {names:?}");
            assert!(names.len() > 3, "{name} exposes too few layers: {names:?}");
            let features = tch::no_grad(|| trunk.features(&xs, false));
            assert!(
                maps.last().unwrap().allclose(&features, 1e-6, 1e-6, false),
                "{name}"
            );
        }
    }

    #[test]
    fn densenet121_maps_a_160_patch_to_5x5() {
        let vs = nn::VarStore::new(Device::Cpu);
        let trunk = build_backbone("densenet121", &vs.root(), 3).unwrap();
        let xs = Tensor::zeros([1, 3, 160, 160], (Kind::Float, Device::Cpu));
        assert_eq!(trunk.features(&xs, false).size(), vec![1, 1024, 5, 5]);
    }

    #[test]
    fn geometry_errors_say_how_to_fix() {
        assert!(validate_geometry(640, 4).is_ok());
        let err = validate_geometry(642, 4).unwrap_err().to_string();
        assert!(err.contains("640") && err.contains("644"), "{err}");
        assert!(validate_geometry(640, 0).is_err());
        assert!(validate_geometry(32, 4).is_err());
    }

    #[test]
    fn unknown_architecture_lists_the_known_ones() {
        let vs = nn::VarStore::new(Device::Cpu);
        let err = build_backbone("densenet999", &vs.root(), 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("densenet121"), "{err}");
    }

    #[test]
    fn mosaic_is_the_inverse_of_patch_split() {
        let vs = nn::VarStore::new(Device::Cpu);
        let trunk = build_backbone("densenet-tiny", &vs.root(), 3).unwrap();
        let model = AggregatedClassifier::new(&vs.root(), trunk, 4, 3);
        let xs = Tensor::arange(2 * 3 * 64 * 64, (Kind::Float, Device::Cpu)).view([2, 3, 64, 64]);
        let patches = model.split_patches(&xs);
        assert_eq!(patches.size(), vec![32, 3, 16, 16]);
        // Patch 5 of image 1 is row 1, column 1 of that image.
        let expect = xs.get(1).narrow(1, 16, 16).narrow(2, 16, 16);
        assert!(patches.get(16 + 5).equal(&expect));
        assert!(model.stitch_mosaic(&patches).equal(&xs));
    }

    #[test]
    fn aggregated_output_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let trunk = build_backbone("densenet-tiny", &vs.root(), 3).unwrap();
        let model = AggregatedClassifier::new(&vs.root(), trunk, 4, 3);
        let out = model.forward_t(
            &Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu)),
            false,
        );
        assert_eq!(out.logits.size(), vec![2, 3]);
        assert_eq!(out.patch_logits.unwrap().size(), vec![2, 16, 3]);
        // tiny trunk: 16 px patch → 8 px after the stem → 2 px after two transitions.
        assert_eq!(out.mosaic.size()[2], 8);
    }
}
