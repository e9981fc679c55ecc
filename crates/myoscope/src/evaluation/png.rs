//! PNG copies of our SVG pictures, for slide decks, e-mail and viewers without SVG. The fonts
//! are DejaVu, compiled in, so a clinic PC without system fonts still gets its labels.
use crate::training::checkpoint::write_atomic;
use anyhow::{Context, Result};
use resvg::{tiny_skia, usvg};
use std::path::Path;
use std::sync::{Arc, OnceLock};

fn fonts() -> Arc<usvg::fontdb::Database> {
    static DB: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_font_data(dejavu::sans::regular().to_vec());
        db.load_font_data(dejavu::sans::bold().to_vec());
        db.set_sans_serif_family("DejaVu Sans");
        Arc::new(db)
    })
    .clone()
}

/// Renders an SVG document to PNG bytes at `scale` × its nominal size.
pub fn svg_to_png_bytes(svg: &str, scale: f32) -> Result<Vec<u8>> {
    let options = usvg::Options {
        font_family: "DejaVu Sans".into(),
        fontdb: fonts(),
        ..Default::default()
    };
    let tree = usvg::Tree::from_str(svg, &options).context("the picture is not valid SVG")?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .context("picture too small")?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .context("picture too large to render")?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("encoding PNG")
}

/// Renders an SVG document to a PNG file at `scale` × its nominal size, written atomically so
/// a reader never sees half a picture.
pub fn svg_to_png(svg: &str, path: &Path, scale: f32) -> Result<()> {
    write_atomic(path, &svg_to_png_bytes(svg, scale)?)
}

/// Writes STEM.svg and STEM.png (twice the nominal size, crisp on high-density screens).
pub fn write_picture(stem: &Path, svg: &str) -> Result<()> {
    // Appended, not `with_extension`: a stem may contain dots.
    let with = |ext: &str| {
        let mut p = stem.as_os_str().to_owned();
        p.push(ext);
        std::path::PathBuf::from(p)
    };
    write_atomic(&with(".svg"), svg.as_bytes())?;
    svg_to_png(svg, &with(".png"), 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_rendered_with_the_embedded_font() {
        let blank = r#"<svg xmlns="http://www.w3.org/2000/svg" width="80" height="30"><rect width="100%" height="100%" fill="white"/></svg>"#;
        let text = blank.replace(
            "</svg>",
            r#"<text x="5" y="20" font-family="sans-serif" font-size="16">AUC</text></svg>"#,
        );
        let a = image::load_from_memory(&svg_to_png_bytes(blank, 1.0).unwrap())
            .unwrap()
            .to_luma8();
        let b = image::load_from_memory(&svg_to_png_bytes(&text, 1.0).unwrap())
            .unwrap()
            .to_luma8();
        assert_eq!(a.dimensions(), (80, 30));
        let dark = b.pixels().filter(|p| p.0[0] < 128).count();
        assert!(dark > 20, "the label drew {dark} dark pixels");
        assert!(svg_to_png_bytes("<svg", 1.0).is_err());
    }
}
