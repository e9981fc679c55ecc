//! `myoscope cell-types` on the real inForm per-cell tables of the phenoptr sample: phenotypes,
//! cell types and per-field labels, the agreement with inForm's own phenotype column, and the
//! errors for a bad table or config.
mod common;

use std::process::{Command, Output};

fn myoscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_myoscope"))
        .args(args)
        .output()
        .expect("run myoscope")
}

#[test]
fn phenoptr_tables_become_per_field_labels() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let dir = data.join("multiplex/phenoptr_inform_sample");
    let mut tables: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            p.to_str()
                .filter(|s| s.ends_with("_cell_seg_data.txt"))
                .map(String::from)
        })
        .collect();
    tables.sort();
    assert_eq!(tables.len(), 4, "the sample has four per-cell tables");
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/phenoptr-cell-types.toml"
    );
    let out = common::scratch("cell-types");
    let out_s = out.to_str().unwrap();
    let mut args = vec!["cell-types", "--config", config, "--out", out_s];
    args.extend(tables.iter().map(String::as_str));
    let run = myoscope(&args);
    let text = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(text.contains("619 cells in 4 images"), "{text}");

    let labels = std::fs::read_to_string(out.join("labels.csv")).unwrap();
    let header = labels.lines().next().unwrap();
    assert_eq!(header, "image,labels,Epi,Cytotoxic T,Helper T,B,Other");
    assert_eq!(labels.lines().count(), 5);
    // Field 2 holds B cells (249 by inForm) and both T-cell kinds.
    let field2 = labels.lines().find(|l| l.contains("IM3_2")).unwrap();
    assert!(
        field2.contains("B") && field2.contains("Helper T"),
        "{field2}"
    );

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cell_types.json")).unwrap())
            .unwrap();
    let agree = &summary["agreement_with_reference"];
    eprintln!(
        "agreement with inForm's phenotypes: {} of {} cells",
        agree["agreeing"], agree["compared"]
    );
    assert_eq!(agree["compared"], 618);
    assert_eq!(agree["without_reference"], 1);
    let share = agree["share"].as_f64().unwrap();
    assert!(share > 0.85, "thresholds agree with inForm on only {share}");
    let cells = std::fs::read_to_string(out.join("cells.csv")).unwrap();
    assert_eq!(cells.lines().count(), 620);

    // Bad input: a config naming a column the table lacks, a marker the rules do not define.
    let bad = out.join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(config)
            .unwrap()
            .replace("Entire Cell Cy5 Mean", "Entire Cell CD19 Mean"),
    )
    .unwrap();
    let run = myoscope(&[
        "cell-types",
        "--config",
        bad.to_str().unwrap(),
        "--out",
        out_s,
        &tables[0],
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && err.contains("Entire Cell CD19 Mean"),
        "{err}"
    );
    std::fs::write(
        &bad,
        std::fs::read_to_string(config)
            .unwrap()
            .replace("positive = [\"Cy5\"]", "positive = [\"CD19\"]"),
    )
    .unwrap();
    let run = myoscope(&[
        "cell-types",
        "--config",
        bad.to_str().unwrap(),
        "--out",
        out_s,
        &tables[0],
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && err.contains("CD19"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
