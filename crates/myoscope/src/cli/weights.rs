//! `myoscope weights`: import pretrained weights from files (never from the network), list and
//! inspect the registry, and prove imported weights against PyTorch's logits.
use crate::weights::parity::{self, EntryCheck};
use crate::weights::registry::{ImportRequest, Registry, WeightsEntry};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct WeightsArgs {
    /// Registry folder (default: $MYOSCOPE_WEIGHTS, else ~/.local/share/myoscope/weights).
    #[arg(long, global = true)]
    pub registry: Option<PathBuf>,
    #[command(subcommand)]
    pub command: WeightsCommand,
}

#[derive(Debug, Subcommand)]
pub enum WeightsCommand {
    /// Convert a .pth/.pt, .safetensors or TF.js model.json into the registry.
    Import(ImportArgs),
    /// Import every file scripts/fetch_weights.sh brought, each with its architecture.
    ImportFetched {
        /// Folder the fetch script filled (default: $MYOSCOPE_SOURCES, else ~/.cache/myoscope/sources).
        #[arg(long)]
        sources: Option<PathBuf>,
        /// Replace entries that already exist.
        #[arg(long)]
        replace: bool,
    },
    /// The imported weights, their architecture, checksum and preprocessing.
    List,
    /// Everything recorded about one entry, as JSON.
    Show { name: String },
    /// Recompute PyTorch's reference logits for every imported weight file that has them.
    Verify {
        #[arg(long)]
        sources: Option<PathBuf>,
    },
    /// Delete an entry.
    Remove { name: String },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The weight file (or a TF.js model folder).
    pub file: PathBuf,
    /// Architecture the weights belong to (`myoscope models`).
    #[arg(long)]
    pub arch: String,
    /// Registry name (default: the file name without extension).
    #[arg(long)]
    pub name: Option<String>,
    /// Refuse the file unless it has this sha256.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Native input size, if not the architecture's published one.
    #[arg(long)]
    pub input_size: Option<i64>,
    /// Per-channel mean (R,G,B in [0, 1]), if not the published one.
    #[arg(long, value_delimiter = ',', num_args = 3)]
    pub mean: Option<Vec<f64>>,
    /// Per-channel std (R,G,B in [0, 1]), if not the published one.
    #[arg(long, value_delimiter = ',', num_args = 3)]
    pub std: Option<Vec<f64>>,
    /// Overwrite an entry of the same name.
    #[arg(long)]
    pub replace: bool,
}

pub fn run(a: WeightsArgs) -> Result<()> {
    let registry = Registry::open(a.registry.as_deref());
    match a.command {
        WeightsCommand::Import(i) => {
            let three = |v: Option<Vec<f64>>| v.map(|v| [v[0], v[1], v[2]]);
            let entry = registry.import(&ImportRequest {
                file: i.file,
                arch: i.arch,
                name: i.name,
                expected_sha256: i.sha256,
                input_size: i.input_size,
                mean: three(i.mean),
                std: three(i.std),
                replace: i.replace,
            })?;
            print_imported(&registry, &entry);
            Ok(())
        }
        WeightsCommand::ImportFetched { sources, replace } => import_fetched(
            &registry,
            sources.unwrap_or_else(parity::default_sources),
            replace,
        ),
        WeightsCommand::List => {
            let entries = registry.list()?;
            if entries.is_empty() {
                println!(
                    "no weights in {} yet; `myoscope weights import FILE --arch ARCH` adds some",
                    registry.root.display()
                );
            }
            for e in entries {
                println!(
                    "{:<32} {:<20} {:>11} params  sha256 {}…  from {} ({})\n{:<32} {}",
                    e.name,
                    e.arch,
                    e.parameters,
                    &e.weights_sha256[..12],
                    e.source.file_name,
                    e.source.format.describe(),
                    "",
                    e.preprocessing.summary()
                );
            }
            Ok(())
        }
        WeightsCommand::Show { name } => {
            let e = registry.get(&name)?;
            println!("{}", serde_json::to_string_pretty(&e)?);
            Ok(())
        }
        WeightsCommand::Verify { sources } => {
            verify(&registry, sources.unwrap_or_else(parity::default_sources))
        }
        WeightsCommand::Remove { name } => {
            registry.remove(&name)?;
            println!("removed '{name}' from {}", registry.root.display());
            Ok(())
        }
    }
}

