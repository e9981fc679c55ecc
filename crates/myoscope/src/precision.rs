//! Reduced-precision inference on CPU: the weights and the input batch in bfloat16, so that
//! oneDNN's bf16 kernels run (AVX-512 BF16, or AMX tiles where the CPU has them). The outputs
//! come back as f32. Training stays in f32.
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The tensor kind weights and inputs are held in.
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float" => Ok(Precision::Fp32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => bail!("unknown precision '{s}'; use fp32 or bf16"),
        }
    }
}

/// The CPU features that make reduced precision fast, as `/proc/cpuinfo` names them
/// (`avx512_bf16`, `amx_bf16`, `avx512_vnni`, `amx_int8`, …), in a fixed order.
pub fn cpu_features() -> Vec<String> {
    const WANTED: [&str; 8] = [
        "avx2",
        "avx512f",
        "avx512_bf16",
        "avx512_vnni",
        "avx_vnni",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
    ];
    let flags = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("flags"))
                .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        })
        .unwrap_or_default();
    WANTED
        .iter()
        .filter(|w| flags.iter().any(|f| f == *w))
        .map(|w| w.to_string())
        .collect()
}

/// True when the CPU has native bfloat16 arithmetic (AVX-512 BF16 or AMX); elsewhere libtorch
/// emulates it and bf16 is slower than f32.
pub fn cpu_has_bf16() -> bool {
    cpu_features()
        .iter()
        .any(|f| f == "avx512_bf16" || f == "amx_bf16")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [Precision::Fp32, Precision::Bf16] {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert!("int4".parse::<Precision>().is_err());
    }
}
