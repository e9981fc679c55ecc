//! Does the heat-map point at the lesion? On data whose lesions are drawn (the synthetic
//! demo writes a mask per photo) two standard checks: the pointing game (is the map's maximum
//! inside the lesion?) and the share of the map's mass that lies inside the lesion, next to
//! the lesion's share of the area (what a uniform map would score).
use super::render::SquareHeat;
use image::GrayImage;
use serde::Serialize;

/// One photo's result; `None` from [`score`] when the square holds no lesion.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PhotoScore {
    pub hit: bool,
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
    Some(PhotoScore {
        hit: inside[argmax],
        mass_inside: if total > 0.0 { within / total } else { 0.0 },
        lesion_area: lesion as f64 / inside.len() as f64,
    })
}

/// Totals over the lesion photos of one heat-map method.
#[derive(Debug, Clone, Serialize)]
pub struct PointingSummary {
    pub photos: usize,
    pub hit_rate: f64,
    pub mean_mass_inside: f64,
    /// Mean lesion share of the area: the mass a uniform map would put inside.
    pub mean_lesion_area: f64,
}

pub fn summarise(scores: &[PhotoScore]) -> PointingSummary {
    let n = scores.len().max(1) as f64;
    PointingSummary {
        photos: scores.len(),
        hit_rate: scores.iter().filter(|s| s.hit).count() as f64 / n,
        mean_mass_inside: scores.iter().map(|s| s.mass_inside).sum::<f64>() / n,
        mean_lesion_area: scores.iter().map(|s| s.lesion_area).sum::<f64>() / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

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
        let sum = summarise(&[
            s,
            PhotoScore {
                hit: false,
                mass_inside: 0.25,
                lesion_area: 0.5,
            },
        ]);
        assert_eq!(sum.photos, 2);
        assert!((sum.hit_rate - 0.5).abs() < 1e-12 && (sum.mean_mass_inside - 0.5).abs() < 1e-6);
    }
}
