//! The weights registry on small synthetic weight files: a clean import, and every kind of bad
//! input (wrong architecture, shape mismatch, wrong checksum, truncated file, name clash)
//! failing with a clear message and leaving the registry as it was. Then a training run that
//! starts from registry weights and records them.
mod common;

use myoscope::models::build_backbone;
use myoscope::training::checkpoint::save_tensors;
use myoscope::training::{train, TrainOptions};
use myoscope::weights::registry::{ImportRequest, Registry};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

/// The process-wide registry the trainer reads (`$MYOSCOPE_WEIGHTS`); every test in this file
/// uses the same folder, so setting it from several threads is harmless.
fn shared_registry() -> Registry {
    let root = std::env::temp_dir().join(format!("myoscope-it-registry-{}", std::process::id()));
    std::env::set_var("MYOSCOPE_WEIGHTS", &root);
    Registry::open(Some(&root))
}

/// A torchvision-named resnet18 state dict with a 1000-class head, as safetensors.
fn resnet18_file(dir: &Path, seed: i64) -> (PathBuf, Vec<(String, Tensor)>) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let trunk = build_backbone("resnet18", &vs.root(), 3).unwrap();
    let _fc = nn::linear(
        vs.root() / "fc",
        trunk.out_channels(),
        1000,
        Default::default(),
    );
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let path = dir.join(format!("resnet18-{seed}.safetensors"));
    save_tensors(&path, &named).unwrap();
    (path, named)
}

