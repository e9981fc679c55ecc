//! Adam (Kingma & Ba) with torch.optim.Adam's update and L2 weight decay, for the DEDL
//! segmentation recipe (lr 3.6e-4, weight decay 1e-5).
//!
//! Ours rather than `tch::nn::Adam` because its moments must go into the run's checkpoint: an
//! interrupted run resumes with the same optimiser state it had, not with cold moments that
//! would make the resumed run a different run.
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use tch::{nn::VarStore, Tensor};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Added to the gradient as `weight_decay · θ` (torch's coupled L2, as the paper's
    /// `torch.optim.Adam(weight_decay=1e-5)`).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

#[derive(Debug)]
struct Moments {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// Adam over every trainable variable of a var store, in name order.
#[derive(Debug)]
pub struct Adam {
    pub config: AdamConfig,
    params: Vec<Moments>,
    step: i64,
    /// Prefix of the state tensors' names, so two optimisers can share one checkpoint file.
    prefix: String,
}

impl Adam {
    pub fn new(vs: &VarStore, config: AdamConfig) -> Self {
        Self::with_prefix(vs, config, "adam")
    }

    pub fn with_prefix(vs: &VarStore, config: AdamConfig, prefix: &str) -> Self {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params = named
            .into_iter()
            .map(|(name, param)| Moments {
                exp_avg: param.zeros_like().set_requires_grad(false),
                exp_avg_sq: param.zeros_like().set_requires_grad(false),
                name,
                param,
            })
            .collect();
        Self {
            config,
            params,
            step: 0,
            prefix: prefix.to_string(),
        }
    }

    pub fn steps_taken(&self) -> i64 {
        self.step
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.param.zero_grad();
        }
    }

    pub fn step(&mut self) {
        self.step += 1;
        let c = &self.config;
        let t = self.step as f64;
        let bias_correction1 = 1.0 - c.beta1.powf(t);
        let bias_correction2_sqrt = (1.0 - c.beta2.powf(t)).sqrt();
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.param.grad();
                if !grad.defined() {
                    continue;
                }
                let grad = if c.weight_decay != 0.0 {
                    grad + &p.param * c.weight_decay
                } else {
                    grad
                };
                let _ = p.exp_avg.lerp_(&grad, 1.0 - c.beta1);
                let _ = p.exp_avg_sq.g_mul_scalar_(c.beta2);
                let _ = p.exp_avg_sq.g_add_(&(&grad * &grad * (1.0 - c.beta2)));
                let denom = p.exp_avg_sq.sqrt() / bias_correction2_sqrt + c.eps;
                let update = &p.exp_avg / denom * (c.lr / bias_correction1);
                let _ = p.param.g_sub_(&update);
            }
        });
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
    fn first_step_moves_each_weight_by_lr_against_its_gradient_sign() {
        // With bias correction, Adam's first update is lr · g / (|g| + eps) ≈ lr · sign(g).
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs
            .root()
            .var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0, 3.0]));
        let mut opt = Adam::new(
            &vs,
            AdamConfig {
                lr: 0.1,
                ..Default::default()
            },
        );
        let target = Tensor::from_slice(&[0.0f32, 0.0, 10.0]);
        let loss = (&w - &target).square().sum(Kind::Float);
        opt.zero_grad();
        loss.backward();
        opt.step();
        let got = Vec::<f32>::try_from(&w).unwrap();
        let want = [0.9f32, -1.9, 3.1];
        for (g, e) in got.iter().zip(want) {
            assert!((g - e).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn state_round_trips_through_a_checkpoint() {
        let make = || {
            let vs = nn::VarStore::new(Device::Cpu);
            let w = vs.root().var_copy("w", &Tensor::from_slice(&[0.5f32, 1.5]));
            (vs, w)
        };
        let (vs, w) = make();
        let mut opt = Adam::new(&vs, AdamConfig::default());
        for _ in 0..3 {
            opt.zero_grad();
            w.square().sum(Kind::Float).backward();
            opt.step();
        }
        let saved: HashMap<String, Tensor> = opt.state_tensors().into_iter().collect();
        let (vs2, _) = make();
        let mut again = Adam::new(&vs2, AdamConfig::default());
        again.load_state(&saved).unwrap();
        assert_eq!(again.steps_taken(), 3);
        let missing = HashMap::new();
        let err = again.load_state(&missing).unwrap_err().to_string();
        assert!(err.contains("adam.step"), "{err}");
    }
}
