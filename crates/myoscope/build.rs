//! Writes an rpath to the libtorch inside the project's virtual environment, so `cargo run`,
//! `cargo test` and the installed binary find `libtorch*.so` without LD_LIBRARY_PATH.
//! When the full CUDA wheel set is installed (cuBLAS present), `libtorch_cuda.so` is kept
//! linked even though no symbol of ours references it: without it libtorch never sees the GPU.
use std::path::{Path, PathBuf};

fn main() {
    record_dependency_versions();
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=MYOSCOPE_NO_CUDA");
    println!("cargo:rerun-if-env-changed=MYOSCOPE_FORCE_CUDA");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        return;
    };
    let libtorch = libtorch.canonicalize().unwrap_or(libtorch);
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // The wheel's CUDA runtime libraries live beside torch in site-packages/nvidia/*/lib.
    let site_packages = libtorch.parent().unwrap_or(Path::new("."));
    let nvidia = site_packages.join("nvidia");
    let mut cuda_libs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&nvidia) {
        for entry in entries.flatten() {
            let dir = entry.path().join("lib");
            if dir.is_dir() {
                cuda_libs.push(dir);
            }
        }
    }
    cuda_libs.sort();
    for dir in &cuda_libs {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
    let full_cuda = cuda_libs.iter().any(|d| d.join("libcublas.so.13").exists())
        && lib.join("libtorch_cuda.so").exists();
    // MYOSCOPE_FORCE_CUDA: link libtorch_cuda even though its CUDA libraries are not here, for
    // a binary built on a CPU machine and run where they are (they resolve at load time).
    let forced = std::env::var_os("MYOSCOPE_FORCE_CUDA").is_some();
    if forced {
        println!("cargo:rustc-link-arg=-Wl,--allow-shlib-undefined");
    }
    if (full_cuda || forced) && std::env::var_os("MYOSCOPE_NO_CUDA").is_none() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// Exposes the locked versions of the crates that decide numerical results as
/// `MYOSCOPE_DEPENDENCY_VERSIONS` ("tch=0.26.0,torch-sys=0.26.0,..."), for run manifests.
fn record_dependency_versions() {
    const RECORDED: &[&str] = &[
        "tch",
        "torch-sys",
        "image",
        "rand",
        "rand_chacha",
        "safetensors",
    ];
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let mut found = Vec::new();
    let mut name: Option<&str> = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"'));
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            if RECORDED.contains(&n) {
                found.push(format!("{n}={}", v.trim_matches('"')));
            }
        }
    }
    println!(
        "cargo:rustc-env=MYOSCOPE_DEPENDENCY_VERSIONS={}",
        found.join(",")
    );
}
