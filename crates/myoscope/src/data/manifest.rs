//! A data set is a CSV manifest (image paths relative to the manifest, label columns,
//! optional slide/patient columns) or a folder per class. Everything a user can get wrong is
//! checked here, row by row, before a model is built.
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One microscope photo and what is known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Absolute (or manifest-joined) path of the image file.
    pub path: PathBuf,
    /// The path as written in the manifest, for reports.
    pub rel_path: String,
    /// Index into `Dataset::classes`.
    pub label: usize,
    /// Grouping key that must never straddle two splits (patient, else slide, else image).
    pub group: String,
    /// Slide identifier for slide-level averaging, when the manifest has one.
    pub slide: Option<String>,
    /// 1-based data row in the manifest (header excluded), for error messages.
    pub row: usize,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub source: PathBuf,
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
    /// False for images to classify whose truth is unknown (every `label` is then 0).
    pub labelled: bool,
}

/// Which manifest columns mean what.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ManifestColumns {
    pub path: String,
    pub label: String,
    /// Column naming the slide; used for slide-level averaging and, without `group`, for grouping.
    pub slide: Option<String>,
    /// Column whose values must not straddle splits (patient id, field of view, ...).
    pub group: Option<String>,
}

impl Default for ManifestColumns {
    fn default() -> Self {
        Self {
            path: "path".into(),
            label: "label".into(),
            slide: None,
            group: None,
        }
    }
}

/// Stands in for the label of images whose truth is unknown.
const UNLABELLED: &str = "\u{0}unlabelled";

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "tif", "tiff", "bmp"];

impl Dataset {
    /// Reads a manifest. `classes` fixes the class list and order (a trained model's); without
    /// it the sorted distinct labels are used. Unknown labels, missing files and missing
    /// columns are all reported with their row, several at once.
    pub fn from_manifest(
        manifest: &Path,
        cols: &ManifestColumns,
        classes: Option<&[String]>,
    ) -> Result<Self> {
        let base = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(manifest)
            .with_context(|| format!("cannot open manifest {}", manifest.display()))?;
        let headers = reader
            .headers()
            .with_context(|| format!("cannot read the header row of {}", manifest.display()))?
            .clone();
        let col = |name: &str| -> Result<usize> {
            headers.iter().position(|h| h == name).with_context(|| {
                format!(
                    "manifest {} has no column '{name}'; its columns are: {}",
                    manifest.display(),
                    headers.iter().collect::<Vec<_>>().join(", ")
                )
            })
        };
        let path_col = col(&cols.path)?;
        // Prediction manifests may lack the label column when a class list is supplied.
        let labelled = classes.is_none() || headers.iter().any(|h| h == cols.label);
        let label_col = if labelled {
            Some(col(&cols.label)?)
        } else {
            None
        };
        let slide_col = cols.slide.as_deref().map(col).transpose()?;
        let group_col = cols.group.as_deref().map(col).transpose()?;

        let mut raw = Vec::new();
        let mut problems = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let row = i + 1;
            let record = record.with_context(|| {
                format!("manifest {} row {row} is not valid CSV", manifest.display())
            })?;
            let get = |c: usize| record.get(c).unwrap_or("").to_string();
            let rel = get(path_col);
            let label = label_col.map(get).unwrap_or_else(|| UNLABELLED.to_string());
            if rel.is_empty() {
                problems.push(format!("row {row}: empty '{}'", cols.path));
                continue;
            }
            if label.is_empty() {
                problems.push(format!("row {row}: empty label in column '{}'", cols.label));
                continue;
            }
            let path = base.join(&rel);
            if !path.is_file() {
                problems.push(format!(
                    "row {row}: image file {} does not exist",
                    path.display()
                ));
                continue;
            }
            let slide = slide_col.map(get).filter(|s| !s.is_empty());
            let group = group_col
                .map(get)
                .filter(|s| !s.is_empty())
                .or_else(|| slide.clone())
                .unwrap_or_else(|| rel.clone());
            raw.push((path, rel, label, group, slide, row));
        }
        let classes: Vec<String> = match classes {
            Some(c) => c.to_vec(),
            None => {
                let set: std::collections::BTreeSet<&String> = raw.iter().map(|r| &r.2).collect();
                set.into_iter().cloned().collect()
            }
        };
        let mut index: BTreeMap<&str, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        if !labelled {
            index.insert(UNLABELLED, 0);
        }
        let mut samples = Vec::with_capacity(raw.len());
        for (path, rel_path, label, group, slide, row) in raw {
            match index.get(label.as_str()) {
                Some(&label) => samples.push(Sample {
                    path,
                    rel_path,
                    label,
                    group,
                    slide,
                    row,
                }),
                None => problems.push(format!(
                    "row {row}: unknown label '{label}'; the model's classes are: {}",
                    classes.join(", ")
                )),
            }
        }
        report_problems(manifest, &problems)?;
        if samples.is_empty() {
            bail!("manifest {} lists no images", manifest.display());
        }
        Ok(Self {
            source: manifest.to_path_buf(),
            classes,
            samples,
            labelled,
        })
    }

    /// A folder with one sub-folder of images per class; each image is its own group.
    pub fn from_class_folders(dir: &Path, classes: Option<&[String]>) -> Result<Self> {
        let mut found = Vec::new();
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read data folder {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                found.push(entry.file_name().to_string_lossy().to_string());
            }
        }
        found.sort();
        let classes: Vec<String> = classes.map(<[String]>::to_vec).unwrap_or(found.clone());
        let mut samples = Vec::new();
        let mut problems = Vec::new();
        for name in &found {
            let Some(label) = classes.iter().position(|c| c == name) else {
                problems.push(format!(
                    "folder '{name}' is not one of the model's classes ({})",
                    classes.join(", ")
                ));
                continue;
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(name))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_image_path(p))
                .collect();
            files.sort();
            for path in files {
                let rel_path = format!(
                    "{name}/{}",
                    path.file_name().unwrap_or_default().to_string_lossy()
                );
                samples.push(Sample {
                    row: samples.len() + 1,
                    group: rel_path.clone(),
                    rel_path,
                    path,
                    label,
                    slide: None,
                });
            }
        }
        report_problems(dir, &problems)?;
        if samples.is_empty() {
            bail!(
                "{} holds no images in class sub-folders (expected e.g. {}/normal/photo1.jpg)",
                dir.display(),
                dir.display()
            );
        }
        Ok(Self {
            source: dir.to_path_buf(),
            classes,
            samples,
            labelled: true,
        })
    }

    /// Manifest file or class folders, whichever `path` is.
    pub fn open(path: &Path, cols: &ManifestColumns, classes: Option<&[String]>) -> Result<Self> {
        if path.is_dir() {
            Self::from_class_folders(path, classes)
        } else {
            Self::from_manifest(path, cols, classes)
        }
    }

    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for s in &self.samples {
            counts[s.label] += 1;
        }
        counts
    }

    /// A subset keeping the class list.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            source: self.source.clone(),
            classes: self.classes.clone(),
            samples: indices.iter().map(|&i| self.samples[i].clone()).collect(),
            labelled: self.labelled,
        }
    }

    /// Loose image files to classify, each its own group, truth unknown.
    pub fn unlabelled_files(paths: &[PathBuf], classes: &[String]) -> Result<Self> {
        let mut problems = Vec::new();
        let mut samples = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            if !p.is_file() {
                problems.push(format!("{} does not exist", p.display()));
                continue;
            }
            samples.push(Sample {
                path: p.clone(),
                rel_path: p.display().to_string(),
                label: 0,
                group: p.display().to_string(),
                slide: None,
                row: i + 1,
            });
        }
        report_problems(Path::new("the command line"), &problems)?;
        anyhow::ensure!(!samples.is_empty(), "no images given");
        Ok(Self {
            source: PathBuf::from("."),
            classes: classes.to_vec(),
            samples,
            labelled: false,
        })
    }
}

