//! The `myoscope` command line: one sub-command per job, each in its own file.
pub mod bench;
pub mod cell_types;
pub mod cv;
pub mod demo;
pub mod diagnose;
pub mod evaluate;
pub mod explain;
pub mod export;
pub mod multilabel;
pub mod predict;
pub mod reader_study;
pub mod segment;
pub mod serve;
pub mod train;
pub mod weights;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "myoscope",
    version,
    about = "Deep learning on biopsy microscope images"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train an aggregated-patch classifier on a manifest or class folders.
    Train(train::TrainArgs),
    /// Classify photos with a trained model: per-image and per-slide probabilities.
    Predict(predict::PredictArgs),
    /// Cross-validate: test hold-out by slide, k fold models (optionally two-step), one ensemble.
    Cv(cv::CvArgs),
    /// Evaluate an ensemble on its test set: metrics.json, ROC/confusion pictures, report.html.
    Evaluate(evaluate::EvaluateArgs),
    /// Two-step diagnosis of slides with an ensemble: group, threshold call, subtype.
    Diagnose(diagnose::DiagnoseArgs),
    /// Grad-CAM heat-maps, AI-focused/unfocused images and the pointing game.
    Explain(explain::ExplainArgs),
    /// Generate a synthetic H&E muscle data set, train on it and evaluate on held-out slides.
    Demo(demo::DemoArgs),
    /// Time forward and training steps next to the same model in PyTorch.
    Bench(bench::BenchArgs),
    /// Offline pretrained weights: import, list, verify against PyTorch.
    Weights(weights::WeightsArgs),
    /// Export trained models (a run or an ensemble) to ONNX for ONNX Runtime.
    Export(export::ExportArgs),
    /// Reader study on AI-focused/unfocused images: per-reader accuracy, paired t-test, confusion matrices.
    ReaderStudy(reader_study::ReaderStudyArgs),
    /// DEDL nucleus segmentation: train, predict (mask, overlay, QuPath GeoJSON), evaluate.
    Segment(segment::SegmentArgs),
    /// Multiplex per-cell tables → phenotypes, cell types and per-image multi-label labels.
    CellTypes(cell_types::CellTypeArgs),
    /// DEDL multi-label classification: k-fold × seeds protocol, focal loss, SWA, F1 report.
    Multilabel(multilabel::MultiLabelArgs),
    /// The clinic web app and JSON API: diagnosis, heat-maps and segmentation over HTTP.
    Serve(serve::ServeArgs),
    /// List the model architectures.
    Models,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Cv(a) => cv::run_cli(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Diagnose(a) => diagnose::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Segment(a) => segment::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Weights(a) => weights::run(a),
        Command::Export(a) => export::run(a),
        Command::ReaderStudy(a) => reader_study::run(a),
        Command::CellTypes(a) => cell_types::run(a),
        Command::Multilabel(a) => multilabel::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Models => {
            let width = crate::models::ARCHITECTURES
                .iter()
                .map(|(n, _)| n.len())
                .max()
                .unwrap_or(0);
            for (name, about) in crate::models::ARCHITECTURES {
                println!("{name:<width$} {about}");
            }
            Ok(())
        }
    }
}
