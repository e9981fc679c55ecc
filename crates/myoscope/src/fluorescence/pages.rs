//! Low-level TIFF access: list a file's pages (IFDs) from their tags without decoding pixels,
//! and decode one page's samples. Strips or tiles, chunky or planar, uncompressed, LZW,
//! deflate, PackBits and JPEG, classic TIFF and BigTIFF are all handled by the `tiff` crate.
use super::description::{decode_text, PageDescription};
use super::plane::SampleType;
use anyhow::{anyhow, bail, Context, Result};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::tags::Tag;
use tiff::{TiffError, TiffFormatError};

/// What the tags of one page say, before any pixel is decoded.
#[derive(Clone, Debug)]
pub struct PageInfo {
    /// 0-based position of the page's directory in the file (messages print it 1-based).
    pub ifd_index: usize,
    pub width: usize,
    pub height: usize,
    pub samples_per_pixel: usize,
    /// `None` when the bit depth / sample format has no [`SampleType`] (1-bit, 12-bit, …).
    pub sample_type: Option<SampleType>,
    /// TIFF PhotometricInterpretation (1 = grey, 2 = RGB, 3 = palette, …).
    pub photometric: u16,
    /// TIFF PlanarConfiguration 2: each sample stored as its own plane.
    pub planar: bool,
    /// NewSubfileType bit 0: a reduced-resolution copy (pyramid level, thumbnail).
    pub reduced_resolution: bool,
    pub description: PageDescription,
    /// Why this page cannot be read at all (its directory failed to parse); the other fields
    /// are then meaningless.
    pub unreadable: Option<String>,
    bits_label: String,
}

impl PageInfo {
    /// A short text such as `348×260 float32` or `87×65 3×uint8` for messages.
    pub fn summary(&self) -> String {
        let kind = match self.sample_type {
            Some(t) if self.samples_per_pixel == 1 => t.to_string(),
            Some(t) => format!("{}×{t}", self.samples_per_pixel),
            None => self.bits_label.clone(),
        };
        format!("{}×{} {kind}", self.width, self.height)
    }

    /// Why myoscope cannot decode this page's samples, if it cannot.
    pub fn unsupported_reason(&self) -> Option<String> {
        if let Some(e) = &self.unreadable {
            return Some(format!("unreadable ({e})"));
        }
        if self.sample_type.is_none() {
            return Some(format!(
                "{} samples, which myoscope cannot read (re-save as 8/16-bit integer or \
                 32-bit float)",
                self.bits_label
            ));
        }
        None
    }
}

/// One page's decoded samples, as stored (interleaved or planar).
pub struct PageData {
    pub width: usize,
    pub height: usize,
    pub samples_per_pixel: usize,
    planar: bool,
    values: DecodingResult,
}

/// An open TIFF file.
pub struct TiffFile {
    path: PathBuf,
    decoder: Decoder<BufReader<File>>,
}

