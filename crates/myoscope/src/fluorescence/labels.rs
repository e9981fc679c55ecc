//! Instance label maps (0 = background, 1..N = one number per nucleus or cell) and the
//! semantic masks (a class per pixel) that segmentation trains on.
//!
//! Read from 8/16/32-bit grey PNGs (DSB2018 masks) or TIFFs (inForm `binary_seg_maps.tif`,
//! where the page is chosen like a channel: `Nucleus`, or a 1-based position).
use super::layout::ChannelLayout;
use super::pages::{looks_like_tiff, TiffFile};
use super::selector::ChannelSelector;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// One integer label per pixel, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelMap {
    pub width: usize,
    pub height: usize,
    pub labels: Vec<u32>,
}

/// One class per pixel, row-major; class 0 is background.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SemanticMask {
    pub width: usize,
    pub height: usize,
    pub classes: Vec<u8>,
    /// Number of classes including background (at least 2).
    pub num_classes: usize,
}

/// How instances become classes.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassMapping {
    /// Every labelled pixel is class 1 (nucleus vs background).
    Foreground,
    /// Instance label → class (1..=255). `unmapped`: the class for instances missing from
    /// the table, or `None` to make them an error.
    PerInstance {
        classes: HashMap<u32, u8>,
        unmapped: Option<u8>,
    },
}

impl LabelMap {
    pub fn new(width: usize, height: usize, labels: Vec<u32>) -> Result<LabelMap> {
        if width == 0 || height == 0 || labels.len() != width * height {
            bail!(
                "a {width}×{height} label map needs {} labels, got {}",
                width * height,
                labels.len()
            );
        }
        Ok(LabelMap {
            width,
            height,
            labels,
        })
    }

    /// The distinct non-zero labels, ascending.
    pub fn instance_ids(&self) -> Vec<u32> {
        let set: BTreeSet<u32> = self.labels.iter().copied().filter(|&l| l != 0).collect();
        set.into_iter().collect()
    }

    /// How many objects are labelled.
    pub fn instance_count(&self) -> usize {
        self.instance_ids().len()
    }

    /// An error unless this map is `width × height`; `image` names the image in the message.
    pub fn ensure_size(&self, width: usize, height: usize, image: &str) -> Result<()> {
        if (self.width, self.height) != (width, height) {
            bail!(
                "the mask is {}×{} but its image {image} is {width}×{height}; masks must be \
                 pixel-aligned with their image (same width and height, no resizing)",
                self.width,
                self.height
            );
        }
        Ok(())
    }

    pub fn to_semantic(&self, mapping: &ClassMapping) -> Result<SemanticMask> {
        let (classes, num_classes) = match mapping {
            ClassMapping::Foreground => {
                (self.labels.iter().map(|&l| u8::from(l != 0)).collect(), 2)
            }
            ClassMapping::PerInstance { classes, unmapped } => {
                if let Some((&label, _)) = classes.iter().find(|(_, &c)| c == 0) {
                    bail!(
                        "instance {label} is mapped to class 0, which is background; object \
                         classes start at 1"
                    );
                }
                if *unmapped == Some(0) {
                    bail!("the class for unmapped instances must be ≥ 1 (0 is background)");
                }
                if unmapped.is_none() {
                    let missing: Vec<u32> = self
                        .instance_ids()
                        .into_iter()
                        .filter(|l| !classes.contains_key(l))
                        .collect();
                    if !missing.is_empty() {
                        let shown: Vec<String> =
                            missing.iter().take(10).map(u32::to_string).collect();
                        bail!(
                            "{} labelled instance{} ha{} no class: {}{}; add them to the \
                             mapping or give a class for unmapped instances",
                            missing.len(),
                            if missing.len() == 1 { "" } else { "s" },
                            if missing.len() == 1 { "s" } else { "ve" },
                            shown.join(", "),
                            if missing.len() > 10 { ", …" } else { "" }
                        );
                    }
                }
                let px: Vec<u8> = self
                    .labels
                    .iter()
                    .map(|&l| match l {
                        0 => 0,
                        _ => classes.get(&l).copied().or(*unmapped).unwrap_or(0),
                    })
                    .collect();
                let top = classes
                    .values()
                    .copied()
                    .chain(*unmapped)
                    .max()
                    .unwrap_or(1);
                (px, usize::from(top) + 1)
            }
        };
        Ok(SemanticMask {
            width: self.width,
            height: self.height,
            classes,
            num_classes: num_classes.max(2),
        })
    }
}

