//! Per-slide staining and microscope settings.

use rand::Rng;

/// Staining and illumination of one slide: every photo of a slide shares it,
/// so that a classifier evaluated on held-out slides must cope with
/// slide-to-slide colour variation as it would on real biopsies.
///
/// Colour follows the Beer–Lambert model used by stain-separation methods:
/// each stain contributes optical density `concentration × strength × od`
/// per RGB channel, and the camera sees `illuminant × exp(-total OD)`.
#[derive(Clone, Debug, PartialEq)]
pub struct SlideStyle {
    /// Unit optical-density vector (R, G, B) of haematoxylin.
    pub haematoxylin_od: [f32; 3],
    /// Unit optical-density vector (R, G, B) of eosin.
    pub eosin_od: [f32; 3],
    /// Stain uptake multipliers (staining time, section thickness).
    pub haematoxylin_strength: f32,
    pub eosin_strength: f32,
    /// Light reaching the camera through empty glass, 0–255 per channel
    /// (lamp colour after an imperfect white balance).
    pub illuminant: [f32; 3],
    /// Fractional light loss at the photo corners.
    pub vignetting: f32,
    /// Linear illumination tilt across the field (fraction) and its direction.
    pub gradient: f32,
    pub gradient_angle: f32,
    /// Defocus blur sigma as a fraction of photo height, so that it is an
    /// optical property independent of the pixel count.
    pub blur: f32,
    /// Camera noise standard deviation on the 0–255 scale.
    pub noise: f32,
}

impl Default for SlideStyle {
    /// A well-stained, well-lit slide.
    fn default() -> Self {
        Self {
            haematoxylin_od: normalise([0.65, 0.70, 0.29]),
            eosin_od: normalise([0.20, 0.80, 0.45]),
            haematoxylin_strength: 1.0,
            eosin_strength: 1.0,
            illuminant: [250.0, 248.0, 250.0],
            vignetting: 0.08,
            gradient: 0.03,
            gradient_angle: 0.0,
            blur: 0.0022,
            noise: 2.0,
        }
    }
}

impl SlideStyle {
    /// Draws a plausible slide: ranges cover the spread seen between
    /// laboratories (pale vs. over-stained, purple- vs. red-leaning eosin,
    /// warm vs. cool lamps) without leaving the look of H&E.
    pub fn random(rng: &mut impl Rng) -> Self {
        let haematoxylin_od = normalise([
            0.65 + rng.gen_range(-0.08..0.08),
            0.70 + rng.gen_range(-0.06..0.08),
            0.29 + rng.gen_range(-0.07..0.10),
        ]);
        let eosin_od = normalise([
            0.20 + rng.gen_range(-0.08..0.10),
            0.80 + rng.gen_range(-0.05..0.05),
            0.45 + rng.gen_range(-0.15..0.12),
        ]);
        let base = rng.gen_range(228.0..255.0f32);
        let mut illuminant = [0.0; 3];
        for c in &mut illuminant {
            *c = (base + rng.gen_range(-7.0..7.0f32)).min(255.0);
        }
        Self {
            haematoxylin_od,
            eosin_od,
            haematoxylin_strength: rng.gen_range(0.8..1.25),
            eosin_strength: rng.gen_range(0.72..1.3),
            illuminant,
            vignetting: rng.gen_range(0.02..0.18),
            gradient: rng.gen_range(0.0..0.08),
            gradient_angle: rng.gen_range(0.0..std::f32::consts::TAU),
            blur: rng.gen_range(0.0012..0.0035),
            noise: rng.gen_range(1.0..4.0),
        }
    }
}

fn normalise(v: [f32; 3]) -> [f32; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    [v[0] / n, v[1] / n, v[2] / n]
}
