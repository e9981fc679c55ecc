//! myoscope: deep learning on biopsy microscope images.
pub mod cli;
pub mod config;
pub mod cv;
pub mod data;
pub mod device;
pub mod diagnose;
pub mod ensemble;
pub mod evaluation;
pub mod explain;
pub mod inference;
pub mod models;
pub mod reader_study;
pub mod runtime;
pub mod stats;
pub mod synth;
pub mod training;
pub mod weights;
