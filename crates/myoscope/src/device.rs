//! `--device cpu|cuda|cuda:N|auto` → a libtorch device, with a clear error where CUDA is
//! asked for and libtorch cannot see a GPU.
use anyhow::{bail, Result};
use tch::Device;

pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    Ok(match spec.as_str() {
        "cpu" => Device::Cpu,
        "auto" => Device::cuda_if_available(),
        "cuda" | "gpu" => require_cuda(0)?,
        s if s.starts_with("cuda:") => {
            let n: usize = s[5..].parse().map_err(|_| {
                anyhow::anyhow!("device '{spec}': the GPU index after 'cuda:' must be a number")
            })?;
            require_cuda(n)?
        }
        _ => bail!("unknown device '{spec}'; use cpu, cuda, cuda:N or auto"),
    })
}

fn require_cuda(n: usize) -> Result<Device> {
    let count = tch::Cuda::device_count() as usize;
    if count == 0 {
        bail!("CUDA was requested but libtorch sees no GPU (is the CUDA build of torch installed? run scripts/setup.sh --cuda); use --device cpu");
    }
    if n >= count {
        bail!(
            "cuda:{n} requested but only {count} GPU(s) are visible (cuda:0..cuda:{})",
            count - 1
        );
    }
    Ok(Device::Cuda(n))
}

/// What a run records about where it ran.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_nonsense() {
        assert_eq!(parse_device("CPU").unwrap(), Device::Cpu);
        assert!(parse_device("tpu")
            .unwrap_err()
            .to_string()
            .contains("cpu, cuda"));
        assert!(parse_device("cuda:x").is_err());
        let _ = parse_device("auto").unwrap();
    }
}
