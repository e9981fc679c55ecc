//! ONNX export checked against libtorch: each trunk family's aggregated classifier (random
//! weights, batch-norm statistics and affine parameters randomised so folding is exercised)
//! is exported by our writer, run in ONNX Runtime, and every output must match the libtorch
//! forward pass. Plus the command line: `export onnx`, `predict --engine onnx`, and clear
//! errors for a corrupt file. Tests print SKIP where the ONNX Runtime library is absent.
mod common;
use myoscope::config::ModelConfig;
use myoscope::onnx::{export, runtime, OnnxClassifier};
use myoscope::training::{checkpoint, ModelSpec};
use std::path::Path;
use std::process::Command;
use tch::{nn, Device, Kind, Tensor};

fn runtime_available() -> bool {
    match runtime::init() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIP: ONNX Runtime is not available here: {e:#}");
            false
        }
    }
}

fn spec(arch: &str, input_size: i64, grid: i64, classes: usize) -> ModelSpec {
    ModelSpec {
        model: ModelConfig {
            arch: arch.into(),
            grid,
            input_size,
            ..Default::default()
        },
        classes: (0..classes).map(|i| format!("class{i}")).collect(),
    }
}

/// Gives every batch norm non-trivial statistics and affine parameters, and the heads
/// non-zero biases, so a wrong fold or a wrong epsilon shows.
fn randomise_norms(vs: &nn::VarStore) {
    tch::manual_seed(7);
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            let n = t.size();
            let fresh = if name.ends_with("running_mean") || name.ends_with(".bias") {
                Tensor::randn(&n, (Kind::Float, Device::Cpu)) * 0.1
            } else if name.ends_with("running_var") || (t.dim() == 1 && name.ends_with(".weight")) {
                // Variances and batch-norm scales: positive, around 1.
                Tensor::rand(&n, (Kind::Float, Device::Cpu)) + 0.5
            } else {
                continue;
            };
            t.copy_(&fresh);
        }
    });
}

fn max_abs_diff(a: &Tensor, b: &[f32]) -> f64 {
    let b = Tensor::from_slice(b).view(a.size().as_slice());
    (a - b).abs().max().double_value(&[])
}

fn check_parity(arch: &str, input_size: i64, grid: i64) {
    let spec = spec(arch, input_size, grid, 3);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = spec.build(&vs).unwrap();
    randomise_norms(&vs);
    let (bytes, sidecar) = export::export_model(&spec, &vs.variables(), "test").unwrap();
    let onnx = OnnxClassifier::from_bytes(&bytes, sidecar, 1).unwrap();
    tch::manual_seed(3);
    // Batch 3: the batch axis is dynamic; nothing was exported for a particular batch.
    let images = Tensor::randn([3, 3, input_size, input_size], (Kind::Float, Device::Cpu));
    let expect = tch::no_grad(|| net.forward_t(&images, false));
    let got = onnx.forward(&images).unwrap();
    let probs = expect.logits.softmax(-1, Kind::Float);
    let scale = |t: &Tensor| t.abs().max().double_value(&[]).max(1.0);
    let d_prob = max_abs_diff(&probs, &got.probabilities);
    let d_logit = max_abs_diff(&expect.logits, &got.logits) / scale(&expect.logits);
    let d_maps = max_abs_diff(&expect.mosaic, &got.feature_maps) / scale(&expect.mosaic);
    eprintln!("{arch} {input_size}² {grid}×{grid}: max |Δp| {d_prob:.1e}, relative |Δlogit| {d_logit:.1e}, relative |Δmaps| {d_maps:.1e}");
    assert!(d_prob <= 1e-4, "{arch}: probabilities differ by {d_prob}");
    assert!(d_logit <= 1e-4, "{arch}: logits differ by {d_logit}");
    assert!(d_maps <= 1e-4, "{arch}: feature maps differ by {d_maps}");
    assert_eq!(got.feature_maps_shape, expect.mosaic.size());
    if let Some(pl) = expect.patch_logits {
        let pp = pl.softmax(-1, Kind::Float);
        let d = max_abs_diff(&pp, got.patch_probabilities.as_ref().unwrap());
        assert!(d <= 1e-4, "{arch}: patch probabilities differ by {d}");
        let d = max_abs_diff(&pl, got.patch_logits.as_ref().unwrap()) / scale(&pl);
        assert!(d <= 1e-4, "{arch}: patch logits differ by {d}");
    } else {
        assert!(got.patch_probabilities.is_none());
    }
}

