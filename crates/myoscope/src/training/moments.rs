//! The running first and second moments of every trainable variable, which Adam and RAdam
//! share, and their checkpoint form. Kept in the run's checkpoint so that a resumed run
//! continues with the optimiser state it had, not with cold moments.
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use tch::{nn::VarStore, Tensor};

#[derive(Debug)]
pub struct ParamMoments {
    pub name: String,
    pub param: Tensor,
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
}

impl ParamMoments {
    /// m ← β₁m + (1−β₁)g and v ← β₂v + (1−β₂)g², as torch does it (lerp for m).
    pub fn accumulate(&mut self, grad: &Tensor, beta1: f64, beta2: f64) {
        let _ = self.exp_avg.lerp_(grad, 1.0 - beta1);
        let _ = self.exp_avg_sq.g_mul_scalar_(beta2);
        let _ = self.exp_avg_sq.g_add_(&(grad * grad * (1.0 - beta2)));
    }
}

/// Moments over every trainable variable of a var store, in name order (so the state file
/// layout is stable), and the step count.
#[derive(Debug)]
pub struct Moments {
    params: Vec<ParamMoments>,
    step: i64,
    /// Prefix of the state tensors' names, so two optimisers can share one checkpoint file.
    prefix: String,
}

impl Moments {
    pub fn new(vs: &VarStore, prefix: &str) -> Self {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params = named
            .into_iter()
            .map(|(name, param)| ParamMoments {
                exp_avg: param.zeros_like().set_requires_grad(false),
                exp_avg_sq: param.zeros_like().set_requires_grad(false),
                name,
                param,
            })
            .collect();
        Self {
            params,
            step: 0,
            prefix: prefix.to_string(),
        }
    }

    pub fn steps_taken(&self) -> i64 {
        self.step
    }

    /// Counts one more step and returns its number (1 for the first).
    pub fn next_step(&mut self) -> i64 {
        self.step += 1;
        self.step
    }

    pub fn params_mut(&mut self) -> &mut [ParamMoments] {
        &mut self.params
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.param.zero_grad();
        }
    }

    /// The step count and both moments of every parameter, for the checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            format!("{}.step", self.prefix),
            Tensor::from_slice(&[self.step]),
        )];
        for p in &self.params {
            out.push((
                format!("{}.exp_avg.{}", self.prefix, p.name),
                p.exp_avg.shallow_clone(),
            ));
            out.push((
                format!("{}.exp_avg_sq.{}", self.prefix, p.name),
                p.exp_avg_sq.shallow_clone(),
            ));
        }
        out
    }

    /// Restores what `state_tensors` saved; every parameter's moments must be present.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let key = format!("{}.step", self.prefix);
        let step = state
            .get(&key)
            .with_context(|| format!("checkpoint has no optimiser step count ({key})"))?;
        self.step = step.int64_value(&[0]);
        tch::no_grad(|| -> Result<()> {
            for p in &mut self.params {
                for (kind, dst) in [
                    ("exp_avg", &mut p.exp_avg),
                    ("exp_avg_sq", &mut p.exp_avg_sq),
                ] {
                    let key = format!("{}.{kind}.{}", self.prefix, p.name);
                    let src = state
                        .get(&key)
                        .with_context(|| format!("checkpoint lacks optimiser state {key}"))?;
                    if src.size() != dst.size() {
                        bail!(
                            "optimiser state {key} has shape {:?}, expected {:?}",
                            src.size(),
                            dst.size()
                        );
                    }
                    dst.copy_(&src.to_device(dst.device()).to_kind(dst.kind()));
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    #[test]
    fn state_round_trips_and_names_what_is_missing_or_misshapen() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&[0.5f32, 1.5]));
        let mut m = Moments::new(&vs, "opt");
        w.square().sum(Kind::Float).backward();
        m.next_step();
        m.params_mut()[0].accumulate(&w.grad(), 0.9, 0.999);
        let saved: HashMap<String, Tensor> = m.state_tensors().into_iter().collect();

        let vs2 = nn::VarStore::new(Device::Cpu);
        let _ = vs2
            .root()
            .var_copy("w", &Tensor::from_slice(&[0.0f32, 0.0]));
        let mut again = Moments::new(&vs2, "opt");
        again.load_state(&saved).unwrap();
        assert_eq!(again.steps_taken(), 1);
        let m1 = Vec::<f32>::try_from(&again.params_mut()[0].exp_avg).unwrap();
        // m = 0.1 · g with g = 2w.
        assert!(
            (m1[0] - 0.1).abs() < 1e-6 && (m1[1] - 0.3).abs() < 1e-6,
            "{m1:?}"
        );

        let err = Moments::new(&vs2, "other")
            .load_state(&saved)
            .unwrap_err()
            .to_string();
        assert!(err.contains("other.step"), "{err}");
        let mut bad = saved;
        bad.insert(
            "opt.exp_avg.w".into(),
            Tensor::zeros([3], (Kind::Float, Device::Cpu)),
        );
        let err = again.load_state(&bad).unwrap_err().to_string();
        assert!(err.contains("shape"), "{err}");
    }
}
