//! Round trips through TIFFs written here with the `tiff` encoder (and one planar file written
//! by hand, which that encoder cannot produce), and the error cases.
use super::*;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use tiff::encoder::colortype::{self, ColorType};
use tiff::encoder::{Compression, DeflateLevel, Predictor, TiffEncoder, TiffKind};
use tiff::tags::{PhotometricInterpretation, SampleFormat, Tag};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("myoscope-fluo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Four 16-bit samples per pixel, grey interpretation: a multi-band page.
struct Gray16x4;
impl ColorType for Gray16x4 {
    type Inner = u16;
    const TIFF_VALUE: PhotometricInterpretation = PhotometricInterpretation::BlackIsZero;
    const BITS_PER_SAMPLE: &'static [u16] = &[16; 4];
    const SAMPLE_FORMAT: &'static [SampleFormat] = &[SampleFormat::Uint; 4];
    fn horizontal_predict(row: &[u16], result: &mut Vec<u16>) {
        result.extend((0..row.len()).map(|i| {
            if i < 4 {
                row[i]
            } else {
                row[i].wrapping_sub(row[i - 4])
            }
        }));
    }
}

enum Pixels {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    I16(Vec<i16>),
    F32(Vec<f32>),
    Rgb8(Vec<u8>),
    Bands4(Vec<u16>),
}

struct Page {
    width: u32,
    height: u32,
    pixels: Pixels,
    description: Option<String>,
    subfile: Option<u32>,
}

fn page(width: u32, height: u32, pixels: Pixels) -> Page {
    Page {
        width,
        height,
        pixels,
        description: None,
        subfile: None,
    }
}

fn named(mut p: Page, xml: &str) -> Page {
    p.description = Some(xml.to_string());
    p
}

fn qpi(name: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-16\"?>\n<PerkinElmer-QPI-ImageDescription>\n  \
         <ImageType>FullResolution</ImageType>\n  <Name>{name}</Name>\n  <ScanProfile><Stain>\
         <Name>not this</Name></Stain></ScanProfile>\n</PerkinElmer-QPI-ImageDescription>"
    )
}

fn write_one<W: Write + Seek, C: ColorType, K: TiffKind>(
    enc: &mut TiffEncoder<W, K>,
    p: &Page,
    data: &[C::Inner],
) where
    [C::Inner]: tiff::encoder::TiffValue,
{
    let mut img = enc.new_image::<C>(p.width, p.height).unwrap();
    if let Some(d) = &p.description {
        img.encoder()
            .write_tag(Tag::ImageDescription, d.as_str())
            .unwrap();
    }
    if let Some(s) = p.subfile {
        img.encoder().write_tag(Tag::NewSubfileType, s).unwrap();
    }
    // Several strips per page, so strip handling is exercised too.
    img.rows_per_strip(2).unwrap();
    img.write_data(data).unwrap();
}

fn write_pages<W: Write + Seek, K: TiffKind>(mut enc: TiffEncoder<W, K>, pages: &[Page]) {
    for p in pages {
        match &p.pixels {
            Pixels::U8(v) => write_one::<_, colortype::Gray8, _>(&mut enc, p, v),
            Pixels::U16(v) => write_one::<_, colortype::Gray16, _>(&mut enc, p, v),
            Pixels::U32(v) => write_one::<_, colortype::Gray32, _>(&mut enc, p, v),
            Pixels::I16(v) => write_one::<_, colortype::GrayI16, _>(&mut enc, p, v),
            Pixels::F32(v) => write_one::<_, colortype::Gray32Float, _>(&mut enc, p, v),
            Pixels::Rgb8(v) => write_one::<_, colortype::RGB8, _>(&mut enc, p, v),
            Pixels::Bands4(v) => write_one::<_, Gray16x4, _>(&mut enc, p, v),
        }
    }
}