#[test]
fn densenets_match_libtorch() {
    if !runtime_available() {
        return;
    }
    check_parity("densenet-tiny", 64, 4);
    check_parity("densenet-tiny", 32, 1);
    check_parity("densenet121", 64, 2);
}

#[test]
fn resnets_match_libtorch() {
    if !runtime_available() {
        return;
    }
    check_parity("resnet18", 64, 2);
    check_parity("resnet50", 64, 2);
    check_parity("resnet50_keras", 64, 1);
}

#[test]
fn mobile_trunks_match_libtorch() {
    if !runtime_available() {
        return;
    }
    check_parity("mobilenet_v2", 64, 2);
    // 72 = 2 × 36: odd map sizes along the way exercise TensorFlow "SAME" padding.
    check_parity("efficientnet_lite0", 72, 2);
}

/// A run directory with random weights: model.json + best.safetensors.
fn write_run_dir(dir: &Path, spec: &ModelSpec) {
    std::fs::create_dir_all(dir).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = spec.build(&vs).unwrap();
    randomise_norms(&vs);
    checkpoint::save_tensors(
        &dir.join("best.safetensors"),
        &checkpoint::sorted_variables(&vs),
    )
    .unwrap();
    checkpoint::write_json_atomic(&dir.join("model.json"), spec).unwrap();
}

fn myoscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_myoscope"))
        .args(args)
        .output()
        .unwrap()
}

fn probabilities_csv(path: &Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').skip(4).map(|v| v.parse().unwrap()).collect())
        .collect()
}

