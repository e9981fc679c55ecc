//! `myoscope serve` over real HTTP on loopback: the built binary on an ephemeral port, a tiny
//! trained model, and every endpoint with good and bad input. The server's probabilities are
//! checked against `myoscope predict` on the same photo files, and its segmentation against
//! `myoscope segment predict`.
mod serve_support;
use serve_support::*;

fn assert_close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-5, "{what}: {a} vs {b}");
}

#[test]
fn the_api_diagnoses_explains_and_refuses_bad_uploads() {
    let dir = scratch("api");
    let (run, manifest) = tiny_run(&dir);
    let photos = photos(&manifest);
    let server = Server::start(&["--model", run.to_str().unwrap(), "--max-upload-mib", "1"]);
    let a = server.addr.as_str();

    let h = get(a, "/healthz", &[]);
    assert_eq!(h.status, 200, "{}", h.text());
    assert_eq!(h.json()["status"], "ok");

    let m = get(a, "/v1/models", &[]).json();
    let c = &m["classifier"];
    assert_eq!(c["name"], "run");
    assert_eq!(c["kind"], "single model");
    assert_eq!(c["version"].as_str().unwrap().len(), 12);
    let classes: Vec<String> = c["stages"][0]["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(classes.len(), 4);
    let v = &c["validation"]["figures"][0];
    assert!(
        v["label"].as_str().unwrap().contains("validation accuracy"),
        "{m}"
    );
    assert_eq!(m["limits"]["max_photos"], 6);
    assert_eq!(m["limits"]["min_side"], 16);
    assert!(m["segmentation"].is_null());

    let api = get(a, "/openapi.json", &[]).json();
    for path in [
        "/healthz",
        "/v1/models",
        "/v1/diagnose",
        "/v1/explain",
        "/v1/segment",
    ] {
        assert!(api["paths"][path].is_object(), "{path} not documented");
    }
    let page = get(a, "/", &[]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/assets/app.js") && !page.text().contains("http://"));
    assert_eq!(get(a, "/assets/app.js", &[]).status, 200);
    let missing = get(a, "/v1/nothing", &[]);
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "not_found")
    );

    // Diagnose one slide of two photos.
    let bytes: Vec<Vec<u8>> = photos[..2]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let r = post(
        a,
        "/v1/diagnose",
        &[
            file("a.png", bytes[0].clone()),
            file("b.png", bytes[1].clone()),
            field("slide", "S-1"),
        ],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let d = &j["diagnosis"];
    assert_eq!(d["slide"], "S-1");
    assert_eq!(d["images"], 2);
    let group = d["group_probabilities"].as_object().unwrap();
    assert_close(
        group.values().map(|v| v.as_f64().unwrap()).sum(),
        1.0,
        "sum",
    );
    let positive = d["positive_group"].as_str().unwrap();
    assert_eq!(positive, classes[1]);
    let p = d["positive_probability"].as_f64().unwrap();
    assert_close(p, group[positive].as_f64().unwrap(), "positive");
    // Four classes: the call is the most probable class; the flag follows the 0.3–0.7 band.
    let best = group
        .iter()
        .max_by(|x, y| x.1.as_f64().unwrap().total_cmp(&y.1.as_f64().unwrap()))
        .unwrap()
        .0;
    assert_eq!(d["call"].as_str().unwrap(), best);
    assert_eq!(d["uncertain"].as_bool().unwrap(), (0.3..=0.7).contains(&p));
    let photos_json = j["photos"].as_array().unwrap();
    assert_eq!(photos_json.len(), 2);
    // The slide probability is the mean of the photos'.
    let mean = photos_json
        .iter()
        .map(|ph| ph["group_probabilities"][positive].as_f64().unwrap())
        .sum::<f64>()
        / 2.0;
    assert_close(p, mean, "slide mean");
    for ph in photos_json {
        let hm = &ph["heat_map"];
        assert_eq!(hm["class"], d["call"]);
        assert_eq!(hm["method"], "patch-weighted");
        for key in ["overlay", "focused", "unfocused"] {
            let img = data_uri_image(hm[key].as_str().unwrap());
            // The centre square of a 96×72 photo, at full size (under the picture size).
            assert_eq!((img.width(), img.height()), (72, 72), "{key}");
        }
    }

    // The same photos through `myoscope predict`: the same probabilities.
    let pred_dir = dir.join("pred");
    let out = myoscope(&[
        "predict",
        "--model",
        run.to_str().unwrap(),
        "--device",
        "cpu",
        "--out",
        pred_dir.to_str().unwrap(),
        photos[0].to_str().unwrap(),
        photos[1].to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(pred_dir.join("predictions.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for (line, ph) in lines.zip(photos_json) {
        let row: Vec<&str> = line.split(',').collect();
        for class in &classes {
            let col = header
                .iter()
                .position(|h| *h == format!("p_{class}"))
                .unwrap();
            let cli: f64 = row[col].parse().unwrap();
            let srv = ph["group_probabilities"][class].as_f64().unwrap();
            assert!(
                (cli - srv).abs() < 1e-5,
                "{class}: predict {cli} vs serve {srv}"
            );
        }
    }

    // Without heat-maps; explain with a named class and the raw 16-bit map.
    let r = post(
        a,
        "/v1/diagnose?heat_maps=false",
        &[file("a.png", bytes[0].clone())],
        &[],
    )
    .json();
    assert!(r["photos"][0]["heat_map"].is_null());
    let r = post(
        a,
        "/v1/explain",
        &[file("a.png", bytes[0].clone()), field("class", &classes[2])],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.json();
    assert_eq!(e[0]["heat_map"]["class"].as_str().unwrap(), classes[2]);
    let raw = data_uri_image(e[0]["heat_map"]["heat_map_16bit"].as_str().unwrap());
    assert!(matches!(raw, image::DynamicImage::ImageLuma16(_)));
    let r = post(
        a,
        "/v1/explain",
        &[file("a.png", bytes[0].clone()), field("class", "nonsense")],
        &[],
    );
    assert_eq!((r.status, r.code().as_str()), (400, "unknown_class"));

    // Bad uploads, each with its code.
    let expect = |parts: &[Part], status: u16, code: &str, needle: &str| {
        let r = post(a, "/v1/diagnose", parts, &[]);
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{}",
            r.text()
        );
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "'{needle}' not in: {msg}");
    };
    expect(
        &[file("notes.png", b"just some text".to_vec())],
        415,
        "unsupported_type",
        "notes.png is not a JPEG, PNG or TIFF",
    );
    expect(
        &[file("cut.png", bytes[0][..bytes[0].len() / 2].to_vec())],
        422,
        "unreadable",
        "cut.png",
    );
    let small = png_bytes(&image::DynamicImage::ImageRgb8(
        image::RgbImage::from_pixel(12, 30, image::Rgb([200, 100, 150])),
    ));
    expect(&[file("small.png", small)], 422, "too_small", "12×30");
    let grey = png_bytes(&image::DynamicImage::ImageLuma8(
        image::GrayImage::from_pixel(64, 64, image::Luma([90])),
    ));
    expect(
        &[file("dapi.png", grey)],
        422,
        "wrong_channels",
        "1 channel",
    );
    let dark = png_bytes(&image::DynamicImage::ImageRgb8(
        image::RgbImage::from_pixel(64, 64, image::Rgb([2, 8, 20])),
    ));
    expect(
        &[file("dark.png", dark.clone())],
        422,
        "wrong_stain",
        "fluorescence",
    );
    let r = post(
        a,
        "/v1/diagnose?check_stain=false&heat_maps=false",
        &[file("dark.png", dark)],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    expect(
        &[file("bomb.png", png_bomb_head(20_000))],
        413,
        "too_many_pixels",
        "20000×20000",
    );
    let seven: Vec<Part> = (0..7).map(|_| file("p.png", bytes[0].clone())).collect();
    expect(&seven, 400, "too_many_photos", "at most 6");
    expect(&[field("slide", "x")], 400, "no_photos", "no photo");
    expect(
        &[file("big.png", vec![0x89; 2 << 20])],
        413,
        "upload_too_large",
        "1 MB",
    );
    let seg = post(a, "/v1/segment", &[file("n.png", bytes[0].clone())], &[]);
    assert_eq!(
        (seg.status, seg.code().as_str()),
        (501, "no_segmentation_model")
    );

    // Still serving after all that.
    assert_eq!(get(a, "/healthz", &[]).status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_queue_answers_503_and_the_token_is_required() {
    let dir = scratch("queue");
    let (run, manifest) = tiny_run(&dir);
    let photo = std::fs::read(&photos(&manifest)[0]).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let server = Server::start(&[
        "--model",
        run.to_str().unwrap(),
        "--queue",
        "0",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    let a = server.addr.as_str();
    let auth = [("Authorization", "Bearer s3cret")];
    assert_eq!(get(a, "/healthz", &[]).status, 200);
    let r = get(a, "/v1/models", &[]);
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    let r = get(a, "/v1/models", &[("Authorization", "Bearer wrong")]);
    assert_eq!(r.status, 401);
    assert_eq!(get(a, "/v1/models", &auth).status, 200);

    // One worker, no waiting places: a client that starts an upload and stalls holds the
    // only place, so the next request is turned away at once with a Retry-After.
    use std::io::Write;
    let mut stalled = std::net::TcpStream::connect(a).unwrap();
    let (ct, body) = multipart(&[file("a.png", photo.clone())]);
    write!(
        stalled,
        "POST /v1/diagnose HTTP/1.1\r\nHost: {a}\r\nAuthorization: Bearer s3cret\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stalled.write_all(&body[..body.len() / 2]).unwrap();
    stalled.flush().unwrap();
    // The server admits the stalled upload on its own schedule; until it has, a probe could
    // take the place itself. Wait until health shows the place held, then probe once.
    let mut held = false;
    for _ in 0..200 {
        if get(a, "/healthz", &[]).json()["queue"]["in_progress"] == 1 {
            held = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(held, "the server never admitted the stalled upload");
    let busy = post(a, "/v1/diagnose", &[file("b.png", photo.clone())], &auth);
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert_eq!(busy.code(), "busy");
    let retry: u64 = busy.header("Retry-After").unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    let h = get(a, "/healthz", &[]).json();
    assert_eq!(h["queue"]["in_progress"], 1);

    // The stalled client hangs up: its place is freed and the next case is served.
    drop(stalled);
    let mut served = false;
    for _ in 0..100 {
        let r = post(
            a,
            "/v1/diagnose?heat_maps=false",
            &[file("b.png", photo.clone())],
            &auth,
        );
        if r.status == 200 {
            served = true;
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(served, "the place of a client that hung up was never freed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn segment_answers_what_segment_predict_writes() {
    let dir = scratch("segment");
    let (run, _) = tiny_run(&dir);
    // A tiny DEDL run on synthetic grey nuclei.
    let data = dir.join("nuclei");
    std::fs::create_dir_all(data.join("images")).unwrap();
    let mut rows = String::from("image,mask,split\n");
    for i in 0..6u32 {
        let mut img = image::GrayImage::new(80, 64);
        let mut mask = image::GrayImage::new(80, 64);
        for (x, y, p) in img.enumerate_pixels_mut() {
            let inside = [
                (20.0 + 7.0 * i as f32, 20.0, 7.0),
                (55.0, 40.0 - i as f32, 9.0),
            ]
            .iter()
            .any(|&(cx, cy, r): &(f32, f32, f32)| {
                (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) <= r * r
            });
            *p = image::Luma([if inside { 180 } else { 20 } + ((x * 7 + y * 13) % 17) as u8]);
            mask.put_pixel(x, y, image::Luma([u8::from(inside)]));
        }
        img.save(data.join(format!("images/n{i}.png"))).unwrap();
        mask.save(data.join(format!("images/m{i}.png"))).unwrap();
        let split = ["train", "train", "train", "train", "validation", "test"][i as usize];
        rows.push_str(&format!("images/n{i}.png,images/m{i}.png,{split}\n"));
    }
    std::fs::write(data.join("nuclei.csv"), rows).unwrap();
    let seg = dir.join("seg");
    let out = myoscope(&[
        "segment",
        "train",
        "--data",
        data.join("nuclei.csv").to_str().unwrap(),
        "--out",
        seg.to_str().unwrap(),
        "--encoder",
        "resnet18",
        "--tile",
        "64",
        "--overlap",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--app",
        "none",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image_path = data.join("images/n5.png");
    let pred = dir.join("pred");
    let out = myoscope(&[
        "segment",
        "predict",
        "--model",
        seg.to_str().unwrap(),
        "--out",
        pred.to_str().unwrap(),
        image_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = Server::start(&[
        "--model",
        run.to_str().unwrap(),
        "--segment-model",
        seg.to_str().unwrap(),
    ]);
    let a = server.addr.as_str();
    assert_eq!(
        get(a, "/v1/models", &[]).json()["segmentation"]["channel"],
        "1"
    );
    let bytes = std::fs::read(&image_path).unwrap();
    let r = post(
        a,
        "/v1/segment",
        &[Part {
            name: "image",
            file_name: Some("n5.png"),
            bytes,
        }],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(
        (j["width"].as_u64(), j["height"].as_u64()),
        (Some(80), Some(64))
    );
    let mask = data_uri_image(j["mask"].as_str().unwrap()).to_luma8();
    let cli_mask = image::open(pred.join("n5_mask.png")).unwrap().to_luma8();
    assert_eq!(mask.dimensions(), cli_mask.dimensions());
    let differ = mask
        .pixels()
        .zip(cli_mask.pixels())
        .filter(|(x, y)| (x[0] != 0) != (y[0] != 0))
        .count();
    assert_eq!(differ, 0, "server and CLI masks differ in {differ} pixels");
    let cli_geo: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pred.join("n5_nuclei.geojson")).unwrap())
            .unwrap();
    assert_eq!(j["geojson"]["type"], "FeatureCollection");
    assert_eq!(
        j["nuclei"].as_u64().unwrap() as usize,
        cli_geo["features"].as_array().unwrap().len()
    );
    let r = post(
        a,
        "/v1/segment",
        &[
            Part {
                name: "image",
                file_name: Some("n5.png"),
                bytes: std::fs::read(&image_path).unwrap(),
            },
            field("channel", "DAPI"),
        ],
        &[],
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (422, "wrong_channels"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("/proc/self"), "{}", r.text());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_two_step_ensemble_diagnoses_as_the_command_line_does() {
    let dir = scratch("ensemble");
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
    let cfg = dir.join("cv.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\nsource = {manifest:?}\nvalidation_fraction = 0.5\n[data.columns]\npath = \"path\"\nlabel = \"label\"\nslide = \"slide\"\ngroup = \"patient\"\n[model]\narch = \"densenet-tiny\"\ngrid = 2\ninput_size = 32\n[training]\nepochs = 1\nbatch_size = 8\ndevice = \"cpu\"\n[cv]\nfolds = 2\ntest_fraction = 0.25\n[evaluation]\nbootstrap = 20\nthreshold = 0.4\nuncertainty_band = [0.2, 0.6]\n[hierarchy]\npositive_group = \"myositis\"\ngroups = [{{ name = \"myositis\", subtypes = [\"inflammatory\", \"perifascicular_atrophy\"] }}, {{ name = \"other\", subtypes = [\"normal\", \"central_nuclei\"] }}]\n"
        ),
    )
    .unwrap();
    let ens = dir.join("ens");
    let out = myoscope(&[
        "cv",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        ens.to_str().unwrap(),
        "--evaluate",
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = photos(&manifest);
    let server = Server::start(&["--model", ens.to_str().unwrap()]);
    let a = server.addr.as_str();
    let m = get(a, "/v1/models", &[]).json();
    let c = &m["classifier"];
    assert_eq!(c["kind"], "ensemble");
    assert_eq!(c["positive_group"], "myositis");
    assert_eq!(c["threshold"], 0.4);
    assert_eq!(c["stages"].as_array().unwrap().len(), 3);
    let figures = c["validation"]["figures"].as_array().unwrap();
    assert_eq!(c["validation"]["source"], "evaluation/metrics.json");
    assert!(
        figures
            .iter()
            .any(|f| f["label"].as_str().unwrap().starts_with("AUC")),
        "{c}"
    );

    // Several slides, so that both groups (and both step-2 ensembles) are likely called; the
    // command line reads each slide as a folder, in one run.
    let slides: Vec<&[std::path::PathBuf]> = all.chunks(2).step_by(3).take(5).collect();
    let mut args = vec![
        "diagnose".to_string(),
        "--ensemble".into(),
        ens.display().to_string(),
        "--device".into(),
        "cpu".into(),
        "--out".into(),
        dir.join("diag").display().to_string(),
    ];
    for (k, pair) in slides.iter().enumerate() {
        let folder = dir.join(format!("slides/s{k}"));
        std::fs::create_dir_all(&folder).unwrap();
        for p in pair.iter() {
            std::fs::copy(p, folder.join(p.file_name().unwrap())).unwrap();
        }
        args.push(folder.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = myoscope(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("diag/diagnoses.json")).unwrap())
            .unwrap();
    let mut called = std::collections::BTreeSet::new();
    for (k, pair) in slides.iter().enumerate() {
        let cli = cli_all
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["slide"] == format!("s{k}"))
            .unwrap();
        let parts: Vec<Part> = pair
            .iter()
            .map(|p| file("p.png", std::fs::read(p).unwrap()))
            .collect();
        let r = post(a, "/v1/diagnose?heat_maps=false", &parts, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        let srv = &r.json()["diagnosis"];
        assert_close(
            srv["positive_probability"].as_f64().unwrap(),
            cli["positive_probability"].as_f64().unwrap(),
            "P(myositis)",
        );
        for key in ["call", "uncertain", "subtype", "threshold"] {
            assert_eq!(srv[key], cli[key], "{key}");
        }
        let (s, t) = (
            srv["subtype_probabilities"].as_object().unwrap(),
            cli["subtype_probabilities"].as_object().unwrap(),
        );
        assert_eq!(s.len(), 2, "{srv}");
        assert_eq!(s.keys().collect::<Vec<_>>(), t.keys().collect::<Vec<_>>());
        for (k, v) in s {
            assert_close(v.as_f64().unwrap(), t[k].as_f64().unwrap(), k);
        }
        called.insert(srv["call"].as_str().unwrap().to_string());
    }
    println!("groups called: {called:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--engine onnx` answers as libtorch does (the trunk in ONNX Runtime, the heat-maps from its
/// feature maps by the same closed form), and `--engine onnx-int8` without an int8 file says
/// how to make one.
#[test]
fn the_onnx_engine_answers_as_libtorch_does() {
    if let Err(e) = myoscope::onnx::runtime::init() {
        eprintln!("SKIP: ONNX Runtime is not available here: {e:#}");
        return;
    }
    let dir = scratch("engine");
    let (run, manifest) = tiny_run(&dir);
    let photos = photos(&manifest);
    let parts = || {
        vec![
            file("a.png", std::fs::read(&photos[0]).unwrap()),
            file("b.png", std::fs::read(&photos[1]).unwrap()),
            field("slide", "S-1"),
        ]
    };
    let answer = |engine: &str| {
        let server = Server::start(&["--model", run.to_str().unwrap(), "--engine", engine]);
        let r = post(server.addr.as_str(), "/v1/diagnose", &parts(), &[]);
        assert_eq!(r.status, 200, "{engine}: {}", r.text());
        r.json()
    };
    let (torch, onnx) = (answer("torch"), answer("onnx"));
    assert_eq!(torch["diagnosis"]["call"], onnx["diagnosis"]["call"]);
    let (t, o) = (
        torch["diagnosis"]["group_probabilities"]
            .as_object()
            .unwrap(),
        onnx["diagnosis"]["group_probabilities"]
            .as_object()
            .unwrap(),
    );
    for (class, p) in t {
        let (a, b) = (p.as_f64().unwrap(), o[class].as_f64().unwrap());
        assert!((a - b).abs() < 1e-4, "{class}: {a} vs {b}");
    }
    for photo in onnx["photos"].as_array().unwrap() {
        let overlay = photo["heat_map"]["overlay"].as_str().unwrap();
        assert!(overlay.starts_with("data:image/"), "{}", &overlay[..40]);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_myoscope"))
        .args([
            "serve",
            "--model",
            run.to_str().unwrap(),
            "--engine",
            "onnx-int8",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--int8 --calibrate"), "{err}");
}
