//! Optimiser, loss, checkpoints, run directories and the training loop.
pub mod adam;
pub mod checkpoint;
pub mod loss;
pub mod model_spec;
pub mod moments;
pub mod radam;
pub mod run_dir;
pub mod trainer;

pub use model_spec::{LoadedModel, ModelSpec};
pub use trainer::{train, TrainOptions, TrainReport};