fn leftovers(reg: &Registry) -> Vec<String> {
    std::fs::read_dir(&reg.root)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn import_checks_architecture_shapes_and_checksums() {
    let reg = shared_registry();
    let dir = common::scratch("weights-import");
    let (file, named) = resnet18_file(&dir, 1);
    let req = |arch: &str, name: &str| ImportRequest {
        file: file.clone(),
        arch: arch.into(),
        name: Some(name.into()),
        ..Default::default()
    };

    let entry = reg.import(&req("resnet18", "r18-ok")).unwrap();
    assert_eq!(entry.classes, Some(1000));
    assert_eq!(entry.parameters, 11_689_512);
    assert_eq!(entry.preprocessing.input_size, 224);
    let loaded = reg.load(&entry).unwrap();
    for (n, t) in &named {
        assert!(
            loaded[n].equal(t),
            "{n} changed on the way through the registry"
        );
    }
    assert!(reg.list().unwrap().iter().any(|e| e.name == "r18-ok"));

    // Another architecture: the keys are listed and the right architecture is named.
    let err = err_of(reg.import(&req("mobilenet_v2", "r18-as-mnv2")));
    assert!(err.contains("does not fit mobilenet_v2"), "{err}");
    assert!(
        err.contains("missing from the file") && err.contains("features.0.0.weight"),
        "{err}"
    );
    assert!(err.contains("--arch resnet18"), "{err}");
    assert!(!reg.root.join("r18-as-mnv2").exists());

    // A tensor of the wrong shape.
    let mut bad: Vec<(String, Tensor)> = named
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    for (n, t) in bad.iter_mut() {
        if n == "layer1.0.conv1.weight" {
            *t = Tensor::zeros([64, 64, 1, 1], (tch::Kind::Float, Device::Cpu));
        }
    }
    let bad_file = dir.join("bad-shape.safetensors");
    save_tensors(&bad_file, &bad).unwrap();
    let err = err_of(reg.import(&ImportRequest {
        file: bad_file,
        ..req("resnet18", "bad-shape")
    }));
    assert!(
        err.contains("shape mismatch") && err.contains("layer1.0.conv1.weight"),
        "{err}"
    );

    // The checksum the user expects.
    let err = err_of(reg.import(&ImportRequest {
        expected_sha256: Some("00".repeat(32)),
        ..req("resnet18", "wrong-sum")
    }));
    assert!(err.contains("not the expected"), "{err}");

    // A truncated download.
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = err_of(reg.import(&ImportRequest {
        file: cut,
        ..req("resnet18", "cut")
    }));
    assert!(err.contains("truncated or corrupt"), "{err}");

    // Not a weight file at all.
    let text = dir.join("notes.pth");
    std::fs::write(&text, "hello").unwrap();
    let err = err_of(reg.import(&ImportRequest {
        file: text,
        ..req("resnet18", "text")
    }));
    assert!(err.contains("not a weight file"), "{err}");

    // Name clash without --replace.
    let err = err_of(reg.import(&req("resnet18", "r18-ok")));
    assert!(err.contains("--replace"), "{err}");

    for name in ["bad-shape", "wrong-sum", "cut", "text"] {
        assert!(!reg.root.join(name).exists(), "{name} was half-imported");
    }
    assert!(
        leftovers(&reg).is_empty(),
        "staging folders left: {:?}",
        leftovers(&reg)
    );

    // A damaged registry file is caught on load.
    let stored = reg.root.join("r18-ok").join("weights.safetensors");
    let mut b = std::fs::read(&stored).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    std::fs::write(&stored, b).unwrap();
    let err = err_of(reg.load(&reg.get("r18-ok").unwrap()));
    assert!(err.contains("damaged"), "{err}");
    reg.remove("r18-ok").unwrap();
}

#[test]
fn training_starts_from_registry_weights_and_records_them() {
    let reg = shared_registry();
    let dir = common::scratch("weights-train");
    let (file, named) = resnet18_file(&dir, 2);
    let entry = reg
        .import(&ImportRequest {
            file,
            arch: "resnet18".into(),
            name: Some("r18-train".into()),
            replace: true,
            ..Default::default()
        })
        .unwrap();

    let manifest = common::tiny_synthetic(&dir.join("data"));
    let mut cfg = common::tiny_config(&manifest);
    cfg.model.arch = "resnet18".into();
    cfg.model.in_channels = 3;
    cfg.model.weights = Some("r18-train".into());
    cfg.training.epochs = 1;
    // Far below f32 resolution of the weights: no update can show.
    cfg.training.optimizer.lr = 1e-30;
    let out = dir.join("run");
    train(&cfg, &TrainOptions::new(&out)).unwrap();
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["pretrained"]["weights_sha256"], entry.weights_sha256);
    assert_eq!(run["pretrained"]["name"], "r18-train");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
    // The normalisation is the weights' own (torchvision ImageNet statistics).
    let mean0 = model["model"]["normalization"]["mean"][0].as_f64().unwrap();
    assert!((mean0 - 0.485).abs() < 1e-6, "{model}");
    // With a vanishing learning rate the trunk is still exactly the imported one; the head is new.
    let ckpt = myoscope::training::checkpoint::load_tensors(
        &out.join("checkpoints").join("epoch-0001.safetensors"),
    )
    .unwrap();
    let imported: std::collections::HashMap<_, _> = named.into_iter().collect();
    assert!(ckpt["layer3.1.conv2.weight"].equal(&imported["layer3.1.conv2.weight"]));
    assert!(ckpt["conv1.weight"].equal(&imported["conv1.weight"]));
    assert_eq!(ckpt["fc.weight"].size()[0], 4);

    // A model config naming weights for another architecture is refused.
    let mut wrong = common::tiny_config(&manifest);
    wrong.model.weights = Some("r18-train".into());
    let err = err_of(train(&wrong, &TrainOptions::new(dir.join("run-wrong"))));
    assert!(
        err.contains("are for resnet18") && err.contains("densenet-tiny"),
        "{err}"
    );
}

#[test]
fn one_channel_models_start_from_summed_rgb_filters() {
    let reg = shared_registry();
    let dir = common::scratch("weights-channels");
    let (file, named) = resnet18_file(&dir, 3);
    let entry = reg
        .import(&ImportRequest {
            file,
            arch: "resnet18".into(),
            name: Some("r18-dapi".into()),
            replace: true,
            ..Default::default()
        })
        .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let trunk = build_backbone("resnet18", &vs.root(), 1).unwrap();
    let _head = nn::linear(
        vs.root() / "fc",
        trunk.out_channels(),
        2,
        Default::default(),
    );
    let fresh = ["fc.".to_string()];
    let copied = myoscope::weights::pretrained::init_trunk(&vs, &reg, &entry, 1, &fresh).unwrap();
    assert_eq!(copied, 100, "every trunk tensor but none of the head");
    let imported: std::collections::HashMap<_, _> = named.into_iter().collect();
    let vars = vs.variables();
    let want = imported["conv1.weight"].sum_dim_intlist([1i64].as_slice(), true, tch::Kind::Float);
    assert!(vars["conv1.weight"].allclose(&want, 1e-6, 1e-6, false));
    assert!(vars["layer4.1.bn2.running_var"].equal(&imported["layer4.1.bn2.running_var"]));
    assert_eq!(vars["fc.weight"].size(), [2, 512]);
}
