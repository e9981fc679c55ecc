//! A multi-label image set from a CSV: one row per image, its labels either as one
//! `;`-separated column (`rbc;platelet`) or as one 0/1 column per class, and optionally a
//! group column (patient, slide) that cross-validation keeps together.
//!
//! Every problem is found before training starts and reported with its row: a missing file, a
//! label outside the given class list, a 0/1 column holding something else, an image without
//! labels where the task requires one.
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// How the CSV names things.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelColumns {
    /// Column holding the image path, relative to the CSV's folder (or `root`).
    pub image: String,
    /// Column holding the `;`-separated labels; ignored when `class_columns` is set.
    pub labels: String,
    /// One 0/1 column per class instead of a label list; the column names are the classes.
    pub class_columns: Vec<String>,
    /// Column whose equal values must stay in one fold (patient, slide); none: each image alone.
    pub group: Option<String>,
    /// Whether an image may carry no label at all (an empty set is then a valid answer).
    pub allow_empty: bool,
    /// Labels to drop from every row (a catch-all too rare to learn), instead of the error an
    /// unknown label gets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
}

impl Default for LabelColumns {
    fn default() -> Self {
        Self {
            image: "path".into(),
            labels: "labels".into(),
            class_columns: Vec::new(),
            group: None,
            allow_empty: false,
            ignore: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImage {
    /// 1-based CSV line, for messages.
    pub row: usize,
    pub path: PathBuf,
    /// The path as written in the CSV: the image's name in fold files and reports.
    pub name: String,
    /// One flag per class, in the set's class order.
    pub labels: Vec<bool>,
    pub group: String,
}

#[derive(Debug, Clone)]
pub struct MultiLabelSet {
    pub source: PathBuf,
    pub classes: Vec<String>,
    pub images: Vec<LabelledImage>,
}

impl MultiLabelSet {
    /// Reads `csv`; image paths are relative to `root` (default: the CSV's folder). `classes`
    /// fixes the class list and its order; without it, the labels found, sorted.
    pub fn open(
        csv: &Path,
        root: Option<&Path>,
        cols: &LabelColumns,
        classes: Option<&[String]>,
    ) -> Result<Self> {
        let root = match root {
            Some(r) => r.to_path_buf(),
            None => csv.parent().unwrap_or(Path::new(".")).to_path_buf(),
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(csv)
            .with_context(|| format!("cannot open the label table {}", csv.display()))?;
        let headers = reader
            .headers()
            .with_context(|| format!("{}: cannot read the header line", csv.display()))?
            .clone();
        let column = |name: &str| -> Result<usize> {
            headers.iter().position(|h| h == name).with_context(|| {
                format!(
                    "{} has no column '{name}' (columns: {})",
                    csv.display(),
                    headers.iter().collect::<Vec<_>>().join(", ")
                )
            })
        };
        let image_col = column(&cols.image)?;
        let group_col = cols.group.as_deref().map(column).transpose()?;
        let flag_cols: Vec<usize> = cols
            .class_columns
            .iter()
            .map(|c| column(c))
            .collect::<Result<_>>()?;
        let list_col = if flag_cols.is_empty() {
            Some(column(&cols.labels)?)
        } else {
            None
        };

        // First pass: the label names of every row, so the class list can be discovered.
        let mut rows: Vec<(usize, String, Vec<String>, String)> = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record = record.with_context(|| format!("{}: line {line}", csv.display()))?;
            let field = |c: usize| record.get(c).unwrap_or("").to_string();
            let image = field(image_col);
            ensure!(
                !image.is_empty(),
                "{}: line {line} has an empty '{}'",
                csv.display(),
                cols.image
            );
            let names: Vec<String> = if let Some(c) = list_col {
                field(c)
                    .split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && !cols.ignore.iter().any(|i| i == s))
                    .map(String::from)
                    .collect()
            } else {
                let mut on = Vec::new();
                for (&c, class) in flag_cols.iter().zip(&cols.class_columns) {
                    match field(c).as_str() {
                        "1" | "1.0" | "true" | "True" | "TRUE" => on.push(class.clone()),
                        "0" | "0.0" | "false" | "False" | "FALSE" | "" => {}
                        other => bail!(
                            "{}: line {line}, column '{class}' holds '{other}'; a class column holds 0 or 1",
                            csv.display()
                        ),
                    }
                }
                on
            };
            let group = group_col.map(field).unwrap_or_else(|| image.clone());
            rows.push((line, image, names, group));
        }
        ensure!(!rows.is_empty(), "{} has no image rows", csv.display());

        let classes: Vec<String> = match classes {
            Some(given) => {
                ensure!(!given.is_empty(), "the class list is empty");
                let unique: BTreeSet<&String> = given.iter().collect();
                ensure!(
                    unique.len() == given.len(),
                    "the class list names a class twice: {}",
                    given.join(", ")
                );
                given.to_vec()
            }
            None if !cols.class_columns.is_empty() => cols.class_columns.clone(),
            None => {
                let found: BTreeSet<&String> = rows.iter().flat_map(|r| &r.2).collect();
                found.into_iter().cloned().collect()
            }
        };
        ensure!(
            !classes.is_empty(),
            "{}: no row carries any label",
            csv.display()
        );
        let index: HashMap<&str, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();

        let mut images = Vec::with_capacity(rows.len());
        let mut problems = Vec::new();
        for (line, name, names, group) in rows {
            let mut labels = vec![false; classes.len()];
            for n in &names {
                match index.get(n.as_str()) {
                    Some(&i) => labels[i] = true,
                    None => problems.push(format!(
                        "line {line}: label '{n}' is not one of the classes ({})",
                        classes.join(", ")
                    )),
                }
            }
            if names.is_empty() && !cols.allow_empty {
                problems.push(format!(
                    "line {line}: '{name}' has no label (allow empty label sets if that is an answer)"
                ));
            }
            let path = root.join(&name);
            if !path.is_file() {
                problems.push(format!("line {line}: image {} not found", path.display()));
            }
            images.push(LabelledImage {
                row: line,
                path,
                name,
                labels,
                group,
            });
        }
        if !problems.is_empty() {
            bail!(
                "{} problem(s) in {}:\n  {}{}",
                problems.len(),
                csv.display(),
                problems
                    .iter()
                    .take(20)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n  "),
                if problems.len() > 20 { "\n  …" } else { "" }
            );
        }
        Ok(Self {
            source: csv.to_path_buf(),
            classes,
            images,
        })
    }

    /// Images carrying each class.
    pub fn label_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for img in &self.images {
            for (c, &on) in img.labels.iter().enumerate() {
                counts[c] += usize::from(on);
            }
        }
        counts
    }

    pub fn labels_of(&self, indices: &[usize]) -> Vec<Vec<bool>> {
        indices
            .iter()
            .map(|&i| self.images[i].labels.clone())
            .collect()
    }
}

/// One CSV field, quoted when it holds a comma, quote or newline (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_dir::Scratch;
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_label_lists_and_class_columns_alike() {
        let dir = Scratch::new("ml-data", line!());
        for f in ["a.png", "b.png"] {
            write(dir.0.as_path(), f, "x");
        }
        let list = write(
            dir.0.as_path(),
            "l.csv",
            "path,labels,patient\na.png,rbc;wbc,p1\nb.png,rbc,p2\n",
        );
        let cols = LabelColumns {
            group: Some("patient".into()),
            ..Default::default()
        };
        let set = MultiLabelSet::open(&list, None, &cols, None).unwrap();
        assert_eq!(set.classes, vec!["rbc", "wbc"]);
        assert_eq!(set.images[0].labels, vec![true, true]);
        assert_eq!(set.images[1].labels, vec![true, false]);
        assert_eq!(set.images[1].group, "p2");
        assert_eq!(set.label_counts(), vec![2, 1]);

        let flags = write(
            dir.0.as_path(),
            "f.csv",
            "image,rbc,wbc\na.png,1,1\nb.png,1,0\n",
        );
        let cols = LabelColumns {
            image: "image".into(),
            class_columns: vec!["rbc".into(), "wbc".into()],
            ..Default::default()
        };
        let set2 = MultiLabelSet::open(&flags, None, &cols, None).unwrap();
        assert_eq!(set2.classes, set.classes);
        assert_eq!(set2.images[0].labels, set.images[0].labels);
        assert_eq!(set2.images[1].labels, set.images[1].labels);
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line() {
        let dir = Scratch::new("ml-data", line!());
        write(dir.0.as_path(), "a.png", "x");
        let csv = write(
            dir.0.as_path(),
            "l.csv",
            "path,labels\na.png,rbc;monster\nmissing.png,rbc\na.png,\n",
        );
        let classes = vec!["rbc".to_string(), "wbc".to_string()];
        let err = MultiLabelSet::open(&csv, None, &LabelColumns::default(), Some(&classes))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2: label 'monster'"), "{err}");
        assert!(
            err.contains("line 3: image") && err.contains("missing.png"),
            "{err}"
        );
        assert!(err.contains("line 4: 'a.png' has no label"), "{err}");

        let flags = write(dir.0.as_path(), "f.csv", "path,rbc\na.png,yes\n");
        let cols = LabelColumns {
            class_columns: vec!["rbc".into()],
            ..Default::default()
        };
        let err = MultiLabelSet::open(&flags, None, &cols, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds 'yes'"), "{err}");
        let err = MultiLabelSet::open(
            &csv,
            None,
            &LabelColumns {
                group: Some("patient".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no column 'patient'"), "{err}");
    }
}
