//! Does the heat-map point at the lesion? On data whose lesions are drawn (the synthetic
//! demo writes a mask per photo) two standard checks: the pointing game (is the map's maximum
//! inside the lesion?) and the share of the map's mass that lies inside the lesion, next to
//! the lesion's share of the area (what a uniform map would score).
use super::render::SquareHeat;
use image::GrayImage;
use serde::Serialize;

/// Zhang et al.'s pointing game counts a maximum within 15 pixels of the annotation as a hit;
/// reported beside the strict "inside the mask" rate.
pub const TOLERANCE_PX: i64 = 15;

/// One photo's result; `None` from [`score`] when the square holds no lesion.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PhotoScore {
    pub hit: bool,
    /// The maximum lies within [`TOLERANCE_PX`] of a lesion pixel.
    pub hit_within_tolerance: bool,
    pub mass_inside: f64,
    pub lesion_area: f64,
}

pub fn score(heat: &SquareHeat, mask: &GrayImage) -> Option<PhotoScore> {
    if mask.dimensions() != (heat.side, heat.side) {
        return None;
    }
    let inside: Vec<bool> = mask.pixels().map(|p| p[0] >= 128).collect();
    let lesion = inside.iter().filter(|&&b| b).count();
    if lesion == 0 {
        return None;
    }
    let (argmax, _) =
        heat.values
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 {
                    (i, v)
                } else {
                    best
                }
            });
    let total: f64 = heat.values.iter().map(|&v| v as f64).sum();
    let within: f64 = heat
        .values
        .iter()
        .zip(&inside)
        .filter(|(_, &b)| b)
        .map(|(&v, _)| v as f64)
        .sum();
    let side = heat.side as i64;
    let (ax, ay) = (argmax as i64 % side, argmax as i64 / side);
    let r = TOLERANCE_PX;
    let near = (ay - r..=ay + r)
        .filter(|y| (0..side).contains(y))
        .any(|y| {
            (ax - r..=ax + r)
                .filter(|x| (0..side).contains(x))
                .any(|x| {
                    (x - ax).pow(2) + (y - ay).pow(2) <= r * r && inside[(y * side + x) as usize]
                })
        });
    Some(PhotoScore {
        hit: inside[argmax],
        hit_within_tolerance: near,
        mass_inside: if total > 0.0 { within / total } else { 0.0 },
        lesion_area: lesion as f64 / inside.len() as f64,
    })
}

/// Totals over the lesion photos of one heat-map method.
#[derive(Debug, Clone, Serialize)]
pub struct PointingSummary {
    pub photos: usize,
    /// Share of lesion photos whose map maximum lies inside the lesion mask.
    pub hit_rate: f64,
    /// The same with Zhang et al.'s 15-pixel tolerance.
    pub hit_rate_within_15px: f64,
    pub mean_mass_inside: f64,
    /// Mean lesion share of the area: the mass a uniform map would put inside.
    pub mean_lesion_area: f64,
}

pub fn summarise(scores: &[PhotoScore]) -> PointingSummary {
    let n = scores.len().max(1) as f64;
    PointingSummary {
        photos: scores.len(),
        hit_rate: scores.iter().filter(|s| s.hit).count() as f64 / n,
        hit_rate_within_15px: scores.iter().filter(|s| s.hit_within_tolerance).count() as f64 / n,
        mean_mass_inside: scores.iter().map(|s| s.mass_inside).sum::<f64>() / n,
        mean_lesion_area: scores.iter().map(|s| s.lesion_area).sum::<f64>() / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    #[test]
    fn near_misses_count_only_within_the_tolerance() {
        let side = 64u32;
        let mut mask = GrayImage::new(side, side);
        mask.put_pixel(40, 10, Luma([255]));
        let at = |x: u32, y: u32| {
            let mut values = vec![0.0f32; (side * side) as usize];
            values[(y * side + x) as usize] = 1.0;
            score(&SquareHeat { side, values }, &mask).unwrap()
        };
        let s = at(40 + 9, 10 + 12); // 15 px away
        assert!(!s.hit && s.hit_within_tolerance);
        let s = at(40 + 11, 10 + 11); // 15.6 px away
        assert!(!s.hit && !s.hit_within_tolerance);
    }

    #[test]
    fn hits_and_mass_follow_the_mask() {
        let mut mask = GrayImage::new(4, 4);
        mask.put_pixel(3, 0, Luma([255]));
        mask.put_pixel(3, 1, Luma([255]));
        let mut values = vec![0.0f32; 16];
        values[3] = 1.0; // (3, 0): inside
        values[0] = 1.0 / 3.0;
        let heat = SquareHeat { side: 4, values };
        let s = score(&heat, &mask).unwrap();
        assert!(s.hit);
        assert!((s.mass_inside - 0.75).abs() < 1e-6);
        assert!((s.lesion_area - 2.0 / 16.0).abs() < 1e-12);
        assert!(score(&heat, &GrayImage::new(4, 4)).is_none());
        assert!(s.hit_within_tolerance);
        let sum = summarise(&[
            s,
            PhotoScore {
                hit: false,
                hit_within_tolerance: true,
                mass_inside: 0.25,
                lesion_area: 0.5,
            },
        ]);
        assert_eq!(sum.photos, 2);
        assert!((sum.hit_rate_within_15px - 1.0).abs() < 1e-12);
        assert!((sum.hit_rate - 0.5).abs() < 1e-12 && (sum.mean_mass_inside - 0.5).abs() < 1e-6);
    }
}