impl TiffFile {
    pub fn open(path: &Path) -> Result<TiffFile> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let limits = {
            let mut l = Limits::default();
            // Full-resolution fluorescence pages are decoded whole; 1 GiB is a 16k×16k float
            // page. Vendor XML descriptions and strip tables of large scans exceed the default
            // 1 MiB per tag value.
            l.decoding_buffer_size = 1 << 30;
            l.ifd_value_size = 64 << 20;
            l
        };
        let decoder = Decoder::new(BufReader::new(file))
            .map_err(|e| explain(path, "read the first page of", e))?
            .with_limits(limits);
        Ok(TiffFile {
            path: path.to_path_buf(),
            decoder,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every page's tags, in file order. A page whose directory cannot be parsed is listed
    /// with [`PageInfo::unreadable`] set; listing continues after it where the file allows.
    pub fn pages(&mut self) -> Result<Vec<PageInfo>> {
        self.decoder
            .seek_to_image(0)
            .map_err(|e| explain(&self.path, "read the first page of", e))?;
        let mut pages = vec![self.current_page(0)?];
        while self.decoder.more_images() {
            let index = pages.len();
            match self.decoder.next_image() {
                Ok(()) => pages.push(self.current_page(index)?),
                Err(e) => pages.push(PageInfo::unreadable(index, describe_error(&e))),
            }
            if pages.len() > 100_000 {
                bail!(
                    "{} has more than 100000 pages; this does not look like a fluorescence image",
                    self.path.display()
                );
            }
        }
        Ok(pages)
    }

    fn current_page(&mut self, ifd_index: usize) -> Result<PageInfo> {
        let path = self.path.clone();
        let tag_err = |e| {
            explain(
                &path,
                &format!("read the tags of page {} of", ifd_index + 1),
                e,
            )
        };
        let d = &mut self.decoder;
        let (width, height) = d.dimensions().map_err(tag_err)?;
        let samples: u16 = d
            .find_tag_unsigned(Tag::SamplesPerPixel)
            .map_err(tag_err)?
            .unwrap_or(1);
        let bits: Vec<u16> = d
            .find_tag_unsigned_vec(Tag::BitsPerSample)
            .map_err(tag_err)?
            .unwrap_or_else(|| vec![1]);
        let formats: Vec<u16> = d
            .find_tag_unsigned_vec(Tag::SampleFormat)
            .map_err(tag_err)?
            .unwrap_or_else(|| vec![1]);
        let photometric: u16 = d
            .find_tag_unsigned(Tag::PhotometricInterpretation)
            .map_err(tag_err)?
            .unwrap_or(1);
        let planar = d
            .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
            .map_err(tag_err)?
            == Some(2);
        let subfile: u32 = d
            .find_tag_unsigned(Tag::NewSubfileType)
            .map_err(tag_err)?
            .unwrap_or(0);
        let description = self.description_text().map_err(tag_err)?;
        let (sample_type, bits_label) = sample_type(&bits, &formats);
        Ok(PageInfo {
            ifd_index,
            width: width as usize,
            height: height as usize,
            samples_per_pixel: usize::from(samples.max(1)),
            sample_type,
            photometric,
            planar,
            reduced_resolution: subfile & 1 == 1,
            description: description
                .as_deref()
                .map(PageDescription::parse)
                .unwrap_or_default(),
            unreadable: None,
            bits_label,
        })
    }

    /// The ImageDescription as text, read from raw bytes so that non-UTF-8 text is not an error.
    fn description_text(&mut self) -> Result<Option<String>, TiffError> {
        let mut ifd = self.decoder.image_ifd();
        let Some(entry) = ifd.find_entry(Tag::ImageDescription) else {
            return Ok(None);
        };
        let len = usize::try_from(entry.count()).map_err(|_| TiffError::LimitsExceeded)?;
        if len > 64 << 20 {
            return Err(TiffError::LimitsExceeded);
        }
        let mut buf = vec![0u8; len];
        let n = ifd
            .find_tag_bytes(Tag::ImageDescription, &mut buf, 0)?
            .unwrap_or(0);
        buf.truncate(n);
        Ok(Some(decode_text(&buf)))
    }

    /// Decodes every sample of one page.
    pub fn read_page(&mut self, page: &PageInfo) -> Result<PageData> {
        if let Some(reason) = page.unsupported_reason() {
            bail!(
                "page {} of {} cannot be decoded: {reason}",
                page.ifd_index + 1,
                self.path.display()
            );
        }
        let what = format!("decode page {} ({}) of", page.ifd_index + 1, page.summary());
        self.decoder
            .seek_to_image(page.ifd_index)
            .map_err(|e| explain(&self.path, &what, e))?;
        let mut values = DecodingResult::U8(Vec::new());
        self.decoder
            .read_image_to_buffer(&mut values)
            .map_err(|e| explain(&self.path, &what, e))?;
        let expected = page.width * page.height * page.samples_per_pixel;
        let got = values.as_buffer(0).as_bytes().len() / usize::from(bytes_per_value(&values));
        if got != expected {
            bail!(
                "page {} of {} decoded to {got} values instead of {expected} ({}×{}×{} samples); \
                 the file is corrupt or uses a layout myoscope cannot read",
                page.ifd_index + 1,
                self.path.display(),
                page.width,
                page.height,
                page.samples_per_pixel
            );
        }
        Ok(PageData {
            width: page.width,
            height: page.height,
            samples_per_pixel: page.samples_per_pixel,
            planar: page.planar,
            values,
        })
    }
}

impl PageInfo {
    fn unreadable(ifd_index: usize, why: String) -> PageInfo {
        PageInfo {
            ifd_index,
            width: 0,
            height: 0,
            samples_per_pixel: 0,
            sample_type: None,
            photometric: 0,
            planar: false,
            reduced_resolution: false,
            description: PageDescription::default(),
            unreadable: Some(why),
            bits_label: "unknown".into(),
        }
    }
}

impl PageData {
    /// Sample `k` (0-based) of every pixel as `f32`, row-major.
    pub fn sample_f32(&self, k: usize) -> Vec<f32> {
        macro_rules! pick {
            ($v:expr, $conv:expr) => {
                self.indices(k).map(|i| $conv($v[i])).collect()
            };
        }
        match &self.values {
            DecodingResult::U8(v) => pick!(v, f32::from),
            DecodingResult::U16(v) => pick!(v, f32::from),
            DecodingResult::U32(v) => pick!(v, |x: u32| x as f32),
            DecodingResult::U64(v) => pick!(v, |x: u64| x as f32),
            DecodingResult::I8(v) => pick!(v, f32::from),
            DecodingResult::I16(v) => pick!(v, f32::from),
            DecodingResult::I32(v) => pick!(v, |x: i32| x as f32),
            DecodingResult::I64(v) => pick!(v, |x: i64| x as f32),
            // `half::f16` is the `tiff` crate's type; its inherent method needs no import.
            DecodingResult::F16(v) => self.indices(k).map(|i| v[i].to_f32()).collect(),
            DecodingResult::F32(v) => pick!(v, |x: f32| x),
            DecodingResult::F64(v) => pick!(v, |x: f64| x as f32),
        }
    }

    /// Sample `k` as exact non-negative integers (label maps). Float or negative values are an
    /// error that names the first offending pixel.
    pub fn sample_u32(&self, k: usize) -> Result<Vec<u32>> {
        let bad = |i: usize, v: String| {
            anyhow!(
                "pixel (x={}, y={}) holds {v}; label maps must hold non-negative whole numbers \
                 (0 = background, 1..N = objects)",
                (i / self.stride_unit()) % self.width,
                (i / self.stride_unit()) / self.width
            )
        };
        macro_rules! ints {
            ($v:expr) => {
                self.indices(k)
                    .map(|i| u32::try_from($v[i]).map_err(|_| bad(i, $v[i].to_string())))
                    .collect()
            };
        }
        match &self.values {
            DecodingResult::U8(v) => Ok(self.indices(k).map(|i| u32::from(v[i])).collect()),
            DecodingResult::U16(v) => Ok(self.indices(k).map(|i| u32::from(v[i])).collect()),
            DecodingResult::U32(v) => Ok(self.indices(k).map(|i| v[i]).collect()),
            DecodingResult::U64(v) => ints!(v),
            DecodingResult::I8(v) => ints!(v),
            DecodingResult::I16(v) => ints!(v),
            DecodingResult::I32(v) => ints!(v),
            DecodingResult::I64(v) => ints!(v),
            DecodingResult::F16(_) | DecodingResult::F32(_) | DecodingResult::F64(_) => bail!(
                "the page holds floating-point values; label maps must be integer images \
                 (uint8/uint16/uint32)"
            ),
        }
    }

    /// Buffer positions of sample `k` for each pixel in row-major order.
    fn indices(&self, k: usize) -> impl Iterator<Item = usize> {
        let n = self.width * self.height;
        let s = self.samples_per_pixel;
        let planar = self.planar;
        (0..n).map(move |p| if planar { k * n + p } else { p * s + k })
    }

    /// Values per pixel step in the buffer (for turning a buffer index back into x, y).
    fn stride_unit(&self) -> usize {
        if self.planar {
            1
        } else {
            self.samples_per_pixel
        }
    }
}

fn bytes_per_value(v: &DecodingResult) -> u8 {
    match v {
        DecodingResult::U8(_) | DecodingResult::I8(_) => 1,
        DecodingResult::U16(_) | DecodingResult::I16(_) | DecodingResult::F16(_) => 2,
        DecodingResult::U32(_) | DecodingResult::I32(_) | DecodingResult::F32(_) => 4,
        DecodingResult::U64(_) | DecodingResult::I64(_) | DecodingResult::F64(_) => 8,
    }
}

/// Maps BitsPerSample + SampleFormat to a sample type, with a label for messages.
fn sample_type(bits: &[u16], formats: &[u16]) -> (Option<SampleType>, String) {
    let b = bits.first().copied().unwrap_or(1);
    let f = formats.first().copied().unwrap_or(1);
    let kind = match f {
        1 => "unsigned",
        2 => "signed",
        3 => "float",
        _ => "undefined-format",
    };
    let label = format!("{b}-bit {kind}");
    if bits.iter().any(|&x| x != b) || formats.iter().any(|&x| x != f) {
        return (None, format!("mixed-depth ({bits:?}-bit)"));
    }
    let t = match (f, b) {
        (1, 8) => Some(SampleType::U8),
        (1, 16) => Some(SampleType::U16),
        (1, 32) => Some(SampleType::U32),
        (2, 8) => Some(SampleType::I8),
        (2, 16) => Some(SampleType::I16),
        (2, 32) => Some(SampleType::I32),
        (3, 16) => Some(SampleType::F16),
        (3, 32) => Some(SampleType::F32),
        (3, 64) => Some(SampleType::F64),
        _ => None,
    };
    (t, label)
}

fn describe_error(e: &TiffError) -> String {
    match e {
        TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends early: truncated download or copy?".to_string()
        }
        TiffError::FormatError(TiffFormatError::TiffSignatureNotFound) => {
            "not a TIFF file (it does not start with II* or MM*)".to_string()
        }
        TiffError::LimitsExceeded => {
            "the page is larger than myoscope decodes at once (1 GiB); crop or downsample it"
                .to_string()
        }
        TiffError::UnsupportedError(u) => format!("uses a TIFF feature not supported: {u}"),
        TiffError::FormatError(f) => format!("the file is corrupt: {f}"),
        other => other.to_string(),
    }
}

fn explain(path: &Path, what: &str, e: TiffError) -> anyhow::Error {
    anyhow!("cannot {what} {}: {}", path.display(), describe_error(&e))
}

/// True when the file starts with a TIFF or BigTIFF signature.
pub fn looks_like_tiff(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let n = f.read(&mut head)?;
    Ok(n == 4 && matches!(&head, b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+"))
}
