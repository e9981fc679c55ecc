//! The reader study's paired dot plot: each reader's accuracy on AI-focused images (left) joined
//! by a line to the same reader's accuracy on AI-unfocused images (right), with the mean of
//! all readers drawn thick and dashed. A line falling to the right is a reader who did better
//! on the focused images.
use super::svg::{escape, open_titled, PALETTE};
use std::fmt::Write;

const PLOT_TOP: f64 = 70.0;
const PLOT_HEIGHT: f64 = 300.0;
const PLOT_LEFT: f64 = 60.0;
/// Where the two conditions stand, measured from PLOT_LEFT.
const COLUMN_X: [f64; 2] = [70.0, 270.0];
const PLOT_WIDTH: f64 = 340.0;
const LEGEND_ROW: f64 = 18.0;
/// Approximate width of a 12 px DejaVu Sans character, for sizing the picture to its text.
const CHAR_WIDTH: f64 = 6.8;

fn y_of(accuracy: f64) -> f64 {
    PLOT_TOP + (1.0 - accuracy.clamp(0.0, 1.0)) * PLOT_HEIGHT
}

fn x_of(column: usize) -> f64 {
    PLOT_LEFT + COLUMN_X[column]
}

/// Axis, grid lines at every 0.1 and the two column labels.
fn axes(s: &mut String) {
    for i in 0..=10 {
        let v = i as f64 / 10.0;
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{PLOT_LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.1}</text>"##,
            PLOT_LEFT + PLOT_WIDTH,
            PLOT_LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{PLOT_LEFT}" y1="{PLOT_TOP}" x2="{PLOT_LEFT}" y2="{:.1}" stroke="black"/>"#,
        y_of(0.0)
    );
    for (column, label) in ["AI-focused", "AI-unfocused"].into_iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{label}</text>"#,
            x_of(column),
            y_of(0.0) + 22.0
        );
    }
    let (yx, yy) = (16.0, y_of(0.5));
    let _ = writeln!(
        s,
        r#"<text x="{yx}" y="{yy:.1}" text-anchor="middle" transform="rotate(-90 {yx} {yy:.1})">accuracy</text>"#
    );
}

/// One reader (or the mean): the joining line and a dot at each end.
fn pair(s: &mut String, focused: f64, unfocused: f64, colour: &str, width: f64, dash: &str) {
    let (x0, y0, x1, y1) = (x_of(0), y_of(focused), x_of(1), y_of(unfocused));
    let _ = writeln!(
        s,
        r#"<line x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y1:.1}" stroke="{colour}" stroke-width="{width}" stroke-dasharray="{dash}"/>"#
    );
    for (x, y) in [(x0, y0), (x1, y1)] {
        let _ = writeln!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="4.5" fill="{colour}" stroke="white"/>"#
        );
    }
}

fn legend_entry(s: &mut String, row: usize, colour: &str, label: &str) {
    let lx = PLOT_LEFT + PLOT_WIDTH + 20.0;
    let ly = PLOT_TOP + 10.0 + LEGEND_ROW * row as f64;
    let _ = writeln!(
        s,
        r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2.5"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
        ly - 4.0,
        lx + 22.0,
        ly - 4.0,
        lx + 28.0,
        escape(label)
    );
}

/// Paired dot plot of accuracies: rows are (reader, focused accuracy, unfocused accuracy).
/// `note` (e.g. the t-test line) is printed under the title. Accuracies outside [0, 1] are
/// drawn at the nearest edge; non-finite ones are left out.
pub fn paired_accuracy(rows: &[(String, f64, f64)], title: &str, note: &str) -> String {
    let labels: Vec<String> = rows
        .iter()
        .map(|(name, f, u)| format!("{name}: {f:.3} → {u:.3}"))
        .collect();
    let legend_chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let legend_w = 50.0 + legend_chars as f64 * CHAR_WIDTH;
    let w = (PLOT_LEFT + PLOT_WIDTH + legend_w)
        .max(20.0 + note.chars().count() as f64 * CHAR_WIDTH)
        .max(20.0 + title.chars().count() as f64 * 8.5);
    let legend_h = 10.0 + LEGEND_ROW * (rows.len() + 1) as f64;
    let h = (y_of(0.0) + 40.0).max(PLOT_TOP + legend_h + 10.0);
    let mut s = open_titled(w, h, title);
    let _ = writeln!(s, r#"<text x="10" y="42">{}</text>"#, escape(note));
    axes(&mut s);
    let drawn: Vec<(usize, f64, f64)> = rows
        .iter()
        .enumerate()
        .filter(|(_, (_, f, u))| f.is_finite() && u.is_finite())
        .map(|(i, (_, f, u))| (i, *f, *u))
        .collect();
    for &(i, f, u) in &drawn {
        let colour = PALETTE[i % PALETTE.len()];
        pair(&mut s, f, u, colour, 1.5, "none");
        legend_entry(&mut s, i, colour, &labels[i]);
    }
    if !drawn.is_empty() {
        let n = drawn.len() as f64;
        let mean_f = drawn.iter().map(|d| d.1).sum::<f64>() / n;
        let mean_u = drawn.iter().map(|d| d.2).sum::<f64>() / n;
        pair(&mut s, mean_f, mean_u, "black", 3.5, "7,4");
        legend_entry(
            &mut s,
            rows.len(),
            "black",
            &format!("mean: {mean_f:.3} → {mean_u:.3}"),
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reader_plus_the_mean() {
        let rows = vec![
            ("R<1>".to_string(), 0.8, 0.6),
            ("R2".to_string(), 0.7, 0.7),
            ("R3".to_string(), f64::NAN, 0.5),
        ];
        let svg = paired_accuracy(&rows, "Readers & AI", "t = 1.0");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("R&lt;1&gt;: 0.800 → 0.600") && svg.contains("Readers &amp; AI"));
        assert!(svg.contains("mean: 0.750 → 0.650"));
        // Two readers and the mean are drawn (R3 has no focused accuracy); 11 grid lines,
        // the axis, and one legend line each.
        assert_eq!(svg.matches("<circle").count(), 6);
        assert_eq!(svg.matches("stroke-dasharray=").count(), 3);
        assert!(!svg.contains("NaN"));
        let png = super::super::png::svg_to_png_bytes(&svg, 1.0).unwrap();
        assert!(image::load_from_memory(&png).is_ok());
    }
}
