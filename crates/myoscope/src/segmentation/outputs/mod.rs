//! What segmentation writes: full-size masks, overlays, QuPath GeoJSON contours.
//!
//! Coordinates everywhere follow QuPath's convention: the origin is the top-left corner of the
//! full-resolution image, x to the right, y down, and pixel (x, y) covers the unit square
//! [x, x+1] × [y, y+1], so traced outlines run along pixel edges and enclose whole pixels.
pub mod components;
pub mod contours;
pub mod geojson;
pub mod mask_files;
pub mod overlay;

use anyhow::{ensure, Result};

/// A full-size image of integer labels, row-major: class ids of a semantic mask, or instance
/// labels (0 = background, 1..=n nuclei).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelImage {
    width: usize,
    height: usize,
    labels: Vec<u32>,
}

impl LabelImage {
    pub fn new(width: usize, height: usize, labels: Vec<u32>) -> Result<Self> {
        ensure!(
            width.checked_mul(height) == Some(labels.len()),
            "a {width}×{height} label image needs {} values, got {}",
            width.saturating_mul(height),
            labels.len()
        );
        Ok(Self {
            width,
            height,
            labels,
        })
    }

    /// From any integer mask (for example the `u8` class ids of a prediction).
    pub fn from_values<T: Copy + Into<u32>>(
        width: usize,
        height: usize,
        values: &[T],
    ) -> Result<Self> {
        Self::new(width, height, values.iter().map(|&v| v.into()).collect())
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The label at (x, y); 0 (background) outside the image, so outlines close at the border.
    pub fn at(&self, x: i64, y: i64) -> u32 {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            0
        } else {
            self.labels[y as usize * self.width + x as usize]
        }
    }

    pub fn max_label(&self) -> u32 {
        self.labels.iter().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::components::{connected_components, Connectivity};
    use super::geojson::{mask_to_feature_collection, write_geojson, GeoJsonOptions};
    use super::overlay::{render_overlay, OverlayStyle};
    use super::*;

    /// Discs (cx, cy, r) drawn by pixel centres into a w×h mask of class 1.
    fn discs(w: usize, h: usize, discs: &[(f64, f64, f64)]) -> LabelImage {
        let mut v = vec![0u32; w * h];
        for &(cx, cy, r) in discs {
            for y in 0..h {
                for x in 0..w {
                    let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
                    if dx * dx + dy * dy <= r * r {
                        v[y * w + x] = 1;
                    }
                }
            }
        }
        LabelImage::new(w, h, v).unwrap()
    }

    #[test]
    fn known_discs_become_closed_polygons_of_their_area() {
        let spec = [
            (20.0, 20.0, 12.0),
            (60.0, 25.0, 8.0),
            (35.0, 60.0, 15.5),
            (75.0, 70.0, 5.0),
        ];
        let mask = discs(96, 90, &spec);
        let instances = connected_components(&mask, Connectivity::Eight).unwrap();
        assert_eq!(instances.count(), spec.len());
        let options = GeoJsonOptions {
            simplify_tolerance: 0.75,
            ..Default::default()
        };
        let fc = mask_to_feature_collection(&mask, &options).unwrap();
        // Through a file and back: the JSON parses, and it is what we built.
        let dir = std::env::temp_dir().join(format!("myoscope-discs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nuclei.geojson");
        write_geojson(&path, &fc).unwrap();
        let parsed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(parsed, fc);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(parsed["type"], "FeatureCollection");
        let features = parsed["features"].as_array().unwrap();
        assert_eq!(features.len(), spec.len());
        // Nuclei are numbered in raster order of their top pixel: sort the discs the same way.
        let mut order: Vec<_> = spec.to_vec();
        order.sort_by(|a, b| (a.1 - a.2).total_cmp(&(b.1 - b.2)));
        for (f, &(cx, cy, r)) in features.iter().zip(&order) {
            let ring: Vec<[f64; 2]> = f["geometry"]["coordinates"][0]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
                .collect();
            assert_eq!(ring.first(), ring.last(), "ring not closed");
            assert!(ring.len() >= 8, "a disc outline with {} points", ring.len());
            let area = ring
                .windows(2)
                .map(|p| p[0][0] * p[1][1] - p[1][0] * p[0][1])
                .sum::<f64>()
                / 2.0;
            let disc = std::f64::consts::PI * r * r;
            println!(
                "disc r = {r}: outline area {area:.1} px² vs πr² {disc:.1} ({} points)",
                ring.len()
            );
            assert!(
                (area - disc).abs() / disc < 0.04,
                "disc r = {r}: polygon area {area} vs πr² {disc}"
            );
            let m = &f["properties"]["measurements"];
            assert!((m["Centroid X px"].as_f64().unwrap() - cx).abs() < 0.5);
            assert!((m["Centroid Y px"].as_f64().unwrap() - cy).abs() < 0.5);
        }
        let grey = image::GrayImage::from_pixel(96, 90, image::Luma([40]));
        let overlay = render_overlay(&grey, &instances.labels, &OverlayStyle::default()).unwrap();
        assert_eq!(overlay.dimensions(), grey.dimensions());
    }

    #[test]
    fn label_images_check_their_size() {
        assert!(LabelImage::new(3, 3, vec![0; 8]).is_err());
        let l = LabelImage::from_values(2, 1, &[0u8, 4]).unwrap();
        assert_eq!(l.at(1, 0), 4);
        assert_eq!(l.at(2, 0), 0);
        assert_eq!(l.at(-1, 0), 0);
        assert_eq!(l.max_label(), 4);
    }
}
