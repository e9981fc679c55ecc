//! The fixed part of a cross-validation run: which image is in the test set or in which fold
//! (`assignment.csv`, also read by the PyTorch reference), and the stages to train — one
//! classifier, or step 1 plus one step-2 classifier per group — each with its own manifest.
use super::config::CvConfig;
use crate::config::TrainConfig;
use crate::data::folds::assign_folds;
use crate::data::split::Split;
use crate::data::{Dataset, ManifestColumns, Sample};
use crate::training::checkpoint::write_atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "cv.toml";
pub const ASSIGNMENT_FILE: &str = "assignment.csv";
pub const MANIFEST_DIR: &str = "manifests";

/// One image's place in the protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentRow {
    /// Absolute path of the photo.
    pub path: String,
    /// The manifest's label (the subtype when there is a hierarchy).
    pub label: String,
    /// Never straddles test and folds (slide or patient).
    pub group: String,
    /// The unit whose images are averaged for the slide-level figures.
    pub slide: String,
    /// `1`..`k`, or `test`.
    pub fold: String,
}

impl AssignmentRow {
    pub fn fold_number(&self) -> Option<usize> {
        self.fold.parse().ok()
    }
    pub fn is_test(&self) -> bool {
        self.fold == "test"
    }
}

/// One classifier of the protocol, trained k times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// `main`, `step1` or `step2-<group>`; also its folder name.
    pub name: String,
    pub classes: Vec<String>,
    /// Step 2 only: the group whose images it sees; its fold-k model starts from the step-1
    /// fold-k trunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Stage {
    pub fn is_step2(&self) -> bool {
        self.group.is_some()
    }
}

pub struct Plan {
    pub dir: PathBuf,
    pub config: CvConfig,
    pub rows: Vec<AssignmentRow>,
    pub stages: Vec<Stage>,
}

impl Plan {
    /// Opens the data, checks it against the protocol, assigns test set and folds, and writes
    /// `cv.toml`, `assignment.csv` and one manifest per stage into `dir`.
    pub fn create(dir: &Path, config: &CvConfig) -> Result<Self> {
        config.validate()?;
        let ds = Dataset::open(&config.data.source, &config.data.columns, None)?;
        if let Some(h) = &config.hierarchy {
            h.validate(&ds.classes).with_context(|| {
                format!(
                    "the [hierarchy] does not fit {}",
                    config.data.source.display()
                )
            })?;
        }
        let assignment = assign_folds(
            &ds,
            config.cv.folds,
            config.cv.test_fraction,
            config.cv.seed,
        )?;
        let fold_of = assignment.fold_of(ds.samples.len());
        let rows = ds
            .samples
            .iter()
            .zip(&fold_of)
            .map(|(s, f)| row_of(&ds, s, *f))
            .collect::<Result<Vec<_>>>()?;
        let plan = Self {
            dir: dir.to_path_buf(),
            stages: stages_of(config, &ds.classes),
            config: config.clone(),
            rows,
        };
        std::fs::create_dir_all(dir.join(MANIFEST_DIR))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for stage in &plan.stages {
            plan.write_stage_manifest(stage)?;
        }
        write_rows(&dir.join(ASSIGNMENT_FILE), &plan.rows)?;
        // Written last: its presence marks a complete set-up.
        write_atomic(&dir.join(CONFIG_FILE), config.to_toml()?.as_bytes())?;
        Ok(plan)
    }

