//! The fluorescence reader and the tiler on the real files in ../shared/data/multiplex and
//! ../shared/data/nuclei-dsb2018 (each test prints SKIP and returns where that folder is
//! absent).
//!
//! Reference numbers come from an independent decoder: tifffile 2026.3.3 + imagecodecs
//! 2026.3.6 + NumPy (`tifffile.TiffFile(path).pages[i].asarray()`, `np.percentile(a, [1, 99.8])`,
//! `np.unique`), run once on these files.
mod common;
use myoscope::fluorescence::normalise::percentile;
use myoscope::fluorescence::{
    read_channel, read_label_map, ChannelLayout, ChannelSelector, ChannelStack, ClassMapping,
    Normalisation, SampleType,
};
use myoscope::segmentation::tiling::{PlaneStack, Stitcher, TileConfig, TileGrid};
use std::collections::HashMap;
use std::path::PathBuf;

const INFORM: &str = "multiplex/phenoptr_inform_sample/FIHC4__0929309_HP_IM3_2_component_data.tif";
const SEG_MAPS: &str =
    "multiplex/phenoptr_inform_sample/FIHC4__0929309_HP_IM3_2_binary_seg_maps.tif";
const CELLS: &str = "multiplex/phenoptr_inform_sample/FIHC4__0929309_HP_IM3_2_cell_seg_data.txt";
const QPTIFF: &str = "multiplex/pathml_vectra_qptiff/small_vectra.qptiff";

fn data(rel: &str) -> Option<PathBuf> {
    let p = common::shared_data()?.join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIP: {} is absent", p.display());
        None
    }
}

fn sel(s: &str) -> ChannelSelector {
    s.parse().unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn inform_component_data_channels_and_dapi_values() {
    let Some(path) = data(INFORM) else { return };
    let stack = ChannelStack::read(&path).unwrap();
    assert_eq!(stack.names(), ["Alexa 594", "Cy3", "Cy5", "DAPI", "FITC"]);
    assert_eq!((stack.width(), stack.height()), (348, 260));
    assert!(stack
        .layout
        .channels
        .iter()
        .all(|c| c.sample_type == SampleType::F32));
    // The 87×65 RGB thumbnail is page 6 and not a channel.
    assert_eq!(stack.layout.skipped.len(), 1);
    assert_eq!(stack.layout.skipped[0].ifd_index, 5);
    assert_eq!(stack.layout.skipped[0].summary, "87×65 3×uint8");

    let (info, dapi) = stack.channel(&sel("dapi")).unwrap();
    assert_eq!(info.ifd_index, 3);
    let s = dapi.stats();
    assert!(close(s.min.into(), 3.540161, 1e-6), "{s:?}");
    assert!(close(s.max.into(), 70.48912, 1e-6), "{s:?}");
    assert!(close(s.mean.into(), 22.518816, 1e-5), "{s:?}");
    assert_eq!(dapi.get(200, 100), Some(26.00579));
    let sum: f64 = dapi.data.iter().map(|&v| f64::from(v)).sum();
    assert!(close(sum, 2_037_502.3867526, 1e-9), "{sum}");
    let p1 = percentile(&mut dapi.data.clone(), 1.0);
    let p998 = percentile(&mut dapi.data.clone(), 99.8);
    assert!(close(p1, 5.3688636302948, 1e-6), "{p1}");
    assert!(close(p998, 59.37773378753664, 1e-6), "{p998}");

    // The CLI path: only page 4 decoded, normalised by percentiles (float data).
    let n = read_channel(&path, &sel("DAPI"), &Normalisation::default()).unwrap();
    assert_eq!(
        read_channel(&path, &sel("4"), &Normalisation::default()).unwrap(),
        n
    );
    let ns = n.stats();
    assert_eq!((ns.min, ns.max), (0.0, 1.0));
    assert!(close(ns.mean.into(), 0.317527063, 1e-5), "{ns:?}");
}

#[test]
fn inform_selection_errors_list_the_components() {
    let Some(path) = data(INFORM) else { return };
    let e = read_channel(&path, &sel("CD8"), &Normalisation::Auto)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no channel named 'CD8'"), "{e}");
    assert!(
        e.contains("1 = Alexa 594, 2 = Cy3, 3 = Cy5, 4 = DAPI, 5 = FITC"),
        "{e}"
    );
    let e = read_channel(&path, &sel("6"), &Normalisation::Auto)
        .unwrap_err()
        .to_string();
    assert!(e.contains("has only 5 channels"), "{e}");
    assert!(e.contains("page 6 (87×65 3×uint8)"), "{e}");
}

#[test]
fn vectra_qptiff_channels_skip_thumbnail_overview_and_label() {
    let Some(path) = data(QPTIFF) else { return };
    let layout = ChannelLayout::scan(&path).unwrap();
    assert_eq!(layout.names(), ["DAPI", "FITC", "Cy3"]);
    assert_eq!((layout.width, layout.height), (1920, 1440));
    let skipped: Vec<(usize, &str)> = layout
        .skipped
        .iter()
        .map(|s| (s.ifd_index, s.summary.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            (3, "480×360 3×uint8"),
            (4, "201×398 3×uint8"),
            (5, "199×120 3×uint8")
        ]
    );
    let stack = ChannelStack::read(&path).unwrap();
    let sums: Vec<f64> = stack
        .planes
        .iter()
        .map(|p| p.data.iter().map(|&v| f64::from(v)).sum())
        .collect();
    assert_eq!(sums, [12_473_736.0, 23_080_687.0, 30_432_353.0]);
    // 8-bit data: ÷255 by default; DAPI's brightest pixel is 81.
    let dapi = read_channel(&path, &sel("DAPI"), &Normalisation::Auto).unwrap();
    assert_eq!((dapi.width, dapi.height), (1920, 1440));
    assert_eq!(dapi.stats().max, 81.0 / 255.0);
    // Explicit percentiles stretch 8-bit data too.
    let p = read_channel(&path, &sel("dapi"), &"1,99.8".parse().unwrap()).unwrap();
    assert_eq!(p.stats().max, 1.0);
}

#[test]
fn vectra_dapi_page_tiles_and_stitches_back_exactly() {
    let Some(path) = data(QPTIFF) else { return };
    let dapi = read_channel(&path, &sel("DAPI"), &Normalisation::Auto).unwrap();
    let grid = TileGrid::new(dapi.height, dapi.width, TileConfig::default()).unwrap();
    assert_eq!((grid.ys.len(), grid.xs.len()), (4, 5));
    let image = PlaneStack::new(&dapi.data, 1, dapi.height, dapi.width).unwrap();
    let mut st = Stitcher::new(&grid, 1).unwrap();
    for tile in grid.tiles() {
        st.add(&tile, &grid.extract(&image, &tile).unwrap())
            .unwrap();
    }
    let out = st.finish().unwrap();
    assert_eq!(out.len(), 1920 * 1440);
    let worst = out
        .iter()
        .zip(&dapi.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-6, "{worst}");
}

/// Cell ID → phenotype from inForm's per-cell table.
fn phenotypes(path: &std::path::Path) -> HashMap<u32, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (id, pheno) = (col("Cell ID"), col("Phenotype"));
    lines
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .map(|f| (f[id].parse().unwrap(), f[pheno].to_string()))
        .collect()
}

