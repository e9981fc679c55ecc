//! Our multi-label scores equal scikit-learn's, and our focal and BCE losses (value and
//! gradient) equal torchvision's `sigmoid_focal_loss` and PyTorch's BCE, on the cases in
//! fixtures/multilabel.json (regenerate with `.venv-ref/bin/python scripts/multilabel_oracle.py`).
use myoscope::multilabel::loss::{AlphaMode, MultiLabelLoss};
use myoscope::multilabel::metrics::LabelCounts;
use serde_json::Value;
use tch::{Kind, Tensor};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/multilabel.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

fn close(ours: f64, theirs: f64, what: &str) {
    assert!(
        (ours - theirs).abs() <= 1e-12,
        "{what}: ours {ours}, scikit-learn {theirs}"
    );
}

#[test]
fn scores_equal_scikit_learn() {
    let f = fixture();
    for case in f["metrics"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let truth: Vec<Vec<bool>> = matrix(&case["truth"])
            .into_iter()
            .map(|r| r.into_iter().map(|x| x != 0.0).collect())
            .collect();
        let probs = matrix(&case["probabilities"]);
        let thresholds = floats(&case["thresholds"]);
        let classes: Vec<String> = (0..thresholds.len()).map(|c| format!("c{c}")).collect();
        let mut counts = LabelCounts::new(&classes).unwrap();
        counts.add_thresholded(&truth, &probs, &thresholds).unwrap();
        let r = counts.report();
        let pc = &case["per_class"];
        for (c, s) in r.per_class.iter().enumerate() {
            close(
                s.precision,
                floats(&pc["precision"])[c],
                &format!("{name} precision c{c}"),
            );
            close(
                s.recall,
                floats(&pc["recall"])[c],
                &format!("{name} recall c{c}"),
            );
            close(s.f1, floats(&pc["f1"])[c], &format!("{name} f1 c{c}"));
            assert_eq!(
                s.support as f64,
                floats(&pc["support"])[c],
                "{name} support c{c}"
            );
        }
        for (avg, ours) in [
            ("micro", &r.micro),
            ("macro", &r.macro_average),
            ("weighted", &r.weighted),
        ] {
            let t = &case["averages"][avg];
            close(
                ours.precision,
                t["precision"].as_f64().unwrap(),
                &format!("{name} {avg} P"),
            );
            close(
                ours.recall,
                t["recall"].as_f64().unwrap(),
                &format!("{name} {avg} R"),
            );
            close(
                ours.f1,
                t["f1"].as_f64().unwrap(),
                &format!("{name} {avg} F1"),
            );
        }
        close(
            r.samples_f1,
            case["samples_f1"].as_f64().unwrap(),
            &format!("{name} samples F1"),
        );
        close(
            r.exact_match_accuracy,
            case["exact_match_accuracy"].as_f64().unwrap(),
            &format!("{name} exact match"),
        );
        // Every case holds an all-empty sample; the report must say so rather than hide it.
        assert!(
            !r.undefined.is_empty(),
            "{name}: nothing reported as undefined"
        );
    }
}

fn tensor(v: &Value) -> Tensor {
    let rows = matrix(v);
    let k = rows[0].len() as i64;
    let flat: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_slice(&flat).view([-1, k])
}

#[test]
fn losses_and_gradients_equal_pytorch() {
    let f = fixture();
    for case in f["losses"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (alpha, gamma) = (
            case["alpha"].as_f64().unwrap(),
            case["gamma"].as_f64().unwrap(),
        );
        let loss = match case["kind"].as_str().unwrap() {
            "bce" => MultiLabelLoss::Bce,
            "scale" => MultiLabelLoss::Focal {
                alpha,
                gamma,
                alpha_mode: AlphaMode::Scale,
            },
            "balanced" => MultiLabelLoss::Focal {
                alpha,
                gamma,
                alpha_mode: AlphaMode::Balanced,
            },
            other => panic!("unknown loss kind {other}"),
        };
        let logits = tensor(&case["logits"]).set_requires_grad(true);
        let targets = tensor(&case["targets"]);
        let weights = match &case["weights"] {
            Value::Null => None,
            w => Some(Tensor::from_slice(
                &floats(w).iter().map(|&x| x as f32).collect::<Vec<_>>(),
            )),
        };
        let value = loss.forward(&logits, &targets, weights.as_ref());
        value.backward();
        let theirs = case["loss"].as_f64().unwrap();
        let ours = value.double_value(&[]);
        assert!(
            (ours - theirs).abs() <= 1e-6 * theirs.abs().max(1.0),
            "{name}: loss ours {ours}, torch {theirs}"
        );
        let grad_diff = (logits.grad() - tensor(&case["grad"]))
            .abs()
            .max()
            .to_kind(Kind::Double)
            .double_value(&[]);
        assert!(grad_diff <= 1e-7, "{name}: gradient differs by {grad_diff}");
    }
}
