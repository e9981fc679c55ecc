//! The suite's results: `bench.json` (every figure, every run's time, machine and versions)
//! and `bench.md` (the table people read).
use super::machine::Machine;
use super::{Precision, Workload};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// One engine's figures for one case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Side {
    pub engine: String,
    pub items_per_run: f64,
    /// Items per second at the median run time.
    pub throughput: f64,
    pub median_s: f64,
    pub times_s: Vec<f64>,
    /// Peak resident memory (VmHWM) of the worker process that ran only this case; PyTorch's
    /// pipeline figure adds its DataLoader workers' peaks.
    pub peak_rss_mib: f64,
    pub versions: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    pub name: String,
    pub workload: Workload,
    pub precision: Precision,
    pub unit: String,
    /// Exactly what one run does.
    pub detail: String,
    pub warmup: usize,
    pub runs: usize,
    /// Our throughput / PyTorch's (> 1: myoscope is faster); null without PyTorch.
    pub ratio: Option<f64>,
    pub ours: Side,
    pub pytorch: Option<Side>,
    /// Why PyTorch's side is missing, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pytorch_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteReport {
    pub format: String,
    pub created: String,
    pub command: String,
    pub quick: bool,
    pub threads: i64,
    pub machine: Machine,
    pub git_commit: Option<String>,
    pub cases: Vec<CaseResult>,
    /// Total wall time of the suite.
    pub wall_s: f64,
}

impl SuiteReport {
    /// Writes `bench.json` and `bench.md` into `dir` (each under a temporary name, then renamed).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_atomic(
            &dir.join("bench.json"),
            &(serde_json::to_string_pretty(self)? + "\n"),
        )?;
        write_atomic(&dir.join("bench.md"), &self.markdown())
    }

    /// The Markdown table with its heading and notes.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# myoscope bench{}\n\n{} · {} ({} logical CPUs{}) · {} threads · load average at start {}\n\n`{}`\n",
            if self.quick { " (quick)" } else { "" },
            self.created,
            self.machine.cpu,
            self.machine.logical_cpus,
            if self.machine.cpu_features.is_empty() {
                String::new()
            } else {
                format!("; {}", self.machine.cpu_features.join(", "))
            },
            self.threads,
            self.machine
                .load_average
                .map_or("?".to_string(), |l| format!("{l:.2}")),
            self.command
        );
        s.push_str(&self.table());
        let _ = writeln!(s, "\nRatio = myoscope's throughput / PyTorch's (> 1: myoscope is faster), from the median of interleaved runs of each side; peak RSS is each side's own worker process.\n");
        for c in &self.cases {
            let _ = writeln!(
                s,
                "- **{}** ({} warm-up, {} timed runs per side): {}",
                c.name, c.warmup, c.runs, c.detail
            );
            if let Some(e) = &c.pytorch_error {
                let _ = writeln!(s, "  PyTorch: not measured ({e})");
            }
        }
        if let Some(v) = self.cases.iter().find_map(|c| c.pytorch.as_ref()) {
            let _ = writeln!(s, "\nPyTorch side: {}", compact(&v.versions));
        }
        if let Some(c) = self.cases.first() {
            let _ = writeln!(s, "Our side: {}", compact(&c.ours.versions));
        }
        s
    }

    /// Just the table.
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| case | unit | myoscope | PyTorch | ratio | median s (ours / PyTorch) | peak RSS MiB (ours / PyTorch) |\n|---|---|---:|---:|---:|---:|---:|\n",
        );
        for c in &self.cases {
            let (tp, med, rss) = match &c.pytorch {
                Some(p) => (
                    fmt3(p.throughput),
                    format!("{} / {}", fmt3(c.ours.median_s), fmt3(p.median_s)),
                    format!("{:.0} / {:.0}", c.ours.peak_rss_mib, p.peak_rss_mib),
                ),
                None => (
                    "—".into(),
                    format!("{} / —", fmt3(c.ours.median_s)),
                    format!("{:.0} / —", c.ours.peak_rss_mib),
                ),
            };
            let ours = if c.ours.engine == "myoscope" {
                fmt3(c.ours.throughput)
            } else {
                format!("{} ({})", fmt3(c.ours.throughput), c.ours.engine)
            };
            let _ = writeln!(
                s,
                "| {} | {}/s | {} | {} | {} | {} | {} |",
                c.name,
                c.unit,
                ours,
                tp,
                c.ratio.map_or("—".to_string(), |r| format!("**{r:.2}×**")),
                med,
                rss
            );
        }
        s
    }
}

/// Three significant figures, without scientific notation for ordinary values.
fn fmt3(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn compact(v: &Value) -> String {
    match v.as_object() {
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_str().map_or(v.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join(", "),
        None => v.to_string(),
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(engine: &str, median_s: f64) -> Side {
        Side {
            engine: engine.into(),
            items_per_run: 16.0,
            throughput: 16.0 / median_s,
            median_s,
            times_s: vec![median_s],
            peak_rss_mib: 100.0,
            versions: serde_json::json!({"torch": "2.13.0"}),
        }
    }

    #[test]
    fn json_and_markdown_carry_the_ratio_or_null() {
        let ours = side("myoscope", 0.5);
        let torch = side("PyTorch 2.13.0 eager fp32", 1.0);
        let mk = |name: &str, pytorch: Option<Side>| CaseResult {
            name: name.into(),
            workload: Workload::ClassifierInference,
            precision: Precision::Fp32,
            unit: "patches".into(),
            detail: "d".into(),
            warmup: 1,
            runs: 1,
            ratio: pytorch.as_ref().map(|p| ours.throughput / p.throughput),
            ours: ours.clone(),
            pytorch_error: pytorch.is_none().then(|| "no PyTorch".to_string()),
            pytorch,
        };
        let report = SuiteReport {
            format: "myoscope-bench/1".into(),
            created: "now".into(),
            command: "myoscope bench".into(),
            quick: true,
            threads: 2,
            machine: Machine::current(),
            git_commit: None,
            cases: vec![mk("a", Some(torch)), mk("b", None)],
            wall_s: 1.0,
        };
        let dir =
            std::env::temp_dir().join(format!("myoscope-bench-report-{}", std::process::id()));
        report.write(&dir).unwrap();
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("bench.json")).unwrap())
                .unwrap();
        assert_eq!(v["cases"][0]["ratio"].as_f64(), Some(2.0));
        assert!(v["cases"][1]["ratio"].is_null());
        assert_eq!(v["cases"][0]["pytorch"]["throughput"].as_f64(), Some(16.0));
        let md = std::fs::read_to_string(dir.join("bench.md")).unwrap();
        assert!(
            md.contains("| a | patches/s | 32.0 | 16.0 | **2.00×** |"),
            "{md}"
        );
        assert!(md.contains("| b | patches/s | 32.0 | — | — |"), "{md}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
