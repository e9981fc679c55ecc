//! What segmentation writes: full-size masks, overlays, QuPath GeoJSON contours.
