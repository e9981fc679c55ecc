//! Cell-type labels from multiplex marker intensities, as DEDL derives them: each marker is
//! positive when its per-cell intensity exceeds a threshold; the set of positive and negative
//! markers is the cell's phenotype; ordered rules map phenotypes to cell types (the first rule
//! that matches wins, cells that match none are "other"); an image's labels are the cell types
//! present in it.
//!
//! The per-cell tables are inForm `cell_seg_data.txt` exports (tab-separated) or any CSV with a
//! header: the config names the columns.
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkerRule {
    /// The per-cell table column holding this marker's intensity.
    pub column: String,
    /// Positive when the intensity is strictly above this.
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellTypeRule {
    pub name: String,
    /// Markers that must be positive.
    #[serde(default)]
    pub positive: Vec<String>,
    /// Markers that must be negative.
    #[serde(default)]
    pub negative: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkerConfig {
    /// The column that names each cell's image (inForm: "Sample Name").
    pub image_column: String,
    /// Cells matching no rule get this type; absent: they add no label.
    #[serde(default)]
    pub other: Option<String>,
    /// A cell type is an image's label when at least this many of its cells have it.
    #[serde(default = "one")]
    pub min_cells: usize,
    /// An existing per-cell classification to compare with (inForm: "Phenotype").
    #[serde(default)]
    pub compare_column: Option<String>,
    pub markers: BTreeMap<String, MarkerRule>,
    #[serde(rename = "cell_type")]
    pub cell_types: Vec<CellTypeRule>,
}

fn one() -> usize {
    1
}

impl MarkerConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cfg: Self = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid marker config", path.display()))?;
        cfg.validate()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(!self.markers.is_empty(), "no [markers] defined");
        ensure!(
            !self.cell_types.is_empty(),
            "no [[cell_type]] rules defined"
        );
        ensure!(self.min_cells >= 1, "min_cells must be at least 1");
        for (name, m) in &self.markers {
            ensure!(
                m.threshold.is_finite(),
                "marker {name}: the threshold must be a finite number"
            );
        }
        for rule in &self.cell_types {
            ensure!(
                !rule.name.trim().is_empty(),
                "a cell_type rule has an empty name"
            );
            for m in rule.positive.iter().chain(&rule.negative) {
                if !self.markers.contains_key(m) {
                    bail!(
                        "cell type {} uses marker {m}, which [markers] does not define (defined: {})",
                        rule.name,
                        self.markers.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
            ensure!(
                rule.positive.iter().all(|m| !rule.negative.contains(m)),
                "cell type {} asks for a marker to be both positive and negative",
                rule.name
            );
        }
        Ok(())
    }

    /// The classes a classifier learns, in a fixed order: the rules' distinct names, then
    /// "other" if configured.
    pub fn classes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.cell_types {
            if !out.contains(&r.name) {
                out.push(r.name.clone());
            }
        }
        if let Some(o) = &self.other {
            if !out.contains(o) {
                out.push(o.clone());
            }
        }
        out
    }

    /// The phenotype ("CD4+ CD8−") and cell type of one cell from its marker intensities.
    pub fn classify(&self, intensity: &BTreeMap<String, f64>) -> (String, Option<String>) {
        let positive = |m: &str| {
            intensity
                .get(m)
                .is_some_and(|&v| v > self.markers[m].threshold)
        };
        let phenotype = self
            .markers
            .keys()
            .map(|m| format!("{m}{}", if positive(m) { "+" } else { "-" }))
            .collect::<Vec<_>>()
            .join(" ");
        let cell_type = self
            .cell_types
            .iter()
            .find(|r| {
                r.positive.iter().all(|m| positive(m)) && r.negative.iter().all(|m| !positive(m))
            })
            .map(|r| r.name.clone())
            .or_else(|| self.other.clone());
        (phenotype, cell_type)
    }
}

/// One cell of a per-cell table, classified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellCall {
    pub image: String,
    pub row: usize,
    pub phenotype: String,
    pub cell_type: Option<String>,
    /// The table's own classification, when the config names a compare column.
    pub reference: Option<String>,
}

/// Reads a per-cell table (tab-separated when the header has tabs, else CSV) and classifies
/// every cell. A missing column or a non-numeric intensity is an error naming file, row and
/// column.
pub fn classify_table(cfg: &MarkerConfig, path: &Path) -> Result<Vec<CellCall>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read per-cell table {}", path.display()))?;
    let header_line = text.lines().next().unwrap_or_default();
    let delimiter = if header_line.contains('\t') {
        b'\t'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header", path.display()))?
        .clone();
    let index = |name: &str| -> Result<usize> {
        headers.iter().position(|h| h == name).with_context(|| {
            format!(
                "{}: no column named {name:?} (the table has {} columns, starting {})",
                path.display(),
                headers.len(),
                headers.iter().take(6).collect::<Vec<_>>().join(", ")
            )
        })
    };
    let image_col = index(&cfg.image_column)?;
    let compare_col = cfg.compare_column.as_deref().map(index).transpose()?;
    let marker_cols: Vec<(String, usize)> = cfg
        .markers
        .iter()
        .map(|(m, r)| index(&r.column).map(|i| (m.clone(), i)))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 2; // 1-based, after the header
        let record =
            record.with_context(|| format!("{}: row {row} is malformed", path.display()))?;
        let mut intensity = BTreeMap::new();
        for (m, c) in &marker_cols {
            let raw = record.get(*c).unwrap_or_default().trim();
            let v: f64 = raw
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .with_context(|| {
                    format!(
                        "{}: row {row}, column {:?}: {raw:?} is not a number",
                        path.display(),
                        &headers[*c]
                    )
                })?;
            intensity.insert(m.clone(), v);
        }
        let (phenotype, cell_type) = cfg.classify(&intensity);
        out.push(CellCall {
            image: record.get(image_col).unwrap_or_default().to_string(),
            row,
            phenotype,
            cell_type,
            reference: compare_col.map(|c| record.get(c).unwrap_or_default().to_string()),
        });
    }
    ensure!(
        !out.is_empty(),
        "{}: the table has no cells",
        path.display()
    );
    Ok(out)
}

