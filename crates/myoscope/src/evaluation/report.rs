//! Writes an evaluation to disk: `metrics.json`, ROC curves and confusion matrices as SVG and
//! PNG, and one self-contained `report.html` (pictures inlined, no scripts, no network) that a
//! pathologist can open offline.
use super::cv_report::{Counts, CvMetrics, LevelMetrics, StageReport};
use super::metrics::ConfusionMatrix;
use super::png::write_picture;
use super::svg;
use crate::training::checkpoint::{write_atomic, write_json_atomic};
use anyhow::Result;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Writes everything into `out` and returns the report's path.
pub fn write_all(out: &Path, metrics: &CvMetrics) -> Result<PathBuf> {
    write_all_with(out, metrics, None)
}

/// [`write_all`] with the test photos' heat-maps (from `explain`, written under `out`) shown
/// at the end of the report.
pub fn write_all_with(
    out: &Path,
    metrics: &CvMetrics,
    heat_maps: Option<&crate::explain::job::ExplainReport>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    write_json_atomic(&out.join("metrics.json"), metrics)?;
    let mut html = Page::new("myoscope evaluation");
    html.headline(metrics);
    for stage in &metrics.stages {
        let pictures = stage_pictures(out, stage)?;
        html.stage(stage, &pictures);
    }
    if let Some(t) = &metrics.two_step {
        html.two_step(t);
    }
    if let Some(h) = heat_maps {
        html.heat_maps(h);
    }
    let path = out.join("report.html");
    write_atomic(&path, html.finish().as_bytes())?;
    Ok(path)
}

/// (title, svg) of each picture of a stage, also written as STAGE_NAME.svg and .png.
fn stage_pictures(out: &Path, s: &StageReport) -> Result<Vec<(String, String)>> {
    let mut pics = Vec::new();
    let mut stems = Vec::new();
    for (level, curves, counts) in [
        (
            "image",
            &s.roc.per_image,
            s.thresholds.as_ref().map(|t| &t.test_per_image),
        ),
        (
            "slide",
            &s.roc.per_slide,
            s.thresholds.as_ref().map(|t| &t.test_per_slide),
        ),
    ] {
        let named: Vec<(String, super::roc::RocCurve)> = curves
            .iter()
            .map(|c| (c.name.clone(), c.curve.clone()))
            .collect();
        let sensitivity_first = s.thresholds.as_ref().and_then(|t| t.sensitivity_first);
        let markers: Vec<(String, f64, f64)> = counts
            .into_iter()
            .flatten()
            .map(|(name, c)| {
                let label = match (name.as_str(), sensitivity_first) {
                    ("sensitivity_first", Some(t)) => format!("sensitivity-first threshold {t:.3}"),
                    _ => format!("threshold {name}"),
                };
                (label, 1.0 - c.specificity, c.sensitivity)
            })
            .filter(|(_, x, y)| x.is_finite() && y.is_finite())
            .collect();
        let title = format!("{}: ROC per {level} (test set)", s.stage);
        pics.push((title.clone(), svg::roc_curves(&named, &markers, &title)));
        stems.push(format!("{}_roc_per_{level}", s.stage));
    }
    for (level, m) in [
        ("image", &s.ensemble.per_image),
        ("slide", &s.ensemble.per_slide),
    ] {
        let rule = if s.positive_class.is_some() {
            "threshold 0.5"
        } else {
            "most probable class"
        };
        let title = format!("{}: ensemble per {level}, {rule}", s.stage);
        pics.push((title.clone(), svg::confusion_matrix(&m.confusion, &title)));
        stems.push(format!("{}_confusion_per_{level}", s.stage));
    }
    if let (Some(t), Some(p)) = (&s.thresholds, &s.positive_class) {
        if let (Some(th), Some(c)) = (
            t.sensitivity_first,
            t.test_per_slide.get("sensitivity_first"),
        ) {
            let title = format!(
                "{}: ensemble per slide, sensitivity-first threshold {th:.3}",
                s.stage
            );
            pics.push((
                title.clone(),
                svg::confusion_matrix(&binary_confusion(&s.classes, p, c), &title),
            ));
            stems.push(format!("{}_confusion_per_slide_sensitivity_first", s.stage));
        }
    }
    debug_assert_eq!(pics.len(), stems.len());
    for ((_, svg_text), stem) in pics.iter().zip(&stems) {
        write_picture(&out.join(file_stem(stem)), svg_text)?;
    }
    Ok(pics)
}

fn file_stem(title: &str) -> String {
    let mut s: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    s.trim_matches('_').to_string()
}

fn binary_confusion(classes: &[String], positive: &str, c: &Counts) -> ConfusionMatrix {
    let p = classes.iter().position(|k| k == positive).unwrap_or(1);
    let n = 1 - p;
    let mut m = ConfusionMatrix::new(classes, &[], &[]);
    m.counts[p][p] = c.counts.tp;
    m.counts[p][n] = c.counts.fn_;
    m.counts[n][n] = c.counts.tn;
    m.counts[n][p] = c.counts.fp;
    m
}

