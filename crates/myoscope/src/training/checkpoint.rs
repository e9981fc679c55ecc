//! Checkpoints that survive a crash at any instant: each file is written under a temporary
//! name, flushed and renamed into place, and `state.json` (the pointer to the latest complete
//! checkpoint) is replaced last. A kill between two renames leaves the previous state valid.
use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use tch::Tensor;

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} into place", path.display()))
}

pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}

/// Saves named tensors as safetensors, atomically.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let tmp = tmp_path(path);
    // safetensors needs contiguous CPU tensors.
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.to_device(tch::Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} into place", path.display()))
}

pub fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    Ok(Tensor::read_safetensors(path)
        .with_context(|| format!("cannot read weights {}", path.display()))?
        .into_iter()
        .collect())
}

fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Copies tensors into a var store by name. Every variable of the store must be present
/// with the same shape; keys that are not variables (optimiser state, `num_batches_tracked`)
/// are ignored.
pub fn load_into_varstore(
    vs: &tch::nn::VarStore,
    tensors: &HashMap<String, Tensor>,
    source: &Path,
) -> Result<()> {
    load_matching(vs, tensors, source, |_| true).map(|_| ())
}

/// Copies the variables for which `wanted(name)` holds (all of which must be present with
/// the same shape) and returns how many were copied; the others keep their initial values.
/// Transfer learning uses it to take a trunk and leave the output layers fresh.
pub fn load_matching(
    vs: &tch::nn::VarStore,
    tensors: &HashMap<String, Tensor>,
    source: &Path,
    wanted: impl Fn(&str) -> bool,
) -> Result<usize> {
    let mut missing = Vec::new();
    let mut copied = 0;
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vs.variables() {
            if !wanted(&name) {
                continue;
            }
            match tensors.get(&name) {
                Some(src) if src.size() == var.size() => {
                    var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
                    copied += 1;
                }
                Some(src) => anyhow::bail!(
                    "{}: '{name}' has shape {:?}, the model expects {:?} (was it trained with another architecture or class count?)",
                    source.display(),
                    src.size(),
                    var.size()
                ),
                None => missing.push(name),
            }
        }
        Ok(())
    })?;
    if !missing.is_empty() {
        missing.sort();
        anyhow::bail!(
            "{} lacks {} of the model's parameters (first: {}); it does not belong to this architecture",
            source.display(),
            missing.len(),
            missing[0]
        );
    }
    Ok(copied)
}

/// Every variable of a var store sorted by name: the order weight files and checkpoints use,
/// so two saves of the same model are byte-identical.
pub fn sorted_variables(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The `state.json` of a training run: how many epochs are done and which checkpoint file
/// holds them.
pub trait EpochState: Serialize {
    fn epochs_done(&self) -> usize;
    fn checkpoint_mut(&mut self) -> &mut String;
}

/// Writes `epoch-NNNN.safetensors` into `dir`, points `state.json` at it, then removes the
/// previous checkpoint. A kill at any moment leaves `state.json` naming a complete file.
pub fn save_epoch_checkpoint<S: EpochState>(
    dir: &Path,
    tensors: &[(String, Tensor)],
    state: &mut S,
) -> Result<()> {
    let name = format!("epoch-{:04}.safetensors", state.epochs_done());
    save_tensors(&dir.join(&name), tensors)?;
    let previous = std::mem::replace(state.checkpoint_mut(), name.clone());
    write_json_atomic(&dir.join("state.json"), state)?;
    if !previous.is_empty() && previous != name {
        let _ = std::fs::remove_file(dir.join(previous));
    }
    Ok(())
}

/// What an epoch competes on for "best weights": its validation score, or, in a run without
/// validation images, its number, so the latest epoch wins. Ties keep the earlier epoch.
pub fn selection_score(has_validation: bool, validation_score: f64, epoch: usize) -> f64 {
    if has_validation {
        validation_score
    } else {
        epoch as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_leave_no_temp_files() {
        let d = std::env::temp_dir().join(format!("myoscope-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("state.json");
        write_json_atomic(&p, &serde_json::json!({"epoch": 3})).unwrap();
        let v: serde_json::Value = read_json(&p).unwrap();
        assert_eq!(v["epoch"], 3);
        let t = d.join("w.safetensors");
        save_tensors(&t, &[("a".into(), Tensor::from_slice(&[1.0f32, 2.0]))]).unwrap();
        assert_eq!(load_tensors(&t).unwrap()["a"].size(), vec![2]);
        assert!(!d.join("w.safetensors.tmp").exists() && !d.join("state.json.tmp").exists());
    }

    #[derive(Serialize)]
    struct State {
        epochs_done: usize,
        checkpoint: String,
    }

    impl EpochState for State {
        fn epochs_done(&self) -> usize {
            self.epochs_done
        }
        fn checkpoint_mut(&mut self) -> &mut String {
            &mut self.checkpoint
        }
    }

    #[test]
    fn each_epoch_checkpoint_replaces_the_previous_one() {
        let d = std::env::temp_dir().join(format!("myoscope-rotate-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let t = [("a".to_string(), Tensor::from_slice(&[1.0f32]))];
        let mut s = State {
            epochs_done: 1,
            checkpoint: String::new(),
        };
        save_epoch_checkpoint(&d, &t, &mut s).unwrap();
        s.epochs_done = 2;
        save_epoch_checkpoint(&d, &t, &mut s).unwrap();
        assert_eq!(s.checkpoint, "epoch-0002.safetensors");
        assert!(d.join("epoch-0002.safetensors").is_file());
        assert!(!d.join("epoch-0001.safetensors").exists());
        let v: serde_json::Value = read_json(&d.join("state.json")).unwrap();
        assert_eq!(v["checkpoint"], "epoch-0002.safetensors");
        assert_eq!(selection_score(false, 0.3, 4), 4.0);
        assert_eq!(selection_score(true, 0.3, 4), 0.3);
        let _ = std::fs::remove_dir_all(&d);
    }
}
