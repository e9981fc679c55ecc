//! What the classifier looked at: Grad-CAM heat-maps (plain and patch-weighted), the
//! AI-focused / AI-unfocused images of Kabeya et al.'s visualisation test, overlays, and the
//! pointing game against known lesion masks.
pub mod gradcam;
pub mod job;
pub mod photos;
pub mod pointing;
pub mod render;
