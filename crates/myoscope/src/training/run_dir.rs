//! A run directory holds everything needed to trust, repeat or resume a run: the resolved
//! config, a manifest of what went in (seed, data and split hashes, versions, commit,
//! backend), the split, checkpoints and metrics.
use super::checkpoint::write_json_atomic;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.toml";
pub const RUN_MANIFEST_FILE: &str = "run.json";
pub const SPLIT_FILE: &str = "split.json";
pub const METRICS_FILE: &str = "metrics.json";
pub const BEST_WEIGHTS_FILE: &str = "best.safetensors";
pub const MODEL_FILE: &str = "model.json";
pub const CHECKPOINT_DIR: &str = "checkpoints";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    pub myoscope_version: String,
    /// Locked versions of the crates that decide numerical results (name → version).
    pub crate_versions: std::collections::BTreeMap<String, String>,
    pub git_commit: Option<String>,
    pub seed: u64,
    /// sha256 of the manifest file (or of the sorted file list of a class-folder data set).
    pub data_sha256: String,
    /// sha256 of the train/validation file lists.
    pub split_sha256: String,
    pub backend: Backend,
    pub command: Vec<String>,
    pub started: String,
    /// The registry weights the trunk started from, with their checksums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<crate::weights::pretrained::PretrainedRecord>,
    /// `faithful` (the paper as stated) or `corrected`, for the DEDL protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<crate::config::Preset>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backend {
    pub engine: String,
    pub tch_version: String,
    pub libtorch_version: String,
    pub device: String,
}

impl Backend {
    pub fn current(device: tch::Device) -> Self {
        Self {
            engine: "libtorch via tch".into(),
            tch_version: crate_versions().get("tch").cloned().unwrap_or_default(),
            libtorch_version: libtorch_version(),
            device: crate::device::describe(device),
        }
    }
}

/// The libtorch version that was linked, from the wheel's `version.py`.
fn libtorch_version() -> String {
    let from_build = option_env!("LIBTORCH").map(PathBuf::from);
    from_build
        .and_then(|p| std::fs::read_to_string(p.join("version.py")).ok())
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("__version__ = ")
                    .map(|v| v.trim_matches('\'').to_string())
            })
        })
        .unwrap_or_else(|| "2.13 (exact build unknown)".into())
}

pub fn crate_versions() -> std::collections::BTreeMap<String, String> {
    env!("MYOSCOPE_DEPENDENCY_VERSIONS")
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Seconds since the Unix epoch as an RFC 3339-ish UTC timestamp, without a date crate.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn write_manifest(dir: &Path, manifest: &RunManifest) -> Result<()> {
    write_json_atomic(&dir.join(RUN_MANIFEST_FILE), manifest)
}

pub fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_is_well_formed() {
        let t = timestamp();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }

    #[test]
    fn crate_versions_come_from_the_lock_file() {
        assert_eq!(
            crate_versions().get("tch").map(String::as_str),
            Some("0.26.0")
        );
    }

    #[test]
    fn sha_of_empty_is_known() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
