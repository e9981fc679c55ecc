//! Inference time of the aggregated classifier in one engine, for `scripts/bench_onnx.py`,
//! which runs it for each engine in turn, next to PyTorch eager, and reports the ratios.
//!
//! ```text
//! onnx_bench --engine torch|onnx [--model FILE.onnx] [--arch densenet121] [--size 640]
//!            [--grid 4] [--batch 1] [--iters 5] [--warmup 1] [--threads 2]
//! ```
//! Without `--model` the ONNX engine runs our in-memory export of the same randomly
//! initialised model libtorch runs (seed 0, 2 classes, as `scripts/bench_torch.py`).
//! Prints one JSON line: engine, threads, median forward seconds, every timing.
//! `--save-run DIR` instead writes that model as a run directory (model.json,
//! best.safetensors), for `myoscope export onnx` (and `--int8`) to export.
use anyhow::{bail, Context, Result};
use myoscope::config::ModelConfig;
use myoscope::onnx::{export, OnnxClassifier};
use myoscope::training::ModelSpec;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

struct Args {
    engine: String,
    model: Option<String>,
    arch: String,
    size: i64,
    grid: i64,
    batch: i64,
    iters: usize,
    warmup: usize,
    threads: i32,
    save_run: Option<String>,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        engine: "torch".into(),
        model: None,
        arch: "densenet121".into(),
        size: 640,
        grid: 4,
        batch: 1,
        iters: 5,
        warmup: 1,
        threads: 2,
        save_run: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--engine" => a.engine = v,
            "--model" => a.model = Some(v),
            "--arch" => a.arch = v,
            "--size" => a.size = v.parse()?,
            "--grid" => a.grid = v.parse()?,
            "--batch" => a.batch = v.parse()?,
            "--iters" => a.iters = v.parse()?,
            "--warmup" => a.warmup = v.parse()?,
            "--threads" => a.threads = v.parse()?,
            "--save-run" => a.save_run = Some(v),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    myoscope::runtime::tune_allocator();
    let a = parse()?;
    tch::set_num_threads(a.threads);
    tch::manual_seed(0);
    let spec = ModelSpec {
        model: ModelConfig {
            arch: a.arch.clone(),
            grid: a.grid,
            input_size: a.size,
            ..Default::default()
        },
        classes: vec!["a".into(), "b".into()],
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let net = spec.build(&vs)?;
    if let Some(dir) = &a.save_run {
        let dir = std::path::Path::new(dir);
        std::fs::create_dir_all(dir)?;
        let vars = myoscope::training::checkpoint::sorted_variables(&vs);
        myoscope::training::checkpoint::save_tensors(&dir.join("best.safetensors"), &vars)?;
        myoscope::training::checkpoint::write_json_atomic(&dir.join("model.json"), &spec)?;
        println!("wrote {}", dir.display());
        return Ok(());
    }
    let x = Tensor::randn([a.batch, 3, a.size, a.size], (Kind::Float, Device::Cpu));
    let mut forward: Box<dyn FnMut() -> Result<()>> = match a.engine.as_str() {
        "torch" => Box::new(|| {
            tch::no_grad(|| {
                let _ = net.forward_t(&x, false);
            });
            Ok(())
        }),
        "onnx" => {
            let model = match &a.model {
                Some(file) => OnnxClassifier::load(std::path::Path::new(file), a.threads as usize)?,
                None => {
                    let (bytes, sidecar) = export::export_model(&spec, &vs.variables(), "bench")?;
                    OnnxClassifier::from_bytes(&bytes, sidecar, a.threads as usize)?
                }
            };
            Box::new(move || model.forward(&x).map(|_| ()))
        }
        other => bail!("unknown engine {other} (torch or onnx)"),
    };
    for _ in 0..a.warmup {
        forward()?;
    }
    let mut times = Vec::with_capacity(a.iters);
    for _ in 0..a.iters.max(1) {
        let t = Instant::now();
        forward()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let engine = match (&a.engine[..], &a.model) {
        ("torch", _) => "myoscope libtorch".to_string(),
        (_, Some(m)) => format!("myoscope onnxruntime ({m})"),
        _ => "myoscope onnxruntime (fp32 export)".to_string(),
    };
    println!(
        "{}",
        serde_json::json!({
            "engine": engine,
            "threads": a.threads,
            "forward_s": sorted[sorted.len() / 2],
            "times": times,
        })
    );
    Ok(())
}
