//! End to end in headless Chromium: the page served by `myoscope serve` loads, a synthetic
//! demo photo is chosen through the file input, and the diagnosis and the heat-map pictures
//! appear. Chromium is driven by `/usr/bin/chromedriver` over the W3C WebDriver protocol
//! (plain JSON over HTTP). The screenshot is kept as `test-artifacts/serve-e2e.png` under the
//! cargo target directory. Without Chromium the test prints SKIP.
mod serve_support;
use serde_json::{json, Value};
use serve_support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver {
    child: Child,
    addr: String,
    session: Option<String>,
}

impl Driver {
    fn start(profile: &Path) -> Driver {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut d = Driver {
            child,
            addr: format!("127.0.0.1:{port}"),
            session: None,
        };
        let t0 = Instant::now();
        while !(std::net::TcpStream::connect(&d.addr).is_ok()
            && request_plain(&d.addr, "GET", "/status", &[], b"").json()["value"]["ready"] == true)
        {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1200,1700",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let r = d.call("POST", "/session", &caps);
        d.session = Some(r["sessionId"].as_str().unwrap().to_string());
        d
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let text = body.to_string();
        let r = request_plain(
            &self.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            if method == "GET" {
                b""
            } else {
                text.as_bytes()
            },
        );
        let v = r.json();
        assert_eq!(r.status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn s(&self, tail: &str) -> String {
        format!("/session/{}{tail}", self.session.as_ref().unwrap())
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.s("/element"),
            &json!({"using": "css selector", "value": css}),
        );
        // The W3C element reference is the object's only value.
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|e| e.as_str())
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            &json!({"script": js, "args": []}),
        )
    }

    fn wait_for(&self, what: &str, js: &str, limit: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.script(js);
            if !v.is_null() && v != false {
                return v;
            }
            if t0.elapsed() > limit {
                let page = self.script("return document.body.innerText");
                panic!(
                    "waited {limit:?} for {what}; the page says:\n{}",
                    page.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = request_plain(&self.addr, "DELETE", &format!("/session/{s}"), &[], b"");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `<target>/test-artifacts`, from this test binary's path (`<target>/debug/deps/…`).
fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let d = target.join("test-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_page_diagnoses_an_uploaded_photo_and_shows_its_heat_map() {
    if !Path::new(CHROMEDRIVER).is_file() || !Path::new(CHROMIUM).is_file() {
        eprintln!("SKIP: {CHROMIUM} or {CHROMEDRIVER} is absent (apt-get install chromium chromium-driver); the browser test was not run");
        return;
    }
    let dir = scratch("browser");
    let (run, _) = tiny_run(&dir);
    // Demo photos at a camera-like aspect, larger than the training ones.
    let demo = myoscope::synth::write_dataset(
        &dir.join("demo"),
        &myoscope::synth::SynthSpec {
            slides_per_class: 1,
            photos_per_slide: 1,
            width: 400,
            height: 300,
            seed: 9,
        },
    )
    .unwrap();
    let photo = photos(&demo)[1].clone();
    let server = Server::start(&["--model", run.to_str().unwrap()]);
    let driver = Driver::start(&dir.join("chromium-profile"));

    driver.call(
        "POST",
        &driver.s("/url"),
        &json!({"url": format!("http://{}/", server.addr)}),
    );
    driver.wait_for(
        "the model card",
        "return document.getElementById('model').innerText.includes('version')",
        Duration::from_secs(30),
    );
    let input = driver.element("#photos");
    driver.call(
        "POST",
        &driver.s(&format!("/element/{input}/value")),
        &json!({"text": photo.display().to_string()}),
    );
    driver.wait_for(
        "the Diagnose button",
        "return !document.getElementById('go').disabled",
        Duration::from_secs(10),
    );
    let go = driver.element("#go");
    driver.call(
        "POST",
        &driver.s(&format!("/element/{go}/click")),
        &json!({}),
    );
    let call = driver.wait_for(
        "the diagnosis",
        "const c = document.getElementById('call'); return c && c.dataset.call",
        Duration::from_secs(60),
    );
    let width = driver.wait_for(
        "the heat-map",
        "const i = document.querySelector('img.heatmap-overlay'); return i && i.complete && i.naturalWidth",
        Duration::from_secs(60),
    );
    // The centre square of a 400×300 photo, 300², is under the 512-pixel picture limit.
    assert_eq!(width, json!(300));
    let status = driver.script("return document.getElementById('status').textContent");
    assert!(status.as_str().unwrap().starts_with("Done"), "{status}");
    for css in ["img.heatmap-focused", "img.heatmap-unfocused"] {
        let w = driver.script(&format!(
            "return document.querySelector('{css}').naturalWidth"
        ));
        assert_eq!(w, json!(300), "{css}");
    }
    let text = driver
        .script("return document.body.innerText")
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains(call.as_str().unwrap()) && text.contains("Validation"),
        "{text}"
    );
    // The downloadable report: self-contained, with the diagnosis and the pictures inline.
    let report = driver
        .script("return reportHtml()")
        .as_str()
        .unwrap()
        .to_string();
    assert!(report.contains("myoscope case report") && report.contains(call.as_str().unwrap()));
    assert_eq!(report.matches("data:image/png;base64,").count(), 3);
    assert!(!report.contains("<script"));

    let shot = driver.call("GET", &driver.s("/screenshot"), &json!({}));
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot.as_str().unwrap())
        .unwrap();
    let out = artifacts_dir().join("serve-e2e.png");
    std::fs::write(&out, &png).unwrap();
    println!("screenshot: {}", out.display());
    assert!(image::load_from_memory(&png).unwrap().width() > 500);
    drop(driver);
    let _ = std::fs::remove_dir_all(&dir);
}
