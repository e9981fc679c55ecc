//! The photos an `explain` run covers: loose files, or the rows of a manifest with their label,
//! slide and lesion mask where the manifest has those columns.
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct PhotoItem {
    pub path: PathBuf,
    /// Manifest path as written (names the output files).
    pub key: String,
    pub label: Option<String>,
    pub slide: Option<String>,
    pub mask: Option<PathBuf>,
}

/// Column names to look for; absent optional columns are simply not used.
pub struct Columns<'a> {
    pub path: &'a str,
    pub label: &'a str,
    pub slide: &'a str,
    pub mask: &'a str,
}

pub fn from_files(files: &[PathBuf]) -> Vec<PhotoItem> {
    files
        .iter()
        .map(|p| PhotoItem {
            path: p.clone(),
            key: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            label: None,
            slide: None,
            mask: None,
        })
        .collect()
}

pub fn from_manifest(manifest: &Path, cols: &Columns) -> Result<Vec<PhotoItem>> {
    let mut reader = csv::Reader::from_path(manifest)
        .with_context(|| format!("cannot read manifest {}", manifest.display()))?;
    let headers = reader.headers()?.clone();
    let find = |name: &str| headers.iter().position(|h| h == name);
    let Some(path_col) = find(cols.path) else {
        bail!(
            "{} has no '{}' column (it has: {}); pass --path-column",
            manifest.display(),
            cols.path,
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let (label_col, slide_col, mask_col) = (find(cols.label), find(cols.slide), find(cols.mask));
    let base = manifest.parent().unwrap_or(Path::new("."));
    let mut items = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{} line {}", manifest.display(), i + 2))?;
        let get = |c: Option<usize>| {
            c.and_then(|c| row.get(c))
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let Some(rel) = get(Some(path_col)) else {
            bail!(
                "{} line {}: empty '{}'",
                manifest.display(),
                i + 2,
                cols.path
            );
        };
        let path = base.join(rel);
        if !path.is_file() {
            bail!(
                "{} line {}: photo {} does not exist",
                manifest.display(),
                i + 2,
                path.display()
            );
        }
        let mask = get(mask_col).map(|m| base.join(m));
        if let Some(m) = &mask {
            if !m.is_file() {
                bail!(
                    "{} line {}: lesion mask {} does not exist",
                    manifest.display(),
                    i + 2,
                    m.display()
                );
            }
        }
        items.push(PhotoItem {
            path,
            key: rel.to_string(),
            label: get(label_col).map(str::to_string),
            slide: get(slide_col).map(str::to_string),
            mask,
        });
    }
    if items.is_empty() {
        bail!("{} lists no photos", manifest.display());
    }
    Ok(items)
}

/// A file-name-safe stem from a manifest path's last folder and file name
/// (`/data/slide3/p1.png` → `slide3_p1`): unique within a slide-per-folder layout, short
/// enough to read.
pub fn stem_of(key: &str) -> String {
    let parts: Vec<&str> = key.split(['/', '\\']).filter(|p| !p.is_empty()).collect();
    let tail = parts[parts.len().saturating_sub(2)..].join("/");
    let no_ext = match tail.rfind('.') {
        Some(i) if i > tail.rfind('/').map_or(0, |j| j + 1) => &tail[..i],
        _ => tail.as_str(),
    };
    no_ext
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_file_safe() {
        assert_eq!(stem_of("slide3/p1.png"), "slide3_p1");
        assert_eq!(stem_of("a b/c.d/e"), "c.d_e");
        assert_eq!(
            stem_of("/work/runs/data/images/slide_000_0.png"),
            "images_slide_000_0"
        );
        assert_eq!(stem_of("photo.jpeg"), "photo");
    }
}
