//! The command line as a user meets it: bad input gives a clear message and a non-zero exit
//! (never a panic), a SIGKILLed training run resumes, and predict writes its files.
mod common;
use std::path::Path;
use std::process::{Command, Output};

fn myoscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_myoscope"))
        .args(args)
        .output()
        .unwrap()
}

fn fails_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
}

fn write_config(dir: &Path, manifest: &Path, extra: &str) -> String {
    let p = dir.join("cfg.toml");
    std::fs::write(
        &p,
        format!(
            "[data]\nsource = {:?}\nvalidation_fraction = 0.5\n[data.columns]\npath = \"path\"\nlabel = \"label\"\nslide = \"slide\"\ngroup = \"patient\"\n[model]\narch = \"densenet-tiny\"\ngrid = 2\ninput_size = 32\n[training]\nepochs = 3\nbatch_size = 8\ndevice = \"cpu\"\n{extra}",
            manifest
        ),
    )
    .unwrap();
    p.display().to_string()
}

#[test]
fn bad_inputs_are_explained() {
    let dir = common::scratch("cli-bad");
    let manifest = common::tiny_synthetic(&dir.join("data"));
    let out = dir.join("run").display().to_string();

    // A misspelt config field.
    let cfg = write_config(&dir, &manifest, "epochz = 4\n");
    fails_with(
        &myoscope(&["train", "--config", &cfg, "--out", &out]),
        "epochz",
    );

    // An input size the grid does not divide.
    let cfg = write_config(&dir, &manifest, "");
    fails_with(
        &myoscope(&[
            "train",
            "--config",
            &cfg,
            "--input-size",
            "33",
            "--out",
            &out,
        ]),
        "not divisible by the grid",
    );

    // A manifest row pointing at a missing file, and a corrupt image.
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[2] = lines[2].replacen("images/", "images/missing-", 1);
    let broken = dir.join("data/broken.csv");
    std::fs::write(&broken, lines.join("\n")).unwrap();
    fails_with(
        &myoscope(&[
            "train",
            "--data",
            broken.to_str().unwrap(),
            "--config",
            &cfg,
            "--out",
            &out,
        ]),
        "row 2: image file",
    );
    let first_image = lines[1].split(',').next().unwrap().to_string();
    std::fs::write(
        dir.join("data").join(&first_image),
        b"\x89PNG\r\n\x1a\ntruncated",
    )
    .unwrap();
    fails_with(
        &myoscope(&["train", "--config", &cfg, "--out", &out]),
        &first_image,
    );

    // A missing label column.
    fails_with(
        &myoscope(&[
            "train",
            "--config",
            &cfg,
            "--label",
            "diagnosis",
            "--out",
            &out,
        ]),
        "no column 'diagnosis'",
    );
}

