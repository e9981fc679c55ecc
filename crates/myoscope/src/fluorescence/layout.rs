//! Which pages of a TIFF are channels, and what each channel is called.
//!
//! Rules, in order:
//! 1. The *reference page* is the first readable page that the vendor does not mark as a
//!    thumbnail/overview/label (ImageDescription `ImageType`) or as reduced-resolution
//!    (NewSubfileType bit 0). Its width × height is the channel size.
//! 2. Every page of that size, not so marked and with a readable sample type, is a channel
//!    page. All other pages are skipped and listed in [`ChannelLayout::skipped`] with the
//!    reason: inForm's RGB thumbnail, QPTIFF pyramid levels, thumbnail, label and macro
//!    photos are pictures *of* the slide, not channels.
//! 3. A channel page with one sample gives one channel; a page with several samples (an RGB
//!    or multi-band page) gives one channel per sample, in sample order.
//! 4. Names: the page's own name from its description (see [`super::description`]); failing
//!    that, OME-XML `<Channel Name>`s when their count equals the number of channels; failing
//!    that, RGB samples are `red`, `green`, `blue` (`alpha`), and anything else is
//!    `channel N` with N the 1-based channel position. A named multi-sample page gives
//!    `NAME red`, … or `NAME 1`, `NAME 2`, ….
use super::pages::{looks_like_tiff, PageInfo, TiffFile};
use super::plane::SampleType;
use super::raster::read_raster;
use super::selector::{match_name, ChannelSelector};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// One channel: where it lives in the file and what it is called.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelInfo {
    pub name: String,
    /// 0-based directory index of its page.
    pub ifd_index: usize,
    /// 0-based sample within that page (0 for single-sample pages).
    pub sample: usize,
    /// How the samples were stored before conversion to `f32`.
    pub sample_type: SampleType,
}

/// A page that is not a channel, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct SkippedPage {
    pub ifd_index: usize,
    pub summary: String,
    pub reason: String,
}

/// The channels of one TIFF, known from its tags alone (no pixels decoded yet).
#[derive(Clone, Debug)]
pub struct ChannelLayout {
    pub path: PathBuf,
    pub width: usize,
    pub height: usize,
    pub channels: Vec<ChannelInfo>,
    pub skipped: Vec<SkippedPage>,
    pub(crate) pages: Vec<PageInfo>,
}

impl ChannelLayout {
    /// Reads the tags of every page of `path`. Files that are not TIFFs (PNG, JPEG, …) are
    /// decoded to find their channels.
    pub fn scan(path: &Path) -> Result<ChannelLayout> {
        if !looks_like_tiff(path)? {
            return Ok(read_raster(path)?.0);
        }
        let mut file = TiffFile::open(path)?;
        let pages = file.pages()?;
        ChannelLayout::from_pages(path, pages)
    }

    pub(crate) fn from_pages(path: &Path, pages: Vec<PageInfo>) -> Result<ChannelLayout> {
        let is_marked_not_full = |p: &PageInfo| {
            if !p.description.is_full_resolution() {
                let kind = p.description.image_type.clone().unwrap_or_default();
                Some(format!("its description says ImageType {kind}"))
            } else if p.reduced_resolution {
                Some("marked as a reduced-resolution copy (NewSubfileType)".to_string())
            } else {
                None
            }
        };
        let Some(reference) = pages
            .iter()
            .find(|p| p.unsupported_reason().is_none() && is_marked_not_full(p).is_none())
        else {
            let why: Vec<String> = pages
                .iter()
                .map(|p| {
                    let reason = p
                        .unsupported_reason()
                        .or_else(|| is_marked_not_full(p))
                        .unwrap_or_default();
                    format!("page {} ({}): {reason}", p.ifd_index + 1, p.summary())
                })
                .collect();
            bail!(
                "{} has no full-resolution page myoscope can read: {}",
                path.display(),
                why.join("; ")
            );
        };
        let (width, height) = (reference.width, reference.height);
        let mut channels = Vec::new();
        let mut skipped = Vec::new();
        let mut channel_pages = Vec::new();
        for p in &pages {
            let reason = p.unsupported_reason().or_else(|| is_marked_not_full(p));
            let reason = reason.or_else(|| {
                ((p.width, p.height) != (width, height)).then(|| {
                    format!(
                        "smaller or larger than the {width}×{height} channel pages (a thumbnail, \
                         pyramid level, label or overview image)"
                    )
                })
            });
            if let Some(reason) = reason {
                skipped.push(SkippedPage {
                    ifd_index: p.ifd_index,
                    summary: p.summary(),
                    reason,
                });
                continue;
            }
            channel_pages.push(p);
            for sample in 0..p.samples_per_pixel {
                channels.push(ChannelInfo {
                    name: String::new(),
                    ifd_index: p.ifd_index,
                    sample,
                    // Checked by `unsupported_reason` above.
                    sample_type: p.sample_type.unwrap_or(SampleType::U8),
                });
            }
        }
        name_channels(&pages, &channel_pages, &mut channels);
        Ok(ChannelLayout {
            path: path.to_path_buf(),
            width,
            height,
            channels,
            skipped,
            pages,
        })
    }