#[test]
fn export_then_predict_with_the_onnx_engine() {
    let dir = common::scratch("onnx-cli");
    let manifest = common::tiny_synthetic(&dir.join("data"));
    let run = dir.join("run");
    let classes = [
        "central_nuclei",
        "inflammatory",
        "normal",
        "perifascicular_atrophy",
    ];
    let mut s = spec("densenet-tiny", 32, 2, 4);
    s.classes = classes.iter().map(|c| c.to_string()).collect();
    write_run_dir(&run, &s);
    let run_s = run.to_str().unwrap();

    // Not a model: a clear error, no panic.
    let data = dir.join("data");
    let bad = myoscope(&["export", "onnx", "--model", data.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(stderr.contains("neither a run directory"), "{stderr}");

    let out = myoscope(&["export", "onnx", "--model", run_s]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = run.join("model.onnx");
    let sidecar = export::read_sidecar(&file).unwrap();
    assert_eq!(sidecar.classes, s.classes);
    assert_eq!(sidecar.input_shape, [-1, 3, 32, 32]);
    let weights = std::fs::read(run.join("best.safetensors")).unwrap();
    assert_eq!(
        sidecar.weights_sha256,
        myoscope::training::run_dir::sha256_hex(&weights)
    );
    if !runtime_available() {
        return;
    }
    assert!(stdout.contains("max |Δp|"), "{stdout}");

    let mut preds = Vec::new();
    for engine in ["torch", "onnx"] {
        let out_dir = dir.join(format!("pred-{engine}"));
        let p = myoscope(&[
            "predict",
            "--model",
            run_s,
            "--manifest",
            manifest.to_str().unwrap(),
            "--engine",
            engine,
            "--device",
            "cpu",
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&p.stderr);
        assert!(p.status.success(), "{stderr}");
        // The exported file is current, so nothing is exported on the fly.
        assert!(!stderr.contains("exporting it in memory"), "{stderr}");
        preds.push(probabilities_csv(&out_dir.join("predictions.csv")));
    }
    assert_eq!(preds[0].len(), 16);
    for (a, b) in preds[0].iter().zip(&preds[1]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 2e-6, "torch {a:?} vs onnx {b:?}");
        }
    }

    // Weights changed after the export: the engine notices and exports afresh in memory.
    write_run_dir(&run, &s);
    let p = myoscope(&[
        "predict",
        "--model",
        run_s,
        "--engine",
        "onnx",
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&p.stderr);
    assert!(stderr.contains("exported from other weights"), "{stderr}");
}

#[test]
fn a_corrupt_or_missing_onnx_file_is_a_clear_error() {
    let dir = common::scratch("onnx-corrupt");
    let missing = OnnxClassifier::load(&dir.join("absent.onnx"), 1).unwrap_err();
    assert!(
        format!("{missing:#}").contains("does not exist"),
        "{missing:#}"
    );

    // A file with a valid sidecar but garbage inside.
    let s = spec("densenet-tiny", 32, 2, 2);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = s.build(&vs).unwrap();
    let (bytes, sidecar) = export::export_model(&s, &vs.variables(), "x").unwrap();
    let file = dir.join("model.onnx");
    export::write_model(&file, &bytes[..bytes.len() / 2], &sidecar).unwrap();
    let no_sidecar = dir.join("other.onnx");
    std::fs::write(&no_sidecar, b"not a model").unwrap();
    let err = format!("{:#}", OnnxClassifier::load(&no_sidecar, 1).unwrap_err());
    assert!(err.contains("myoscope export onnx"), "{err}");
    if !runtime_available() {
        return;
    }
    let err = format!("{:#}", OnnxClassifier::load(&file, 1).unwrap_err());
    assert!(err.contains("is not a valid ONNX model"), "{err}");
}

/// The int8 QDQ model runs in ONNX Runtime, every convolution is quantized, and it stays close
/// to the fp32 model on the photos it was calibrated on and on others.
#[test]
fn int8_model_quantizes_every_convolution_and_stays_close() {
    if !runtime_available() {
        return;
    }
    let s = spec("densenet-tiny", 64, 2, 3);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = s.build(&vs).unwrap();
    randomise_norms(&vs);
    tch::manual_seed(11);
    let batch = |n: i64| Tensor::rand([n, 3, 64, 64], (Kind::Float, Device::Cpu)) * 4.0 - 2.0;
    let calibration: Vec<Tensor> = (0..4).map(|_| batch(2)).collect();
    use myoscope::onnx::calibrate::Calibration;
    for how in [Calibration::MinMax, Calibration::Percentile(99.99)] {
        let images = calibration.iter().map(|t| {
            Ok((
                Vec::<f32>::try_from(&t.flatten(0, -1)).unwrap(),
                [2, 3, 64, 64],
            ))
        });
        let (bytes, sidecar) = myoscope::onnx::quantize::export_int8(
            &s,
            &vs.variables(),
            "test",
            images,
            how,
            "random".into(),
            1,
        )
        .unwrap();
        assert_eq!(sidecar.precision, "int8");
        assert!(
            sidecar
                .calibration
                .as_deref()
                .is_some_and(|c| c.starts_with(&how.describe())),
            "{:?}",
            sidecar.calibration
        );
        let (fp32, _) = export::export_model(&s, &vs.variables(), "test").unwrap();
        assert!(
            bytes.len() < fp32.len() / 2,
            "{} vs {}",
            bytes.len(),
            fp32.len()
        );
        let int8 = OnnxClassifier::from_bytes(&bytes, sidecar, 1).unwrap();
        for images in [calibration[0].shallow_clone(), batch(3)] {
            let expect = tch::no_grad(|| net.forward_t(&images, false))
                .logits
                .softmax(-1, Kind::Float);
            let got = int8.forward(&images).unwrap();
            let d = max_abs_diff(&expect, &got.probabilities);
            eprintln!("int8 densenet-tiny ({}): max |Δp| {d:.3}", how.describe());
            assert!(d < 0.02, "int8 probabilities differ by {d}");
        }
    }
}
