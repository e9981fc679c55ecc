//! APP, the autoencoder post-processing of Singh & Cirrone (§3.1, §4.2, §7.5): during training
//! only, an autoencoder reads the segmentation network's foreground probability map and tries to
//! rebuild the ground-truth mask from it; its mean-squared reconstruction error is added to the
//! segmentation loss, so the segmentation network is also pushed towards outputs from which the
//! true mask is easy to rebuild. The feedback only works if the probability map is *not* detached
//! (the first public DEDL code lost it that way); [`AutoencoderPostProcessing::loss`] keeps the
//! graph, and a test checks the gradient reaches the segmentation logits.
//!
//! The autoencoder has its own `VarStore` and its own Adam (constant lr 1e-3, §7.5), so its
//! weights are never part of the segmentation model's checkpoint and inference is unchanged.
//!
//! Faithful preset (§4.2): a fully-connected stack applied along the image width (each image row
//! is one input vector): 480 → 15360 → 256 → 128 → 64 → 32 → 16 (six encoder layers, the first
//! widening) → 32 → 64 → 128 → 256 → 480 (five decoder layers), GELU after every layer, the last
//! included ("GELU activation in all the layers"). The convolutional variant is ours: strided 3×3
//! convolutions down, 4×4 transposed convolutions up, GELU between, a sigmoid on the output since
//! it rebuilds a 0/1 mask.
//!
//! One training step with APP (the segmentation optimiser and loss are the trainer's):
//!
//! ```text
//! let logits = model.forward_t(&images, true);
//! let total = seg_loss.loss(&logits, &masks)? + app.loss(&foreground_probability(&logits)?, &masks)?;
//! seg_optimizer.zero_grad();
//! total.backward();          // one pass fills both networks' gradients
//! seg_optimizer.step();
//! app.step();                // APP's Adam, then clears APP's gradients
//! ```
use crate::training::adam::{Adam, AdamConfig};
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// The paper's hidden widths between the 480-wide input and output.
pub const PAPER_HIDDEN_WIDTHS: [i64; 10] = [15360, 256, 128, 64, 32, 16, 32, 64, 128, 256];
/// The paper's tile width, the input and output width of its stack.
pub const PAPER_WIDTH: i64 = 480;
/// §7.5: "adam optimizer and lr set to 1e-3", constant.
pub const PAPER_LEARNING_RATE: f64 = 1e-3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppArchitecture {
    /// Linear layers along the last (width) axis: `width → hidden[0] → … → hidden[k] → width`.
    FullyConnected { width: i64, hidden: Vec<i64> },
    /// Strided convolutions with these channel counts, mirrored back up to one channel.
    Convolutional { channels: Vec<i64> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputActivation {
    Gelu,
    Sigmoid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppConfig {
    pub architecture: AppArchitecture,
    pub output_activation: OutputActivation,
    pub learning_rate: f64,
}

impl AppConfig {
    /// The paper's stack for tiles of `width` pixels (480 in the paper): with another width the
    /// first and last layers change size, the hidden widths stay.
    pub fn faithful(width: i64) -> Self {
        Self {
            architecture: AppArchitecture::FullyConnected {
                width,
                hidden: PAPER_HIDDEN_WIDTHS.to_vec(),
            },
            output_activation: OutputActivation::Gelu,
            learning_rate: PAPER_LEARNING_RATE,
        }
    }

    /// The small convolutional variant: 1 → 16 → 32 → 64 channels at 1/2, 1/4, 1/8 size and back.
    pub fn convolutional() -> Self {
        Self {
            architecture: AppArchitecture::Convolutional {
                channels: vec![16, 32, 64],
            },
            output_activation: OutputActivation::Sigmoid,
            learning_rate: PAPER_LEARNING_RATE,
        }
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "the APP learning rate must be a positive number, got {}",
            self.learning_rate
        );
        match &self.architecture {
            AppArchitecture::FullyConnected { width, hidden } => {
                ensure!(
                    *width >= 1,
                    "the APP stack's width must be the tile width (480 in the paper), got {width}"
                );
                ensure!(
                    !hidden.is_empty() && hidden.iter().all(|&h| h >= 1),
                    "the APP stack needs at least one hidden layer, all widths positive, got \
                     {hidden:?}"
                );
            }
            AppArchitecture::Convolutional { channels } => {
                ensure!(
                    !channels.is_empty() && channels.len() <= 8 && channels.iter().all(|&c| c >= 1),
                    "the convolutional APP needs 1 to 8 positive channel counts, got {channels:?}"
                );
            }
        }
        Ok(())
    }
}

/// The layers, built under one `VarStore` path.
#[derive(Debug)]
enum Network {
    FullyConnected {
        width: i64,
        layers: Vec<nn::Linear>,
    },
    Convolutional {
        down: Vec<nn::Conv2D>,
        up: Vec<nn::ConvTranspose2D>,
    },
}

impl Network {
    fn new(path: &nn::Path, architecture: &AppArchitecture) -> Self {
        match architecture {
            AppArchitecture::FullyConnected { width, hidden } => {
                let sizes: Vec<i64> = std::iter::once(*width)
                    .chain(hidden.iter().copied())
                    .chain(std::iter::once(*width))
                    .collect();
                let layers = sizes
                    .windows(2)
                    .enumerate()
                    .map(|(i, w)| {
                        nn::linear(path / format!("fc{i}"), w[0], w[1], Default::default())
                    })
                    .collect();
                Network::FullyConnected {
                    width: *width,
                    layers,
                }
            }
            AppArchitecture::Convolutional { channels } => {
                let down_cfg = nn::ConvConfig {
                    stride: 2,
                    padding: 1,
                    ..Default::default()
                };
                let up_cfg = nn::ConvTransposeConfig {
                    stride: 2,
                    padding: 1,
                    ..Default::default()
                };
                let ins: Vec<i64> = std::iter::once(1).chain(channels.iter().copied()).collect();
                let down = ins
                    .windows(2)
                    .enumerate()
                    .map(|(i, c)| nn::conv2d(path / format!("down{i}"), c[0], c[1], 3, down_cfg))
                    .collect();
                let up = ins
                    .windows(2)
                    .rev()
                    .enumerate()
                    .map(|(i, c)| {
                        nn::conv_transpose2d(path / format!("up{i}"), c[1], c[0], 4, up_cfg)
                    })
                    .collect();
                Network::Convolutional { down, up }
            }
        }
    }

    /// Every layer but the last is followed by GELU; the last by the output activation.
    fn forward(&self, x: &Tensor, output: OutputActivation) -> Tensor {
        let finish = |y: Tensor| match output {
            OutputActivation::Gelu => y.gelu("none"),
            OutputActivation::Sigmoid => y.sigmoid(),
        };
        match self {
            Network::FullyConnected { layers, .. } => {
                let last = layers.len() - 1;
                let mut y = x.shallow_clone();
                for (i, layer) in layers.iter().enumerate() {
                    y = layer.forward(&y);
                    y = if i == last { finish(y) } else { y.gelu("none") };
                }
                y
            }
            Network::Convolutional { down, up } => {
                let mut y = x.shallow_clone();
                for layer in down {
                    y = layer.forward(&y).gelu("none");
                }
                let last = up.len() - 1;
                for (i, layer) in up.iter().enumerate() {
                    y = layer.forward(&y);
                    y = if i == last { finish(y) } else { y.gelu("none") };
                }
                y
            }
        }
    }
}

/// The foreground probability map the autoencoder reads: `1 − softmax(logits)[background]`, an
/// N×1×H×W map (for two classes, the nucleus channel of the softmax). Keeps the autograd graph.
pub fn foreground_probability(logits: &Tensor) -> Result<Tensor> {
    let size = logits.size();
    ensure!(
        size.len() == 4 && size[1] >= 2,
        "segmentation logits must be N×C×H×W with C ≥ 2, got {size:?}"
    );
    let background = logits.softmax(1, logits.kind()).narrow(1, 0, 1);
    Ok(1.0 - background)
}

/// The training-only autoencoder with its own weights and optimiser. It has no `save`: nothing of
/// it belongs in the segmentation model's checkpoint.
pub struct AutoencoderPostProcessing {
    config: AppConfig,
    vs: nn::VarStore,
    network: Network,
    optimizer: Adam,
}

impl std::fmt::Debug for AutoencoderPostProcessing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoencoderPostProcessing")
            .field("config", &self.config)
            .field("parameters", &self.parameter_count())
            .finish()
    }
}

