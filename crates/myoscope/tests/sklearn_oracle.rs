//! Our ROC curves, AUCs, confusion matrices and accuracies equal scikit-learn's on the cases
//! in fixtures/sklearn_metrics.json (regenerate with `.venv-ref/bin/python scripts/oracles.py`).
use myoscope::evaluation::metrics::ConfusionMatrix;
use myoscope::evaluation::roc::{one_vs_rest_auc, roc_auc, roc_curve};
use myoscope::evaluation::threshold::counts_at;
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sklearn_metrics.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("{x} is not a number")))
        .collect()
}

/// JSON has no infinity: the script writes sklearn's +inf first threshold as null.
fn thresholds(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| match x {
            Value::Null => f64::INFINITY,
            _ => x
                .as_f64()
                .unwrap_or_else(|| panic!("{x} is not a threshold")),
        })
        .collect()
}

fn ints(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn assert_close(name: &str, ours: &[f64], theirs: &[f64]) {
    assert_eq!(ours.len(), theirs.len(), "{name}: {ours:?} vs {theirs:?}");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            a == b || (a - b).abs() <= 1e-12,
            "{name}[{i}]: {a} vs scikit-learn {b}"
        );
    }
}

#[test]
fn binary_roc_auc_and_threshold_counts_equal_scikit_learn() {
    let f = fixture();
    let names: Vec<&str> = f["binary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["distinct", "ties", "collinear", "three"]);
    for case in f["binary"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let truth: Vec<bool> = ints(&case["truth"]).into_iter().map(|y| y == 1).collect();
        let scores = floats(&case["scores"]);
        let curve = roc_curve(&truth, &scores).unwrap().unwrap();
        assert_close(&format!("{name} fpr"), &curve.fpr, &floats(&case["fpr"]));
        assert_close(&format!("{name} tpr"), &curve.tpr, &floats(&case["tpr"]));
        assert_close(
            &format!("{name} thresholds"),
            &curve.thresholds,
            &thresholds(&case["thresholds"]),
        );
        let mut distinct = scores.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        if name == "collinear" {
            assert!(
                curve.fpr.len() < distinct.len() + 1,
                "the collinear case must exercise drop_intermediate"
            );
        }
        let auc = roc_auc(&truth, &scores).unwrap().unwrap();
        assert!(
            (auc - case["auc"].as_f64().unwrap()).abs() < 1e-12,
            "{name} auc {auc}"
        );
        for t in case["at_threshold"].as_array().unwrap() {
            let c = counts_at(&truth, &scores, t["threshold"].as_f64().unwrap());
            let theirs =
                [&t["tp"], &t["tn"], &t["fp"], &t["fn"]].map(|v| v.as_u64().unwrap() as usize);
            assert_eq!(
                [c.tp, c.tn, c.fp, c.fn_],
                theirs,
                "{name} at {}",
                t["threshold"]
            );
        }
    }
}

#[test]
fn multiclass_auc_confusion_and_accuracy_equal_scikit_learn() {
    let f = fixture();
    for case in f["multiclass"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let k = case["classes"].as_u64().unwrap() as usize;
        let truth = ints(&case["truth"]);
        let probs: Vec<Vec<f64>> = case["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(floats)
            .collect();
        let (macro_auc, per_class) = one_vs_rest_auc(&truth, &probs, k).unwrap();
        assert!(
            (macro_auc.unwrap() - case["macro_auc"].as_f64().unwrap()).abs() < 1e-12,
            "{name}"
        );
        let per_class: Vec<f64> = per_class.into_iter().map(Option::unwrap).collect();
        assert_close(
            &format!("{name} per-class AUC"),
            &per_class,
            &floats(&case["per_class_auc"]),
        );
        let classes: Vec<String> = (0..k).map(|c| format!("c{c}")).collect();
        let predicted = myoscope::evaluation::metrics::argmax_rows(&probs);
        assert_eq!(predicted, ints(&case["predicted"]), "{name} argmax");
        let cm = ConfusionMatrix::new(&classes, &truth, &predicted);
        let theirs: Vec<Vec<usize>> = case["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .map(ints)
            .collect();
        assert_eq!(cm.counts, theirs, "{name} confusion");
        assert!(
            (cm.accuracy() - case["accuracy"].as_f64().unwrap()).abs() < 1e-15,
            "{name} accuracy"
        );
    }
}
