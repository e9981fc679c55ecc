//! DEDL nucleus segmentation (Singh & Cirrone): the default model (UNet, ResNet-34 encoder at
//! depth 3, decoder 256/128/64 with scSE, 1 DAPI channel, 2 classes), one training step on
//! 480² tiles, and the tiled inference of a whole 1408×1876 page.
use super::classifier::sync;
use super::{Params, Runnable};
use crate::segmentation::loss::{weighted_cross_entropy, ClassWeights};
use crate::segmentation::models::{SegmentationModel, SegmentationModelSpec};
use crate::segmentation::predict::{argmax_mask, probabilities, TiledInference};
use crate::segmentation::tiling::{PlaneStack, TileConfig, TileGrid};
use crate::training::adam::{Adam, AdamConfig};
use anyhow::Result;
use tch::{nn, Device, Kind, Tensor};

fn model(device: Device) -> Result<(nn::VarStore, SegmentationModel)> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let net = SegmentationModelSpec::dedl().build(&vs.root())?;
    Ok((vs, net))
}

pub struct Training {
    _vs: nn::VarStore,
    net: SegmentationModel,
    opt: Adam,
    weights: ClassWeights,
    x: Tensor,
    masks: Tensor,
    params: Params,
    device: Device,
}

impl Training {
    pub fn new(params: &Params, device: Device) -> Result<Self> {
        let (vs, net) = model(device)?;
        let opt = Adam::new(
            &vs,
            AdamConfig {
                lr: 3.6e-4,
                weight_decay: 1e-5,
                ..AdamConfig::default()
            },
        );
        let (b, t) = (params.seg_batch, params.seg_tile);
        let x = Tensor::randn([b, 1, t, t], (Kind::Float, device));
        // About a fifth of the pixels are nucleus, as in fluorescence tiles.
        let masks = Tensor::rand([b, t, t], (Kind::Float, device))
            .lt(0.2)
            .to_kind(Kind::Int64);
        Ok(Self {
            _vs: vs,
            net,
            opt,
            weights: ClassWeights::from_weights(&[0.2, 0.8])?,
            x,
            masks,
            params: params.clone(),
            device,
        })
    }
}

impl Runnable for Training {
    fn run(&mut self) -> Result<()> {
        self.opt.zero_grad();
        let logits = self.net.forward_t(&self.x, true);
        let loss = weighted_cross_entropy(&logits, &self.masks, &self.weights)?;
        loss.backward();
        self.opt.step();
        sync(self.device);
        anyhow::ensure!(loss.double_value(&[]).is_finite(), "non-finite loss");
        Ok(())
    }
    fn items(&self) -> f64 {
        self.params.seg_batch as f64
    }
    fn unit(&self) -> &'static str {
        "tiles"
    }
    fn detail(&self) -> String {
        format!(
            "UNet-ResNet34 (depth 3, scSE), {} tiles of {}², 1 channel: forward, weighted cross-entropy, backward, Adam (no APP)",
            self.params.seg_batch, self.params.seg_tile
        )
    }
}

pub struct Tiled {
    _vs: nn::VarStore,
    net: SegmentationModel,
    page: Vec<f32>,
    how: TiledInference,
    tiles: usize,
    params: Params,
}

impl Tiled {
    pub fn new(params: &Params, device: Device) -> Result<Self> {
        let (mut vs, net) = model(device)?;
        vs.freeze();
        let (h, w) = (params.page_height as usize, params.page_width as usize);
        tch::manual_seed(1);
        let page =
            Vec::<f32>::try_from(Tensor::rand([(h * w) as i64], (Kind::Float, Device::Cpu)))?;
        let tiles = TileConfig::new(params.seg_tile as usize, params.overlap as usize)?;
        let count = TileGrid::new(h, w, tiles)?.len();
        Ok(Self {
            _vs: vs,
            net,
            page,
            how: TiledInference {
                tiles,
                batch_size: params.tile_batch.max(1) as usize,
                device,
            },
            tiles: count,
            params: params.clone(),
        })
    }
}

impl Runnable for Tiled {
    fn run(&mut self) -> Result<()> {
        let (h, w) = (
            self.params.page_height as usize,
            self.params.page_width as usize,
        );
        let stack = PlaneStack::new(&self.page, 1, h, w)?;
        let (classes, probs) = probabilities(&self.net, &stack, &self.how, None)?;
        let mask = argmax_mask(&probs, classes, h, w);
        anyhow::ensure!(mask.len() == h * w, "mask of the wrong size");
        Ok(())
    }
    fn items(&self) -> f64 {
        self.tiles as f64
    }
    fn unit(&self) -> &'static str {
        "tiles"
    }
    fn detail(&self) -> String {
        format!(
            "UNet-ResNet34 on a {}×{} page: {} tiles of {}² (overlap {}), {} per pass, softmax, blended stitch, argmax",
            self.params.page_width,
            self.params.page_height,
            self.tiles,
            self.params.seg_tile,
            self.params.overlap,
            self.params.tile_batch
        )
    }
}
