//! Nucleus outlines as QuPath-compatible GeoJSON (File → Import objects from file).
//!
//! QuPath reads a `FeatureCollection` whose features carry a GeoJSON geometry and, under
//! `properties`, `objectType` ("detection" here: many small objects, drawn lightly, not editable
//! like annotations), `classification` `{name, color: [r, g, b]}`, and `measurements` as an object
//! of name → number (QuPath ≥ 0.4 writes them so and also reads the older list form). Coordinates
//! are image pixels, origin at the top-left corner of the full-resolution image; polygon rings are
//! closed. A feature `id` is optional (QuPath then makes a UUID), so none is written.
use super::components::{connected_components, Connectivity, Instances};
use super::contours::outlines;
use super::LabelImage;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeoJsonOptions {
    /// QuPath classification of every nucleus.
    pub class_name: String,
    pub class_color: [u8; 3],
    /// Douglas–Peucker tolerance in pixels (0 = the exact pixel-edge outline).
    pub simplify_tolerance: f64,
    /// Nuclei with fewer pixels are left out (speckle).
    pub min_area: u64,
    pub connectivity: Connectivity,
    /// Write area, perimeter and centroid (in pixels) as QuPath measurements.
    pub measurements: bool,
}

impl Default for GeoJsonOptions {
    fn default() -> Self {
        Self {
            class_name: "Nucleus".into(),
            class_color: [0, 200, 255],
            simplify_tolerance: 0.5,
            min_area: 1,
            connectivity: Connectivity::Eight,
            measurements: true,
        }
    }
}

/// Rounds to 1/1000 pixel: enough for sub-pixel vertices, and it keeps files small.
fn coordinate(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// One detection feature per nucleus of `instances`.
pub fn instances_to_feature_collection(
    instances: &Instances,
    options: &GeoJsonOptions,
) -> Result<Value> {
    ensure!(
        !options.class_name.trim().is_empty(),
        "the QuPath classification name is empty: give one such as \"Nucleus\""
    );
    let kept = instances.without_smaller_than(options.min_area)?;
    let rings = outlines(&kept, options.simplify_tolerance)?;
    let features: Vec<Value> = rings
        .iter()
        .zip(&kept.areas)
        .map(|(ring, &pixels)| {
            let coords: Vec<Value> = ring
                .points
                .iter()
                .map(|p| json!([coordinate(p[0]), coordinate(p[1])]))
                .collect();
            let mut properties = Map::new();
            properties.insert("objectType".into(), json!("detection"));
            properties.insert(
                "classification".into(),
                json!({"name": options.class_name, "color": options.class_color}),
            );
            if options.measurements {
                let c = ring.centroid();
                properties.insert(
                    "measurements".into(),
                    json!({
                        "Area px^2": pixels,
                        "Outline area px^2": coordinate(ring.area()),
                        "Perimeter px": coordinate(ring.perimeter()),
                        "Centroid X px": coordinate(c[0]),
                        "Centroid Y px": coordinate(c[1]),
                    }),
                );
            }
            json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [coords]},
                "properties": properties,
            })
        })
        .collect();
    Ok(json!({"type": "FeatureCollection", "features": features}))
}

/// Labels the nuclei of a semantic mask (any nonzero value is nucleus; different values stay
/// separate) and outlines them. An empty mask gives an empty, valid FeatureCollection.
pub fn mask_to_feature_collection(mask: &LabelImage, options: &GeoJsonOptions) -> Result<Value> {
    let instances = connected_components(mask, options.connectivity)?;
    instances_to_feature_collection(&instances, options)
}

pub fn write_geojson(path: &Path, collection: &Value) -> Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("creating the GeoJSON file {}", path.display()))?;
    serde_json::to_writer(std::io::BufWriter::new(file), collection)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_mask_is_an_empty_feature_collection() {
        let mask = LabelImage::new(4, 3, vec![0; 12]).unwrap();
        let fc = mask_to_feature_collection(&mask, &GeoJsonOptions::default()).unwrap();
        assert_eq!(fc, json!({"type": "FeatureCollection", "features": []}));
        let nothing = LabelImage::new(0, 0, vec![]).unwrap();
        assert!(mask_to_feature_collection(&nothing, &GeoJsonOptions::default()).is_ok());
    }

    #[test]
    fn features_carry_qupath_properties() {
        let mut v = vec![0u32; 36];
        for (x, y) in [(1, 1), (2, 1), (1, 2), (2, 2), (4, 4)] {
            v[y * 6 + x] = 1;
        }
        let mask = LabelImage::new(6, 6, v).unwrap();
        let options = GeoJsonOptions {
            min_area: 2,
            ..Default::default()
        };
        let fc = mask_to_feature_collection(&mask, &options).unwrap();
        let features = fc["features"].as_array().unwrap();
        assert_eq!(features.len(), 1, "the 1-pixel speckle is dropped");
        let f = &features[0];
        assert_eq!(f["type"], "Feature");
        assert_eq!(f["geometry"]["type"], "Polygon");
        assert_eq!(f["properties"]["objectType"], "detection");
        assert_eq!(f["properties"]["classification"]["name"], "Nucleus");
        assert_eq!(
            f["properties"]["classification"]["color"],
            json!([0, 200, 255])
        );
        assert_eq!(f["properties"]["measurements"]["Area px^2"], 4);
        assert_eq!(f["properties"]["measurements"]["Centroid X px"], 2.0);
        let ring = f["geometry"]["coordinates"][0].as_array().unwrap();
        assert_eq!(ring.first(), ring.last());
        assert_eq!(ring[0], json!([1.0, 1.0]));
        let bad = GeoJsonOptions {
            class_name: " ".into(),
            ..Default::default()
        };
        assert!(mask_to_feature_collection(&mask, &bad).is_err());
    }
}
