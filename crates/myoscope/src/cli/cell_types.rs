//! `myoscope cell-types`: per-cell multiplex tables → each cell's phenotype and cell type →
//! each image's multi-label cell-type labels (DEDL's labelling step), and the agreement with
//! the table's own classification where it has one.
use crate::multilabel::dataset::csv_field;
use crate::multilabel::markers::{agreement, classify_table, image_labels, MarkerConfig};
use crate::training::checkpoint::{write_atomic, write_json_atomic};
use anyhow::{ensure, Result};
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CellTypeArgs {
    /// TOML: image_column, markers (column, threshold), ordered [[cell_type]] rules, other,
    /// min_cells, compare_column (configs/phenoptr-cell-types.toml is an example).
    #[arg(long)]
    pub config: PathBuf,
    /// Per-cell tables (inForm cell_seg_data.txt or CSV).
    #[arg(required = true)]
    pub tables: Vec<PathBuf>,
    /// Folder for cells.csv, labels.csv and cell_types.json.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: CellTypeArgs) -> Result<()> {
    let cfg = MarkerConfig::load(&a.config)?;
    let mut cells = Vec::new();
    for t in &a.tables {
        let mut part = classify_table(&cfg, t)?;
        eprintln!("{}: {} cells", t.display(), part.len());
        cells.append(&mut part);
    }
    std::fs::create_dir_all(&a.out)?;
    let classes = cfg.classes();
    let labels = image_labels(&cfg, &cells);
    ensure!(!labels.is_empty(), "no images found in the tables");

    let mut per_cell = String::from("image,row,phenotype,cell_type,reference\n");
    for c in &cells {
        writeln!(
            per_cell,
            "{},{},{},{},{}",
            csv_field(&c.image),
            c.row,
            csv_field(&c.phenotype),
            csv_field(c.cell_type.as_deref().unwrap_or("")),
            csv_field(c.reference.as_deref().unwrap_or(""))
        )?;
    }
    write_atomic(&a.out.join("cells.csv"), per_cell.as_bytes())?;

    // Both label forms the classifier reads: a ';'-separated list and one 0/1 column per class.
    let mut table = String::from("image,labels");
    for c in &classes {
        write!(table, ",{}", csv_field(c))?;
    }
    table.push('\n');
    for (image, present) in &labels {
        let names: Vec<&str> = present.keys().map(String::as_str).collect();
        write!(
            table,
            "{},{}",
            csv_field(image),
            csv_field(&names.join(";"))
        )?;
        for c in &classes {
            write!(table, ",{}", u8::from(present.contains_key(c)))?;
        }
        table.push('\n');
    }
    write_atomic(&a.out.join("labels.csv"), table.as_bytes())?;

    let agree = agreement(&cells);
    let summary = serde_json::json!({
        "config": cfg,
        "classes": classes,
        "cells": cells.len(),
        "images": labels,
        "agreement_with_reference": agree,
    });
    write_json_atomic(&a.out.join("cell_types.json"), &summary)?;

    println!("{} cells in {} images", cells.len(), labels.len());
    for (image, present) in &labels {
        let parts: Vec<String> = present.iter().map(|(t, n)| format!("{t} ({n})")).collect();
        println!("  {image}: {}", parts.join(", "));
    }
    if let Some(g) = agree {
        println!(
            "agreement with {:?}: {}/{} cells ({:.1}%), {} without a reference value",
            cfg.compare_column.as_deref().unwrap_or(""),
            g.agreeing,
            g.compared,
            100.0 * g.share,
            g.without_reference
        );
    }
    println!("results: {}", a.out.display());
    Ok(())
}
