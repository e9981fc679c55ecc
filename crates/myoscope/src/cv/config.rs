//! The cross-validation protocol's configuration: the training config of every fold model,
//! plus the fold layout, what the report treats as positive, and the optional two-step
//! hierarchy (group first, then the subtype within the group).
use crate::config::{DataConfig, ModelConfig, TrainConfig, TrainingConfig};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CvConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub training: TrainingConfig,
    pub cv: CvSettings,
    pub evaluation: EvaluationSettings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hierarchy: Option<Hierarchy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CvSettings {
    /// k of the k-fold (Kabeya et al.: 5).
    pub folds: usize,
    /// Share of each class's slides/groups held out as the test set.
    pub test_fraction: f64,
    /// Seed of the test hold-out and the fold assignment (fold k's model is seeded with
    /// `training.seed + k`).
    pub seed: u64,
}

impl Default for CvSettings {
    fn default() -> Self {
        Self {
            folds: 5,
            test_fraction: 0.2,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationSettings {
    /// The class a binary task calls positive (ROC, sensitivity); default: the second class
    /// in sorted order. With a hierarchy, `hierarchy.positive_group` is used instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<String>,
    /// Decision threshold on the positive probability used by `diagnose`.
    pub threshold: f64,
    /// Group probabilities inside [low, high] are flagged as uncertain by `diagnose`.
    pub uncertainty_band: [f64; 2],
    /// Bootstrap replicates (resampling slides) for the AUC confidence intervals.
    pub bootstrap: usize,
    pub confidence: f64,
}

impl Default for EvaluationSettings {
    fn default() -> Self {
        Self {
            positive_class: None,
            threshold: 0.5,
            uncertainty_band: [0.3, 0.7],
            bootstrap: 2000,
            confidence: 0.95,
        }
    }
}

/// Step 1 separates the groups; step 2 has one model per group over its subtypes. The
/// manifest's label column holds the subtype.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hierarchy {
    /// The group whose probability is thresholded and whose slides must not be missed
    /// (inflammatory myopathy in the paper).
    pub positive_group: String,
    pub groups: Vec<DiagnosticGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosticGroup {
    pub name: String,
    pub subtypes: Vec<String>,
}

impl Hierarchy {
    /// The group a subtype belongs to.
    pub fn group_of(&self, subtype: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|g| g.subtypes.iter().any(|s| s == subtype))
            .map(|g| g.name.as_str())
    }

    /// Group names in sorted order: the class order of the step-1 model.
    pub fn group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.groups.iter().map(|g| g.name.clone()).collect();
        names.sort();
        names
    }

    /// Checks the hierarchy against the data's classes, naming what to change.
    pub fn validate(&self, data_classes: &[String]) -> Result<()> {
        if self.groups.len() < 2 {
            bail!(
                "hierarchy.groups names {} group(s); step 1 needs at least two",
                self.groups.len()
            );
        }
        let mut seen = std::collections::BTreeMap::new();
        for g in &self.groups {
            if g.name.is_empty()
                || !g
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                bail!("hierarchy group name '{}' must be letters, digits, '-', '_' or '.' (it names a folder)", g.name);
            }
            if g.subtypes.is_empty() {
                bail!("hierarchy group '{}' lists no subtypes", g.name);
            }
            for s in &g.subtypes {
                if let Some(other) = seen.insert(s.clone(), g.name.clone()) {
                    bail!(
                        "subtype '{s}' is listed under both '{other}' and '{}' in hierarchy.groups",
                        g.name
                    );
                }
                if !data_classes.contains(s) {
                    bail!(
                        "hierarchy group '{}' names class '{s}', which is not in the data; the data's classes are: {}",
                        g.name,
                        data_classes.join(", ")
                    );
                }
            }
        }
        let unplaced: Vec<&String> = data_classes
            .iter()
            .filter(|c| !seen.contains_key(*c))
            .collect();
        if !unplaced.is_empty() {
            bail!(
                "the data's class(es) {} belong to no hierarchy group; add them to a group's subtypes",
                unplaced.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
            );
        }
        if !self.groups.iter().any(|g| g.name == self.positive_group) {
            bail!(
                "hierarchy.positive_group '{}' is not one of the groups ({})",
                self.positive_group,
                self.group_names().join(", ")
            );
        }
        Ok(())
    }
}

impl CvConfig {
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("config {} is not valid", path.display()))
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// The training config shared by every fold model.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            data: self.data.clone(),
            model: self.model.clone(),
            training: self.training.clone(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.train_config().validate()?;
        let e = &self.evaluation;
        let [lo, hi] = e.uncertainty_band;
        if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
            bail!("evaluation.uncertainty_band must be [low, high] with 0 ≤ low ≤ high ≤ 1, got [{lo}, {hi}]");
        }
        if !(0.0..=1.0).contains(&e.threshold) {
            bail!(
                "evaluation.threshold must be in [0, 1], got {}",
                e.threshold
            );
        }
        if !(0.5..1.0).contains(&e.confidence) {
            bail!("evaluation.confidence must be in [0.5, 1), e.g. 0.95");
        }
        Ok(())
    }

    /// Names the top-level settings in which two configs differ, for "this folder was made
    /// with another config" errors.
    pub fn differences(&self, other: &CvConfig) -> Vec<String> {
        let a = toml::Value::try_from(self).ok();
        let b = toml::Value::try_from(other).ok();
        let (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) = (a, b) else {
            return vec!["(unreadable)".into()];
        };
        let mut out = Vec::new();
        for (section, va) in &a {
            match (va, b.get(section)) {
                (toml::Value::Table(ta), Some(toml::Value::Table(tb))) => {
                    for (k, x) in ta {
                        if tb.get(k) != Some(x) {
                            out.push(format!("{section}.{k}"));
                        }
                    }
                    out.extend(
                        tb.keys()
                            .filter(|k| !ta.contains_key(*k))
                            .map(|k| format!("{section}.{k}")),
                    );
                }
                (x, y) if Some(x) != y => out.push(section.clone()),
                _ => {}
            }
        }
        out.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn herlev_like() -> Hierarchy {
        toml::from_str(
            r#"positive_group = "abnormal"
groups = [{ name = "normal", subtypes = ["n1", "n2"] }, { name = "abnormal", subtypes = ["a1"] }]"#,
        )
        .unwrap()
    }

    #[test]
    fn hierarchy_naming_an_unknown_class_is_refused_with_the_known_ones() {
        let h = herlev_like();
        let classes: Vec<String> = ["a1", "n1", "n3"].iter().map(|s| s.to_string()).collect();
        let err = h.validate(&classes).unwrap_err().to_string();
        assert!(err.contains("'n2'") && err.contains("a1, n1, n3"), "{err}");
        let all: Vec<String> = ["a1", "n1", "n2"].iter().map(|s| s.to_string()).collect();
        h.validate(&all).unwrap();
        assert_eq!(h.group_of("n2"), Some("normal"));
        assert_eq!(h.group_names(), vec!["abnormal", "normal"]);
    }

    #[test]
    fn round_trips_and_names_differences() {
        let mut c = CvConfig {
            hierarchy: Some(herlev_like()),
            ..Default::default()
        };
        let back: CvConfig = toml::from_str(&c.to_toml().unwrap()).unwrap();
        assert_eq!(back, c);
        c.model.arch = "resnet18".into();
        c.cv.folds = 3;
        assert_eq!(back.differences(&c), vec!["cv.folds", "model.arch"]);
    }
}
