//! Checks mapped tensors against the model they are meant for: every parameter present with
//! its shape, nothing left over. A mismatch lists the keys and, where another architecture
//! would take the file as it is, names that architecture.
use super::keymap::Mapped;
use crate::models::{build_backbone, ARCHITECTURES};
use anyhow::{bail, Result};
use std::collections::HashMap;
use tch::{nn, Device, Tensor};

/// Tensors in the model's variable order, ready to save.
pub struct Fitted {
    pub tensors: Vec<(String, Tensor)>,
    /// Output classes of the file's classification head (1000 for ImageNet); `None` for a
    /// trunk-only file.
    pub classes: Option<i64>,
    pub head: String,
    pub parameters: i64,
}

/// A model's variables as (name, shape), in natural order.
pub type Variables = Vec<(String, Vec<i64>)>;

/// The model's variables for `arch` with a `classes`-way head (none if 0), and the head name.
pub fn model_variables(arch: &str, classes: i64) -> Result<(Variables, String)> {
    let vs = nn::VarStore::new(Device::Cpu);
    let trunk = build_backbone(arch, &vs.root(), 3)?;
    let head = trunk.head_name().to_string();
    if classes > 0 {
        let mut p = vs.root();
        for part in head.split('.') {
            p = &p / part;
        }
        let _ = nn::linear(p, trunk.out_channels(), classes, Default::default());
    }
    let mut vars: Variables = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.size()))
        .collect();
    vars.sort_by_key(|v| natural_key(&v.0));
    Ok((vars, head))
}

/// Orders `blocks.10` after `blocks.9`.
fn natural_key(name: &str) -> Vec<(u64, String)> {
    name.split('.')
        .map(|p| match p.parse::<u64>() {
            Ok(n) => (n, String::new()),
            Err(_) => (u64::MAX, p.to_string()),
        })
        .collect()
}

pub fn fit(arch: &str, mapped: &Mapped, file: &str) -> Result<Fitted> {
    let (_, head) = model_variables(arch, 1)?;
    let head_weight = format!("{head}.weight");
    let given: HashMap<&str, &Tensor> = mapped
        .tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    let classes = given.get(head_weight.as_str()).map(|t| t.size()[0]);
    let (vars, _) = model_variables(arch, classes.unwrap_or(0))?;

    let mut missing = Vec::new();
    let mut wrong_shape = Vec::new();
    let mut tensors = Vec::with_capacity(vars.len());
    for (name, shape) in &vars {
        match given.get(name.as_str()) {
            Some(t) if &t.size() == shape => {
                tensors.push((name.clone(), t.to_kind(tch::Kind::Float).contiguous()))
            }
            Some(t) => wrong_shape.push(format!("{name}: file {:?}, model {shape:?}", t.size())),
            None => missing.push(name.clone()),
        }
    }
    let known: std::collections::HashSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let unexpected: Vec<String> = mapped
        .tensors
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| !known.contains(n.as_str()))
        .collect();
    if missing.is_empty() && wrong_shape.is_empty() && unexpected.is_empty() {
        let parameters = tensors
            .iter()
            .filter(|(n, _)| !n.contains("running_"))
            .map(|(_, t)| t.numel() as i64)
            .sum();
        return Ok(Fitted {
            tensors,
            classes,
            head,
            parameters,
        });
    }
    let list = |v: &[String]| {
        let mut s = v.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 8 {
            s.push_str(&format!(", … ({} in all)", v.len()));
        }
        s
    };
    let mut msg = format!("{file} does not fit {arch} ({}):", mapped.convention);
    if !wrong_shape.is_empty() {
        msg.push_str(&format!("\n  shape mismatch: {}", list(&wrong_shape)));
    }
    if !missing.is_empty() {
        msg.push_str(&format!("\n  missing from the file: {}", list(&missing)));
    }
    if !unexpected.is_empty() {
        msg.push_str(&format!(
            "\n  unexpected in the file: {}",
            list(&unexpected)
        ));
    }
    match guess_architecture(mapped, arch) {
        Some(other) => msg.push_str(&format!(
            "\n  its keys and shapes match {other}: import it with --arch {other}"
        )),
        None => msg.push_str("\n  (no registered architecture takes this file as it is)"),
    }
    bail!(msg)
}

/// Another registered architecture whose variables the file covers exactly.
fn guess_architecture(mapped: &Mapped, tried: &str) -> Option<String> {
    let given: HashMap<&str, Vec<i64>> = mapped
        .tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.size()))
        .collect();
    ARCHITECTURES
        .iter()
        .map(|(a, _)| *a)
        .filter(|a| *a != tried)
        // Only families whose first convolution the file has: building every registered model
        // (several of ~90M parameters) to compare names would take seconds.
        .filter(|a| super::profile::first_conv(a).is_none_or(|c| given.contains_key(c)))
        .find_map(|arch| {
            let (vars, head) = model_variables(arch, 1).ok()?;
            let fits = vars.iter().all(|(n, s)| {
                n.starts_with(&format!("{head}.")) || given.get(n.as_str()).is_some_and(|g| g == s)
            }) && given.len() <= vars.len();
            fits.then(|| arch.to_string())
        })
}
