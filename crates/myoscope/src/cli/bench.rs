//! `myoscope bench`: the benchmark suite (see [`crate::bench`]). Every case is timed next to
//! the same workload in PyTorch eager fp32 (`bench/torch_cases.py`) in one interleaved run;
//! `--out DIR` writes `bench.json` and `bench.md`. `--case` picks cases (the old
//! `myoscope bench` is `--case classifier-inference --case classifier-training`).
use crate::bench::report::SuiteReport;
use crate::bench::runner::{find_python, project_root, run_case, Reference};
use crate::bench::{cases, inputs, select, Engine, Params, Workload};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Fewer warm-up and timed runs (same sizes, same workloads): about 10 minutes on 2 cores.
    #[arg(long)]
    pub quick: bool,
    /// Folder for bench.json, bench.md and the input photos.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// Run only these cases (repeat, or separate with commas); default all.
    #[arg(long = "case", value_delimiter = ',')]
    pub cases: Vec<String>,
    /// List the cases and exit.
    #[arg(long)]
    pub list: bool,
    /// Timed runs per side for every case (default: per case, fewer with --quick).
    #[arg(long)]
    pub iters: Option<usize>,
    /// Untimed warm-up runs per side for every case.
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Intra-op threads for both engines (0 = libtorch's default, the number of cores).
    #[arg(long, default_value_t = 0)]
    pub threads: i32,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Classifier backbone (PyTorch's side implements densenet121 only).
    #[arg(long, default_value = "densenet121")]
    pub arch: String,
    /// Classifier input side.
    #[arg(long, default_value_t = 640)]
    pub size: i64,
    /// Classifier patch grid (g×g patches).
    #[arg(long, default_value_t = 4)]
    pub grid: i64,
    /// Photos per classifier batch.
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    /// Python with PyTorch for the reference side (default: bench/.venv, else .venv-ref).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Skip PyTorch: our figures only, ratio null.
    #[arg(long)]
    pub no_reference: bool,
    /// Give PyTorch the glibc allocator setting myoscope uses (like-for-like allocator).
    #[arg(long)]
    pub torch_same_allocator: bool,
    /// Also write the suite's JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Accuracy of bf16 against fp32: a trained run directory ...
    #[arg(long, requires = "precision_data")]
    pub precision_model: Option<PathBuf>,
    /// ... and labelled validation photos (manifest with path,label columns, or class folders).
    #[arg(long, requires = "precision_model")]
    pub precision_data: Option<PathBuf>,
    /// Serve one case over stdin/stdout (used by the suite itself).
    #[arg(long, hide = true)]
    pub worker: bool,
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.worker {
        return crate::bench::worker::serve();
    }
    if let (Some(model), Some(data)) = (&a.precision_model, &a.precision_data) {
        return precision_check(&a, model, data);
    }
    if a.threads > 0 {
        tch::set_num_threads(a.threads);
    }
    let threads = tch::get_num_threads() as i64;
    let params = Params {
        arch: a.arch.clone(),
        size: a.size,
        grid: a.grid,
        batch: a.batch,
        threads,
        device: a.device.clone(),
        ..Params::default()
    };
    crate::models::validate_geometry(params.size, params.grid)?;
    crate::device::parse_device(&params.device)?;
    let mut suite = select(cases(&params, a.quick), &a.cases)?;
    if a.list {
        for c in &suite {
            println!("{:<32} warm-up {}, runs {}", c.name, c.warmup, c.runs);
        }
        return Ok(());
    }
    let reference = if a.no_reference {
        None
    } else if a.arch != "densenet121" {
        bail!(
            "the PyTorch side implements densenet121 only; add --no-reference for {}",
            a.arch
        );
    } else {
        match find_python(a.python.as_deref()) {
            Ok(python) => Some(Reference {
                python,
                script: project_root().join("bench/torch_cases.py"),
                same_allocator: a.torch_same_allocator,
            }),
            Err(why) => {
                eprintln!("note: {why}; measuring myoscope only (ratio null)");
                None
            }
        }
    };
    let t0 = Instant::now();
    let machine = crate::bench::machine::Machine::current();
    if machine
        .load_average
        .is_some_and(|l| l > machine.logical_cpus as f64)
    {
        eprintln!(
            "note: the load average ({:.1}) exceeds the {} CPUs: other work is running, and the figures will show it",
            machine.load_average.unwrap_or_default(),
            machine.logical_cpus
        );
    }
    println!(
        "==> {} case(s){}, {threads} threads, {} ({} CPUs)",
        suite.len(),
        if a.quick { " (quick)" } else { "" },
        machine.cpu,
        machine.logical_cpus,
    );
    // The pipeline and the slide read photos; int8 models calibrate on them.
    let needs_photos = suite.iter().any(|c| {
        matches!(c.workload, Workload::Pipeline | Workload::Slide) || c.engine == Engine::OnnxInt8
    });
    let photos = if needs_photos {
        inputs::write_photos(&a.out.join("inputs"), 8, 1360, 1024)?
    } else {
        Vec::new()
    };
    for c in &mut suite {
        c.params.photos = photos.clone();
        if let Some(n) = a.iters {
            c.runs = n.max(1);
        }
        if let Some(n) = a.warmup {
            c.warmup = n;
        }
    }
    let mut report = SuiteReport {
        format: "myoscope-bench/1".into(),
        created: crate::training::run_dir::timestamp(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: a.quick,
        threads,
        machine,
        git_commit: crate::training::run_dir::git_commit(),
        cases: Vec::new(),
        wall_s: 0.0,
    };
    for (i, case) in suite.iter().enumerate() {
        let t = Instant::now();
        println!(
            "==> [{}/{}] {} ({} warm-up, {} timed runs per side)",
            i + 1,
            suite.len(),
            case.name,
            case.warmup,
            case.runs
        );
        let r = run_case(case, reference.as_ref())?;
        match (&r.pytorch, r.ratio) {
            (Some(p), Some(ratio)) => println!(
                "    myoscope {:.3} {u}/s (median {:.3} s, {:.0} MiB) · PyTorch {:.3} {u}/s (median {:.3} s, {:.0} MiB) · ratio {ratio:.2}× · {:.0} s",
                r.ours.throughput, r.ours.median_s, r.ours.peak_rss_mib,
                p.throughput, p.median_s, p.peak_rss_mib, t.elapsed().as_secs_f64(),
                u = r.unit
            ),
            _ => println!(
                "    myoscope {:.3} {}/s (median {:.3} s, {:.0} MiB) · PyTorch not measured: {}",
                r.ours.throughput,
                r.unit,
                r.ours.median_s,
                r.ours.peak_rss_mib,
                r.pytorch_error.as_deref().unwrap_or("")
            ),
        }
        report.cases.push(r);
        report.wall_s = t0.elapsed().as_secs_f64();
        // After every case, so an interrupted suite keeps what it measured.
        report.write(&a.out)?;
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n")?;
    }
    println!(
        "\n{}\nwrote {} and {} ({:.0} s)",
        report.table(),
        a.out.join("bench.json").display(),
        a.out.join("bench.md").display(),
        report.wall_s
    );
    Ok(())
}

fn precision_check(a: &BenchArgs, model: &std::path::Path, data: &std::path::Path) -> Result<()> {
    if a.threads > 0 {
        tch::set_num_threads(a.threads);
    }
    if !crate::precision::cpu_has_bf16() {
        eprintln!("note: this CPU has no native bf16 (avx512_bf16 / amx_bf16); libtorch emulates it, slowly");
    }
    let check = crate::bench::precision_check::run(model, data, 16)?;
    std::fs::create_dir_all(&a.out)?;
    let path = a.out.join("precision.json");
    std::fs::write(&path, serde_json::to_string_pretty(&check)? + "\n")?;
    let auc = |v: Option<f64>| v.map_or("undefined".to_string(), |x| format!("{x:.4}"));
    println!(
        "{} photos, {} classes\nfp32: macro AUC {}, accuracy {:.4} ({:.1} s)\nbf16: macro AUC {}, accuracy {:.4} ({:.1} s)\nAUC change {}; same prediction {:.4}; |Δp| max {:.2e}, mean {:.2e}\nwrote {}",
        check.photos,
        check.classes.len(),
        auc(check.fp32.macro_auc),
        check.fp32.accuracy,
        check.fp32.seconds,
        auc(check.bf16.macro_auc),
        check.bf16.accuracy,
        check.bf16.seconds,
        check.auc_change.map_or("undefined".to_string(), |d| format!("{d:+.4}")),
        check.same_prediction,
        check.max_abs_probability_change,
        check.mean_abs_probability_change,
        path.display()
    );
    Ok(())
}
