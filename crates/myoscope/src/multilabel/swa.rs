//! Stochastic weight averaging (Izmailov et al.): the running mean of the weights at the end
//! of each epoch from a chosen epoch on, then batch-norm statistics recomputed for the
//! averaged weights, because the running statistics of any single epoch belong to other
//! weights. (The public DEDL code built an averaged model and never updated it.)
use anyhow::{ensure, Result};
use std::collections::HashMap;
use tch::{nn, Tensor};

/// The equal-weight mean of every trainable parameter over the snapshots taken so far.
pub struct SwaAverage {
    mean: Vec<(String, Tensor)>,
    snapshots: i64,
}

impl SwaAverage {
    pub fn new() -> Self {
        Self {
            mean: Vec::new(),
            snapshots: 0,
        }
    }

    pub fn snapshots(&self) -> i64 {
        self.snapshots
    }

    /// Folds the current weights into the mean: m ← m + (w − m)/(n + 1).
    pub fn add(&mut self, vs: &nn::VarStore) {
        tch::no_grad(|| {
            let vars = trainable(vs);
            if self.mean.is_empty() {
                self.mean = vars.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
            } else {
                let n = (self.snapshots + 1) as f64;
                for ((_, m), (_, w)) in self.mean.iter_mut().zip(&vars) {
                    let step = (w - &*m) / n;
                    let _ = m.g_add_(&step);
                }
            }
        });
        self.snapshots += 1;
    }

    /// Writes the mean into the model's parameters.
    pub fn copy_into(&self, vs: &nn::VarStore) -> Result<()> {
        ensure!(self.snapshots > 0, "no weights were averaged");
        let vars = vs.variables();
        tch::no_grad(|| -> Result<()> {
            for (name, m) in &self.mean {
                let mut v = vars
                    .get(name)
                    .ok_or_else(|| anyhow::anyhow!("averaged weight {name} is not in the model"))?
                    .shallow_clone();
                v.copy_(m);
            }
            Ok(())
        })
    }

    /// The mean and its count, for the checkpoint of an interrupted run.
    pub fn state_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .mean
            .iter()
            .map(|(n, t)| (format!("{prefix}.{n}"), t.shallow_clone()))
            .collect();
        out.push((
            format!("{prefix}.snapshots"),
            Tensor::from_slice(&[self.snapshots]),
        ));
        out
    }

    pub fn load_state(
        &mut self,
        vs: &nn::VarStore,
        state: &HashMap<String, Tensor>,
        prefix: &str,
    ) -> Result<()> {
        let Some(n) = state.get(&format!("{prefix}.snapshots")) else {
            return Ok(());
        };
        self.snapshots = n.int64_value(&[0]);
        self.mean.clear();
        if self.snapshots == 0 {
            return Ok(());
        }
        for (name, _) in trainable(vs) {
            let key = format!("{prefix}.{name}");
            let t = state
                .get(&key)
                .ok_or_else(|| anyhow::anyhow!("the checkpoint lacks the averaged weight {key}"))?;
            self.mean.push((name, t.copy()));
        }
        Ok(())
    }
}

impl Default for SwaAverage {
    fn default() -> Self {
        Self::new()
    }
}

fn trainable(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// The momentum every batch norm in the registry updates its running statistics with
/// (PyTorch's and tch's default).
pub const BN_MOMENTUM: f64 = 0.1;

/// Recomputes every batch norm's running mean and variance as the plain average of the batch
/// statistics over `batches` (PyTorch's `update_bn`, i.e. momentum `None`). Each forward pass
/// in training mode moves a running statistic r to (1 − m)·r + m·b; the batch statistic b is
/// recovered from that and folded into an equal-weight mean. Returns the number of batch
/// norms updated (0: nothing to do, e.g. for LayerNorm models).
pub fn update_batch_norm(
    vs: &nn::VarStore,
    batches: impl IntoIterator<Item = Result<Tensor>>,
    forward_train: impl Fn(&Tensor),
) -> Result<usize> {
    let vars = vs.variables();
    let mut stats: Vec<Tensor> = vars
        .iter()
        .filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"))
        .map(|(_, t)| t.shallow_clone())
        .collect();
    if stats.is_empty() {
        return Ok(0);
    }
    let m = BN_MOMENTUM;
    let mut means: Vec<Tensor> = stats.iter().map(Tensor::zeros_like).collect();
    let mut seen = 0i64;
    for batch in batches {
        let batch = batch?;
        let before: Vec<Tensor> = stats.iter().map(Tensor::copy).collect();
        tch::no_grad(|| forward_train(&batch));
        seen += 1;
        tch::no_grad(|| {
            for ((r, b0), mean) in stats.iter().zip(&before).zip(means.iter_mut()) {
                let batch_stat = (r - b0 * (1.0 - m)) / m;
                let step = (batch_stat - &*mean) / seen as f64;
                let _ = mean.g_add_(&step);
            }
        });
    }
    ensure!(seen > 0, "no batches to recompute batch-norm statistics on");
    tch::no_grad(|| {
        for (r, mean) in stats.iter_mut().zip(&means) {
            r.copy_(mean);
        }
    });
    Ok(stats.len() / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::Module, nn::ModuleT, Device, Kind};

    #[test]
    fn the_average_is_the_mean_of_the_snapshots() {
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "fc", 3, 2, Default::default());
        let mut swa = SwaAverage::new();
        let mut sum = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        for k in 0..4 {
            tch::no_grad(|| {
                let mut w = lin.ws.shallow_clone();
                w.copy_(&(Tensor::ones([2, 3], (Kind::Float, Device::Cpu)) * (k * k) as f64));
            });
            sum += &lin.ws.detach();
            swa.add(&vs);
        }
        swa.copy_into(&vs).unwrap();
        assert!(lin.ws.allclose(&(sum / 4.0), 1e-6, 1e-6, false));
        assert_eq!(swa.snapshots(), 4);
        let xs = Tensor::ones([1, 3], (Kind::Float, Device::Cpu));
        assert_eq!(lin.forward(&xs).size(), vec![1, 2]);
    }

    #[test]
    fn batch_norm_statistics_become_the_mean_of_batch_statistics() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = nn::batch_norm2d(vs.root() / "bn", 2, Default::default());
        let batches: Vec<Tensor> = (0..3)
            .map(|k| {
                Tensor::randn([4, 2, 3, 3], (Kind::Float, Device::Cpu)) * (k + 1) as f64 + k as f64
            })
            .collect();
        let n = update_batch_norm(&vs, batches.iter().map(|b| Ok(b.shallow_clone())), |x| {
            let _ = bn.forward_t(x, true);
        })
        .unwrap();
        assert_eq!(n, 1);
        // PyTorch's update_bn: mean of per-batch means and of per-batch unbiased variances.
        let dims = &[0i64, 2, 3][..];
        let means = Tensor::stack(
            &batches
                .iter()
                .map(|b| b.mean_dim(dims, false, None))
                .collect::<Vec<_>>(),
            0,
        )
        .mean_dim(0, false, None);
        let vars = Tensor::stack(
            &batches
                .iter()
                .map(|b| b.var_dim(dims, true, false))
                .collect::<Vec<_>>(),
            0,
        )
        .mean_dim(0, false, None);
        assert!(bn.running_mean.allclose(&means, 1e-5, 1e-5, false));
        assert!(bn.running_var.allclose(&vars, 1e-4, 1e-4, false));
    }
}
