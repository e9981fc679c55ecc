//! Adam (Kingma & Ba) with torch.optim.Adam's update and L2 weight decay, for the DEDL
//! segmentation recipe (lr 3.6e-4, weight decay 1e-5).
//!
//! Ours rather than `tch::nn::Adam` because its moments must go into the run's checkpoint: an
//! interrupted run resumes with the same optimiser state it had, not with cold moments that
//! would make the resumed run a different run.
use super::moments::Moments;
use anyhow::Result;
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

/// Adam over every trainable variable of a var store, in name order.
#[derive(Debug)]
pub struct Adam {
    pub config: AdamConfig,
    moments: Moments,
}

impl Adam {
    pub fn new(vs: &VarStore, config: AdamConfig) -> Self {
        Self::with_prefix(vs, config, "adam")
    }

    /// An Adam whose checkpoint tensors are named `prefix.…`, so two optimisers can share one
    /// checkpoint file.
    pub fn with_prefix(vs: &VarStore, config: AdamConfig, prefix: &str) -> Self {
        Self {
            config,
            moments: Moments::new(vs, prefix),
        }
    }

    pub fn steps_taken(&self) -> i64 {
        self.moments.steps_taken()
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    pub fn zero_grad(&mut self) {
        self.moments.zero_grad();
    }

    pub fn step(&mut self) {
        let c = &self.config;
        let t = self.moments.next_step() as f64;
        let bias_correction1 = 1.0 - c.beta1.powf(t);
        let bias_correction2_sqrt = (1.0 - c.beta2.powf(t)).sqrt();
        tch::no_grad(|| {
            for p in self.moments.params_mut() {
                let grad = p.param.grad();
                if !grad.defined() {
                    continue;
                }
                let grad = if c.weight_decay != 0.0 {
                    grad + &p.param * c.weight_decay
                } else {
                    grad
                };
                p.accumulate(&grad, c.beta1, c.beta2);
                let denom = p.exp_avg_sq.sqrt() / bias_correction2_sqrt + c.eps;
                let update = &p.exp_avg / denom * (c.lr / bias_correction1);
                let _ = p.param.g_sub_(&update);
            }
        });
    }

    /// The step count and both moments of every parameter, for the checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.moments.state_tensors()
    }

    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.moments.load_state(state)
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