    /// Re-opens a run directory made by [`Plan::create`].
    pub fn open(dir: &Path) -> Result<Self> {
        let config = CvConfig::from_toml_file(&dir.join(CONFIG_FILE))?;
        let path = dir.join(ASSIGNMENT_FILE);
        let mut reader = csv::Reader::from_path(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let rows = reader
            .deserialize()
            .collect::<std::result::Result<Vec<AssignmentRow>, _>>()
            .with_context(|| format!("{} is damaged", path.display()))?;
        let mut classes: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
        classes.sort();
        classes.dedup();
        Ok(Self {
            dir: dir.to_path_buf(),
            stages: stages_of(&config, &classes),
            config,
            rows,
        })
    }

    pub fn folds(&self) -> usize {
        self.config.cv.folds
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The first stage: the one whose figures head the report (step 1 or the only one).
    pub fn primary(&self) -> &Stage {
        &self.stages[0]
    }

    pub fn fold_dir(&self, stage: &Stage, k: usize) -> PathBuf {
        self.dir.join(&stage.name).join(format!("fold-{k}"))
    }

    pub fn stage_manifest(&self, stage: &Stage) -> PathBuf {
        self.dir
            .join(MANIFEST_DIR)
            .join(format!("{}.csv", stage.name))
    }

    /// The class a row has in `stage`, or `None` when the stage does not see it.
    pub fn label_in(&self, stage: &Stage, row: &AssignmentRow) -> Option<String> {
        match (&self.config.hierarchy, &stage.group) {
            (None, _) => Some(row.label.clone()),
            (Some(h), None) => h.group_of(&row.label).map(str::to_string),
            (Some(h), Some(g)) => (h.group_of(&row.label) == Some(g)).then(|| row.label.clone()),
        }
    }

    /// The training config of fold `k` of `stage`: the stage's manifest, and a seed per fold so
    /// the k models differ in more than their data.
    pub fn fold_config(&self, stage: &Stage, k: usize) -> TrainConfig {
        let mut c = self.config.train_config();
        c.data.source = self.stage_manifest(stage);
        c.data.columns = ManifestColumns {
            path: "path".into(),
            label: "label".into(),
            slide: Some("slide".into()),
            group: Some("group".into()),
        };
        c.training.seed = self.config.training.seed + k as u64;
        c
    }

    /// Train = the other folds, validation = fold k, as indices into the stage's manifest.
    pub fn fold_split(&self, stage_ds: &Dataset, k: usize) -> Result<Split> {
        let fold: HashMap<&str, &str> = self
            .rows
            .iter()
            .map(|r| (r.path.as_str(), r.fold.as_str()))
            .collect();
        let mut split = Split {
            train: Vec::new(),
            validation: Vec::new(),
        };
        for (i, s) in stage_ds.samples.iter().enumerate() {
            match fold.get(s.rel_path.as_str()).map(|f| f.parse::<usize>()) {
                Some(Ok(f)) if f == k => split.validation.push(i),
                Some(Ok(_)) => split.train.push(i),
                _ => bail!(
                    "{}: '{}' is not a cross-validation image of {}",
                    stage_ds.source.display(),
                    s.rel_path,
                    self.dir.join(ASSIGNMENT_FILE).display()
                ),
            }
        }
        Ok(split)
    }

    /// The stage's test photos as a data set in the stage's class order.
    pub fn test_set(&self, stage: &Stage) -> Dataset {
        self.dataset_of(stage, |r| r.is_test())
    }

    /// The stage's photos of fold k (the fold model's validation set).
    pub fn fold_set(&self, stage: &Stage, k: usize) -> Dataset {
        self.dataset_of(stage, |r| r.fold_number() == Some(k))
    }

    /// Every test photo labelled with the manifest's (finest) class: the input of the
    /// end-to-end two-step evaluation.
    pub fn test_photos(&self) -> Dataset {
        let mut classes: Vec<String> = self.rows.iter().map(|r| r.label.clone()).collect();
        classes.sort();
        classes.dedup();
        self.rows_as_dataset(&classes, |r| r.is_test().then(|| r.label.clone()))
    }

    fn dataset_of(&self, stage: &Stage, keep: impl Fn(&AssignmentRow) -> bool) -> Dataset {
        self.rows_as_dataset(&stage.classes, |r| {
            keep(r).then(|| self.label_in(stage, r)).flatten()
        })
    }

    /// The rows for which `label` gives a class, as a data set over `classes`.
    fn rows_as_dataset(
        &self,
        classes: &[String],
        label: impl Fn(&AssignmentRow) -> Option<String>,
    ) -> Dataset {
        let samples = self
            .rows
            .iter()
            .filter_map(|r| {
                let label = label(r)?;
                Some(Sample {
                    path: PathBuf::from(&r.path),
                    rel_path: r.path.clone(),
                    label: classes.iter().position(|c| *c == label)?,
                    group: r.group.clone(),
                    slide: Some(r.slide.clone()),
                    row: 0,
                })
            })
            .enumerate()
            .map(|(i, mut s)| {
                s.row = i + 1;
                s
            })
            .collect();
        Dataset {
            source: self.dir.join(ASSIGNMENT_FILE),
            classes: classes.to_vec(),
            samples,
            labelled: true,
        }
    }

    fn write_stage_manifest(&self, stage: &Stage) -> Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        for r in self.rows.iter().filter(|r| !r.is_test()) {
            if let Some(label) = self.label_in(stage, r) {
                w.serialize(AssignmentRow { label, ..r.clone() })?;
            }
        }
        let bytes = w.into_inner().context("writing a stage manifest")?;
        write_atomic(&self.stage_manifest(stage), &bytes)
    }
}

fn row_of(ds: &Dataset, s: &Sample, fold: Option<usize>) -> Result<AssignmentRow> {
    let path = std::fs::canonicalize(&s.path)
        .with_context(|| format!("row {}: cannot resolve {}", s.row, s.path.display()))?;
    Ok(AssignmentRow {
        path: path.to_string_lossy().into_owned(),
        label: ds.classes[s.label].clone(),
        group: s.group.clone(),
        slide: s.slide.clone().unwrap_or_else(|| s.group.clone()),
        fold: fold.map_or("test".into(), |f| f.to_string()),
    })
}

fn stages_of(config: &CvConfig, classes: &[String]) -> Vec<Stage> {
    match &config.hierarchy {
        None => vec![Stage {
            name: "main".into(),
            classes: classes.to_vec(),
            group: None,
        }],
        Some(h) => {
            let mut stages = vec![Stage {
                name: "step1".into(),
                classes: h.group_names(),
                group: None,
            }];
            // A group with a single subtype needs no step-2 model: its subtype is its group.
            for g in h.groups.iter().filter(|g| g.subtypes.len() >= 2) {
                let name = g.name.clone();
                let mut subtypes = g.subtypes.clone();
                subtypes.sort();
                stages.push(Stage {
                    name: format!("step2-{name}"),
                    classes: subtypes,
                    group: Some(name),
                });
            }
            stages[1..].sort_by(|a, b| a.name.cmp(&b.name));
            stages
        }
    }
}

fn write_rows(path: &Path, rows: &[AssignmentRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    write_atomic(path, &w.into_inner().context("writing the assignment")?)
}
