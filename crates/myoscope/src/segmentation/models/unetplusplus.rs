//! UNet++ decoder (Zhou et al.) in smp's `UnetPlusPlusDecoder` layout: nested blocks
//! `blocks.x_{d}_{l}`, where `l` counts decoder steps from the deepest features and `d` how many
//! stages above the deepest the node's skip comes from. Every node at a resolution sees the
//! encoder features and all earlier nodes there (dense skips), which narrows the semantic gap
//! between encoder and decoder features.

use super::decoder_block::{spatial_size, DecoderBlock};
use super::spec::Attention;
use std::collections::BTreeMap;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct UnetPlusPlusDecoder {
    /// Keyed by (d, l).
    blocks: BTreeMap<(usize, usize), DecoderBlock>,
    /// Number of nested levels: encoder depth − 1.
    levels: usize,
}

impl UnetPlusPlusDecoder {
    /// Same arguments as [`super::unet::UnetDecoder::new`].
    pub fn new(
        p: &nn::Path,
        encoder_channels: &[i64],
        decoder_channels: &[i64],
        attention: Attention,
    ) -> Self {
        let deepest_first: Vec<i64> = encoder_channels.iter().rev().copied().collect();
        let levels = deepest_first.len() - 1;
        // Channels entering level l along the main path, and of the encoder skip at level l.
        let main_in: Vec<i64> = std::iter::once(deepest_first[0])
            .chain(decoder_channels[..levels].iter().copied())
            .collect();
        let skip = |l: usize| deepest_first.get(l + 1).copied().unwrap_or(0);
        let mut blocks = BTreeMap::new();
        let bp = p / "blocks";
        for l in 0..levels {
            for d in 0..=l {
                let (c_in, c_skip, c_out) = if d == 0 {
                    // The main path: the encoder skip plus the l nested nodes at its resolution.
                    (main_in[l], skip(l) * (l + 1) as i64, decoder_channels[l])
                } else {
                    // A nested node keeps the width of the encoder features at its resolution.
                    (skip(l - 1), skip(l) * (l + 1 - d) as i64, skip(l))
                };
                let block = DecoderBlock::new(
                    &(&bp / format!("x_{d}_{l}")),
                    c_in,
                    c_skip,
                    c_out,
                    attention,
                );
                blocks.insert((d, l), block);
            }
        }
        let last = DecoderBlock::new(
            &(&bp / format!("x_0_{levels}")),
            main_in[levels],
            0,
            decoder_channels[levels],
            attention,
        );
        blocks.insert((0, levels), last);
        UnetPlusPlusDecoder { blocks, levels }
    }

    /// `features`: the encoder's skip features, shallowest first. Every block doubles the
    /// resolution, as smp's does.
    pub fn forward_t(&self, features: &[Tensor], train: bool) -> Tensor {
        let deepest_first: Vec<&Tensor> = features.iter().rev().collect();
        let double = |xs: &Tensor| {
            let [h, w] = spatial_size(xs);
            [2 * h, 2 * w]
        };
        let mut nodes: BTreeMap<(usize, usize), Tensor> = BTreeMap::new();
        for l in 0..self.levels {
            for d in 0..self.levels - l {
                let out = if l == 0 {
                    let xs = deepest_first[d];
                    self.blocks[&(d, d)].forward_t(
                        xs,
                        double(xs),
                        Some(deepest_first[d + 1]),
                        train,
                    )
                } else {
                    let col = d + l;
                    let mut dense: Vec<&Tensor> =
                        (d + 1..=col).map(|i| &nodes[&(i, col)]).collect();
                    dense.push(deepest_first[col + 1]);
                    let skip = Tensor::cat(&dense, 1);
                    let xs = &nodes[&(d, col - 1)];
                    self.blocks[&(d, col)].forward_t(xs, double(xs), Some(&skip), train)
                };
                nodes.insert((d, d + l), out);
            }
        }
        let xs = &nodes[&(0, self.levels - 1)];
        self.blocks[&(0, self.levels)].forward_t(xs, double(xs), None, train)
    }
}