fn write_tiff(path: &Path, compression: Compression, predictor: Predictor, pages: &[Page]) {
    let f = BufWriter::new(std::fs::File::create(path).unwrap());
    let enc = TiffEncoder::new(f)
        .unwrap()
        .with_compression(compression)
        .with_predictor(predictor);
    write_pages(enc, pages);
}

fn write_bigtiff(path: &Path, compression: Compression, pages: &[Page]) {
    let f = BufWriter::new(std::fs::File::create(path).unwrap());
    let enc = TiffEncoder::new_big(f)
        .unwrap()
        .with_compression(compression);
    write_pages(enc, pages);
}

fn ramp_u16(w: u32, h: u32, k: u16) -> Vec<u16> {
    (0..w * h)
        .map(|i| (i as u16).wrapping_mul(37) ^ (k * 1000))
        .collect()
}

fn ramp_f32(w: u32, h: u32, k: f32) -> Vec<f32> {
    (0..w * h)
        .map(|i| (i as f32 * 0.37).sin() * 10.0 + k)
        .collect()
}

fn as_f32<T: Copy + Into<f64>>(v: &[T]) -> Vec<f32> {
    v.iter().map(|&x| x.into() as f32).collect()
}

#[test]
fn u8_pages_without_names_are_channel_1_to_n() {
    let d = scratch("u8");
    let p = d.join("plain.tif");
    let pages: Vec<Page> = (0..3u8)
        .map(|k| page(5, 3, Pixels::U8((0..15).map(|i| i * 10 + k).collect())))
        .collect();
    write_tiff(&p, Compression::Uncompressed, Predictor::None, &pages);
    let stack = ChannelStack::read(&p).unwrap();
    assert_eq!(stack.names(), ["channel 1", "channel 2", "channel 3"]);
    assert_eq!((stack.width(), stack.height()), (5, 3));
    assert!(stack.layout.skipped.is_empty());
    let (info, plane) = stack.channel(&ChannelSelector::Position(2)).unwrap();
    assert_eq!(info.sample_type, SampleType::U8);
    assert_eq!(plane.get(4, 2), Some(141.0));
    // Default normalisation of 8-bit data: ÷255.
    let n = read_channel(&p, &"channel 3".parse().unwrap(), &Normalisation::Auto).unwrap();
    assert_eq!(n.data[1], 12.0 / 255.0);
}

#[test]
fn u16_lzw_with_perkinelmer_names_skips_the_thumbnail() {
    let d = scratch("u16");
    let p = d.join("component_like.tif");
    let (w, h) = (9, 7);
    let mut pages: Vec<Page> = ["Alexa 594", "DAPI", "FITC"]
        .iter()
        .enumerate()
        .map(|(k, n)| named(page(w, h, Pixels::U16(ramp_u16(w, h, k as u16))), &qpi(n)))
        .collect();
    pages.push(named(
        page(3, 2, Pixels::Rgb8(vec![200; 18])),
        "<PerkinElmer-QPI-ImageDescription><ImageType>Thumbnail</ImageType>\
         </PerkinElmer-QPI-ImageDescription>",
    ));
    write_tiff(&p, Compression::Lzw, Predictor::Horizontal, &pages);
    let layout = ChannelLayout::scan(&p).unwrap();
    assert_eq!(layout.names(), ["Alexa 594", "DAPI", "FITC"]);
    assert_eq!(layout.skipped.len(), 1);
    assert_eq!(layout.skipped[0].ifd_index, 3);
    assert!(layout.skipped[0].reason.contains("Thumbnail"));
    let raw = read_channel(&p, &"dapi".parse().unwrap(), &Normalisation::None).unwrap();
    assert_eq!(raw.data, as_f32(&ramp_u16(w, h, 1)));
    let by_pos = read_channel(&p, &"2".parse().unwrap(), &Normalisation::None).unwrap();
    assert_eq!(by_pos, raw);
    let alexa = read_channel(&p, &"alexa594".parse().unwrap(), &Normalisation::None).unwrap();
    assert_eq!(alexa.data, as_f32(&ramp_u16(w, h, 0)));
    // 16-bit default normalisation: percentiles, so values span exactly [0, 1].
    let n = read_channel(&p, &"DAPI".parse().unwrap(), &Normalisation::Auto).unwrap();
    let s = n.stats();
    assert_eq!((s.min, s.max), (0.0, 1.0));
}

