//! Procedural H&E-like skeletal-muscle cross-sections: the built-in demo
//! data set (no muscle-biopsy data set is public).
//!
//! A photo is planned as a weighted (power) Voronoi diagram of packed discs —
//! one cell per fibre — with fascicle borders, vessels and inflammatory foci
//! laid over it, painted as haematoxylin/eosin concentrations and then
//! "photographed" with per-slide stain colours, uneven light, blur and noise.
//! Each class carries a real pathological sign, and the lesion mask marks it:
//!
//! * `normal` — uniform polygonal fibres, peripheral nuclei only;
//! * `inflammatory` — foci of lymphocytes in widened endomysium/perimysium,
//!   sometimes invading a fibre or clearing a necrotic one;
//! * `perifascicular_atrophy` — small, partly basophilic or pale fibres along
//!   a perimysium band crossing the middle of the photo;
//! * `central_nuclei` — many fibres with internal nuclei (the marked sign),
//!   among somewhat rounded fibres of moderately varied size.
//!
//! Lesions are spread so that the left, centre and right square crops of a
//! landscape photo each contain some.

mod dataset;
mod geometry;
mod layout;
mod noise;
mod render;
mod style;

use std::fmt;

use image::{GrayImage, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use dataset::{manifest_columns, write_dataset, SynthSpec};
pub use style::SlideStyle;

/// Diagnostic class of a synthetic photo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SynthClass {
    Normal,
    Inflammatory,
    PerifascicularAtrophy,
    CentralNuclei,
}

impl SynthClass {
    pub const ALL: [SynthClass; 4] = [
        SynthClass::Normal,
        SynthClass::Inflammatory,
        SynthClass::PerifascicularAtrophy,
        SynthClass::CentralNuclei,
    ];

    /// Label used in manifests.
    pub fn name(self) -> &'static str {
        match self {
            SynthClass::Normal => "normal",
            SynthClass::Inflammatory => "inflammatory",
            SynthClass::PerifascicularAtrophy => "perifascicular_atrophy",
            SynthClass::CentralNuclei => "central_nuclei",
        }
    }

    /// Inverse of [`SynthClass::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for SynthClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One rendered photo and its lesion mask.
#[derive(Clone, Debug)]
pub struct SynthPhoto {
    pub rgb: RgbImage,
    /// 255 = lesion, 0 = not; always empty for [`SynthClass::Normal`].
    pub lesion_mask: GrayImage,
    pub class: SynthClass,
}

/// Renders one photo. The result is a pure function of the arguments.
pub fn render_photo(
    class: SynthClass,
    style: &SlideStyle,
    seed: u64,
    width: u32,
    height: u32,
) -> SynthPhoto {
    if width == 0 || height == 0 {
        return SynthPhoto {
            rgb: RgbImage::new(width, height),
            lesion_mask: GrayImage::new(width, height),
            class,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let plan = layout::plan(class, width, height, &mut rng);
    let geom = geometry::Geometry::build(&plan, width, height);
    let (rgb, lesion_mask) = render::render(&plan, &geom, style, &mut rng);
    SynthPhoto {
        rgb,
        lesion_mask,
        class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(seed: u64) -> SlideStyle {
        SlideStyle::random(&mut ChaCha8Rng::seed_from_u64(seed))
    }

    fn lesion_pixels(mask: &GrayImage, x0: u32, side: u32) -> usize {
        let mut n = 0;
        for y in 0..mask.height().min(side) {
            for x in x0..(x0 + side).min(mask.width()) {
                n += usize::from(mask.get_pixel(x, y)[0] == 255);
            }
        }
        n
    }

    #[test]
    fn names_round_trip() {
        for c in SynthClass::ALL {
            assert_eq!(SynthClass::from_name(c.name()), Some(c));
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!(SynthClass::from_name("myositis"), None);
    }

    #[test]
    fn same_seed_gives_same_bytes() {
        for class in SynthClass::ALL {
            let a = render_photo(class, &style(1), 42, 160, 120);
            let b = render_photo(class, &style(1), 42, 160, 120);
            assert_eq!(a.rgb.as_raw(), b.rgb.as_raw(), "{class}");
            assert_eq!(a.lesion_mask.as_raw(), b.lesion_mask.as_raw(), "{class}");
            let c = render_photo(class, &style(1), 43, 160, 120);
            assert_ne!(a.rgb.as_raw(), c.rgb.as_raw(), "{class}");
        }
    }

    #[test]
    fn dimensions_and_class() {
        for (w, h) in [(400, 300), (97, 61), (64, 64)] {
            for class in SynthClass::ALL {
                let p = render_photo(class, &style(2), 7, w, h);
                assert_eq!(p.rgb.dimensions(), (w, h));
                assert_eq!(p.lesion_mask.dimensions(), (w, h));
                assert_eq!(p.class, class);
            }
        }
    }

    #[test]
    fn mask_is_binary_and_matches_class() {
        for seed in 0..6 {
            for class in SynthClass::ALL {
                let p = render_photo(class, &style(seed), seed, 200, 150);
                assert!(p.lesion_mask.pixels().all(|v| v[0] == 0 || v[0] == 255));
                let n = lesion_pixels(&p.lesion_mask, 0, 200);
                if class == SynthClass::Normal {
                    assert_eq!(n, 0, "normal photo with lesion, seed {seed}");
                } else {
                    assert!(n > 0, "{class} photo without lesion, seed {seed}");
                }
            }
        }
    }

    #[test]
    fn every_square_crop_sees_lesion() {
        let (w, h) = (400, 300);
        for seed in 0..8 {
            for class in &SynthClass::ALL[1..] {
                let p = render_photo(*class, &style(seed + 100), seed, w, h);
                for (name, x0) in [("left", 0), ("centre", (w - h) / 2), ("right", w - h)] {
                    let n = lesion_pixels(&p.lesion_mask, x0, h);
                    assert!(
                        n >= 100,
                        "{class} seed {seed}: {name} crop has {n} lesion pixels"
                    );
                }
            }
        }
    }

    #[test]
    fn write_dataset_writes_rows_and_files() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("myoscope-synth-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spec = SynthSpec {
            slides_per_class: 2,
            photos_per_slide: 2,
            width: 96,
            height: 72,
            seed: 5,
        };
        let manifest = write_dataset(&dir, &spec)?;
        assert_eq!(manifest, dir.join("manifest.csv"));
        let mut rd = csv::Reader::from_path(&manifest)?;
        assert_eq!(
            rd.headers()?,
            vec!["path", "label", "slide", "patient", "mask"]
        );
        let rows: Vec<csv::StringRecord> = rd.records().collect::<Result<_, _>>()?;
        assert_eq!(rows.len(), 16);
        for class in SynthClass::ALL {
            assert_eq!(rows.iter().filter(|r| &r[1] == class.name()).count(), 4);
        }
        for r in &rows {
            let img = image::open(dir.join(&r[0]))?;
            assert_eq!((img.width(), img.height()), (96, 72));
            assert!(dir.join(&r[4]).is_file());
            assert_eq!(r[2].replace("slide", "patient"), r[3].to_string());
        }
        assert_eq!(std::fs::read_dir(dir.join("images"))?.count(), 16);
        assert_eq!(std::fs::read_dir(dir.join("masks"))?.count(), 16);

        // Same spec, same bytes.
        let first = std::fs::read(dir.join(&rows[5][0]))?;
        write_dataset(&dir, &spec)?;
        assert_eq!(first, std::fs::read(dir.join(&rows[5][0]))?);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
