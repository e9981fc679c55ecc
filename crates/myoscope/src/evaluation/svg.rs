//! Plain SVG pictures of results (confusion matrix, training curves): text files any browser
//! or report opens, with no plotting dependency.
use super::metrics::ConfusionMatrix;
use crate::training::trainer::EpochMetrics;
use std::fmt::Write;

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Confusion matrix as a heat-map: rows are the true class, columns the prediction, each cell
/// shaded by the fraction of its row.
pub fn confusion_matrix(cm: &ConfusionMatrix, title: &str) -> String {
    let k = cm.classes.len();
    let cell = 64.0;
    let longest = cm
        .classes
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(4) as f64;
    let left = 10.0 + longest * 7.5;
    let top = 60.0;
    // Column labels are rotated 45°, so the last one reaches right and down by ~5 px a char.
    let w = (left + cell * k as f64 + 20.0 + longest * 5.5)
        .max(360.0)
        .max(20.0 + title.chars().count() as f64 * 8.5);
    let h = top + cell * k as f64 + 30.0 + longest * 5.5;
    let mut s = open_titled(w, h, title);
    let _ = writeln!(
        s,
        r#"<text x="{:.0}" y="45">predicted →  (rows: true class; accuracy {:.3})</text>"#,
        left,
        cm.accuracy()
    );
    for (i, row) in cm.counts.iter().enumerate() {
        let total: usize = row.iter().sum();
        let y = top + i as f64 * cell;
        let _ = writeln!(
            s,
            r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + cell / 2.0 + 4.0,
            escape(&cm.classes[i])
        );
        for (j, &n) in row.iter().enumerate() {
            let frac = if total > 0 {
                n as f64 / total as f64
            } else {
                0.0
            };
            let shade = (255.0 * (1.0 - 0.8 * frac)) as u8;
            let x = left + j as f64 * cell;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.0}" y="{y:.0}" width="{cell:.0}" height="{cell:.0}" fill="rgb({shade},{shade},255)" stroke="gray"/>"#
            );
            let colour = if frac > 0.6 { "white" } else { "black" };
            let _ = writeln!(
                s,
                r#"<text x="{:.0}" y="{:.0}" text-anchor="middle" fill="{colour}">{n}</text>"#,
                x + cell / 2.0,
                y + cell / 2.0 + 4.0
            );
        }
    }
    for (j, c) in cm.classes.iter().enumerate() {
        let x = left + j as f64 * cell + cell / 2.0;
        let y = top + k as f64 * cell + 10.0;
        let _ = writeln!(
            s,
            r#"<text x="{x:.0}" y="{y:.0}" transform="rotate(45 {x:.0} {y:.0})">{}</text>"#,
            escape(c)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Loss and accuracy per epoch, training and validation.
pub fn training_curves(history: &[EpochMetrics]) -> String {
    let (w, h, pad) = (640.0, 300.0, 45.0);
    let n = history.len().max(2) as f64;
    let max_loss = history
        .iter()
        .flat_map(|m| [m.train_loss, m.validation_loss])
        .filter(|v| v.is_finite())
        .fold(1e-9, f64::max);
    let x = |e: usize| pad + (e as f64 - 1.0) / (n - 1.0) * (w - 2.0 * pad);
    let y = |v: f64, max: f64| h - pad - v / max * (h - 2.0 * pad);
    let line = |f: &dyn Fn(&EpochMetrics) -> f64, max: f64| {
        history
            .iter()
            .filter(|m| f(m).is_finite())
            .map(|m| format!("{:.1},{:.1}", x(m.epoch), y(f(m), max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        h - pad,
        w - pad,
        h - pad
    );
    let _ = writeln!(
        s,
        r#"<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{}" stroke="black"/>"#,
        h - pad
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">epoch (1–{})</text>"#,
        w / 2.0,
        h - 10.0,
        history.len()
    );
    let _ = writeln!(
        s,
        r#"<text x="{pad}" y="20">loss (max {max_loss:.3}, dashed) and accuracy (0–1, solid): training blue, validation orange</text>"#
    );
    for frac in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let ty = y(frac, 1.0);
        let _ = writeln!(
            s,
            r#"<line x1="{pad}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="lightgray"/>"#,
            w - pad
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{frac:.2}</text>"#,
            pad - 4.0,
            ty + 4.0
        );
    }
    for (f, max, colour, dash) in [
        (
            &(|m: &EpochMetrics| m.train_loss) as &dyn Fn(&EpochMetrics) -> f64,
            max_loss,
            "#1f77b4",
            "5,4",
        ),
        (
            &|m: &EpochMetrics| m.validation_loss,
            max_loss,
            "#ff7f0e",
            "5,4",
        ),
        (&|m: &EpochMetrics| m.train_accuracy, 1.0, "#1f77b4", "none"),
        (
            &|m: &EpochMetrics| m.validation_accuracy,
            1.0,
            "#ff7f0e",
            "none",
        ),
    ] {
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}" points="{}"/>"#,
            line(f, max)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Colours for successive curves: the first (the ensemble) strong, then distinct hues.
pub(crate) const PALETTE: [&str; 8] = [
    "#c0392b", "#2471a3", "#229954", "#8e44ad", "#d68910", "#17a589", "#7f8c8d", "#a04000",
];

/// ROC curves in one square plot: 1 − specificity across, sensitivity up, the chance
/// diagonal, a legend with each curve's AUC, and optional operating points (name, x, y).
/// Curves named "fold …" are drawn thin and grey-blue, so the ensemble stands out against
/// its single models (Kabeya et al.'s Fig. 2d). Markers off the plot (NaN, as when a fold
/// lacks a class) are left out; the picture grows downwards when the legend needs it.
/// An SVG of `w`×`h` on a white background with `title` in bold at the top left: how every
/// picture of the reports starts.
pub(crate) fn open_titled(w: f64, h: f64, title: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    s
}

pub fn roc_curves(
    curves: &[(String, super::roc::RocCurve)],
    markers: &[(String, f64, f64)],
    title: &str,
) -> String {
    let markers: Vec<&(String, f64, f64)> = markers
        .iter()
        .filter(|(_, x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (side, left, top): (f64, f64, f64) = (360.0, 55.0, 40.0);
    let legend_w = 230.0;
    let legend_h = 14.0 + 18.0 * (curves.len() + markers.len()) as f64 + 20.0;
    let (w, h) = (
        left + side + 20.0 + legend_w,
        (top + side + 50.0).max(top + legend_h),
    );
    let px = |x: f64| left + x * side;
    let py = |y: f64| top + (1.0 - y) * side;
    let mut s = open_titled(w, h, title);
    for i in 0..=5 {
        let v = i as f64 / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#eee"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#eee"/>"##,
            px(v),
            py(0.0),
            px(v),
            py(1.0),
            px(0.0),
            py(v),
            px(1.0),
            py(v)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{v:.1}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.1}</text>"#,
            px(v),
            py(0.0) + 16.0,
            px(0.0) - 6.0,
            py(v) + 4.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{side}" height="{side}" fill="none" stroke="black"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4 4"/>"##,
        px(0.0),
        py(0.0),
        px(1.0),
        py(1.0)
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">1 − specificity (false-positive rate)</text>"#,
        px(0.5),
        py(0.0) + 36.0
    );
    let (yx, yy) = (14.0, py(0.5));
    let _ = writeln!(
        s,
        r#"<text x="{yx}" y="{yy:.1}" text-anchor="middle" transform="rotate(-90 {yx} {yy:.1})">sensitivity (true-positive rate)</text>"#
    );
    let mut colour = 0;
    // Single models first, so the ensemble is drawn on top.
    let mut order: Vec<usize> = (0..curves.len()).collect();
    order.sort_by_key(|&i| !curves[i].0.starts_with("fold"));
    for i in order {
        let (name, c) = &curves[i];
        let single = name.starts_with("fold");
        let points: Vec<String> = c
            .fpr
            .iter()
            .zip(&c.tpr)
            .map(|(&x, &y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let stroke = if single {
            "#7fa7c9"
        } else {
            PALETTE[i % PALETTE.len()]
        };
        let width = if single { 1.0 } else { 2.5 };
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="{width}"/>"#,
            points.join(" ")
        );
        let ly = top + 14.0 + 18.0 * i as f64;
        let lx = left + side + 20.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="{width}"/><text x="{:.1}" y="{ly:.1}">{} (AUC {:.3})</text>"#,
            ly - 4.0,
            lx + 22.0,
            ly - 4.0,
            lx + 28.0,
            escape(name),
            c.auc()
        );
        colour += 1;
    }
    for (j, &(name, x, y)) in markers.iter().enumerate() {
        let mark = ["#000000", "#e67e22", "#16a085"][j % 3];
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{mark}" stroke="white"/>"#,
            px(*x),
            py(*y)
        );
        let ly = top + 14.0 + 18.0 * (colour + j) as f64 + 6.0;
        let lx = left + side + 20.0;
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{mark}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            lx + 11.0,
            ly - 4.0,
            lx + 28.0,
            escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_svg_has_every_count_and_class() {
        let classes = vec!["normal".to_string(), "dm<ibm".to_string()];
        let cm = ConfusionMatrix::new(&classes, &[0, 1, 1], &[0, 1, 0]);
        let svg = confusion_matrix(&cm, "test");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("dm&lt;ibm") && svg.contains(">normal<"));
        assert_eq!(svg.matches("<rect x=").count(), 4);
    }

    #[test]
    fn roc_svg_has_curves_legend_and_finite_markers_only() {
        let truth: Vec<bool> = (0..30).map(|i| i % 3 == 0).collect();
        let scores: Vec<f64> = (0..30).map(|i| ((i * 7) % 30) as f64 / 30.0).collect();
        let curve = crate::evaluation::roc::roc_curve(&truth, &scores)
            .unwrap()
            .unwrap();
        let mut curves = vec![("ensemble <all>".to_string(), curve.clone())];
        curves.extend((1..=20).map(|f| (format!("fold {f}"), curve.clone())));
        let markers = vec![
            ("threshold 0.5".to_string(), 0.25, 0.75),
            ("undefined".to_string(), f64::NAN, 1.0),
        ];
        let svg = roc_curves(&curves, &markers, "ROC & AUC");
        assert!(svg.contains("ROC &amp; AUC") && svg.contains("ensemble &lt;all&gt;"));
        assert!(svg.contains(&format!("(AUC {:.3})", curve.auc())));
        assert_eq!(svg.matches("<polyline").count(), 21);
        assert!(svg.contains("threshold 0.5") && !svg.contains("undefined"));
        assert!(!svg.contains("NaN"));
        let png = super::super::png::svg_to_png_bytes(&svg, 1.0).unwrap();
        let (w, h) = image::load_from_memory(&png)
            .unwrap()
            .to_luma8()
            .dimensions();
        assert!(
            h as f64 >= 40.0 + 14.0 + 18.0 * 22.0,
            "{w}x{h}: the legend must fit"
        );
    }
}
