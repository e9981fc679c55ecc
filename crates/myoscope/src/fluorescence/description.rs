//! What a page's ImageDescription says about it: its channel name and whether it is a
//! full-resolution image or a thumbnail/overview/label picture.
//!
//! Recognised layouts:
//! - PerkinElmer/Akoya `PerkinElmer-QPI-ImageDescription` (inForm `component_data.tif`, Vectra
//!   and Vectra Polaris `.qptiff`): the channel is the root's own `<Name>` child (nested
//!   `<Name>`s inside `<ScanProfile>`/`<Responsivity>` name filters and stains, not the page),
//!   the page kind is `<ImageType>` (`FullResolution`, `Thumbnail`, `Overview`, `Label`, …).
//! - inForm `binary_seg_maps.tif`: `<SegmentationImage>` pages are named by
//!   `<CompartmentType>` (Nucleus, Cytoplasm, Membrane); the `<TissueClassMap>` page is named
//!   `TissueClassMap`.
//! - OME-XML (OME-TIFF, in the first page only): `<Channel Name="…">` in document order, one per
//!   channel page.
//!
//! Anything else yields no name, and the reader falls back to `channel N`.
use super::xml;

/// The facts read from one page's description.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PageDescription {
    /// The channel (marker, fluorophore or compartment) this page holds.
    pub name: Option<String>,
    /// The vendor's page kind, e.g. `FullResolution` or `Thumbnail`.
    pub image_type: Option<String>,
    /// OME-XML channel names, which describe the whole file rather than this page.
    pub ome_channels: Vec<String>,
}

impl PageDescription {
    /// Reads a description; never fails (unknown or broken XML gives an empty description).
    pub fn parse(text: &str) -> PageDescription {
        let Some(root) = xml::parse(text) else {
            return PageDescription::default();
        };
        let root_name = root.local_name();
        if root_name.eq_ignore_ascii_case("PerkinElmer-QPI-ImageDescription") {
            PageDescription {
                name: root.child_text("Name"),
                image_type: root.child_text("ImageType"),
                ome_channels: Vec::new(),
            }
        } else if root_name.eq_ignore_ascii_case("SegmentationImage") {
            PageDescription {
                name: root.child_text("CompartmentType"),
                ..PageDescription::default()
            }
        } else if root_name.eq_ignore_ascii_case("TissueClassMap") {
            PageDescription {
                name: Some("TissueClassMap".to_string()),
                ..PageDescription::default()
            }
        } else if root_name.eq_ignore_ascii_case("OME") {
            PageDescription {
                ome_channels: root
                    .descendants("Channel")
                    .iter()
                    .map(|c| c.attribute("Name").unwrap_or("").trim().to_string())
                    .collect(),
                ..PageDescription::default()
            }
        } else {
            PageDescription::default()
        }
    }

    /// False for pages the vendor marks as something other than the full-resolution image
    /// (thumbnails, slide overviews, label and macro photos, pyramid levels).
    pub fn is_full_resolution(&self) -> bool {
        match &self.image_type {
            None => true,
            Some(t) => t.eq_ignore_ascii_case("FullResolution"),
        }
    }
}

/// A description as text: TIFF says ASCII, vendors write UTF-8, Latin-1 or (rarely) UTF-16 with
/// a byte-order mark. Trailing NULs are dropped.
pub fn decode_text(bytes: &[u8]) -> String {
    let utf16 = |be: bool, body: &[u8]| {
        let units: Vec<u16> = body
            .chunks_exact(2)
            .map(|c| {
                if be {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_le_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    let text = match bytes {
        [0xFF, 0xFE, body @ ..] => utf16(false, body),
        [0xFE, 0xFF, body @ ..] => utf16(true, body),
        _ => match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            // Not UTF-8: read it as Latin-1, where every byte is a character.
            Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
        },
    };
    text.trim_end_matches('\0').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perkinelmer_name_is_the_root_child_not_a_nested_one() {
        let xml = r#"<?xml version="1.0" encoding="utf-16"?>
<PerkinElmer-QPI-ImageDescription>
  <ImageType>FullResolution</ImageType>
  <Responsivity><Filter><Name>DAPI filter</Name></Filter></Responsivity>
  <Name>DAPI</Name>
  <ScanProfile><root><Stain><Name>Alexa 594</Name></Stain></root></ScanProfile>
</PerkinElmer-QPI-ImageDescription>"#;
        let d = PageDescription::parse(xml);
        assert_eq!(d.name.as_deref(), Some("DAPI"));
        assert!(d.is_full_resolution());
        let thumb = PageDescription::parse(
            "<PerkinElmer-QPI-ImageDescription><ImageType>Thumbnail</ImageType>\
             </PerkinElmer-QPI-ImageDescription>",
        );
        assert_eq!(thumb.name, None);
        assert!(!thumb.is_full_resolution());
    }

    #[test]
    fn inform_segmentation_maps_and_ome() {
        let seg = PageDescription::parse(
            "<SegmentationImage><Version>1</Version>\
             <CompartmentType>Nucleus</CompartmentType></SegmentationImage>",
        );
        assert_eq!(seg.name.as_deref(), Some("Nucleus"));
        let tissue = PageDescription::parse(
            "<TissueClassMap><Entry><Name>Tumor</Name></Entry></TissueClassMap>",
        );
        assert_eq!(tissue.name.as_deref(), Some("TissueClassMap"));
        let ome = PageDescription::parse(
            r#"<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image><Pixels>
               <Channel ID="Channel:0:0" Name="DAPI"/><Channel ID="Channel:0:1" Name="CD8"/>
               </Pixels></Image></OME>"#,
        );
        assert_eq!(ome.ome_channels, ["DAPI", "CD8"]);
        assert_eq!(
            PageDescription::parse("ImageJ=1.53\nchannels=3"),
            Default::default()
        );
    }

    #[test]
    fn text_decoding_is_tolerant() {
        assert_eq!(decode_text(b"<A>x</A>\0\0"), "<A>x</A>");
        assert_eq!(decode_text(&[b'5', 0xB5, b'm']), "5µm");
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("<N>é</N>".encode_utf16().flat_map(|u| u.to_le_bytes()))
            .collect();
        assert_eq!(decode_text(&utf16), "<N>é</N>");
    }
}
