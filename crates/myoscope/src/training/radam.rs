//! Rectified Adam (Liu et al. 2019), the optimiser Kabeya et al. trained with. Written to
//! match `torch.optim.RAdam` step for step (verified against fixtures made by
//! `scripts/oracles.py`): Adam's update is used only once the variance of the adaptive
//! learning rate is tractable (ρ_t > 5); before that the step is plain bias-corrected momentum.
use anyhow::{bail, Context, Result};
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
struct ParamState {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

#[derive(Debug)]
pub struct RAdam {
    pub config: RAdamConfig,
    params: Vec<ParamState>,
    step: i64,
}

impl RAdam {
    /// Optimises every trainable variable of the store (sorted by name, so the state file
    /// layout is stable).
    pub fn new(vs: &VarStore, config: RAdamConfig) -> Self {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params = named
            .into_iter()
            .map(|(name, param)| ParamState {
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
        let bias_correction2 = 1.0 - c.beta2.powf(t);
        let rho_inf = 2.0 / (1.0 - c.beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * t * c.beta2.powf(t) / bias_correction2;
        let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
            / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
            .sqrt();
        tch::no_grad(|| {
            for p in &mut self.params {
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
                let _ = p.exp_avg.lerp_(&grad, 1.0 - c.beta1);
                let _ = p.exp_avg_sq.g_mul_scalar_(c.beta2);
                let _ = p.exp_avg_sq.g_add_(&(&grad * &grad * (1.0 - c.beta2)));
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
        let mut out = vec![("radam.step".to_string(), Tensor::from_slice(&[self.step]))];
        for p in &self.params {
            out.push((
                format!("radam.exp_avg.{}", p.name),
                p.exp_avg.shallow_clone(),
            ));
            out.push((
                format!("radam.exp_avg_sq.{}", p.name),
                p.exp_avg_sq.shallow_clone(),
            ));
        }
        out
    }

    /// Restores what `state_tensors` saved; every parameter's moments must be present.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let step = state
            .get("radam.step")
            .context("checkpoint has no optimiser step count (radam.step)")?;
        self.step = step.int64_value(&[0]);
        tch::no_grad(|| -> Result<()> {
            for p in &mut self.params {
                for (kind, dst) in [
                    ("exp_avg", &mut p.exp_avg),
                    ("exp_avg_sq", &mut p.exp_avg_sq),
                ] {
                    let key = format!("radam.{kind}.{}", p.name);
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
                    dst.copy_(&src.to_kind(dst.kind()).to_device(dst.device()));
                }
            }
            Ok(())
        })
    }
}
