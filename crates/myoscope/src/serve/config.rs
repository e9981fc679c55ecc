//! What the clinic server may accept and how much work it takes on at once. Every limit is
//! enforced before the expensive step it protects: the body size before reading, the pixel
//! count from the image header before decoding, the queue before any decoding at all.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (all photos together), in bytes.
    pub max_upload_bytes: usize,
    /// Largest photo, in pixels (width × height), read from the header before decoding.
    pub max_pixels: u64,
    /// Photos per diagnosis (one slide).
    pub max_photos: usize,
    /// Requests that may wait for a worker; beyond that, 503 with Retry-After.
    pub queue: usize,
    /// Longest a request may wait for and take on a worker before 504.
    pub timeout: Duration,
    /// Longest a client may take to send its upload before 408.
    pub upload_timeout: Duration,
    /// Side of the pictures returned (overlay, focused, unfocused), in pixels; the heat-map is
    /// computed at photo resolution and the picture shrunk to this for the answer.
    pub picture_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 64 << 20,
            max_pixels: 50_000_000,
            max_photos: 6,
            queue: 8,
            timeout: Duration::from_secs(120),
            upload_timeout: Duration::from_secs(60),
            picture_side: 512,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// An ensemble folder (`myoscope cv`), a run directory (`myoscope train`) or a `demo` folder.
    pub model: PathBuf,
    /// A segmentation run directory (`myoscope segment train`), for `/v1/segment`.
    pub segment_model: Option<PathBuf>,
    pub addr: SocketAddr,
    /// When set, `/v1/*` requires `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub device: tch::Device,
    /// libtorch, or ONNX Runtime (fp32 or int8) on the CPU.
    pub engine: crate::onnx::Engine,
    /// Inference threads, each with its own copy of the models.
    pub workers: usize,
    pub limits: Limits,
}