impl AutoencoderPostProcessing {
    pub fn new(config: &AppConfig, device: Device) -> Result<Self> {
        config.validate()?;
        let vs = nn::VarStore::new(device);
        let network = Network::new(&(vs.root() / "app"), &config.architecture);
        // Ours, not tch's, so that its moments go into the training checkpoint and a resumed
        // run continues the autoencoder where it stopped.
        let optimizer = Adam::with_prefix(
            &vs,
            AdamConfig {
                lr: config.learning_rate,
                ..AdamConfig::default()
            },
            "training_only.app_adam",
        );
        Ok(Self {
            config: config.clone(),
            vs,
            network,
            optimizer,
        })
    }

    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// The autoencoder's own variables (not the segmentation model's).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn parameter_count(&self) -> i64 {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }

    fn check_input(&self, probs: &Tensor) -> Result<()> {
        let size = probs.size();
        ensure!(
            size.len() == 4 && size[1] == 1,
            "APP reads a foreground probability map N×1×H×W, got {size:?} (see \
             foreground_probability)"
        );
        ensure!(
            matches!(
                probs.kind(),
                Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
            ),
            "APP reads probabilities, got a {:?} tensor",
            probs.kind()
        );
        match (&self.network, &self.config.architecture) {
            (Network::FullyConnected { width, .. }, _) => ensure!(
                size[3] == *width,
                "the fully-connected APP was built for tiles {width} pixels wide but the \
                 probability map is {} wide: set the tile size to {width}, build the APP with \
                 AppConfig::faithful({}), or use the convolutional APP",
                size[3],
                size[3]
            ),
            (_, AppArchitecture::Convolutional { channels }) => {
                let factor = 1i64 << channels.len();
                ensure!(
                    size[2] % factor == 0 && size[3] % factor == 0,
                    "the convolutional APP halves the map {} times, so its height and width must \
                     be multiples of {factor}, got {}×{}: pad the tiles or use fewer levels",
                    channels.len(),
                    size[2],
                    size[3]
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// The autoencoder's rebuild of the mask from the probability map, N×1×H×W.
    pub fn reconstruct(&self, seg_probs: &Tensor) -> Result<Tensor> {
        self.check_input(seg_probs)?;
        Ok(self
            .network
            .forward(seg_probs, self.config.output_activation))
    }

    /// MSE between the rebuild of `seg_probs` (N×1×H×W, still attached to the segmentation
    /// network's graph) and the ground truth (N×H×W class ids or N×1×H×W; any nonzero value is
    /// foreground). Add it to the segmentation loss, run backward once on the sum, then step both
    /// optimisers.
    pub fn loss(&self, seg_probs: &Tensor, target: &Tensor) -> Result<Tensor> {
        let rebuilt = self.reconstruct(seg_probs)?;
        let size = seg_probs.size();
        let ts = target.size();
        let target = match ts.len() {
            3 => target.unsqueeze(1),
            _ => target.shallow_clone(),
        };
        ensure!(
            target.size() == size,
            "the ground-truth mask is {ts:?} but the probability map {size:?}: the mask and the \
             image must have the same size"
        );
        let truth = target
            .ne(0)
            .to_kind(seg_probs.kind())
            .to_device(seg_probs.device());
        Ok(rebuilt.mse_loss(&truth, tch::Reduction::Mean))
    }

    /// Applies one Adam update to the autoencoder from the gradients of the last backward pass,
    /// then clears them for the next batch.
    pub fn step(&mut self) {
        self.optimizer.step();
        self.optimizer.zero_grad();
    }

    pub fn zero_grad(&mut self) {
        self.optimizer.zero_grad();
    }

    /// The autoencoder's optimiser state, for the training checkpoint.
    pub fn optimizer_state(&self) -> Vec<(String, Tensor)> {
        self.optimizer.state_tensors()
    }

    pub fn load_optimizer_state(
        &mut self,
        state: &std::collections::HashMap<String, Tensor>,
    ) -> Result<()> {
        self.optimizer.load_state(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segmentation::loss::{weighted_cross_entropy, ClassWeights};

    fn small_fc(width: i64) -> AppConfig {
        AppConfig {
            architecture: AppArchitecture::FullyConnected {
                width,
                hidden: vec![32, 4, 32],
            },
            output_activation: OutputActivation::Gelu,
            learning_rate: 1e-3,
        }
    }

    /// A stand-in segmentation network: one 3×3 convolution from 1 channel to 2 classes.
    fn segmenter(vs: &nn::VarStore) -> nn::Conv2D {
        let cfg = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        nn::conv2d(vs.root() / "seg", 1, 2, 3, cfg)
    }

    fn batch() -> (Tensor, Tensor) {
        tch::manual_seed(3);
        let image = Tensor::rand([2, 1, 8, 8], (Kind::Float, Device::Cpu));
        let mask = image.gt(0.6).to_kind(Kind::Int64).squeeze_dim(1);
        (image, mask)
    }

    /// One segmenter and one batch, built once: the global RNG is shared with tests running on
    /// other threads, so re-seeding between runs would not make them see the same weights.
    struct Fixture {
        vs: nn::VarStore,
        seg: nn::Conv2D,
        image: Tensor,
        mask: Tensor,
    }

    impl Fixture {
        fn new() -> Self {
            let vs = nn::VarStore::new(Device::Cpu);
            let seg = segmenter(&vs);
            let (image, mask) = batch();
            Fixture {
                vs,
                seg,
                image,
                mask,
            }
        }

        fn gradients(
            &self,
            with_app: Option<&AutoencoderPostProcessing>,
            detach: bool,
        ) -> Vec<Tensor> {
            let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, v) in &vars {
                let mut g = v.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
            let logits = self.seg.forward(&self.image);
            let weights = ClassWeights::from_pixel_counts(&[3, 1]).unwrap();
            let segmentation_loss = weighted_cross_entropy(&logits, &self.mask, &weights).unwrap();
            let total = match with_app {
                None => segmentation_loss,
                Some(app) => {
                    let mut probs = foreground_probability(&logits).unwrap();
                    if detach {
                        probs = probs.detach();
                    }
                    segmentation_loss + app.loss(&probs, &self.mask).unwrap()
                }
            };
            total.backward();
            vars.into_iter().map(|(_, v)| v.grad().copy()).collect()
        }
    }

    #[test]
    fn app_feedback_reaches_the_segmentation_network() {
        for config in [small_fc(8), AppConfig::convolutional()] {
            let app = AutoencoderPostProcessing::new(&config, Device::Cpu).unwrap();
            let fixture = Fixture::new();
            let without = fixture.gradients(None, false);
            let with = fixture.gradients(Some(&app), false);
            let detached = fixture.gradients(Some(&app), true);
            let diff: f64 = without
                .iter()
                .zip(&with)
                .map(|(a, b)| (a - b).abs().max().double_value(&[]))
                .fold(0.0, f64::max);
            assert!(
                diff > 1e-9,
                "{config:?}: APP changed no segmentation gradient"
            );
            // The public code's bug: a detached map leaves the segmentation gradients untouched.
            for (a, b) in without.iter().zip(&detached) {
                assert!((a - b).abs().max().double_value(&[]) == 0.0);
            }
        }
    }

    #[test]
    fn the_app_loss_alone_gives_the_logits_a_gradient() {
        let app = AutoencoderPostProcessing::new(&small_fc(8), Device::Cpu).unwrap();
        let (_, mask) = batch();
        let logits =
            Tensor::randn([2, 2, 8, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let probs = foreground_probability(&logits).unwrap();
        let loss = app.loss(&probs, &mask).unwrap();
        let g = Tensor::run_backward(&[loss], &[&logits], false, false);
        assert!(g[0].abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn step_updates_only_the_autoencoder_and_its_weights_stay_out_of_the_model() {
        let seg_vs = nn::VarStore::new(Device::Cpu);
        let seg = segmenter(&seg_vs);
        let before: Vec<String> = {
            let mut k: Vec<String> = seg_vs.variables().into_keys().collect();
            k.sort();
            k
        };
        let mut app =
            AutoencoderPostProcessing::new(&AppConfig::convolutional(), Device::Cpu).unwrap();
        let mut after: Vec<String> = seg_vs.variables().into_keys().collect();
        after.sort();
        assert_eq!(
            before, after,
            "building APP added variables to the segmentation model"
        );
        assert!(app
            .var_store()
            .variables()
            .keys()
            .all(|k| k.starts_with("app.")));

        let snapshot: Vec<Tensor> = app
            .var_store()
            .trainable_variables()
            .iter()
            .map(|t| t.copy())
            .collect();
        let seg_snapshot: Vec<Tensor> = seg_vs
            .trainable_variables()
            .iter()
            .map(|t| t.copy())
            .collect();
        let (image, mask) = batch();
        let loss = app
            .loss(
                &foreground_probability(&seg.forward(&image)).unwrap(),
                &mask,
            )
            .unwrap();
        loss.backward();
        app.step();
        let moved = app
            .var_store()
            .trainable_variables()
            .iter()
            .zip(&snapshot)
            .any(|(a, b)| (a - b).abs().max().double_value(&[]) > 0.0);
        assert!(moved, "APP's Adam did not move its weights");
        for (a, b) in seg_vs.trainable_variables().iter().zip(&seg_snapshot) {
            assert_eq!(
                (a - b).abs().max().double_value(&[]),
                0.0,
                "APP's step moved the model"
            );
        }
        // Gradients are cleared after the step.
        for v in app.var_store().trainable_variables() {
            let g = v.grad();
            assert!(!g.defined() || g.abs().sum(Kind::Float).double_value(&[]) == 0.0);
        }
        // The saved segmentation model has the same size with or without APP alive beside it.
        let dir = std::env::temp_dir().join(format!("myoscope-app-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("seg.safetensors");
        seg_vs.save(&file).unwrap();
        let with_app = std::fs::metadata(&file).unwrap().len();
        drop(app);
        seg_vs.save(&file).unwrap();
        assert_eq!(with_app, std::fs::metadata(&file).unwrap().len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_faithful_preset_is_the_papers_layer_list() {
        let app =
            AutoencoderPostProcessing::new(&AppConfig::faithful(PAPER_WIDTH), Device::Cpu).unwrap();
        let vars = app.var_store().variables();
        let expect = [
            (480, 15360),
            (15360, 256),
            (256, 128),
            (128, 64),
            (64, 32),
            (32, 16),
            (16, 32),
            (32, 64),
            (64, 128),
            (128, 256),
            (256, 480),
        ];
        assert_eq!(vars.len(), 2 * expect.len());
        for (i, (fan_in, fan_out)) in expect.iter().enumerate() {
            assert_eq!(
                vars[&format!("app.fc{i}.weight")].size(),
                vec![*fan_out, *fan_in]
            );
        }
        // Applied along the width: any number of rows, 480 columns.
        let probs = Tensor::rand([1, 1, 2, 480], (Kind::Float, Device::Cpu));
        let out = app.reconstruct(&probs).unwrap();
        assert_eq!(out.size(), vec![1, 1, 2, 480]);
        // GELU on the output too: nothing below GELU's minimum (≈ −0.17).
        assert!(out.min().double_value(&[]) > -0.2);
    }

    #[test]
    fn wrong_sizes_are_errors_that_say_how_to_fix_them() {
        let app = AutoencoderPostProcessing::new(&small_fc(8), Device::Cpu).unwrap();
        let probs = Tensor::rand([1, 1, 4, 6], (Kind::Float, Device::Cpu));
        let mask = Tensor::zeros([1, 4, 6], (Kind::Int64, Device::Cpu));
        let e = app.loss(&probs, &mask).unwrap_err();
        assert!(e.to_string().contains("8 pixels wide"), "{e}");
        let conv =
            AutoencoderPostProcessing::new(&AppConfig::convolutional(), Device::Cpu).unwrap();
        let e = conv.loss(&probs, &mask).unwrap_err();
        assert!(e.to_string().contains("multiples of 8"), "{e}");
        let probs = Tensor::rand([1, 1, 8, 8], (Kind::Float, Device::Cpu));
        let e = conv.loss(&probs, &mask).unwrap_err();
        assert!(e.to_string().contains("same size"), "{e}");
        assert!(conv.loss(&probs.repeat([1, 2, 1, 1]), &mask).is_err());
        assert!(foreground_probability(&probs.view([1, 8, 8])).is_err());
        let mut bad = AppConfig::convolutional();
        bad.learning_rate = 0.0;
        assert!(AutoencoderPostProcessing::new(&bad, Device::Cpu).is_err());
    }
}