fn print_imported(registry: &Registry, e: &WeightsEntry) {
    println!(
        "imported '{}' ({}, {} tensors, {} parameters{}) from {} [{}; {}]",
        e.name,
        e.arch,
        e.tensors,
        e.parameters,
        e.classes
            .map(|c| format!(", {c}-class head"))
            .unwrap_or_default(),
        e.source.file_name,
        e.source.format.describe(),
        e.source.convention
    );
    println!("  source sha256  {}", e.source.sha256);
    println!(
        "  stored sha256  {}  in {}",
        e.weights_sha256,
        registry.root.join(&e.name).display()
    );
    println!("  preprocessing  {}", e.preprocessing.summary());
    for n in &e.preprocessing.notes {
        println!("                 {n}");
    }
}

fn import_fetched(registry: &Registry, sources: PathBuf, replace: bool) -> Result<()> {
    let fixture = parity::fixture()?;
    let mut found = 0;
    for r in &fixture.entries {
        let path = sources.join(&r.file);
        if !path.exists() {
            println!(
                "not fetched: {} (run scripts/fetch_weights.sh)",
                path.display()
            );
            continue;
        }
        found += 1;
        let stem = r.file.split('/').next_back().unwrap_or(&r.file);
        let name = match stem {
            "model.json" => format!("{}-{}", r.arch, &r.sha256[..8]),
            s => s.trim_end_matches(".pth").to_string(),
        };
        if !replace && registry.get(&name).is_ok() {
            println!("already imported: {name}");
            continue;
        }
        let entry = registry.import(&ImportRequest {
            file: path,
            arch: r.arch.clone(),
            name: Some(name),
            expected_sha256: Some(r.sha256.clone()),
            replace,
            ..Default::default()
        })?;
        print_imported(registry, &entry);
    }
    if found == 0 {
        bail!(
            "{} holds none of the fetched weight files; run scripts/fetch_weights.sh first",
            sources.display()
        );
    }
    Ok(())
}

fn verify(registry: &Registry, sources: PathBuf) -> Result<()> {
    let fixture = parity::fixture()?;
    let entries = registry.list()?;
    println!(
        "reference: {} (tolerance {:e}); photos from {}",
        fixture
            .versions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        parity::TOLERANCE,
        sources.display()
    );
    let mut checks: Vec<EntryCheck> = Vec::new();
    for e in &entries {
        let Some(reference) = parity::reference_for(&fixture, e) else {
            println!(
                "{:<32} no reference logits for this file (sha256 {}…); skipped",
                e.name,
                &e.source.sha256[..12]
            );
            continue;
        };
        let c = parity::check(registry, e, reference, &fixture, &sources)
            .with_context(|| format!("checking '{}'", e.name))?;
        for p in &c.photos {
            println!(
                "{:<32} {:<8} max |Δlogit| {:.2e}  top-1 {} {} (PyTorch {}: {})",
                c.name,
                p.photo,
                p.max_abs_diff,
                p.top1,
                if p.top1 == p.reference_top1 {
                    "="
                } else {
                    "≠"
                },
                p.reference_top1,
                p.label
            );
        }
        checks.push(c);
    }
    if checks.is_empty() {
        bail!("no imported weights have reference logits; run scripts/fetch_weights.sh and `myoscope weights import-fetched` first");
    }
    let failed: Vec<&EntryCheck> = checks.iter().filter(|c| !c.passed()).collect();
    let worst = checks
        .iter()
        .map(EntryCheck::max_abs_diff)
        .fold(0.0, f64::max);
    if !failed.is_empty() {
        bail!(
            "{} of {} weight files differ from PyTorch by more than {:e} or change the top-1 class: {}",
            failed.len(),
            checks.len(),
            parity::TOLERANCE,
            failed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "all {} weight files match PyTorch (largest |Δlogit| {worst:.2e})",
        checks.len()
    );
    Ok(())
}