#[test]
fn inform_nucleus_map_gives_270_cells_and_semantic_masks() {
    let (Some(maps), Some(image), Some(cells)) = (data(SEG_MAPS), data(INFORM), data(CELLS)) else {
        return;
    };
    let layout = ChannelLayout::scan(&maps).unwrap();
    assert_eq!(
        layout.names(),
        ["TissueClassMap", "Nucleus", "Cytoplasm", "Membrane"]
    );
    let nuclei = read_label_map(&maps, Some(&sel("Nucleus"))).unwrap();
    assert_eq!(nuclei.instance_count(), 270);
    assert_eq!(nuclei.instance_ids(), (1..=270).collect::<Vec<u32>>());
    let dapi = read_channel(&image, &sel("DAPI"), &Normalisation::Auto).unwrap();
    nuclei
        .ensure_size(dapi.width, dapi.height, "component_data.tif")
        .unwrap();

    let fg = nuclei.to_semantic(&ClassMapping::Foreground).unwrap();
    assert_eq!(fg.num_classes, 2);
    assert_eq!(fg.classes.iter().filter(|&&c| c == 1).count(), 58_130);

    // Per-cell classes from the phenotype column: B / Helper T / Cytotoxic T.
    let class_of = |p: &str| match p {
        "B" => 1u8,
        "Helper T" => 2,
        "Cytotoxic T" => 3,
        other => panic!("unexpected phenotype {other}"),
    };
    let table = phenotypes(&cells);
    assert_eq!(table.len(), 270);
    let classes: HashMap<u32, u8> = table.iter().map(|(&id, p)| (id, class_of(p))).collect();
    let sem = nuclei
        .to_semantic(&ClassMapping::PerInstance {
            classes,
            unmapped: None,
        })
        .unwrap();
    assert_eq!(sem.num_classes, 4);
    let count = |k: u8| sem.classes.iter().filter(|&&c| c == k).count();
    assert_eq!([count(1), count(2), count(3)], [53_595, 3_176, 1_359]);

    // The same map against a wrongly sized image is refused.
    let e = nuclei
        .ensure_size(347, 260, "other.tif")
        .unwrap_err()
        .to_string();
    assert!(e.contains("348×260") && e.contains("347×260"), "{e}");
}

#[test]
fn dsb2018_fluorescence_masks_match_the_manifest() {
    let Some(root) = data("nuclei-dsb2018") else {
        return;
    };
    let manifest = std::fs::read_to_string(root.join("manifest.csv")).unwrap();
    let rows: Vec<Vec<&str>> = manifest
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .filter(|f: &Vec<&str>| f[4] == "fluorescence")
        .take(25)
        .collect();
    assert_eq!(rows.len(), 25);
    for f in rows {
        let (id, w, h, n): (&str, usize, usize, usize) = (
            f[0],
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[5].parse().unwrap(),
        );
        let img = read_channel(
            &root.join(format!("images/{id}.png")),
            &ChannelSelector::Position(1),
            &Normalisation::Auto,
        )
        .unwrap();
        assert_eq!((img.width, img.height), (w, h), "{id}");
        let mask = read_label_map(&root.join(format!("masks/{id}.png")), None).unwrap();
        mask.ensure_size(img.width, img.height, id).unwrap();
        assert_eq!(mask.instance_count(), n, "{id}");
    }
}
