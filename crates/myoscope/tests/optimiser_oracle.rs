//! Our RAdam and Adam against torch.optim.RAdam / torch.optim.Adam: same problem, same
//! 200–300 steps, parameters equal to 1e-5. Fixtures made by scripts/oracles.py.
use myoscope::training::adam::{Adam, AdamConfig};
use myoscope::training::radam::{RAdam, RAdamConfig};
use serde_json::Value;
use tch::{nn, Device, Kind, Tensor};

fn formula(shape: &[i64], a: f64, b: f64, scale: f64, sin: bool) -> Tensor {
    let n: i64 = shape.iter().product();
    let idx = Tensor::arange(n, (Kind::Float, Device::Cpu)) * a + b;
    let v = if sin { idx.sin() } else { idx.cos() };
    (v * scale).reshape(shape)
}

/// The two optimisers behind one interface, so both run the identical problem.
enum Optimiser {
    RAdam(RAdam),
    Adam(Adam),
}

impl Optimiser {
    fn zero_grad(&mut self) {
        match self {
            Optimiser::RAdam(o) => o.zero_grad(),
            Optimiser::Adam(o) => o.zero_grad(),
        }
    }
    fn step(&mut self) {
        match self {
            Optimiser::RAdam(o) => o.step(),
            Optimiser::Adam(o) => o.step(),
        }
    }
}

fn run_case(case: &Value, adam: bool) {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let w1 = root.var_copy("w1", &formula(&[8, 5], 0.37, 0.0, 0.5, true));
    let b1 = root.var_copy("b1", &formula(&[5], 1.0, 0.0, 0.1, false));
    let w2 = root.var_copy("w2", &formula(&[5, 3], 0.21, 0.3, 0.5, false));
    let x = formula(&[16, 8], 0.13, 1.0, 1.0, true);
    let y = formula(&[16, 3], 0.07, 0.0, 1.0, false);
    let lr = case["lr"].as_f64().unwrap();
    let weight_decay = case["weight_decay"].as_f64().unwrap();
    let mut opt = if adam {
        Optimiser::Adam(Adam::new(
            &vs,
            AdamConfig {
                lr,
                weight_decay,
                ..AdamConfig::default()
            },
        ))
    } else {
        Optimiser::RAdam(RAdam::new(
            &vs,
            RAdamConfig {
                lr,
                weight_decay,
                decoupled_weight_decay: case["decoupled_weight_decay"].as_bool().unwrap(),
                ..RAdamConfig::default()
            },
        ))
    };
    let steps = case["steps"].as_u64().unwrap();
    let mut first = f64::NAN;
    for s in 0..steps {
        opt.zero_grad();
        let loss = ((x.matmul(&w1) + &b1).tanh().matmul(&w2) - &y)
            .square()
            .mean(Kind::Float);
        if s == 0 {
            first = loss.double_value(&[]);
        }
        loss.backward();
        opt.step();
    }
    assert!((first - case["first_loss"].as_f64().unwrap()).abs() < 1e-6);
    for (name, t) in [("w1", &w1), ("b1", &b1), ("w2", &w2)] {
        let ours = Vec::<f32>::try_from(&t.flatten(0, -1)).unwrap();
        let theirs: Vec<f64> = case["params"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(ours.len(), theirs.len());
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-5,
            "{name}: max |ours - torch| = {worst:e} (case {case})",
            case = case["lr"]
        );
        // The problem must actually have moved the parameters, or the test proves nothing.
        let moved = (&t.flatten(0, -1) - formula_for(name))
            .abs()
            .max()
            .double_value(&[]);
        assert!(moved > 1e-2, "{name} barely moved ({moved})");
    }
}

fn formula_for(name: &str) -> Tensor {
    match name {
        "w1" => formula(&[8, 5], 0.37, 0.0, 0.5, true).flatten(0, -1),
        "b1" => formula(&[5], 1.0, 0.0, 0.1, false),
        _ => formula(&[5, 3], 0.21, 0.3, 0.5, false).flatten(0, -1),
    }
}

#[test]
fn radam_matches_torch_after_200_steps() {
    let text = include_str!("fixtures/radam.json");
    let fixture: Value = serde_json::from_str(text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        run_case(case, false);
    }
}

#[test]
fn adam_matches_torch_after_200_steps() {
    let text = include_str!("fixtures/adam.json");
    let fixture: Value = serde_json::from_str(text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        run_case(case, true);
    }
}
