//! Helpers for the `serve` tests: a tiny trained model, the `myoscope serve` binary started on
//! an ephemeral loopback port, a minimal HTTP/1.1 client over `TcpStream` (so the tests speak
//! real HTTP without a client library), multipart bodies and hand-made PNGs.
#![allow(dead_code)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn myoscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_myoscope"))
        .args(args)
        .output()
        .unwrap()
}

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("myoscope-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Synthetic H&E slides (2 per class, 2 photos each, 96×72) and a one-epoch DenseNet-tiny
/// run on them (2×2 patches of a 32² input): (run directory, manifest).
pub fn tiny_run(dir: &Path) -> (PathBuf, PathBuf) {
    let manifest = myoscope::synth::write_dataset(
        &dir.join("data"),
        &myoscope::synth::SynthSpec {
            slides_per_class: 2,
            photos_per_slide: 2,
            width: 96,
            height: 72,
            seed: 1,
        },
    )
    .unwrap();
    let cfg = dir.join("cfg.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\nsource = {:?}\nvalidation_fraction = 0.5\n[data.columns]\npath = \"path\"\nlabel = \"label\"\nslide = \"slide\"\ngroup = \"patient\"\n[model]\narch = \"densenet-tiny\"\ngrid = 2\ninput_size = 32\n[training]\nepochs = 1\nbatch_size = 8\ndevice = \"cpu\"\n",
            manifest
        ),
    )
    .unwrap();
    let run = dir.join("run");
    let out = myoscope(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (run, manifest)
}

/// The photos of the synthetic data set, in manifest order.
pub fn photos(manifest: &Path) -> Vec<PathBuf> {
    let base = manifest.parent().unwrap();
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "path").unwrap();
    lines
        .map(|l| base.join(l.split(',').nth(col).unwrap()))
        .collect()
}

/// `myoscope serve` on 127.0.0.1 with an ephemeral port; killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_myoscope"))
            .arg("serve")
            .args(["--port", "0", "--device", "cpu"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                println!("server: {line}");
                if let Some(i) = line.find("listening on http://") {
                    let _ = tx.send(line[i + "listening on http://".len()..].trim().to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => Server { child, addr },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!("myoscope serve did not start listening ({status})");
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The JSON error code of an error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`). A body is sent after
/// `Expect: 100-continue`, as curl does for uploads, so an answer the server gives before
/// reading the body (401, 413 by Content-Length, 503) arrives without the body being pushed
/// at a server that will not read it.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    send(addr, method, path, headers, body, true)
}

/// [`request`] without `Expect: 100-continue` (for servers, such as chromedriver, that do not
/// answer it).
pub fn request_plain(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    send(addr, method, path, headers, body, false)
}

fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    expect_continue: bool,
) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    let expect_continue = expect_continue && !body.is_empty();
    if expect_continue {
        head.push_str("Expect: 100-continue\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut head = Vec::new();
    if !expect_continue {
        s.write_all(body).unwrap();
    } else {
        let first = read_head(&mut s);
        if parse_response(&first).status == 100 {
            s.write_all(body).unwrap();
        } else {
            head = first;
        }
    }
    if head.is_empty() {
        head = read_head(&mut s);
    }
    // Read exactly the announced body: some servers keep the connection open regardless.
    let announced = parse_response(&head)
        .header("Content-Length")
        .and_then(|v| v.parse::<usize>().ok());
    let mut raw = head;
    match announced {
        Some(n) => {
            let mut body = vec![0u8; n];
            s.read_exact(&mut body).unwrap();
            raw.extend_from_slice(&body);
        }
        None => {
            let _ = s.read_to_end(&mut raw);
        }
    }
    parse_response(&raw)
}

/// Bytes up to and including the blank line that ends a response head.
fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

pub struct Part<'a> {
    pub name: &'a str,
    pub file_name: Option<&'a str>,
    pub bytes: Vec<u8>,
}

pub fn file<'a>(name: &'a str, bytes: Vec<u8>) -> Part<'a> {
    Part {
        name: "photo",
        file_name: Some(name),
        bytes,
    }
}

pub fn field<'a>(name: &'a str, value: &str) -> Part<'a> {
    Part {
        name,
        file_name: None,
        bytes: value.as_bytes().to_vec(),
    }
}

/// (content type, body) of a multipart/form-data request.
pub fn multipart(parts: &[Part]) -> (String, Vec<u8>) {
    let boundary = "myoscope-test-boundary-7d1f";
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match p.file_name {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                    p.name
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{}\"\r\n\r\n", p.name).as_bytes(),
            ),
        }
        body.extend_from_slice(&p.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub fn post(addr: &str, path: &str, parts: &[Part], extra: &[(&str, &str)]) -> Response {
    let (ct, body) = multipart(parts);
    let mut headers = vec![("Content-Type", ct.as_str())];
    headers.extend_from_slice(extra);
    request(addr, "POST", path, &headers, &body)
}

pub fn get(addr: &str, path: &str, extra: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, extra, b"")
}

pub fn png_bytes(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Decodes a `data:image/png;base64,` URI.
pub fn data_uri_image(uri: &str) -> image::DynamicImage {
    use base64::Engine as _;
    let b64 = uri
        .strip_prefix("data:image/png;base64,")
        .unwrap_or_else(|| panic!("not a PNG data URI: {}", &uri[..uri.len().min(40)]));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    image::load_from_memory(&bytes).unwrap()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut c = kind.to_vec();
    c.extend_from_slice(data);
    out.extend_from_slice(&c);
    out.extend_from_slice(&crc32(&c).to_be_bytes());
}

/// The head of a `side`×`side` RGB PNG: a valid signature, IHDR and a first IDAT holding a
/// zlib stream of zero rows (stored blocks). Enough for a decoder to announce the size; a
/// server that decoded it would have to allocate side² × 3 bytes.
pub fn png_bomb_head(side: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let zeros = vec![0u8; 4096];
    let mut z = vec![0x78, 0x01, 0x00];
    z.extend_from_slice(&(zeros.len() as u16).to_le_bytes());
    z.extend_from_slice(&(!(zeros.len() as u16)).to_le_bytes());
    z.extend_from_slice(&zeros);
    chunk(&mut out, b"IDAT", &z);
    out
}