#[test]
fn same_size_pages_marked_reduced_or_thumbnail_are_not_channels() {
    let d = scratch("marked");
    let p = d.join("marked.tif");
    let mut reduced = page(4, 4, Pixels::U8(vec![1; 16]));
    reduced.subfile = Some(1);
    let pages = vec![
        named(
            page(4, 4, Pixels::U8(vec![9; 16])),
            "<PerkinElmer-QPI-ImageDescription><ImageType>Overview</ImageType>\
             </PerkinElmer-QPI-ImageDescription>",
        ),
        page(4, 4, Pixels::U8(vec![2; 16])),
        reduced,
    ];
    write_tiff(&p, Compression::Uncompressed, Predictor::None, &pages);
    let stack = ChannelStack::read(&p).unwrap();
    assert_eq!(stack.names(), ["channel 1"]);
    assert_eq!(stack.planes[0].data, [2.0; 16]);
    let reasons: Vec<&str> = stack
        .layout
        .skipped
        .iter()
        .map(|s| s.reason.as_str())
        .collect();
    assert!(reasons[0].contains("Overview"), "{reasons:?}");
    assert!(reasons[1].contains("reduced-resolution"), "{reasons:?}");
}

#[test]
fn f32_lzw_and_deflate_round_trip_exactly() {
    let d = scratch("f32");
    let (w, h) = (11, 6);
    for (name, c) in [
        ("lzw.tif", Compression::Lzw),
        ("deflate.tif", Compression::Deflate(DeflateLevel::Balanced)),
        ("packbits.tif", Compression::Packbits),
    ] {
        let p = d.join(name);
        let pages: Vec<Page> = (0..2)
            .map(|k| page(w, h, Pixels::F32(ramp_f32(w, h, k as f32))))
            .collect();
        write_tiff(&p, c, Predictor::None, &pages);
        let stack = ChannelStack::read(&p).unwrap();
        assert_eq!(stack.layout.channels[1].sample_type, SampleType::F32);
        assert_eq!(stack.planes[1].data, ramp_f32(w, h, 1.0), "{name}");
    }
}

