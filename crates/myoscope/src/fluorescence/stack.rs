//! Decoding channels into `f32` planes: one channel, a few, or the whole stack.
use super::layout::{ChannelInfo, ChannelLayout};
use super::normalise::Normalisation;
use super::pages::{looks_like_tiff, PageData, TiffFile};
use super::plane::Plane;
use super::raster::read_raster;
use super::selector::ChannelSelector;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::Path;

/// Every channel of a file, decoded (values as stored, not normalised).
#[derive(Clone, Debug)]
pub struct ChannelStack {
    pub layout: ChannelLayout,
    /// `planes[i]` holds `layout.channels[i]`.
    pub planes: Vec<Plane>,
}

impl ChannelStack {
    /// Decodes all channel pages of `path`; skipped pages (thumbnails, pyramid levels) are not
    /// decoded. Float channels containing NaN or infinite values are an error.
    /// Other image files (PNG, JPEG, …) read as a single page.
    pub fn read(path: &Path) -> Result<ChannelStack> {
        if !looks_like_tiff(path)? {
            let (layout, planes) = read_raster(path)?;
            return Ok(ChannelStack { layout, planes });
        }
        let mut file = TiffFile::open(path)?;
        let layout = ChannelLayout::from_pages(path, file.pages()?)?;
        let all: Vec<usize> = (0..layout.channels.len()).collect();
        let planes = decode_channels(&mut file, &layout, &all)?;
        Ok(ChannelStack { layout, planes })
    }

    pub fn width(&self) -> usize {
        self.layout.width
    }

    pub fn height(&self) -> usize {
        self.layout.height
    }

    pub fn names(&self) -> Vec<&str> {
        self.layout.names()
    }

    /// The channel `selector` picks, with its description.
    pub fn channel(&self, selector: &ChannelSelector) -> Result<(&ChannelInfo, &Plane)> {
        let i = self.layout.resolve(selector)?;
        Ok((&self.layout.channels[i], &self.planes[i]))
    }

    /// The selected channels, each normalised on its own, as a C×H×W buffer (row-major planes
    /// one after another), ready for a network.
    pub fn to_chw(&self, selectors: &[ChannelSelector], norm: &Normalisation) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(selectors.len() * self.width() * self.height());
        for s in selectors {
            let (info, plane) = self.channel(s)?;
            out.extend(norm.apply(plane, info.sample_type)?.data);
        }
        Ok(out)
    }
}

/// One channel of a fluorescence TIFF (or of a PNG/JPEG), normalised: the call the
/// segmentation CLI makes for `--channel DAPI`. Only the TIFF page holding that channel is
/// decoded.
pub fn read_channel(
    path: &Path,
    selector: &ChannelSelector,
    norm: &Normalisation,
) -> Result<Plane> {
    let mut planes = read_channels(path, std::slice::from_ref(selector), norm)?;
    Ok(planes.remove(0))
}

/// Several channels (for multi-channel network input), each normalised on its own. Each
/// page is decoded once even when several selected channels share it.
pub fn read_channels(
    path: &Path,
    selectors: &[ChannelSelector],
    norm: &Normalisation,
) -> Result<Vec<Plane>> {
    if selectors.is_empty() {
        bail!("no channel selected: give at least one channel name or 1-based position");
    }
    if !looks_like_tiff(path)? {
        let stack = ChannelStack::read(path)?;
        return selectors
            .iter()
            .map(|s| {
                let (info, plane) = stack.channel(s)?;
                norm.apply(plane, info.sample_type)
            })
            .collect();
    }
    let mut file = TiffFile::open(path)?;
    let layout = ChannelLayout::from_pages(path, file.pages()?)?;
    let wanted = selectors
        .iter()
        .map(|s| layout.resolve(s))
        .collect::<Result<Vec<_>>>()?;
    let planes = decode_channels(&mut file, &layout, &wanted)?;
    wanted
        .iter()
        .zip(planes)
        .map(|(&i, plane)| norm.apply(&plane, layout.channels[i].sample_type))
        .collect()
}

/// Decodes `layout.channels[i]` for each `i` in `wanted`, decoding each page once.
fn decode_channels(
    file: &mut TiffFile,
    layout: &ChannelLayout,
    wanted: &[usize],
) -> Result<Vec<Plane>> {
    let mut decoded: HashMap<usize, PageData> = HashMap::new();
    let mut planes = Vec::with_capacity(wanted.len());
    for &i in wanted {
        let info = &layout.channels[i];
        let page = match decoded.entry(info.ifd_index) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(file.read_page(&layout.pages[info.ifd_index])?)
            }
        };
        let data = page.sample_f32(info.sample);
        if info.sample_type.is_float() {
            check_finite(&data, info, layout)?;
        }
        planes.push(Plane::new(layout.width, layout.height, data)?);
    }
    Ok(planes)
}

/// Refuses float channels with NaN/∞: they would poison percentiles and the network alike,
/// and silently replacing them would hide an export problem.
fn check_finite(data: &[f32], info: &ChannelInfo, layout: &ChannelLayout) -> Result<()> {
    let nan = data.iter().filter(|v| v.is_nan()).count();
    let inf = data.iter().filter(|v| v.is_infinite()).count();
    if nan == 0 && inf == 0 {
        return Ok(());
    }
    let first = data.iter().position(|v| !v.is_finite()).unwrap_or(0);
    let mut what = Vec::new();
    if nan > 0 {
        what.push(format!("{nan} NaN"));
    }
    if inf > 0 {
        what.push(format!("{inf} infinite"));
    }
    bail!(
        "page {} ('{}') of {} has {} pixel value{} out of {} (first at x={}, y={}); replace them \
         (for example with 0) in the software that exported the file",
        info.ifd_index + 1,
        info.name,
        layout.path.display(),
        what.join(" and "),
        if nan + inf == 1 { "" } else { "s" },
        data.len(),
        first % layout.width,
        first / layout.width
    )
}
