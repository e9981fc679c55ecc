//! Runs the suite: per case a fresh worker process for each side, set up (and warmed up)
//! side by side, then timed runs interleaved — ours, PyTorch, ours, PyTorch, … — so a burst
//! of other load on the machine hits both. Medians, throughput and each process's peak
//! resident memory come back per side.
use super::report::{CaseResult, Side};
use super::worker::WorkerProcess;
use super::{median, Case};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Where PyTorch's side comes from.
#[derive(Debug, Clone)]
pub struct Reference {
    pub python: PathBuf,
    pub script: PathBuf,
    /// Give PyTorch the glibc allocator setting myoscope uses (`runtime::tune_allocator`).
    pub same_allocator: bool,
}

/// The project checkout this binary was built from (for `bench/torch_cases.py`).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python to run PyTorch's side with: `--python`, else `bench/.venv` (made by
/// `bench/setup.sh`), else the reference environment `.venv-ref`.
pub fn find_python(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.exists() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("--python {} does not exist", p.display()))
        };
    }
    let root = project_root();
    for candidate in ["bench/.venv/bin/python", ".venv-ref/bin/python"] {
        let p = root.join(candidate);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(format!(
        "no Python with PyTorch found (looked for bench/.venv and .venv-ref in {}); run bench/setup.sh to create bench/.venv, or pass --python",
        root.display()
    ))
}

fn ours_command() -> Result<std::process::Command> {
    let exe = std::env::current_exe().context("cannot find the myoscope executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench", "--worker"]);
    Ok(cmd)
}

fn torch_command(r: &Reference) -> std::process::Command {
    let mut cmd = std::process::Command::new(&r.python);
    cmd.arg(&r.script).arg("--worker");
    if r.same_allocator {
        cmd.env("MALLOC_MMAP_THRESHOLD_", "1073741824")
            .env("MALLOC_TRIM_THRESHOLD_", "1073741824");
    }
    cmd
}

struct Running {
    worker: WorkerProcess,
    ready: Value,
    times: Vec<f64>,
}

fn start(cmd: std::process::Command, label: &str, case: &Case) -> Result<Running> {
    let mut worker = WorkerProcess::spawn(cmd, label)?;
    let ready = worker.ask(&json!({"cmd": "setup", "case": case}))?;
    Ok(Running {
        worker,
        ready,
        times: Vec::new(),
    })
}

fn timed_run(r: &mut Running) -> Result<()> {
    let v = r.worker.ask(&json!({"cmd": "run"}))?;
    r.times.push(
        v["seconds"]
            .as_f64()
            .context("a run answer without seconds")?,
    );
    Ok(())
}

fn side(r: Running, engine: String) -> Result<Side> {
    let items = r.ready["items"].as_f64().unwrap_or(f64::NAN);
    let versions = r.ready["versions"].clone();
    let median_s = median(&r.times);
    let peak_rss_mib = r.worker.finish()?;
    Ok(Side {
        engine,
        items_per_run: items,
        throughput: items / median_s,
        median_s,
        times_s: r.times,
        peak_rss_mib,
        versions,
    })
}

/// Runs one case; PyTorch's side is skipped (ratio null) when `reference` is `None` or its
/// worker cannot set the case up, and the reason is recorded.
pub fn run_case(case: &Case, reference: Option<&Reference>) -> Result<CaseResult> {
    let mut ours = start(ours_command()?, &case.ours_label(), case)
        .with_context(|| format!("case {}", case.name))?;
    let (mut torch, mut torch_error) = match reference {
        None => (None, Some("no PyTorch reference".to_string())),
        Some(r) => match start(torch_command(r), "PyTorch", case) {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        },
    };
    for i in 0..case.runs.max(1) {
        timed_run(&mut ours).with_context(|| format!("case {}, run {}", case.name, i + 1))?;
        if let Some(t) = torch.as_mut() {
            if let Err(e) = timed_run(t) {
                torch_error = Some(format!("{e:#}"));
                torch = None;
            }
        }
    }
    let unit = ours.ready["unit"].as_str().unwrap_or("items").to_string();
    let detail = ours.ready["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ours = side(ours, case.ours_label())?;
    let pytorch = match torch {
        Some(t) => {
            let engine = format!(
                "PyTorch {} eager fp32",
                t.ready["versions"]["torch"].as_str().unwrap_or("?")
            );
            match side(t, engine) {
                Ok(s) => Some(s),
                Err(e) => {
                    torch_error = Some(format!("{e:#}"));
                    None
                }
            }
        }
        None => None,
    };
    let ratio = pytorch.as_ref().map(|p| ours.throughput / p.throughput);
    Ok(CaseResult {
        name: case.name.clone(),
        workload: case.workload,
        precision: case.precision,
        unit,
        detail,
        warmup: case.warmup,
        runs: case.runs.max(1),
        ratio,
        ours,
        pytorch_error: pytorch.is_none().then(|| torch_error.unwrap_or_default()),
        pytorch,
    })
}