#[test]
fn bigtiff_with_deflate_reads_like_classic_tiff() {
    let d = scratch("big");
    let p = d.join("big.tif");
    let (w, h) = (13, 5);
    let pages = vec![
        named(page(w, h, Pixels::U16(ramp_u16(w, h, 0))), &qpi("DAPI")),
        named(page(w, h, Pixels::F32(ramp_f32(w, h, 2.0))), &qpi("Cy5")),
    ];
    write_bigtiff(&p, Compression::Deflate(DeflateLevel::Fast), &pages);
    assert_eq!(&std::fs::read(&p).unwrap()[..4], b"II+\0");
    let stack = ChannelStack::read(&p).unwrap();
    assert_eq!(stack.names(), ["DAPI", "Cy5"]);
    assert_eq!(stack.planes[0].data, as_f32(&ramp_u16(w, h, 0)));
    assert_eq!(stack.planes[1].data, ramp_f32(w, h, 2.0));
    // Each channel keeps its own sample type (and so its own default normalisation).
    let types: Vec<SampleType> = stack
        .layout
        .channels
        .iter()
        .map(|c| c.sample_type)
        .collect();
    assert_eq!(types, [SampleType::U16, SampleType::F32]);
    let chw = stack
        .to_chw(
            &["cy5".parse().unwrap(), "1".parse().unwrap()],
            &Normalisation::Auto,
        )
        .unwrap();
    assert_eq!(chw.len(), 2 * (w * h) as usize);
    assert!(chw.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn signed_and_32_bit_integer_pages() {
    let d = scratch("ints");
    let p = d.join("ints.tif");
    let i16s: Vec<i16> = (0..12).map(|i| i * 1000 - 6000).collect();
    let u32s: Vec<u32> = (0..12).map(|i| i * 100_000).collect();
    let pages = vec![
        page(4, 3, Pixels::I16(i16s.clone())),
        page(4, 3, Pixels::U32(u32s.clone())),
    ];
    write_tiff(&p, Compression::Lzw, Predictor::None, &pages);
    let stack = ChannelStack::read(&p).unwrap();
    assert_eq!(stack.planes[0].data, as_f32(&i16s));
    assert_eq!(stack.planes[1].data, as_f32(&u32s));
    assert_eq!(stack.layout.channels[0].sample_type, SampleType::I16);
    assert_eq!(stack.layout.channels[1].sample_type, SampleType::U32);
}

#[test]
fn samples_of_one_page_are_channels() {
    let d = scratch("samples");
    let rgb = d.join("rgb.tif");
    let px: Vec<u8> = (0..2 * 2 * 3).map(|i| i as u8 * 10).collect();
    write_tiff(
        &rgb,
        Compression::Lzw,
        Predictor::None,
        &[page(2, 2, Pixels::Rgb8(px))],
    );
    let stack = ChannelStack::read(&rgb).unwrap();
    assert_eq!(stack.names(), ["red", "green", "blue"]);
    let (_, green) = stack.channel(&"GREEN".parse().unwrap()).unwrap();
    assert_eq!(green.data, [10.0, 40.0, 70.0, 100.0]);

    let bands = d.join("bands.tif");
    let (w, h) = (3, 2);
    let px: Vec<u16> = (0..w * h * 4).map(|i| i as u16).collect();
    let desc = qpi("Panel");
    write_tiff(
        &bands,
        Compression::Deflate(DeflateLevel::Balanced),
        Predictor::Horizontal,
        &[named(page(w, h, Pixels::Bands4(px)), &desc)],
    );
    let stack = ChannelStack::read(&bands).unwrap();
    assert_eq!(stack.names(), ["Panel 1", "Panel 2", "Panel 3", "Panel 4"]);
    let (info, b3) = stack.channel(&ChannelSelector::Position(3)).unwrap();
    assert_eq!((info.ifd_index, info.sample), (0, 2));
    assert_eq!(b3.data, [2.0, 6.0, 10.0, 14.0, 18.0, 22.0]);
}

/// A little-endian TIFF whose two 8-bit samples are stored as separate planes
/// (PlanarConfiguration = 2), written by hand.
fn write_planar(path: &Path, w: u16, h: u16, planes: [&[u8]; 2]) {
    let n = u32::from(w) * u32::from(h);
    let entries: u16 = 10;
    let ifd_len = 2 + 12 * u32::from(entries) + 4;
    let arrays = 8 + ifd_len; // strip offsets (2 longs), then byte counts (2 longs)
    let data = arrays + 16;
    let mut b: Vec<u8> = b"II*\0".to_vec();
    b.extend(8u32.to_le_bytes());
    b.extend(entries.to_le_bytes());
    let mut entry = |tag: u16, ty: u16, count: u32, value: u32| {
        b.extend(tag.to_le_bytes());
        b.extend(ty.to_le_bytes());
        b.extend(count.to_le_bytes());
        b.extend(value.to_le_bytes());
    };
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    entry(256, SHORT, 1, u32::from(w));
    entry(257, SHORT, 1, u32::from(h));
    entry(258, SHORT, 2, 8 | (8 << 16)); // two 8-bit samples, inline
    entry(259, SHORT, 1, 1);
    entry(262, SHORT, 1, 1);
    entry(273, LONG, 2, arrays);
    entry(277, SHORT, 1, 2);
    entry(278, SHORT, 1, u32::from(h));
    entry(279, LONG, 2, arrays + 8);
    entry(284, SHORT, 1, 2);
    b.extend(0u32.to_le_bytes());
    for v in [data, data + n, n, n] {
        b.extend(v.to_le_bytes());
    }
    b.extend_from_slice(planes[0]);
    b.extend_from_slice(planes[1]);
    std::fs::write(path, b).unwrap();
}

#[test]
fn planar_samples_are_channels_too() {
    let d = scratch("planar");
    let p = d.join("planar.tif");
    let a: Vec<u8> = (0..6).collect();
    let b: Vec<u8> = (100..106).collect();
    write_planar(&p, 3, 2, [&a, &b]);
    let stack = ChannelStack::read(&p).unwrap();
    assert_eq!(stack.names(), ["channel 1", "channel 2"]);
    assert_eq!(stack.planes[0].data, as_f32(&a));
    assert_eq!(stack.planes[1].data, as_f32(&b));
}

#[test]
fn ome_xml_names_the_pages() {
    let d = scratch("ome");
    let p = d.join("x.ome.tif");
    let ome = r#"<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0"><Pixels DimensionOrder="XYCZT" SizeC="2"><Channel ID="Channel:0:0" Name="DAPI"/><Channel ID="Channel:0:1" Name="CD20"/></Pixels></Image></OME>"#;
    let pages = vec![
        named(page(3, 3, Pixels::U16(vec![5; 9])), ome),
        page(3, 3, Pixels::U16(vec![6; 9])),
    ];
    write_tiff(&p, Compression::Uncompressed, Predictor::None, &pages);
    let layout = ChannelLayout::scan(&p).unwrap();
    assert_eq!(layout.names(), ["DAPI", "CD20"]);
}

#[test]
fn selection_errors_say_what_the_file_holds() {
    let d = scratch("select");
    let p = d.join("three.tif");
    let mut pages: Vec<Page> = ["DAPI", "FITC", "Cy3"]
        .iter()
        .map(|n| named(page(6, 4, Pixels::U8(vec![3; 24])), &qpi(n)))
        .collect();
    pages.push(page(3, 2, Pixels::Rgb8(vec![0; 18])));
    write_tiff(&p, Compression::Lzw, Predictor::None, &pages);
    let err = |s: &str| {
        read_channel(&p, &s.parse().unwrap(), &Normalisation::Auto)
            .unwrap_err()
            .to_string()
    };
    let e = err("7");
    assert!(
        e.contains("channel 7 was asked (positions are 1-based)"),
        "{e}"
    );
    assert!(e.contains("has only 3 channels"), "{e}");
    assert!(e.contains("1 = DAPI, 2 = FITC, 3 = Cy3"), "{e}");
    assert!(e.contains("page 4 (3×2 3×uint8)"), "{e}");
    let e = err("Cy5");
    assert!(e.contains("no channel named 'Cy5'"), "{e}");
    assert!(e.contains("1 = DAPI, 2 = FITC, 3 = Cy3"), "{e}");
    let e = read_channel(&p, &ChannelSelector::Position(0), &Normalisation::Auto)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1-based"), "{e}");
    let e = read_channels(&p, &[], &Normalisation::Auto)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no channel selected"), "{e}");
}

#[test]
fn nan_pages_are_refused_with_page_and_count() {
    let d = scratch("nan");
    let p = d.join("nan.tif");
    let mut bad = ramp_f32(5, 4, 0.0);
    bad[7] = f32::NAN;
    bad[8] = f32::NAN;
    bad[19] = f32::INFINITY;
    let pages = vec![
        named(page(5, 4, Pixels::F32(ramp_f32(5, 4, 0.0))), &qpi("DAPI")),
        named(page(5, 4, Pixels::F32(bad)), &qpi("CD3")),
    ];
    write_bigtiff(&p, Compression::Lzw, &pages);
    // The clean channel is still readable on its own: only the decoded page is checked.
    assert!(read_channel(&p, &"DAPI".parse().unwrap(), &Normalisation::Auto).is_ok());
    let e = read_channel(&p, &"CD3".parse().unwrap(), &Normalisation::Auto)
        .unwrap_err()
        .to_string();
    assert!(e.contains("page 2 ('CD3')"), "{e}");
    assert!(
        e.contains("2 NaN and 1 infinite pixel values out of 20"),
        "{e}"
    );
    assert!(e.contains("first at x=2, y=1"), "{e}");
    assert!(ChannelStack::read(&p).is_err());
}

#[test]
fn corrupt_and_truncated_files_are_errors_not_panics() {
    let d = scratch("corrupt");
    let good = d.join("good.tif");
    let (w, h) = (16, 12);
    let pages = vec![
        named(page(w, h, Pixels::U16(ramp_u16(w, h, 0))), &qpi("DAPI")),
        named(page(w, h, Pixels::F32(ramp_f32(w, h, 0.0))), &qpi("FITC")),
    ];
    write_tiff(&good, Compression::Lzw, Predictor::None, &pages);
    let bytes = std::fs::read(&good).unwrap();
    let bad = d.join("bad.tif");

    std::fs::write(&bad, b"this is not a tiff at all").unwrap();
    let e = ChannelStack::read(&bad).unwrap_err().to_string();
    assert!(e.contains("not a TIFF"), "{e}");
    assert!(ChannelStack::read(&d.join("missing.tif")).is_err());

    // Cut the file at many lengths: each read either fails with a message or (when the cut
    // only removed trailing bytes nothing needs) succeeds.
    let mut failures = 0;
    for cut in (0..bytes.len()).step_by(7) {
        std::fs::write(&bad, &bytes[..cut]).unwrap();
        if let Err(e) = ChannelStack::read(&bad) {
            assert!(e.to_string().contains("bad.tif"), "{e}");
            failures += 1;
        }
    }
    assert!(failures > 0);
    // The cut inside the pixel data of page 1 names the problem.
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let e = ChannelStack::read(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.tif"), "{e}");

    // Flip single bytes all over the file: never a panic.
    for (i, pos) in (0..bytes.len()).step_by(3).enumerate() {
        let mut b = bytes.clone();
        b[pos] ^= [0xFF, 0x80, 0x01, 0x55][i % 4];
        std::fs::write(&bad, &b).unwrap();
        let _ = ChannelStack::read(&bad);
        let _ = read_label_map(&bad, Some(&ChannelSelector::Position(1)));
    }
}

#[test]
fn label_maps_from_tiff_pages_and_png() {
    let d = scratch("labels");
    let tif = d.join("seg_maps.tif");
    let (w, h) = (6u32, 4u32);
    let nuclei: Vec<u16> = (0..w * h)
        .map(|i| {
            if i % 3 == 0 {
                0
            } else {
                (i % 5 + 1) as u16 * 7
            }
        })
        .collect();
    let seg = |c: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-16\"?>\n<SegmentationImage>\n <Version>1\
             </Version>\n <CompartmentType>{c}</CompartmentType>\n</SegmentationImage>"
        )
    };
    let pages = vec![
        named(
            page(w, h, Pixels::U16(vec![1; 24])),
            "<TissueClassMap><Entry><Name>Tumor</Name></Entry></TissueClassMap>",
        ),
        named(page(w, h, Pixels::U16(nuclei.clone())), &seg("Nucleus")),
        named(page(w, h, Pixels::U16(vec![0; 24])), &seg("Cytoplasm")),
    ];
    write_tiff(&tif, Compression::Lzw, Predictor::None, &pages);
    let m = read_label_map(&tif, Some(&"nucleus".parse().unwrap())).unwrap();
    assert_eq!(
        m.labels,
        nuclei.iter().map(|&v| u32::from(v)).collect::<Vec<_>>()
    );
    assert_eq!(m.instance_ids(), [7, 14, 21, 28, 35]);
    let e = read_label_map(&tif, None).unwrap_err().to_string();
    assert!(e.contains("holds 3 label images"), "{e}");
    assert!(
        e.contains("1 = TissueClassMap, 2 = Nucleus, 3 = Cytoplasm"),
        "{e}"
    );

    // 32-bit labels keep their exact values.
    let big = d.join("u32.tif");
    let labels: Vec<u32> = vec![0, 16_777_217, 16_777_217, 4_000_000_000];
    write_tiff(
        &big,
        Compression::Deflate(DeflateLevel::Fast),
        Predictor::None,
        &[page(2, 2, Pixels::U32(labels.clone()))],
    );
    assert_eq!(read_label_map(&big, None).unwrap().labels, labels);

    // Float and negative "labels" are refused.
    let float = d.join("float.tif");
    write_tiff(
        &float,
        Compression::Uncompressed,
        Predictor::None,
        &[page(2, 1, Pixels::F32(vec![0.0, 1.5]))],
    );
    let e = format!("{:#}", read_label_map(&float, None).unwrap_err());
    assert!(e.contains("floating-point"), "{e}");
    let neg = d.join("neg.tif");
    write_tiff(
        &neg,
        Compression::Uncompressed,
        Predictor::None,
        &[page(3, 1, Pixels::I16(vec![0, 2, -1]))],
    );
    let e = format!("{:#}", read_label_map(&neg, None).unwrap_err());
    assert!(e.contains("pixel (x=2, y=0) holds -1"), "{e}");

    // 16-bit PNG, as DSB2018 masks are stored; an RGB PNG is refused.
    let png = d.join("mask.png");
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(3, 2, vec![0, 300, 300, 0, 2, 0])
        .unwrap();
    img.save(&png).unwrap();
    let m = read_label_map(&png, None).unwrap();
    assert_eq!((m.width, m.height, m.instance_count()), (3, 2, 2));
    let e = m.ensure_size(4, 2, "img.png").unwrap_err().to_string();
    assert!(e.contains("3×2") && e.contains("4×2"), "{e}");
    let rgb = d.join("rgb.png");
    image::RgbImage::new(2, 2).save(&rgb).unwrap();
    let e = read_label_map(&rgb, None).unwrap_err().to_string();
    assert!(e.contains("single-channel grey"), "{e}");
    assert!(read_label_map(&png, Some(&"Nucleus".parse().unwrap())).is_err());
    let trunc = d.join("trunc.png");
    std::fs::write(&trunc, &std::fs::read(&png).unwrap()[..30]).unwrap();
    assert!(read_label_map(&trunc, None).is_err());
}

#[test]
fn png_images_read_like_one_page_files() {
    let d = scratch("png");
    let grey = d.join("grey.png");
    image::GrayImage::from_raw(3, 1, vec![0, 51, 255])
        .unwrap()
        .save(&grey)
        .unwrap();
    let p = read_channel(&grey, &ChannelSelector::Position(1), &Normalisation::Auto).unwrap();
    assert_eq!(p.data, [0.0, 0.2, 1.0]);
    let e = read_channel(&grey, &"DAPI".parse().unwrap(), &Normalisation::Auto)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 = channel 1"), "{e}");
    let deep = d.join("deep.png");
    image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![1000u16, 3000])
        .unwrap()
        .save(&deep)
        .unwrap();
    let stack = ChannelStack::read(&deep).unwrap();
    assert_eq!(stack.layout.channels[0].sample_type, SampleType::U16);
    assert_eq!(stack.planes[0].data, [1000.0, 3000.0]);
    let rgb = d.join("rgb.png");
    image::RgbImage::from_raw(2, 1, vec![1, 2, 3, 4, 5, 6])
        .unwrap()
        .save(&rgb)
        .unwrap();
    let planes = read_channels(
        &rgb,
        &["blue".parse().unwrap(), "red".parse().unwrap()],
        &Normalisation::None,
    )
    .unwrap();
    assert_eq!(
        (planes[0].data.clone(), planes[1].data.clone()),
        (vec![3.0, 6.0], vec![1.0, 4.0])
    );
    assert_eq!(
        ChannelLayout::scan(&rgb).unwrap().names(),
        ["red", "green", "blue"]
    );
}
