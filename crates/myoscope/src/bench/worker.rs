//! Both sides of a case run as child processes that speak one JSON object per line:
//!
//! ```text
//! → {"cmd":"setup","case":{…}}   ← {"ok":true,"items":16,"unit":"patches","detail":"…","versions":{…}}
//! → {"cmd":"run"}                ← {"ok":true,"seconds":0.41}
//! → {"cmd":"quit"}               ← {"ok":true,"peak_rss_mib":812.5}
//! ```
//!
//! Setup builds the workload and runs its warm-up; each `run` is one timed run. Errors answer
//! `{"ok":false,"error":"…"}`. This file is our side (`myoscope bench --worker`);
//! `bench/torch_cases.py --worker` is PyTorch's.
use super::{build, peak_rss_mib, Case, Runnable};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::time::Instant;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Setup { case: Box<Case> },
    Run,
    Quit,
}

/// Serves requests from stdin until `quit` or end of input.
pub fn serve() -> Result<()> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut work: Option<Box<dyn Runnable>> = None;
    for line in stdin.lock().lines() {
        let line = line.context("reading a request")?;
        if line.trim().is_empty() {
            continue;
        }
        let (reply, quit) = match serde_json::from_str::<Request>(&line) {
            Err(e) => (
                json!({"ok": false, "error": format!("bad request: {e}")}),
                false,
            ),
            Ok(Request::Quit) => (json!({"ok": true, "peak_rss_mib": peak_rss_mib()}), true),
            Ok(Request::Setup { case }) => match setup(&case) {
                Ok(w) => {
                    let reply = json!({
                        "ok": true,
                        "items": w.items(),
                        "unit": w.unit(),
                        "detail": w.detail(),
                        "versions": versions(),
                    });
                    work = Some(w);
                    (reply, false)
                }
                Err(e) => (json!({"ok": false, "error": format!("{e:#}")}), false),
            },
            Ok(Request::Run) => match work.as_mut() {
                None => (json!({"ok": false, "error": "run before setup"}), false),
                Some(w) => {
                    let t = Instant::now();
                    match w.run() {
                        Ok(()) => (
                            json!({"ok": true, "seconds": t.elapsed().as_secs_f64()}),
                            false,
                        ),
                        Err(e) => (json!({"ok": false, "error": format!("{e:#}")}), false),
                    }
                }
            },
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
        if quit {
            break;
        }
    }
    Ok(())
}

fn setup(case: &Case) -> Result<Box<dyn Runnable>> {
    let p = &case.params;
    if p.threads > 0 {
        tch::set_num_threads(p.threads as i32);
    }
    if case.workload == super::Workload::Pipeline {
        // The loader's decoding pool, as wide as PyTorch's DataLoader has workers.
        rayon::ThreadPoolBuilder::new()
            .num_threads(p.pipeline_workers.max(1))
            .build_global()
            .context("setting up the decoding threads")?;
    }
    let mut w = build(case)?;
    for _ in 0..case.warmup {
        w.run()?;
    }
    Ok(w)
}

fn versions() -> Value {
    let b = crate::training::run_dir::Backend::current(tch::Device::Cpu);
    json!({
        "myoscope": env!("CARGO_PKG_VERSION"),
        "tch": b.tch_version,
        "libtorch": b.libtorch_version,
        "threads": tch::get_num_threads(),
    })
}

/// A worker child process seen from the runner.
pub struct WorkerProcess {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    pub label: String,
}

impl WorkerProcess {
    pub fn spawn(mut cmd: std::process::Command, label: &str) -> Result<Self> {
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start the {label} worker ({cmd:?})"))?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = std::io::BufReader::new(child.stdout.take().context("worker stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
            label: label.into(),
        })
    }

    /// Sends one request and reads its answer; an `ok: false` answer is an error.
    pub fn ask(&mut self, request: &Value) -> Result<Value> {
        writeln!(self.stdin, "{request}")
            .and_then(|_| self.stdin.flush())
            .with_context(|| format!("the {} worker is gone", self.label))?;
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .with_context(|| format!("reading from the {} worker", self.label))?;
            if n == 0 {
                bail!("the {} worker exited without answering", self.label);
            }
            // Libraries may print to stdout; answers are the lines that are JSON objects.
            if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
                if v.is_object() {
                    if v["ok"] == Value::Bool(true) {
                        return Ok(v);
                    }
                    bail!(
                        "the {} worker failed: {}",
                        self.label,
                        v["error"].as_str().unwrap_or("(no message)")
                    );
                }
            }
        }
    }

    /// Asks for the peak memory and waits for the process to end.
    pub fn finish(mut self) -> Result<f64> {
        let v = self.ask(&json!({"cmd": "quit"}))?;
        let _ = self.child.wait();
        Ok(v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // Ends a worker left behind by an error (no-op once it has exited).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
