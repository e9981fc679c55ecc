//! `myoscope serve`: the clinic web app and JSON API (see [`crate::serve`]).
use crate::serve::config::{Limits, ServeConfig};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// An ensemble (`myoscope cv`), a run directory (`myoscope train`) or a `myoscope demo` folder.
    #[arg(long)]
    pub model: PathBuf,
    /// A segmentation run (`myoscope segment train`) for /v1/segment.
    #[arg(long)]
    pub segment_model: Option<PathBuf>,
    /// Address to listen on; the default answers only this computer. Use 0.0.0.0 to serve
    /// the network (then give --token).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port (0 picks a free one; the chosen one is printed).
    #[arg(long, default_value_t = 8470)]
    pub port: u16,
    /// Require `Authorization: Bearer TOKEN` on /v1/*, TOKEN being this file's first line (or
    /// set the environment variable MYOSCOPE_TOKEN). A file keeps the secret out of `ps`.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Inference engine: libtorch (`torch`), or ONNX Runtime on the CPU from each model's
    /// `model.onnx` (`onnx`) or `model.int8.onnx` (`onnx-int8`, made by `myoscope export onnx
    /// --int8 --calibrate`): the fast path for a clinic PC.
    #[arg(long, value_enum, default_value_t = crate::onnx::Engine::Torch)]
    pub engine: crate::onnx::Engine,
    /// Inference threads, each holding its own copy of the models.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Requests that may wait for a worker before the server answers 503.
    #[arg(long, default_value_t = 8)]
    pub queue: usize,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_upload_mib: usize,
    /// Largest photo, in megapixels (checked from the header before decoding).
    #[arg(long, default_value_t = 50.0)]
    pub max_megapixels: f64,
    /// Photos per diagnosis (one slide).
    #[arg(long, default_value_t = 6)]
    pub max_photos: usize,
    /// Seconds a request may wait for and spend on a worker before 504.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Longer side of the returned pictures, in pixels.
    #[arg(long, default_value_t = 512)]
    pub picture_side: u32,
}

pub fn run(a: ServeArgs) -> Result<()> {
    if a.workers == 0 || a.workers > 64 {
        bail!("--workers must be between 1 and 64, got {}", a.workers);
    }
    if a.max_photos == 0 {
        bail!("--max-photos must be at least 1");
    }
    let mp = a.max_megapixels;
    if mp.is_nan() || mp <= 0.0 || mp > 1000.0 {
        bail!(
            "--max-megapixels must be in (0, 1000], got {}",
            a.max_megapixels
        );
    }
    if a.max_upload_mib == 0 || a.timeout == 0 {
        bail!("--max-upload-mib and --timeout must be positive");
    }
    let token = match &a.token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read --token-file {}", f.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
        ),
        None => std::env::var("MYOSCOPE_TOKEN").ok(),
    };
    if matches!(&token, Some(t) if t.is_empty()) {
        bail!(
            "the token is empty: put a secret in --token-file (or MYOSCOPE_TOKEN), or leave it out"
        );
    }
    let device = crate::device::parse_device(&a.device)?;
    let config = ServeConfig {
        model: a.model.clone(),
        segment_model: a.segment_model.clone(),
        addr: SocketAddr::new(a.bind, a.port),
        token,
        device,
        engine: a.engine,
        workers: a.workers,
        limits: Limits {
            max_upload_bytes: a
                .max_upload_mib
                .checked_mul(1 << 20)
                .context("--max-upload-mib is too large")?,
            max_pixels: (a.max_megapixels * 1e6) as u64,
            max_photos: a.max_photos,
            queue: a.queue,
            timeout: Duration::from_secs(a.timeout),
            picture_side: a.picture_side,
            ..Limits::default()
        },
    };
    crate::serve::run(config)
}
