//! `myoscope bench`: aggregated DenseNet-121 forward and training-step times, measured here
//! and, in the same run, by `scripts/bench_torch.py` on the same model in PyTorch; prints
//! both and their ratio (PyTorch time / myoscope time, so > 1 means myoscope is faster).
use crate::models::{build_backbone, AggregatedClassifier};
use crate::training::loss::aggregated_loss;
use crate::training::radam::{RAdam, RAdamConfig};
use anyhow::{Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(long, default_value = "densenet121")]
    pub arch: String,
    #[arg(long, default_value_t = 640)]
    pub size: i64,
    #[arg(long, default_value_t = 4)]
    pub grid: i64,
    /// Photos per batch (each is grid² patches).
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Intra-op threads for both engines (0 = libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: i32,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Python with PyTorch for the reference (default: .venv-ref/bin/python of the project).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Skip the PyTorch reference.
    #[arg(long)]
    pub no_reference: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineTiming {
    pub engine: String,
    pub threads: i64,
    pub trunk_parameters: i64,
    pub forward_s: f64,
    pub train_step_s: f64,
    pub peak_rss_after_forward_mib: f64,
    pub peak_rss_after_train_mib: f64,
}

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| {
                    l.strip_prefix("VmHWM:")
                        .map(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                })
                .flatten()
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn timed(warmup: usize, iters: usize, device: Device, mut f: impl FnMut()) -> f64 {
    let sync = || {
        if let Device::Cuda(n) = device {
            tch::Cuda::synchronize(n as i64);
        }
    };
    for _ in 0..warmup {
        f();
    }
    sync();
    let times = (0..iters.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            sync();
            t.elapsed().as_secs_f64()
        })
        .collect();
    median(times)
}

fn measure_ours(a: &BenchArgs, device: Device) -> Result<EngineTiming> {
    crate::models::validate_geometry(a.size, a.grid)?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let trunk = build_backbone(&a.arch, &vs.root(), 3)?;
    let net = AggregatedClassifier::new(&vs.root(), trunk, a.grid, 2);
    let trunk_parameters = vs
        .variables()
        .iter()
        .filter(|(n, t)| {
            t.requires_grad() && !n.starts_with("classifier") && !n.starts_with("patch_classifier")
        })
        .map(|(_, t)| t.numel() as i64)
        .sum();
    let x = Tensor::randn([a.batch, 3, a.size, a.size], (Kind::Float, device));
    let labels = Tensor::zeros([a.batch], (Kind::Int64, device));
    let forward_s = timed(a.warmup, a.iters, device, || {
        tch::no_grad(|| {
            let _ = net.forward_t(&x, false);
        })
    });
    let peak_rss_after_forward_mib = peak_rss_mib();
    let mut opt = RAdam::new(&vs, RAdamConfig::default());
    let train_step_s = timed(a.warmup, a.iters, device, || {
        opt.zero_grad();
        let out = net.forward_t(&x, true);
        aggregated_loss(&out, &labels, 1.0).backward();
        opt.step();
    });
    Ok(EngineTiming {
        engine: "myoscope (tch 0.26 / libtorch)".into(),
        threads: tch::get_num_threads() as i64,
        trunk_parameters,
        forward_s,
        train_step_s,
        peak_rss_after_forward_mib,
        peak_rss_after_train_mib: peak_rss_mib(),
    })
}

/// Runs the PyTorch reference; `tuned` gives it the allocator setting myoscope uses
/// (`runtime::tune_allocator`) through glibc's environment variables, so the two can be
/// compared both as users get them and under the same allocator.
fn measure_torch(a: &BenchArgs, threads: i64, tuned: bool) -> Result<EngineTiming> {
    let root = project_root();
    let python = a
        .python
        .clone()
        .unwrap_or_else(|| root.join(".venv-ref/bin/python"));
    let script = root.join("scripts/bench_torch.py");
    let mut cmd = std::process::Command::new(&python);
    if tuned {
        cmd.env("MALLOC_MMAP_THRESHOLD_", "1073741824")
            .env("MALLOC_TRIM_THRESHOLD_", "1073741824");
    }
    let out = cmd
        .arg(&script)
        .args(["--size", &a.size.to_string(), "--grid", &a.grid.to_string()])
        .args(["--batch", &a.batch.to_string(), "--iters", &a.iters.to_string()])
        .args(["--warmup", &a.warmup.to_string(), "--threads", &threads.to_string()])
        .args(["--device", &a.device.replace("auto", "cpu")])
        .output()
        .with_context(|| {
            format!(
                "cannot run the PyTorch reference with {} (run scripts/setup-reference.sh, or pass --python, or --no-reference)",
                python.display()
            )
        })?;
    if !out.status.success() {
        anyhow::bail!(
            "the PyTorch reference failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let mut timing: EngineTiming = serde_json::from_str(line)
        .with_context(|| format!("unexpected reference output: {text}"))?;
    timing.engine += if tuned {
        " (same allocator)"
    } else {
        " (as shipped)"
    };
    Ok(timing)
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.threads > 0 {
        tch::set_num_threads(a.threads);
    }
    let device = crate::device::parse_device(&a.device)?;
    if a.arch != "densenet121" && !a.no_reference {
        anyhow::bail!(
            "the PyTorch reference implements densenet121 only; add --no-reference for {}",
            a.arch
        );
    }
    println!(
        "aggregated {} at {}² ({}×{} patches of {}²), batch {}, device {}, median of {} after {} warm-up",
        a.arch,
        a.size,
        a.grid,
        a.grid,
        a.size / a.grid,
        a.batch,
        crate::device::describe(device),
        a.iters,
        a.warmup
    );
    let ours = measure_ours(&a, device)?;
    let mut rows = vec![ours.clone()];
    if !a.no_reference {
        rows.push(measure_torch(&a, ours.threads, false)?);
        rows.push(measure_torch(&a, ours.threads, true)?);
    }
    println!(
        "{:<44} {:>7} {:>12} {:>12} {:>14} {:>14} {:>11}",
        "engine",
        "threads",
        "forward s",
        "train step s",
        "peak RSS fwd",
        "peak RSS train",
        "trunk params"
    );
    for r in &rows {
        println!(
            "{:<44} {:>7} {:>12.3} {:>12.3} {:>11.0} MiB {:>11.0} MiB {:>11}",
            r.engine,
            r.threads,
            r.forward_s,
            r.train_step_s,
            r.peak_rss_after_forward_mib,
            r.peak_rss_after_train_mib,
            r.trunk_parameters
        );
    }
    let ratios: Vec<serde_json::Value> = rows
        .iter()
        .skip(1)
        .map(|torch| {
            let f = torch.forward_s / ours.forward_s;
            let t = torch.train_step_s / ours.train_step_s;
            println!(
                "speed ratio vs {} (its time / ours): forward {f:.2}×, training step {t:.2}×",
                torch.engine
            );
            serde_json::json!({"reference": torch.engine, "forward": f, "train_step": t})
        })
        .collect();
    if let Some(p) = &a.json {
        std::fs::write(
            p,
            serde_json::to_string_pretty(&serde_json::json!({
                "arch": a.arch, "size": a.size, "grid": a.grid, "batch": a.batch,
                "device": crate::device::describe(device), "results": rows, "speed_ratio": ratios,
            }))?,
        )?;
    }
    Ok(())
}
