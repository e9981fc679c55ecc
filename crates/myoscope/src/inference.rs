//! Prediction on new photos: the centre square of each photo (the paper's test protocol), the
//! class probabilities per image, and per slide the mean over its images.
use crate::data::Dataset;
use crate::evaluation::metrics::{argmax_rows, ConfusionMatrix};
use crate::training::LoadedModel;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImagePrediction {
    pub path: String,
    pub slide: Option<String>,
    /// True class, when the input says it.
    pub truth: Option<String>,
    pub predicted: String,
    /// Probabilities in the order of the model's classes.
    pub probabilities: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlidePrediction {
    pub slide: String,
    pub images: usize,
    pub truth: Option<String>,
    pub predicted: String,
    /// Mean of the slide's image probabilities.
    pub probabilities: Vec<f64>,
}

/// Runs the model over every photo of `ds` (centre square), `batch_size` photos at a time.
pub fn predict(
    model: &LoadedModel,
    ds: Dataset,
    batch_size: usize,
    progress: bool,
) -> Result<Vec<ImagePrediction>> {
    let classes = &model.spec.classes;
    let rows = crate::ensemble::probabilities_per_model(
        std::slice::from_ref(model),
        ds.clone(),
        batch_size,
        progress,
    )?
    .pop()
    .unwrap_or_default();
    Ok(ds
        .samples
        .iter()
        .zip(rows)
        .map(|(s, p)| {
            let best = argmax_rows(std::slice::from_ref(&p))[0];
            ImagePrediction {
                path: s.rel_path.clone(),
                slide: s.slide.clone(),
                truth: ds.labelled.then(|| classes[s.label].clone()),
                predicted: classes[best].clone(),
                probabilities: p,
            }
        })
        .collect())
}

/// Slide probability = mean over the slide's images (Kabeya et al.'s slide-level protocol).
pub fn slide_means(preds: &[ImagePrediction], classes: &[String]) -> Vec<SlidePrediction> {
    let mut by_slide: BTreeMap<&str, Vec<&ImagePrediction>> = BTreeMap::new();
    for p in preds {
        if let Some(s) = &p.slide {
            by_slide.entry(s).or_default().push(p);
        }
    }
    by_slide
        .into_iter()
        .map(|(slide, members)| {
            let k = classes.len();
            let mut mean = vec![0.0; k];
            for m in &members {
                for (acc, v) in mean.iter_mut().zip(&m.probabilities) {
                    *acc += v / members.len() as f64;
                }
            }
            let truth = members[0]
                .truth
                .clone()
                .filter(|t| members.iter().all(|m| m.truth.as_ref() == Some(t)));
            SlidePrediction {
                slide: slide.to_string(),
                images: members.len(),
                truth,
                predicted: classes[argmax_rows(std::slice::from_ref(&mean))[0]].clone(),
                probabilities: mean,
            }
        })
        .collect()
}

/// Confusion matrix over the predictions that carry a truth.
pub fn confusion<'a>(
    classes: &[String],
    pairs: impl Iterator<Item = (Option<&'a String>, &'a String)>,
) -> Option<ConfusionMatrix> {
    let idx = |c: &String| classes.iter().position(|k| k == c);
    let (truth, pred): (Vec<usize>, Vec<usize>) =
        pairs.filter_map(|(t, p)| Some((idx(t?)?, idx(p)?))).unzip();
    (!truth.is_empty()).then(|| ConfusionMatrix::new(classes, &truth, &pred))
}

/// Writes identifying columns followed by one probability column per class (`p_<class>`).
fn write_probability_csv<'a>(
    path: &Path,
    leading: [&str; 4],
    classes: &[String],
    rows: impl Iterator<Item = ([String; 4], &'a [f64])>,
) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut header: Vec<String> = leading.iter().map(|h| h.to_string()).collect();
    header.extend(classes.iter().map(|c| format!("p_{c}")));
    w.write_record(&header)?;
    for (ids, probabilities) in rows {
        let mut row = ids.to_vec();
        row.extend(probabilities.iter().map(|v| format!("{v:.6}")));
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

/// One row per image: path, slide, truth, predicted, then one probability column per class.
pub fn write_csv(path: &Path, classes: &[String], preds: &[ImagePrediction]) -> Result<()> {
    let rows = preds.iter().map(|p| {
        let ids = [
            p.path.clone(),
            p.slide.clone().unwrap_or_default(),
            p.truth.clone().unwrap_or_default(),
            p.predicted.clone(),
        ];
        (ids, p.probabilities.as_slice())
    });
    write_probability_csv(path, ["path", "slide", "truth", "predicted"], classes, rows)
}

/// One row per slide: slide, image count, truth, predicted, then the mean probabilities.
pub fn write_slide_csv(path: &Path, classes: &[String], slides: &[SlidePrediction]) -> Result<()> {
    let rows = slides.iter().map(|s| {
        let ids = [
            s.slide.clone(),
            s.images.to_string(),
            s.truth.clone().unwrap_or_default(),
            s.predicted.clone(),
        ];
        (ids, s.probabilities.as_slice())
    });
    write_probability_csv(
        path,
        ["slide", "images", "truth", "predicted"],
        classes,
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slide_probability_is_the_mean_of_its_images() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let p = |path: &str, slide: &str, probs: [f64; 2]| ImagePrediction {
            path: path.into(),
            slide: Some(slide.into()),
            truth: Some("b".into()),
            predicted: String::new(),
            probabilities: probs.to_vec(),
        };
        let preds = vec![
            p("1", "s", [0.8, 0.2]),
            p("2", "s", [0.2, 0.8]),
            p("3", "s", [0.2, 0.8]),
            p("4", "t", [0.9, 0.1]),
        ];
        let slides = slide_means(&preds, &classes);
        assert_eq!(slides.len(), 2);
        assert_eq!(slides[0].images, 3);
        assert!((slides[0].probabilities[1] - 0.6).abs() < 1e-12);
        assert_eq!(slides[0].predicted, "b");
        assert_eq!(slides[1].predicted, "a");
        let cm = confusion(
            &classes,
            slides.iter().map(|s| (s.truth.as_ref(), &s.predicted)),
        )
        .unwrap();
        assert_eq!(cm.counts, vec![vec![0, 0], vec![1, 1]]);
    }
}
