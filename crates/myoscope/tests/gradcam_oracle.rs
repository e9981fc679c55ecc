//! Grad-CAM against PyTorch: the same patch maps and head weights
//! (`tests/fixtures/gradcam.json`, from `scripts/gradcam_oracle.py`) must give the same plain
//! and patch-weighted heat-maps, to 1e-5 of each map's maximum (far inside 1e-4 absolute).
use myoscope::explain::gradcam::{heat_maps_from_maps, CamMethod};
use myoscope::models::{build_backbone, AggregatedClassifier};
use serde_json::Value;
use tch::{nn, Device, Kind, Tensor};

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn heat_maps_equal_pytorch() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gradcam.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dim = |k: &str| doc[k].as_i64().unwrap();
    let (grid, channels, h, w, classes, batch) = (
        dim("grid"),
        dim("channels"),
        dim("h"),
        dim("w"),
        dim("classes"),
        dim("batch"),
    );

    let vs = nn::VarStore::new(Device::Cpu);
    let trunk = build_backbone("densenet-tiny", &vs.root(), 3).unwrap();
    assert_eq!(
        trunk.out_channels(),
        channels,
        "fixture made for another trunk width"
    );
    let model = AggregatedClassifier::new(&vs.root(), trunk, grid, classes);
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, p) in doc["params"].as_object().unwrap() {
            let shape: Vec<i64> = p["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            let t = Tensor::from_slice(&floats(&p["values"])).view(shape.as_slice());
            vars[name].shallow_clone().copy_(&t);
        }
    });
    let maps =
        Tensor::from_slice(&floats(&doc["maps"])).view([batch * grid * grid, channels, h, w]);
    for case in doc["cases"].as_array().unwrap() {
        let cls: Vec<i64> = case["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_i64().unwrap())
            .collect();
        for (method, key) in [
            (CamMethod::Plain, "plain"),
            (CamMethod::PatchWeighted, "patch_weighted"),
        ] {
            let ours = heat_maps_from_maps(&model, &maps, &cls, method)
                .unwrap()
                .to_kind(Kind::Double);
            let want = Tensor::from_slice(&floats(&case[key]))
                .view([batch, grid * h, grid * w])
                .to_kind(Kind::Double);
            let diff = (&ours - &want).abs().max().double_value(&[]);
            let scale = want.abs().max().double_value(&[]);
            assert!(scale > 0.0, "{key}: oracle map is all zero");
            assert!(
                diff <= 1e-5 * scale,
                "{key} {cls:?}: max diff {diff:e} on maps up to {scale:e}"
            );
            eprintln!("{key:<15} classes {cls:?}: max |diff| {diff:.2e} (map max {scale:.3e})");
        }
    }
}
