//! `/v1/segment`: a fluorescence image (a multi-page TIFF with a DAPI page, or a PNG/JPEG)
//! through the loaded DEDL segmentation run, tiled exactly as `myoscope segment predict`
//! tiles it, answered with the mask and overlay as PNG and the nuclei as QuPath GeoJSON.
use super::config::Limits;
use super::error::ApiError;
use super::memfile::MemFile;
use super::pictures::{png_data_uri, rgb_data_uri};
use crate::fluorescence::pages::TiffFile;
use crate::fluorescence::{read_channel, ChannelSelector, Normalisation};
use crate::segmentation::outputs::geojson::{mask_to_feature_collection, GeoJsonOptions};
use crate::segmentation::outputs::overlay::{grey_from_values, render_overlay, OverlayStyle};
use crate::segmentation::outputs::LabelImage;
use crate::segmentation::predict::{argmax_mask, probabilities, TiledInference};
use crate::segmentation::run::SegmentationRun;
use crate::segmentation::tiling::PlaneStack;
use anyhow::Result;
use image::ImageFormat;
use serde::Serialize;
use std::path::Path;

pub struct Segmenter {
    run: SegmentationRun,
}

#[derive(Debug, Serialize)]
pub struct SegmentResult {
    pub name: String,
    pub channel: String,
    pub width: usize,
    pub height: usize,
    pub nuclei: usize,
    pub nucleus_pixel_fraction: f64,
    /// 0/255 mask, full size.
    pub mask: String,
    /// The channel in grey with every nucleus outlined (shrunk to the picture size).
    pub overlay: String,
    /// QuPath detections (File → Import objects from file).
    pub geojson: serde_json::Value,
}

impl Segmenter {
    pub fn open(dir: &Path, device: tch::Device) -> Result<Self> {
        Ok(Self {
            run: SegmentationRun::open(dir, device)?,
        })
    }

    pub fn default_channel(&self) -> &str {
        &self.run.config.data.channel
    }

    /// `format` comes from [`super::upload::check_header`], which has already refused unknown
    /// content and oversized first pages.
    pub fn segment(
        &self,
        name: &str,
        bytes: &[u8],
        format: ImageFormat,
        channel: Option<&str>,
        min_area: u64,
        limits: &Limits,
    ) -> Result<SegmentResult, ApiError> {
        let channel = channel.unwrap_or(self.default_channel()).to_string();
        let selector: ChannelSelector = channel
            .parse()
            .map_err(|e: anyhow::Error| ApiError::bad_request("bad_channel", e.to_string()))?;
        let file = MemFile::with_bytes(bytes).map_err(|e| ApiError::internal(e.to_string()))?;
        let path = file.path();
        // Every page of a TIFF, not only the first, must be within the pixel limit before any
        // is decoded.
        let hide = |e: anyhow::Error| format!("{e:#}").replace(&path.display().to_string(), name);
        if format == ImageFormat::Tiff {
            let pages = TiffFile::open(&path)
                .and_then(|mut f| f.pages())
                .map_err(|e| ApiError::unprocessable("unreadable", hide(e)))?;
            if let Some(p) = pages
                .iter()
                .find(|p| p.width as u64 * p.height as u64 > limits.max_pixels)
            {
                return Err(ApiError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_pixels",
                    format!(
                        "{name}: page {} is {}×{}; this server takes pages up to {:.1} megapixels",
                        p.ifd_index + 1,
                        p.width,
                        p.height,
                        limits.max_pixels as f64 / 1e6
                    ),
                ));
            }
        }
        let plane = read_channel(&path, &selector, &Normalisation::default())
            .map_err(|e| ApiError::unprocessable("wrong_channels", hide(e)))?;
        let (w, h) = (plane.width, plane.height);
        let tiles = self
            .run
            .tiles()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let how = TiledInference {
            tiles,
            batch_size: self.run.config.training.batch_size,
            device: self.run.device,
        };
        let run = || -> Result<SegmentResult> {
            let stack = PlaneStack::new(&plane.data, 1, h, w)?;
            let (classes, probs) = probabilities(&self.run.net, &stack, &how, None)?;
            let mask = argmax_mask(&probs, classes, h, w);
            let labels = LabelImage::from_values(w, h, &mask)?;
            let grey = grey_from_values(&plane.data, w, h)?;
            let overlay = render_overlay(&grey, &labels, &OverlayStyle::default())?;
            let geojson = mask_to_feature_collection(
                &labels,
                &GeoJsonOptions {
                    min_area,
                    ..GeoJsonOptions::default()
                },
            )?;
            let nuclei = geojson["features"].as_array().map_or(0, |f| f.len());
            let binary: Vec<u8> = mask.iter().map(|&m| if m != 0 { 255 } else { 0 }).collect();
            let foreground = mask.iter().filter(|&&m| m != 0).count();
            Ok(SegmentResult {
                name: name.to_string(),
                channel: channel.clone(),
                width: w,
                height: h,
                nuclei,
                nucleus_pixel_fraction: foreground as f64 / (w * h).max(1) as f64,
                mask: png_data_uri(&binary, w as u32, h as u32, image::ExtendedColorType::L8)?,
                overlay: rgb_data_uri(&overlay, limits.picture_side.max(1024))?,
                geojson,
            })
        };
        run().map_err(|e| ApiError::unprocessable("segmentation_failed", hide(e)))
    }
}
