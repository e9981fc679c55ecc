//! `myoscope reader-study`: pathologists' answers on AI-focused and AI-unfocused images →
//! per-reader accuracy, a paired t-test over readers, confusion matrices (JSON + pictures).
use crate::reader_study::{self, ReaderStudyReport};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ReaderStudyArgs {
    /// CSV with columns reader, case, condition (focused/unfocused), answer, truth.
    pub answers: PathBuf,
    /// Folder for reader_study.json and the pictures.
    #[arg(long)]
    pub out: PathBuf,
    /// Coverage of the confidence interval of the mean accuracy difference.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
}

pub fn run(a: ReaderStudyArgs) -> Result<()> {
    if !(a.confidence > 0.0 && a.confidence < 1.0) {
        bail!(
            "--confidence must lie strictly between 0 and 1, got {}",
            a.confidence
        );
    }
    let report = reader_study::run(&a.answers, &a.out, a.confidence)?;
    print_table(&report);
    println!("results: {}", a.out.join("reader_study.json").display());
    Ok(())
}

fn print_table(r: &ReaderStudyReport) {
    let width = r
        .readers
        .iter()
        .map(|x| x.reader.chars().count())
        .max()
        .unwrap_or(0)
        .max("reader".len());
    println!(
        "{:<width$}  {:>7}  {:>12}  {:>14}",
        "reader", "cases", "focused acc", "unfocused acc"
    );
    for x in &r.readers {
        println!(
            "{:<width$}  {:>7}  {:>12.4}  {:>14.4}",
            x.reader, x.cases, x.focused_accuracy, x.unfocused_accuracy
        );
    }
    println!(
        "{:<width$}  {:>7}  {:>12.4}  {:>14.4}",
        "mean", r.cases, r.mean_accuracy.focused, r.mean_accuracy.unfocused
    );
    println!("{}", r.test_line());
}
