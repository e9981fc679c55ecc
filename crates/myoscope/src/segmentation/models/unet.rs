//! UNet decoder (Ronneberger et al.) in smp's `UnetDecoder` layout: `blocks.{i}`, one per encoder
//! stage, from the deepest features back to the input resolution.

use super::decoder_block::{spatial_size, DecoderBlock};
use super::spec::Attention;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct UnetDecoder {
    blocks: Vec<DecoderBlock>,
}

impl UnetDecoder {
    /// `encoder_channels` are those of the skip features from the shallowest (stride 2) to the
    /// deepest; `decoder_channels` has one entry per block, the same length.
    pub fn new(
        p: &nn::Path,
        encoder_channels: &[i64],
        decoder_channels: &[i64],
        attention: Attention,
    ) -> Self {
        let deepest_first: Vec<i64> = encoder_channels.iter().rev().copied().collect();
        // Block i reads the previous block's output (the deepest features for block 0) and the
        // next-shallower encoder stage; the last block, at input resolution, has no skip.
        let inputs = std::iter::once(deepest_first[0]).chain(decoder_channels.iter().copied());
        let skips = deepest_first[1..].iter().copied().chain(std::iter::once(0));
        let blocks = inputs
            .zip(skips)
            .zip(decoder_channels)
            .enumerate()
            .map(|(i, ((c_in, c_skip), &c_out))| {
                DecoderBlock::new(&(p / "blocks" / i), c_in, c_skip, c_out, attention)
            })
            .collect();
        UnetDecoder { blocks }
    }

    /// `features`: the encoder's skip features, shallowest first; `input_size`: the image's (h, w),
    /// to which the last block upsamples.
    pub fn forward_t(&self, features: &[Tensor], input_size: [i64; 2], train: bool) -> Tensor {
        let depth = features.len();
        let mut xs = features[depth - 1].shallow_clone();
        for (i, block) in self.blocks.iter().enumerate() {
            let skip = (i + 1 < depth).then(|| &features[depth - 2 - i]);
            let size = skip.map_or(input_size, spatial_size);
            xs = block.forward_t(&xs, size, skip, train);
        }
        xs
    }
}
