//! Rectified Adam (Liu et al. 2019), the optimiser Kabeya et al. trained with. Written to
//! match `torch.optim.RAdam` step for step (verified against fixtures made by
//! `scripts/oracles.py`): Adam's update is used only once the variance of the adaptive
//! learning rate is tractable (ρ_t > 5); before that the step is plain bias-corrected momentum.
use super::moments::Moments;
use anyhow::Result;
use std::collections::HashMap;
use tch::{nn::VarStore, Tensor};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RAdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW-style decay (scale the weights) instead of adding `wd·θ` to the gradient.
    pub decoupled_weight_decay: bool,
}

impl Default for RAdamConfig {
    /// torch's defaults with the paper's learning rate (1e-4).
    fn default() -> Self {
        Self {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }
}

#[derive(Debug)]
pub struct RAdam {
    pub config: RAdamConfig,
    moments: Moments,
}

impl RAdam {
    /// Optimises every trainable variable of the store (sorted by name, so the state file
    /// layout is stable).
    pub fn new(vs: &VarStore, config: RAdamConfig) -> Self {
        Self {
            config,
            moments: Moments::new(vs, "radam"),
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
        let bias_correction2 = 1.0 - c.beta2.powf(t);
        let rho_inf = 2.0 / (1.0 - c.beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * t * c.beta2.powf(t) / bias_correction2;
        let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
            / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
            .sqrt();
        tch::no_grad(|| {
            for p in self.moments.params_mut() {
                let grad = p.param.grad();
                if !grad.defined() {
                    continue;
                }
                let grad = if c.weight_decay != 0.0 && !c.decoupled_weight_decay {
                    grad + &p.param * c.weight_decay
                } else {
                    grad
                };
                if c.weight_decay != 0.0 && c.decoupled_weight_decay {
                    let _ = p.param.g_mul_scalar_(1.0 - c.lr * c.weight_decay);
                }
                p.accumulate(&grad, c.beta1, c.beta2);
                let corrected = &p.exp_avg / bias_correction1;
                let update = if rho_t > 5.0 {
                    let adaptive = bias_correction2.sqrt() / (p.exp_avg_sq.sqrt() + c.eps);
                    corrected * adaptive * (c.lr * rect)
                } else {
                    corrected * c.lr
                };
                let _ = p.param.g_sub_(&update);
            }
        });
    }

    /// Optimiser state for a checkpoint: moments per parameter and the step count.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.moments.state_tensors()
    }

    /// Restores what `state_tensors` saved; every parameter's moments must be present.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.moments.load_state(state)
    }
}
