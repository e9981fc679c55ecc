//! Multi-page fluorescence TIFFs (inForm `component_data.tif`, Vectra/Polaris `.qptiff`,
//! plain multi-page or multi-sample TIFFs): channels as `f32` planes, channel names from the
//! ImageDescription XML, per-channel normalisation, and instance → semantic label masks.
//! PNG/JPEG images (DSB2018 nuclei) go through the same calls as one-page files.
//!
//! - **Pages or samples are channels.** Pages of the channel size are channels; thumbnails,
//!   pyramid levels, label and overview images are skipped (rules in [`layout`]). A page with
//!   several samples contributes one channel per sample.
//! - **Sample types:** uint8/16/32, int8/16/32, float16/32/64; uncompressed, LZW, deflate,
//!   PackBits or JPEG; strips or tiles; classic TIFF or BigTIFF.
//! - **Choosing a channel:** by name, case-insensitively (`DAPI`), or by **1-based** position
//!   (`4`), see [`ChannelSelector`].
//! - **Normalisation:** 8-bit ÷ 255, 16-bit and float stretched between the 1st and 99.8th
//!   percentiles, per channel; see [`Normalisation`].
//! - **Bad input** gives errors that say what the file holds and how to fix the call: unknown
//!   names list the names found, too-large positions list the channels and the skipped pages,
//!   NaNs are counted per page, truncated files say so.
//!
//! ```no_run
//! use myoscope::fluorescence::{read_channel, ChannelSelector, Normalisation};
//! let dapi = read_channel(
//!     std::path::Path::new("component_data.tif"),
//!     &"DAPI".parse::<ChannelSelector>()?,
//!     &Normalisation::default(),
//! )?;
//! assert!(dapi.data.iter().all(|v| (0.0..=1.0).contains(v)));
//! # Ok::<(), anyhow::Error>(())
//! ```
pub mod description;
pub mod labels;
pub mod layout;
pub mod normalise;
pub mod pages;
pub mod plane;
pub mod raster;
pub mod selector;
pub mod stack;
pub mod xml;

#[cfg(test)]
mod tests;

pub use labels::{read_label_map, ClassMapping, LabelMap, SemanticMask};
pub use layout::{ChannelInfo, ChannelLayout, SkippedPage};
pub use normalise::Normalisation;
pub use plane::{Plane, PlaneStats, SampleType};
pub use selector::ChannelSelector;
pub use stack::{read_channel, read_channels, ChannelStack};
