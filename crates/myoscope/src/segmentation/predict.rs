//! Tiled inference: any size of image in, full-size class probabilities and mask out. The
//! image is cut into overlapping tiles, each tile's softmax is computed in batches, and the
//! stitcher blends them back (see [`crate::segmentation::tiling`]).
use crate::segmentation::models::SegmentationModel;
use crate::segmentation::tiling::{PlaneStack, Stitcher, TileConfig, TileGrid};
use anyhow::{Context, Result};
use indicatif::ProgressBar;
use tch::{Device, Kind, Tensor};

/// How whole images are run through the network: tile geometry, tiles per forward pass, device.
#[derive(Debug, Clone, Copy)]
pub struct TiledInference {
    pub tiles: TileConfig,
    pub batch_size: usize,
    pub device: Device,
}

/// Class probabilities of a C×H×W image, as classes×H×W.
pub fn probabilities(
    model: &SegmentationModel,
    stack: &PlaneStack<'_>,
    how: &TiledInference,
    progress: Option<&ProgressBar>,
) -> Result<(usize, Vec<f32>)> {
    let (channels, height, width) = (stack.channels, stack.height, stack.width);
    let (tiles, batch_size, device) = (how.tiles, how.batch_size, how.device);
    let grid = TileGrid::new(height, width, tiles)?;
    let side = grid.tile_size();
    model.check_input(side as i64, side as i64)?;
    let classes = model.spec().classes as usize;
    let mut stitcher = Stitcher::new(&grid, classes)?;
    let all = grid.tiles();
    for chunk in all.chunks(batch_size.max(1)) {
        let mut buf = vec![0.0f32; chunk.len() * channels * side * side];
        for (tile, out) in chunk.iter().zip(buf.chunks_mut(channels * side * side)) {
            grid.extract_into(stack, tile, out)?;
        }
        let xs = Tensor::from_slice(&buf)
            .view([
                chunk.len() as i64,
                channels as i64,
                side as i64,
                side as i64,
            ])
            .to_device(device);
        let probs = tch::no_grad(|| -> Result<Tensor> {
            Ok(model
                .try_forward_t(&xs, false)?
                .softmax(1, Kind::Float)
                .to_device(Device::Cpu))
        })?;
        let probs = Vec::<f32>::try_from(probs.flatten(0, -1)).context("reading probabilities")?;
        for (tile, values) in chunk.iter().zip(probs.chunks(classes * side * side)) {
            stitcher.add(tile, values)?;
        }
        if let Some(bar) = progress {
            bar.inc(chunk.len() as u64);
        }
    }
    Ok((classes, stitcher.finish()?))
}

/// Number of tiles an image of this size needs (for progress bars).
pub fn tile_count(height: usize, width: usize, tiles: TileConfig) -> Result<usize> {
    Ok(TileGrid::new(height, width, tiles)?.len())
}

/// The most probable class of every pixel.
pub fn argmax_mask(probs: &[f32], classes: usize, height: usize, width: usize) -> Vec<u8> {
    let n = height * width;
    (0..n)
        .map(|i| {
            let mut best = 0usize;
            for c in 1..classes {
                if probs[c * n + i] > probs[best * n + i] {
                    best = c;
                }
            }
            best as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_picks_the_most_probable_class_per_pixel() {
        // 2 classes × 1×3 image.
        let probs = [0.9f32, 0.4, 0.2, 0.1, 0.6, 0.8];
        assert_eq!(argmax_mask(&probs, 2, 1, 3), vec![0, 1, 1]);
    }
}
