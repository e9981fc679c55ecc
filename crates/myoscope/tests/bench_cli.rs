//! `myoscope bench` end to end on a tiny model: the runner starts a worker process per case,
//! times it, and writes bench.json (ratio null without PyTorch) and bench.md. Nothing here
//! asserts a speed; speed is measured only by the suite itself.
mod common;
use serde_json::Value;
use std::process::Command;

#[test]
fn the_suite_writes_json_and_markdown_without_pytorch() {
    let dir = common::scratch("bench-cli");
    let out = Command::new(env!("CARGO_BIN_EXE_myoscope"))
        .args([
            "bench",
            "--no-reference",
            "--arch",
            "densenet-tiny",
            "--size",
            "64",
        ])
        .args([
            "--grid",
            "2",
            "--iters",
            "2",
            "--warmup",
            "0",
            "--threads",
            "1",
        ])
        .args([
            "--case",
            "classifier-inference,classifier-inference-bf16,classifier-training",
        ])
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bench.json")).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        assert!(c["ratio"].is_null(), "{c}");
        assert!(c["pytorch"].is_null());
        assert_eq!(c["unit"], "patches");
        assert_eq!(c["ours"]["times_s"].as_array().unwrap().len(), 2);
        assert_eq!(c["ours"]["items_per_run"].as_f64(), Some(4.0));
        assert!(c["ours"]["throughput"].as_f64().unwrap() > 0.0);
        assert!(c["ours"]["peak_rss_mib"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(cases[1]["precision"], "bf16");
    assert_eq!(doc["threads"].as_i64(), Some(1));
    let md = std::fs::read_to_string(dir.join("bench.md")).unwrap();
    assert!(md.contains("| classifier-training | patches/s |"), "{md}");

    let bad = Command::new(env!("CARGO_BIN_EXE_myoscope"))
        .args(["bench", "--no-reference", "--case", "nope", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("slide-diagnosis"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