    pub fn names(&self) -> Vec<&str> {
        self.channels.iter().map(|c| c.name.as_str()).collect()
    }

    /// The 0-based index into [`Self::channels`] that `selector` picks, or an error that lists
    /// what the file holds.
    pub fn resolve(&self, selector: &ChannelSelector) -> Result<usize> {
        let n = self.channels.len();
        match selector {
            ChannelSelector::Position(0) => bail!(
                "channel positions are 1-based: use 1 for the first channel. {}",
                self.listing()
            ),
            ChannelSelector::Position(p) if *p > n => bail!(
                "channel {p} was asked (positions are 1-based), but {} has only {n} \
                 channel{}. {}",
                self.path.display(),
                if n == 1 { "" } else { "s" },
                self.listing()
            ),
            ChannelSelector::Position(p) => Ok(p - 1),
            ChannelSelector::Name(name) => {
                let found = match_name(&self.names(), name);
                match found.as_slice() {
                    [one] => Ok(*one),
                    [] => bail!(
                        "no channel named '{name}' in {}. {}",
                        self.path.display(),
                        self.listing()
                    ),
                    many => {
                        let pos: Vec<String> = many.iter().map(|i| (i + 1).to_string()).collect();
                        bail!(
                            "'{name}' matches channels {} of {}; pick one by its 1-based \
                             position. {}",
                            pos.join(" and "),
                            self.path.display(),
                            self.listing()
                        )
                    }
                }
            }
        }
    }

    /// `Channels found: 1 = DAPI, 2 = FITC. Not channels: page 4 (480×360 3×uint8): …`
    pub fn listing(&self) -> String {
        let found: Vec<String> = self
            .channels
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = {}", i + 1, c.name))
            .collect();
        let mut s = format!(
            "Channels found ({}×{}): {}.",
            self.width,
            self.height,
            found.join(", ")
        );
        if !self.skipped.is_empty() {
            let skipped: Vec<String> = self
                .skipped
                .iter()
                .map(|p| format!("page {} ({}): {}", p.ifd_index + 1, p.summary, p.reason))
                .collect();
            s.push_str(&format!(
                " Pages that are not channels: {}.",
                skipped.join("; ")
            ));
        }
        s
    }
}

fn name_channels(pages: &[PageInfo], channel_pages: &[&PageInfo], channels: &mut [ChannelInfo]) {
    let ome: &[String] = pages
        .first()
        .map(|p| p.description.ome_channels.as_slice())
        .unwrap_or(&[]);
    let use_ome = !ome.is_empty() && ome.len() == channels.len();
    for (pos, ch) in channels.iter_mut().enumerate() {
        let page = channel_pages
            .iter()
            .find(|p| p.ifd_index == ch.ifd_index)
            .copied();
        let page_name = page.and_then(|p| p.description.name.clone());
        let samples = page.map_or(1, |p| p.samples_per_pixel);
        let rgb = page.is_some_and(|p| p.photometric == 2);
        let sample_label = if rgb {
            ["red", "green", "blue", "alpha"]
                .get(ch.sample)
                .map(|s| s.to_string())
                .unwrap_or_else(|| (ch.sample + 1).to_string())
        } else {
            (ch.sample + 1).to_string()
        };
        ch.name = match (page_name, samples) {
            (Some(n), 1) => n,
            (Some(n), _) => format!("{n} {sample_label}"),
            (None, _) if use_ome && !ome[pos].is_empty() => ome[pos].clone(),
            (None, _) if rgb => sample_label,
            (None, _) => format!("channel {}", pos + 1),
        };
    }
}
