//! The picture of a cross-validated multi-label run: one bar per class (mean F1, whisker ± sd,
//! support beside it), so a rare class that the models miss is seen at a glance.
use super::cv::CvReport;
use crate::evaluation::svg::{escape, open_titled};
use std::fmt::Write;

pub fn f1_bars(r: &CvReport) -> String {
    let longest = r
        .per_class
        .iter()
        .map(|c| c.class.chars().count())
        .max()
        .unwrap_or(4) as f64;
    let left = 16.0 + longest * 7.5;
    let (top, row, width) = (56.0, 26.0, 360.0);
    let h = top + row * r.per_class.len() as f64 + 56.0;
    let w = left + width + 120.0;
    let title = format!(
        "{}: F1 per class on the {} part ({} models)",
        r.arch, r.scored_on, r.models
    );
    let mut s = open_titled(w.max(20.0 + title.chars().count() as f64 * 8.0), h, &title);
    let _ = writeln!(
        s,
        r#"<text x="{left:.0}" y="40">mean ± sd over folds × seeds; macro F1 {:.3} ± {:.3}</text>"#,
        r.macro_f1.mean, r.macro_f1.sd
    );
    let x = |v: f64| left + width * v.clamp(0.0, 1.0);
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{top:.0}" x2="{0:.1}" y2="{1:.0}" stroke="#ddd"/><text x="{0:.1}" y="{2:.0}" text-anchor="middle">{tick}</text>"##,
            x(tick),
            h - 40.0,
            h - 24.0
        );
    }
    for (i, c) in r.per_class.iter().enumerate() {
        let y = top + i as f64 * row;
        let mean = if c.f1.mean.is_finite() {
            c.f1.mean
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + row / 2.0 + 4.0,
            escape(&c.class)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{left:.0}" y="{:.0}" width="{:.1}" height="{:.0}" fill="#5b8bd9"/>"##,
            y + 4.0,
            x(mean) - left,
            row - 8.0
        );
        if c.f1.sd.is_finite() && c.f1.sd > 0.0 {
            let _ = writeln!(
                s,
                r#"<line x1="{:.1}" y1="{2:.0}" x2="{:.1}" y2="{2:.0}" stroke="black" stroke-width="1.5"/>"#,
                x(mean - c.f1.sd),
                x(mean + c.f1.sd),
                y + row / 2.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.0}" y="{:.0}">{mean:.2}  (n = {})</text>"#,
            left + width + 8.0,
            y + row / 2.0 + 4.0,
            c.support
        );
    }
    s.push_str("</svg>\n");
    s
}