/// Each image's labels: the cell types with at least `min_cells` cells in it, with the counts.
pub fn image_labels(
    cfg: &MarkerConfig,
    cells: &[CellCall],
) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for c in cells {
        let per = counts.entry(c.image.clone()).or_default();
        if let Some(t) = &c.cell_type {
            *per.entry(t.clone()).or_default() += 1;
        }
    }
    for per in counts.values_mut() {
        per.retain(|_, n| *n >= cfg.min_cells);
    }
    counts
}

/// Agreement with the table's own classification: the share of cells whose cell type equals
/// the reference, and the (ours, reference) pair counts. Cells with an empty reference are left
/// out and counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    pub compared: usize,
    pub agreeing: usize,
    pub share: f64,
    pub without_reference: usize,
    pub pairs: BTreeMap<String, usize>,
}

pub fn agreement(cells: &[CellCall]) -> Option<Agreement> {
    let mut pairs = BTreeMap::new();
    let (mut compared, mut agreeing, mut without) = (0, 0, 0);
    for c in cells {
        let Some(reference) = &c.reference else {
            return None;
        };
        if reference.trim().is_empty() {
            without += 1;
            continue;
        }
        let ours = c.cell_type.clone().unwrap_or_else(|| "(none)".into());
        compared += 1;
        agreeing += usize::from(&ours == reference);
        *pairs.entry(format!("{ours} | {reference}")).or_default() += 1;
    }
    Some(Agreement {
        compared,
        agreeing,
        share: if compared == 0 {
            0.0
        } else {
            agreeing as f64 / compared as f64
        },
        without_reference: without,
        pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MarkerConfig {
        toml::from_str(
            r#"
            image_column = "image"
            other = "other"
            compare_column = "truth"
            [markers.CD4]
            column = "cd4"
            threshold = 1.0
            [markers.CD8]
            column = "cd8"
            threshold = 1.0
            [[cell_type]]
            name = "T helper"
            positive = ["CD4"]
            negative = ["CD8"]
            [[cell_type]]
            name = "T cytotoxic"
            positive = ["CD8"]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn rules_in_order_then_other_and_image_labels() {
        let cfg = config();
        cfg.validate().unwrap();
        assert_eq!(cfg.classes(), ["T helper", "T cytotoxic", "other"]);
        let d = std::env::temp_dir().join(format!("myoscope-markers-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let t = d.join("cells.csv");
        std::fs::write(
            &t,
            "image,cd4,cd8,truth\na,2,0,T helper\na,2,2,T cytotoxic\nb,0,0,T helper\nb,0.5,3,\n",
        )
        .unwrap();
        let cells = classify_table(&cfg, &t).unwrap();
        assert_eq!(cells[0].phenotype, "CD4+ CD8-");
        let types: Vec<_> = cells.iter().map(|c| c.cell_type.clone().unwrap()).collect();
        assert_eq!(types, ["T helper", "T cytotoxic", "other", "T cytotoxic"]);
        let labels = image_labels(&cfg, &cells);
        assert_eq!(labels["a"].len(), 2);
        assert_eq!(
            labels["b"].keys().collect::<Vec<_>>(),
            ["T cytotoxic", "other"]
        );
        let a = agreement(&cells).unwrap();
        assert_eq!((a.compared, a.agreeing, a.without_reference), (3, 2, 1));

        std::fs::write(&t, "image,cd4,cd8,truth\na,x,0,T\n").unwrap();
        let err = classify_table(&cfg, &t).unwrap_err().to_string();
        assert!(err.contains("row 2") && err.contains("\"cd4\""), "{err}");
        std::fs::write(&t, "image,cd4,truth\na,1,T\n").unwrap();
        let err = classify_table(&cfg, &t).unwrap_err().to_string();
        assert!(err.contains("\"cd8\""), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rules_naming_undefined_markers_are_refused() {
        let mut cfg = config();
        cfg.cell_types[0].positive.push("CXCR5".into());
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("CXCR5") && err.contains("CD4, CD8"), "{err}");
        let mut cfg = config();
        cfg.cell_types[0].negative.push("CD4".into());
        assert!(cfg.validate().is_err());
    }
}