#[test]
fn sigkill_then_resume_continues_from_the_last_epoch() {
    let dir = common::scratch("cli-kill");
    let manifest = common::tiny_synthetic(&dir.join("data"));
    let cfg = write_config(&dir, &manifest, "");
    let out = dir.join("run");
    let out_s = out.display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_myoscope"))
        .args([
            "train", "--config", &cfg, "--out", &out_s, "--epochs", "40", "--quiet",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = out.join("checkpoints/state.json");
    let t0 = std::time::Instant::now();
    while !state.exists() {
        assert!(t0.elapsed().as_secs() < 300, "no checkpoint after 300 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let read_done = || -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        v["epochs_done"].as_u64().unwrap()
    };
    let done = read_done();
    assert!((1..40).contains(&done), "{done}");

    let resumed = myoscope(&[
        "train", "--out", &out_s, "--resume", "--epochs", "40", "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("resuming {out_s} after epoch {done}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("epoch {:>3}/40", done + 1)),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&format!("epoch {:>3}/40", done)),
        "re-ran a finished epoch: {stderr}"
    );
    // The saved config wins: --epochs 40 was part of the original command line too.
    assert_eq!(read_done(), 40);

    // The trained model predicts a manifest, with slide means and files.
    let pred_dir = dir.join("pred");
    let p = myoscope(&[
        "predict",
        "--model",
        &out_s,
        "--manifest",
        manifest.to_str().unwrap(),
        "--slide",
        "slide",
        "--out",
        pred_dir.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let csv = std::fs::read_to_string(pred_dir.join("predictions.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 16);
    assert!(
        csv.starts_with("path,slide,truth,predicted,p_central_nuclei"),
        "{csv}"
    );
    assert_eq!(
        std::fs::read_to_string(pred_dir.join("slides.csv"))
            .unwrap()
            .lines()
            .count(),
        1 + 8
    );
    assert!(
        pred_dir.join("predictions.json").is_file()
            && pred_dir.join("confusion_slides.svg").is_file()
    );

    // An unknown label in a prediction manifest is named.
    let bad = dir.join("data/unknown.csv");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replacen(",normal,", ",nemaline,", 1);
    std::fs::write(&bad, text).unwrap();
    fails_with(
        &myoscope(&[
            "predict",
            "--model",
            &out_s,
            "--manifest",
            bad.to_str().unwrap(),
            "--device",
            "cpu",
        ]),
        "unknown label 'nemaline'",
    );
    // Not a model directory.
    fails_with(
        &myoscope(&["predict", "--model", dir.to_str().unwrap(), "x.png"]),
        "is not a trained model",
    );
}

#[test]
fn cv_fold_jobs_merge_evaluate_and_diagnose_from_the_command_line() {
    let dir = common::scratch("cli-cv");
    let manifest = myoscope::synth::write_dataset(
        &dir.join("data"),
        &myoscope::synth::SynthSpec {
            slides_per_class: 4,
            photos_per_slide: 2,
            width: 64,
            height: 48,
            seed: 5,
        },
    )
    .unwrap();
    let cfg = write_config(
        &dir,
        &manifest,
        "[cv]\nfolds = 2\ntest_fraction = 0.25\n[evaluation]\nbootstrap = 20\n[hierarchy]\npositive_group = \"myositis\"\ngroups = [{ name = \"myositis\", subtypes = [\"inflammatory\", \"perifascicular_atrophy\"] }, { name = \"other\", subtypes = [\"normal\", \"central_nuclei\"] }]\n",
    );
    let ens = dir.join("ens");
    let ens_s = ens.display().to_string();
    fails_with(&myoscope(&["cv", "--out", &ens_s]), "--config");
    for fold in ["2", "1"] {
        let out = myoscope(&[
            "cv", "--config", &cfg, "--out", &ens_s, "--fold", fold, "--quiet", "--epochs", "1",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fails_with(
        &myoscope(&["cv", "--out", &ens_s, "--merge", "--arch", "resnet18"]),
        "model.arch",
    );
    let merged = myoscope(&["cv", "--out", &ens_s, "--merge", "--evaluate", "--quiet"]);
    let stdout = String::from_utf8_lossy(&merged.stdout);
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    assert!(
        stdout.contains("report:") && stdout.contains("two-step diagnosis"),
        "{stdout}"
    );
    assert!(ens.join("evaluation/report.html").is_file());
    for picture in [
        "step1_roc_per_slide.png",
        "step1_roc_per_image.svg",
        "step1_confusion_per_slide.png",
        "step1_confusion_per_slide_sensitivity_first.png",
        "step2-myositis_confusion_per_image.png",
    ] {
        assert!(ens.join("evaluation").join(picture).is_file(), "{picture}");
    }
    // The report with the test photos' heat-maps, focused and unfocused images.
    let hm = dir.join("eval-heatmaps");
    let ev = myoscope(&[
        "evaluate",
        "--ensemble",
        &ens_s,
        "--out",
        &hm.display().to_string(),
        "--heatmaps",
        "3",
        "--quiet",
    ]);
    assert!(
        ev.status.success(),
        "{}",
        String::from_utf8_lossy(&ev.stderr)
    );
    let html = std::fs::read_to_string(hm.join("report.html")).unwrap();
    assert!(
        html.contains("Heat-maps (patch-weighted Grad-CAM"),
        "no heat-map section"
    );
    assert_eq!(html.matches("_focused.png").count(), 3);
    assert_eq!(
        std::fs::read_dir(hm.join("heatmaps/photos"))
            .unwrap()
            .count(),
        12
    );

    // One slide's photos in a folder of their own: the folder is the slide.
    let slide = dir.join("slide_000");
    std::fs::create_dir_all(&slide).unwrap();
    for i in 0..2 {
        let name = format!("slide_000_{i}.png");
        std::fs::copy(dir.join("data/images").join(&name), slide.join(&name)).unwrap();
    }
    let dx = myoscope(&[
        "diagnose",
        "--ensemble",
        &ens_s,
        &slide.display().to_string(),
        "--device",
        "cpu",
    ]);
    let stdout = String::from_utf8_lossy(&dx.stdout);
    assert!(
        dx.status.success(),
        "{}",
        String::from_utf8_lossy(&dx.stderr)
    );
    assert!(
        stdout.contains("slide slide_000 (2 photo(s)): P(myositis)") && stdout.contains("subtype"),
        "{stdout}"
    );
    fails_with(
        &myoscope(&[
            "diagnose",
            "--ensemble",
            &ens_s,
            "--threshold",
            "2",
            &slide.display().to_string(),
        ]),
        "--threshold must be in [0, 1]",
    );
    fails_with(
        &myoscope(&[
            "evaluate",
            "--ensemble",
            &dir.display().to_string(),
            "--out",
            "x",
        ]),
        "is not an ensemble",
    );
}

#[test]
fn weights_commands_refuse_bad_files_and_leave_the_registry_clean() {
    let dir = common::scratch("cli-weights");
    let reg = dir.join("registry");
    let reg_s = reg.display().to_string();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch");
    let fx = |n: &str| fixtures.join(n).display().to_string();

    let out = myoscope(&["weights", "--registry", &reg_s, "list"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no weights"));

    // A pickle that asks to run a shell command is refused before anything is written.
    let evil = fx("evil_legacy.pth");
    let out = myoscope(&[
        "weights",
        "--registry",
        &reg_s,
        "import",
        &evil,
        "--arch",
        "resnet18",
    ]);
    fails_with(&out, "could run code");
    let out = myoscope(&[
        "weights",
        "--registry",
        &reg_s,
        "import",
        &fx("truncated_zip.pt"),
        "--arch",
        "resnet18",
    ]);
    fails_with(&out, "truncated_zip.pt");
    // A real (tiny) state dict that belongs to no registered architecture.
    let out = myoscope(&[
        "weights",
        "--registry",
        &reg_s,
        "import",
        &fx("state_dict_zip.pt"),
        "--arch",
        "resnet18",
    ]);
    fails_with(&out, "does not fit resnet18");
    fails_with(&out, "missing from the file");
    let left: Vec<_> = std::fs::read_dir(&reg)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "registry not clean: {left:?}");

    let out = myoscope(&["weights", "--registry", &reg_s, "verify"]);
    fails_with(&out, "import-fetched");
    let out = myoscope(&["weights", "--registry", &reg_s, "show", "nothing-here"]);
    fails_with(&out, "no weights named 'nothing-here'");
}

#[test]
fn explain_writes_heat_maps_masks_and_the_pointing_game() {
    let dir = common::scratch("cli-explain");
    let manifest = common::tiny_synthetic(&dir.join("data"));
    let cfg = write_config(&dir, &manifest, "");
    let run = dir.join("run").display().to_string();
    let out = myoscope(&[
        "train", "--config", &cfg, "--out", &run, "--quiet", "--epochs", "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = manifest.display().to_string();
    let e = dir.join("explain");
    let e_s = e.display().to_string();
    let out = myoscope(&[
        "explain",
        "--model",
        &run,
        "--manifest",
        &m,
        "--pointing-game",
        "--out",
        &e_s,
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e.join("pointing_game.json")).unwrap())
            .unwrap();
    let hit = pg["hit_rate"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&hit) && pg["plain"]["photos"].as_u64().unwrap() > 0,
        "{pg}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e.join("explain.json")).unwrap()).unwrap();
    let photos = report["photos"].as_array().unwrap();
    assert_eq!(photos.len(), 16);
    for key in ["overlay", "focused", "unfocused", "heat_map"] {
        let f = e.join(photos[0][key].as_str().unwrap());
        assert!(f.is_file(), "{} missing", f.display());
    }
    assert!(
        e.join("slides").read_dir().unwrap().count() > 0,
        "no contact sheets"
    );

    // An earlier layer works; an unknown one lists the valid names.
    let out = myoscope(&[
        "explain",
        "--model",
        &run,
        "--manifest",
        &m,
        "--layer",
        "denseblock2",
        "--out",
        &e_s,
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fails_with(
        &myoscope(&[
            "explain",
            "--model",
            &run,
            "--manifest",
            &m,
            "--layer",
            "layer4",
            "--out",
            &e_s,
        ]),
        "denseblock1",
    );
    fails_with(
        &myoscope(&[
            "explain",
            "--model",
            &run,
            "--manifest",
            &m,
            "--class",
            "tumour",
            "--out",
            &e_s,
        ]),
        "not one of the model's classes",
    );
    let photo = dir.join("data").join(photos[0]["photo"].as_str().unwrap());
    fails_with(
        &myoscope(&[
            "explain",
            "--model",
            &run,
            &photo.display().to_string(),
            "--pointing-game",
            "--out",
            &e_s,
        ]),
        "lesion masks",
    );
    let tiny = dir.join("tiny.png");
    image::RgbImage::new(6, 6).save(&tiny).unwrap();
    fails_with(
        &myoscope(&[
            "explain",
            "--model",
            &run,
            &tiny.display().to_string(),
            "--out",
            &e_s,
        ]),
        "too small",
    );
}

#[test]
fn reader_study_writes_its_table_json_and_pictures() {
    let dir = common::scratch("cli-reader-study");
    // Three readers, five cases: reader i misses i cases unfocused and none focused, so the
    // accuracy differences are 0.2, 0.4 and 0.6 (mean 0.4, sd 0.2, t = 2√3 on 2 df).
    let truth = ["dm", "ibm", "normal", "dm", "ibm"];
    let mut csv = String::from("case,reader,truth,condition,answer\n");
    for reader in 1..=3 {
        for (c, t) in truth.iter().enumerate() {
            csv.push_str(&format!("case{c},R{reader},{t},Focused,{t}\n"));
            let answer = if c < reader { "normal-ish" } else { t };
            csv.push_str(&format!("case{c},R{reader},{t},unfocused,{answer}\n"));
        }
    }
    let answers = dir.join("answers.csv");
    std::fs::write(&answers, &csv).unwrap();
    let out = dir.join("study");
    let run = myoscope(&[
        "reader-study",
        answers.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("R2            5        1.0000          0.6000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mean difference +0.4000, t = 3.4641, df = 2"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("reader_study.json")).unwrap())
            .unwrap();
    let t = &json["paired_t_test"];
    assert!(
        (t["t"].as_f64().unwrap() - 2.0 * 3f64.sqrt()).abs() < 1e-12,
        "{t}"
    );
    // Two degrees of freedom: P(|T| > t) = 1 − t/√(2 + t²).
    let p = 1.0 - (12.0f64 / 14.0).sqrt();
    assert!((t["p_value"].as_f64().unwrap() - p).abs() < 1e-14, "{t}");
    assert_eq!(json["readers"].as_array().unwrap().len(), 3);
    assert_eq!(json["mean_accuracy"]["focused"], 1.0);
    assert_eq!(
        json["classes"],
        serde_json::json!(["dm", "ibm", "normal", "normal-ish"])
    );
    for stem in [
        "confusion_focused",
        "confusion_unfocused",
        "reader_accuracy",
    ] {
        for ext in ["svg", "png"] {
            let f = out.join(format!("{stem}.{ext}"));
            assert!(
                f.is_file() && f.metadata().unwrap().len() > 100,
                "{stem}.{ext}"
            );
        }
    }

    // Bad input: an unknown condition names its line; a confidence level outside (0, 1).
    std::fs::write(&answers, csv.replacen("Focused", "focussed", 1)).unwrap();
    let a = answers.to_str().unwrap();
    let o = out.to_str().unwrap();
    fails_with(
        &myoscope(&["reader-study", a, "--out", o]),
        "line 2: unknown condition 'focussed'",
    );
    fails_with(
        &myoscope(&["reader-study", a, "--out", o, "--confidence", "95"]),
        "--confidence must lie strictly between 0 and 1",
    );
    fails_with(
        &myoscope(&["reader-study", "no-such.csv", "--out", o]),
        "cannot open no-such.csv",
    );
}