pub fn is_image_path(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

fn report_problems(source: &Path, problems: &[String]) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 20;
    let mut msg = format!(
        "{} problem(s) in {}:\n  {}",
        problems.len(),
        source.display(),
        problems
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    if problems.len() > SHOWN {
        msg.push_str(&format!("\n  ... and {} more", problems.len() - SHOWN));
    }
    bail!(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("myoscope-manifest-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_png(p: &Path) {
        image::RgbImage::from_pixel(8, 6, image::Rgb([200, 100, 150]))
            .save(p)
            .unwrap();
    }

    #[test]
    fn reads_labels_groups_and_slides() {
        let d = scratch("ok");
        write_png(&d.join("a.png"));
        write_png(&d.join("b.png"));
        std::fs::write(
            d.join("m.csv"),
            "path,dx,slide\na.png,dm,s1\nb.png,ibm,s2\n",
        )
        .unwrap();
        let cols = ManifestColumns {
            label: "dx".into(),
            slide: Some("slide".into()),
            ..Default::default()
        };
        let ds = Dataset::from_manifest(&d.join("m.csv"), &cols, None).unwrap();
        assert_eq!(ds.classes, vec!["dm", "ibm"]);
        assert_eq!(ds.samples[1].label, 1);
        assert_eq!(ds.samples[1].group, "s2");
        assert_eq!(ds.samples[0].slide.as_deref(), Some("s1"));
    }

    #[test]
    fn missing_file_unknown_label_and_column_are_named() {
        let d = scratch("bad");
        write_png(&d.join("a.png"));
        std::fs::write(
            d.join("m.csv"),
            "path,label\na.png,dm\nmissing.png,dm\na.png,xyz\n",
        )
        .unwrap();
        let classes = vec!["dm".to_string()];
        let err = Dataset::from_manifest(&d.join("m.csv"), &Default::default(), Some(&classes))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 2") && err.contains("missing.png"),
            "{err}"
        );
        assert!(
            err.contains("row 3") && err.contains("unknown label 'xyz'"),
            "{err}"
        );

        let cols = ManifestColumns {
            label: "diagnosis".into(),
            ..Default::default()
        };
        let err = Dataset::from_manifest(&d.join("m.csv"), &cols, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no column 'diagnosis'") && err.contains("path, label"),
            "{err}"
        );
    }

    #[test]
    fn class_folders() {
        let d = scratch("folders");
        for c in ["normal", "dm"] {
            std::fs::create_dir_all(d.join(c)).unwrap();
            write_png(&d.join(c).join("x.png"));
        }
        std::fs::write(d.join("normal").join("notes.txt"), "not an image").unwrap();
        let ds = Dataset::from_class_folders(&d, None).unwrap();
        assert_eq!(ds.classes, vec!["dm", "normal"]);
        assert_eq!(ds.samples.len(), 2);
    }
}