/// Reads an instance label map. `page` picks the page of a multi-page TIFF (as a channel is
/// picked: `Nucleus` or a 1-based position) and may be `None` for single-page files.
pub fn read_label_map(path: &Path, page: Option<&ChannelSelector>) -> Result<LabelMap> {
    if looks_like_tiff(path)? {
        read_tiff_labels(path, page)
    } else {
        if let Some(sel) = page {
            if *sel != ChannelSelector::Position(1) {
                bail!(
                    "{} is not a TIFF: it has a single label image, so {sel} cannot be chosen",
                    path.display()
                );
            }
        }
        read_image_labels(path)
    }
}

fn read_tiff_labels(path: &Path, page: Option<&ChannelSelector>) -> Result<LabelMap> {
    let mut file = TiffFile::open(path)?;
    let layout = ChannelLayout::from_pages(path, file.pages()?)?;
    let index = match page {
        Some(sel) => layout.resolve(sel)?,
        None if layout.channels.len() == 1 => 0,
        None => bail!(
            "{} holds {} label images; say which one to use. {}",
            path.display(),
            layout.channels.len(),
            layout.listing()
        ),
    };
    let info = &layout.channels[index];
    let data = file.read_page(&layout.pages[info.ifd_index])?;
    let labels = data.sample_u32(info.sample).with_context(|| {
        format!(
            "page {} ('{}') of {} is not a label map",
            info.ifd_index + 1,
            info.name,
            path.display()
        )
    })?;
    LabelMap::new(layout.width, layout.height, labels)
}

fn read_image_labels(path: &Path) -> Result<LabelMap> {
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?
        .decode()
        .with_context(|| {
            format!(
                "cannot decode {} (truncated or not an image?)",
                path.display()
            )
        })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let labels: Vec<u32> = match img {
        image::DynamicImage::ImageLuma8(g) => g.into_raw().into_iter().map(u32::from).collect(),
        image::DynamicImage::ImageLuma16(g) => g.into_raw().into_iter().map(u32::from).collect(),
        other => bail!(
            "{} is a {:?} image; instance label maps must be single-channel grey images \
             (8 or 16-bit PNG, or an integer TIFF), with 0 = background and 1..N = objects",
            path.display(),
            other.color()
        ),
    };
    LabelMap::new(w, h, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> LabelMap {
        LabelMap::new(4, 2, vec![0, 1, 1, 0, 7, 7, 0, 3]).unwrap()
    }

    #[test]
    fn instances_and_foreground() {
        let m = map();
        assert_eq!(m.instance_ids(), [1, 3, 7]);
        assert_eq!(m.instance_count(), 3);
        let s = m.to_semantic(&ClassMapping::Foreground).unwrap();
        assert_eq!(s.classes, [0, 1, 1, 0, 1, 1, 0, 1]);
        assert_eq!(s.num_classes, 2);
    }

    #[test]
    fn per_instance_classes() {
        let m = map();
        let classes: HashMap<u32, u8> = [(1, 2), (7, 1)].into_iter().collect();
        let e = m
            .to_semantic(&ClassMapping::PerInstance {
                classes: classes.clone(),
                unmapped: None,
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 labelled instance has no class: 3"), "{e}");
        let s = m
            .to_semantic(&ClassMapping::PerInstance {
                classes,
                unmapped: Some(3),
            })
            .unwrap();
        assert_eq!(s.classes, [0, 2, 2, 0, 1, 1, 0, 3]);
        assert_eq!(s.num_classes, 4);
        let zero: HashMap<u32, u8> = [(1, 0)].into_iter().collect();
        assert!(m
            .to_semantic(&ClassMapping::PerInstance {
                classes: zero,
                unmapped: Some(1)
            })
            .is_err());
    }

    #[test]
    fn size_mismatch_is_explained() {
        let e = map().ensure_size(5, 2, "a.png").unwrap_err().to_string();
        assert!(
            e.contains("the mask is 4×2 but its image a.png is 5×2"),
            "{e}"
        );
        assert!(map().ensure_size(4, 2, "a.png").is_ok());
        assert!(LabelMap::new(2, 2, vec![0; 3]).is_err());
    }
}