fn f3(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite())
        .map_or("–".into(), |v| format!("{v:.3}"))
}

fn ci(x: Option<[f64; 2]>) -> String {
    x.map_or(String::new(), |[a, b]| format!(" ({a:.3}–{b:.3})"))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Page {
    body: String,
    title: String,
}

impl Page {
    fn new(title: &str) -> Self {
        Self {
            body: String::new(),
            title: title.into(),
        }
    }

    fn headline(&mut self, m: &CvMetrics) {
        let b = &mut self.body;
        let _ = writeln!(b, "<h1>{}</h1>", esc(&self.title));
        let _ = writeln!(
            b,
            "<p>Ensemble <code>{}</code>. Figures are on the held-out test set; the ensemble's probability is the mean of its fold models', a slide's the mean over its photos.{}</p>",
            esc(&m.ensemble),
            m.positive_class
                .as_ref()
                .map_or(String::new(), |p| format!(" Positive class: <b>{}</b>.", esc(p)))
        );
        let _ = writeln!(
            b,
            "<table><tr><th>{}</th><th>n</th><th>AUC (95% CI)</th><th>accuracy</th></tr>",
            esc(&m.primary_stage)
        );
        for (name, h) in [("per photo", &m.per_image), ("per slide", &m.per_slide)] {
            let _ = writeln!(
                b,
                "<tr><td>{name}</td><td>{}</td><td>{}{}</td><td>{:.3}</td></tr>",
                h.n,
                f3(h.auc),
                ci(h.auc_ci),
                h.accuracy
            );
        }
        let _ = writeln!(b, "</table>");
    }

    fn stage(&mut self, s: &StageReport, pictures: &[(String, String)]) {
        let b = &mut self.body;
        let _ = writeln!(
            b,
            "<h2>{}: {}</h2>",
            esc(&s.stage),
            esc(&s.classes.join(" · "))
        );
        let _ = writeln!(b, "<h3>Ensemble and single models (test set)</h3>");
        let _ = writeln!(b, "<table><tr><th></th><th>AUC</th><th>accuracy</th></tr>");
        for (level, e, sm) in [
            ("photo", &s.ensemble.per_image, &s.single_models.per_image),
            ("slide", &s.ensemble.per_slide, &s.single_models.per_slide),
        ] {
            let _ = writeln!(
                b,
                "<tr><td>ensemble, per {level}</td><td>{}{}</td><td>{:.3}</td></tr>",
                f3(e.auc),
                ci(e.auc_ci),
                e.accuracy
            );
            let _ = writeln!(
                b,
                "<tr><td>single model, per {level} (mean ± sd of {} folds)</td><td>{} ± {}</td><td>{:.3} ± {:.3}</td></tr>",
                s.folds.len(),
                f3(sm.auc_mean),
                f3(sm.auc_sd),
                sm.accuracy_mean,
                sm.accuracy_sd
            );
            if let Some(c) = &sm.summed_counts {
                let _ = writeln!(
                    b,
                    "<tr><td colspan=3 class=note>single models per {level}, TP/TN/FP/FN summed over folds: {}/{}/{}/{} → accuracy {:.3}, sensitivity {:.3}, specificity {:.3}</td></tr>",
                    c.counts.tp, c.counts.tn, c.counts.fp, c.counts.fn_, c.accuracy, c.sensitivity, c.specificity
                );
            }
        }
        let _ = writeln!(b, "</table>");
        if let Some(t) = &s.thresholds {
            let _ = writeln!(b, "<h3>Thresholds</h3><p>Sensitivity-first threshold: <b>{}</b>, the highest that misses no positive slide on the {}.</p>", f3(t.sensitivity_first), esc(&t.found_on));
            let _ = writeln!(b, "<table><tr><th>test set</th><th>threshold</th><th>TP</th><th>TN</th><th>FP</th><th>FN</th><th>accuracy</th><th>sensitivity</th><th>specificity</th></tr>");
            for (level, map) in [
                ("per slide", &t.test_per_slide),
                ("per photo", &t.test_per_image),
            ] {
                for (name, c) in map {
                    let _ = writeln!(
                        b,
                        "<tr><td>{level}</td><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                        c.counts.tp, c.counts.tn, c.counts.fp, c.counts.fn_, c.accuracy, c.sensitivity, c.specificity
                    );
                }
            }
            let _ = writeln!(b, "</table>");
        }
        per_class(b, &s.ensemble.per_slide, "slide");
        let _ = writeln!(b, "<h3>Per fold</h3><table><tr><th>fold</th><th>train photos (slides)</th><th>validation</th><th>test</th><th>best epoch</th><th>val. accuracy</th><th>AUC per slide</th><th>accuracy per slide</th><th>AUC per photo</th><th>accuracy per photo</th></tr>");
        for f in &s.folds {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{} ({})</td><td>{} ({})</td><td>{} ({})</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{:.3}</td></tr>",
                f.fold, f.train_images, f.train_slides, f.validation_images, f.validation_slides, f.test_images, f.test_slides,
                f.best_epoch, f.best_validation_accuracy, f3(f.per_slide.auc), f.per_slide.accuracy, f3(f.per_image.auc), f.per_image.accuracy
            );
        }
        let _ = writeln!(b, "</table><div class=pictures>");
        for (title, svg_text) in pictures {
            let _ = writeln!(
                b,
                "<figure>{svg_text}<figcaption>{}</figcaption></figure>",
                esc(title)
            );
        }
        let _ = writeln!(b, "</div>");
    }

    /// Overlay, AI-focused and AI-unfocused image per explained photo; paths are relative to
    /// the report's folder (`heatmaps/photos/…`).
    fn heat_maps(&mut self, h: &crate::explain::job::ExplainReport) {
        let b = &mut self.body;
        let _ = writeln!(
            b,
            "<h2>Heat-maps ({} Grad-CAM at layer {}, {} model(s))</h2><p class=note>Left to right: heat-map over the centre square, AI-focused (pixels above the map's median), AI-unfocused (the rest).</p>",
            h.method.name(),
            esc(&h.layer),
            h.models
        );
        for p in &h.photos {
            let prob = p
                .probabilities
                .get(&p.predicted)
                .copied()
                .unwrap_or(f64::NAN);
            let _ = writeln!(
                b,
                "<figure><img src=\"heatmaps/{}\" width=200> <img src=\"heatmaps/{}\" width=200> <img src=\"heatmaps/{}\" width=200><figcaption>{} — truth {}, predicted {} ({:.3}), map of {}</figcaption></figure>",
                esc(&p.overlay),
                esc(&p.focused),
                esc(&p.unfocused),
                esc(&p.photo),
                esc(p.label.as_deref().unwrap_or("?")),
                esc(&p.predicted),
                prob,
                esc(&p.explained_class)
            );
        }
    }

    fn two_step(&mut self, t: &super::cv_report::TwoStepReport) {
        let b = &mut self.body;
        let _ = writeln!(b, "<h2>Two-step diagnosis of the test slides</h2>");
        let _ = writeln!(
            b,
            "<p>Group call at threshold {:.2}: accuracy <b>{:.3}</b>; final subtype accuracy <b>{:.3}</b> over {} slides; {} slide(s) in the uncertainty band.</p>",
            t.threshold, t.group_accuracy, t.subtype_accuracy, t.slides, t.uncertain_slides
        );
        let _ = writeln!(
            b,
            "<table><tr><th>true subtype</th><th>slides</th><th>correct</th><th>accuracy</th></tr>"
        );
        for (name, s) in &t.per_subtype {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td></tr>",
                esc(name),
                s.slides,
                s.correct,
                s.accuracy
            );
        }
        let _ = writeln!(b, "</table><details><summary>Every test slide</summary><table><tr><th>slide</th><th>photos</th><th>truth</th><th>P(positive)</th><th>call</th><th>subtype</th><th>uncertain</th></tr>");
        for d in &t.diagnoses {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.slide),
                d.images,
                esc(d.truth.as_deref().unwrap_or("")),
                d.positive_probability,
                esc(&d.call),
                esc(d.subtype.as_deref().unwrap_or("")),
                if d.uncertain { "yes" } else { "" }
            );
        }
        let _ = writeln!(b, "</table></details>");
    }

    fn finish(self) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{}</title><style>\nbody{{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}}\ntable{{border-collapse:collapse;margin:.5em 0 1em}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\n.note{{color:#555;font-size:90%;text-align:left}}.pictures{{display:flex;flex-wrap:wrap;gap:1em}}figure{{margin:0}}figcaption{{font-size:85%;color:#555}}\n</style></head><body>\n{}<p class=note>Written by myoscope {} on {}.</p></body></html>\n",
            esc(&self.title),
            self.body,
            env!("CARGO_PKG_VERSION"),
            crate::training::run_dir::timestamp()
        )
    }
}

fn per_class(b: &mut String, m: &LevelMetrics, level: &str) {
    let _ = writeln!(b, "<h3>Per class (ensemble, per {level})</h3><table><tr><th>class</th><th>AUC one-vs-rest (95% CI)</th><th>accuracy (recall)</th></tr>");
    for (name, auc) in &m.per_class_auc {
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}{}</td><td>{}</td></tr>",
            esc(name),
            f3(*auc),
            ci(m.per_class_auc_ci.get(name).copied().flatten()),
            f3(m.per_class_accuracy.get(name).copied())
        );
    }
    let _ = writeln!(b, "</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_names_are_plain_file_names() {
        assert_eq!(
            file_stem("step1: ROC per slide (test set)"),
            "step1_roc_per_slide_test_set"
        );
        assert_eq!(
            file_stem("main: ensemble per image, threshold 0.5"),
            "main_ensemble_per_image_threshold_0.5"
        );
    }
}
