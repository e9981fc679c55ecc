//! Outlines of nuclei: the outer boundary of each labelled region traced along pixel edges into a
//! closed ring, then simplified with Douglas–Peucker.
//!
//! The tracer walks the cracks between pixels with the nucleus on its right, so before
//! simplification the ring encloses exactly the nucleus's pixels (its shoelace area is the pixel
//! count) plus any holes: only the outer boundary is traced. Where two pixels of a nucleus meet
//! only at a corner, the tracer follows the connectivity the nucleus was labelled with: with
//! 8-connectivity it passes through the shared corner, so the ring touches itself at that point
//! (QuPath accepts such rings). Simplification can, rarely, make a thin ring cross itself.
//!
//! Rings are closed (last point = first) and, read with y pointing down as in the image, run
//! clockwise on screen — counter-clockwise by the shoelace formula, as GeoJSON asks of outer rings.
use super::components::{Connectivity, Instances};
use anyhow::{ensure, Result};

/// A closed ring of (x, y) vertices in image pixels; the first point is repeated at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Ring {
    pub points: Vec<[f64; 2]>,
}

impl Ring {
    /// Signed shoelace area; positive for our rings.
    pub fn signed_area(&self) -> f64 {
        self.points
            .windows(2)
            .map(|p| p[0][0] * p[1][1] - p[1][0] * p[0][1])
            .sum::<f64>()
            / 2.0
    }

    pub fn area(&self) -> f64 {
        self.signed_area().abs()
    }

    pub fn perimeter(&self) -> f64 {
        self.points
            .windows(2)
            .map(|p| ((p[1][0] - p[0][0]).powi(2) + (p[1][1] - p[0][1]).powi(2)).sqrt())
            .sum()
    }

    /// Centroid of the enclosed area.
    pub fn centroid(&self) -> [f64; 2] {
        let a = self.signed_area();
        if a == 0.0 {
            let n = (self.points.len().max(2) - 1) as f64;
            let s = self.points[..self.points.len().saturating_sub(1)]
                .iter()
                .fold([0.0, 0.0], |s, p| [s[0] + p[0], s[1] + p[1]]);
            return [s[0] / n, s[1] / n];
        }
        let (mut cx, mut cy) = (0.0, 0.0);
        for p in self.points.windows(2) {
            let cross = p[0][0] * p[1][1] - p[1][0] * p[0][1];
            cx += (p[0][0] + p[1][0]) * cross;
            cy += (p[0][1] + p[1][1]) * cross;
        }
        [cx / (6.0 * a), cy / (6.0 * a)]
    }

    pub fn is_closed(&self) -> bool {
        self.points.len() >= 4 && self.points.first() == self.points.last()
    }
}

/// Directions in clockwise order on screen: east, south, west, north.
const STEP: [(i64, i64); 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)];

/// The outer boundary of the nucleus labelled `label`, starting at the top-left corner of its
/// first pixel in raster order, `(x0, y0)`.
fn trace(instances: &Instances, label: u32, x0: i64, y0: i64) -> Vec<[f64; 2]> {
    let img = &instances.labels;
    let inside = |x: i64, y: i64| img.at(x, y) == label;
    let eight = instances.connectivity == Connectivity::Eight;
    // The pixels ahead of vertex (vx, vy) on the left and right when moving in direction d.
    let ahead = |vx: i64, vy: i64, d: usize| -> (bool, bool) {
        let (nw, ne, sw, se) = ((vx - 1, vy - 1), (vx, vy - 1), (vx - 1, vy), (vx, vy));
        let (l, r) = match d {
            0 => (ne, se),
            1 => (se, sw),
            2 => (sw, nw),
            _ => (nw, ne),
        };
        (inside(l.0, l.1), inside(r.0, r.1))
    };
    let (mut x, mut y, mut d) = (x0, y0, 0usize);
    let mut corners = vec![[x0 as f64, y0 as f64]];
    // Each pixel has four edges: a bound that can only trip on a bug, never loop forever.
    let limit = 4 * img.labels().len() + 8;
    for _ in 0..limit {
        x += STEP[d].0;
        y += STEP[d].1;
        let (left, right) = ahead(x, y, d);
        let turn = if left && (right || eight) {
            3 // left
        } else if right {
            0 // straight on
        } else {
            1 // right
        };
        let next = (d + turn) % 4;
        if x == x0 && y == y0 && next == 0 {
            break;
        }
        if next != d {
            corners.push([x as f64, y as f64]);
        }
        d = next;
    }
    corners.push([x0 as f64, y0 as f64]);
    corners
}

fn distance_to_segment(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    if len2 == 0.0 {
        return ((p[0] - a[0]).powi(2) + (p[1] - a[1]).powi(2)).sqrt();
    }
    let t = (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0);
    ((p[0] - a[0] - t * dx).powi(2) + (p[1] - a[1] - t * dy).powi(2)).sqrt()
}

/// Douglas–Peucker on an open chain; keeps the first and last points.
fn simplify_chain(points: &[[f64; 2]], tolerance: f64) -> Vec<[f64; 2]> {
    let n = points.len();
    if n <= 2 {
        return points.to_vec();
    }
    let mut keep = vec![false; n];
    keep[0] = true;
    keep[n - 1] = true;
    let mut spans = vec![(0usize, n - 1)];
    while let Some((a, b)) = spans.pop() {
        let (mut worst, mut at) = (0.0, a);
        for i in a + 1..b {
            let d = distance_to_segment(points[i], points[a], points[b]);
            if d > worst {
                worst = d;
                at = i;
            }
        }
        if worst > tolerance {
            keep[at] = true;
            spans.push((a, at));
            spans.push((at, b));
        }
    }
    points
        .iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(*p))
        .collect()
}

/// Simplifies a closed ring with Douglas–Peucker (`tolerance` in pixels; 0 keeps it as traced).
/// The ring is split at its first point and the vertex farthest from it, so both halves are open
/// chains. A ring that would collapse below three corners is kept as it was.
pub fn simplify(ring: &Ring, tolerance: f64) -> Ring {
    let pts = &ring.points;
    if tolerance <= 0.0 || !ring.is_closed() || pts.len() <= 4 {
        return ring.clone();
    }
    let open = &pts[..pts.len() - 1];
    let first = open[0];
    let far = (1..open.len())
        .max_by(|&i, &j| {
            let d = |k: usize| (open[k][0] - first[0]).powi(2) + (open[k][1] - first[1]).powi(2);
            d(i).total_cmp(&d(j))
        })
        .unwrap_or(1);
    let mut out = simplify_chain(&open[..=far], tolerance);
    let mut back: Vec<[f64; 2]> = open[far..].to_vec();
    back.push(first);
    let back = simplify_chain(&back, tolerance);
    out.extend_from_slice(&back[1..]);
    if out.len() < 4 {
        return ring.clone();
    }
    Ring { points: out }
}

/// One outline per nucleus, in label order (nucleus `i + 1` → `rings[i]`), simplified with
/// `tolerance` pixels.
pub fn outlines(instances: &Instances, tolerance: f64) -> Result<Vec<Ring>> {
    ensure!(
        tolerance.is_finite() && tolerance >= 0.0,
        "the simplification tolerance must be a non-negative number of pixels, got {tolerance}"
    );
    let img = &instances.labels;
    let n = instances.count();
    let mut start: Vec<Option<(i64, i64)>> = vec![None; n];
    for (i, &l) in img.labels().iter().enumerate() {
        if l == 0 {
            continue;
        }
        ensure!(
            (l as usize) <= n,
            "label {l} is above the {n} nuclei counted: relabel with connected_components"
        );
        let s = &mut start[l as usize - 1];
        if s.is_none() {
            *s = Some(((i % img.width()) as i64, (i / img.width()) as i64));
        }
    }
    start
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (x, y) = s.ok_or_else(|| anyhow::anyhow!("nucleus {} has no pixels", i + 1))?;
            let ring = Ring {
                points: trace(instances, i as u32 + 1, x, y),
            };
            Ok(simplify(&ring, tolerance))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::components::connected_components;
    use super::super::LabelImage;
    use super::*;

    fn instances(rows: &[&str], c: Connectivity) -> Instances {
        let w = rows[0].len();
        let v: Vec<u32> = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| u32::from(b != b'.')))
            .collect();
        connected_components(&LabelImage::new(w, rows.len(), v).unwrap(), c).unwrap()
    }

    #[test]
    fn a_single_pixel_is_a_unit_square() {
        let i = instances(&["...", ".#.", "..."], Connectivity::Eight);
        let r = &outlines(&i, 0.0).unwrap()[0];
        assert_eq!(
            r.points,
            vec![[1.0, 1.0], [2.0, 1.0], [2.0, 2.0], [1.0, 2.0], [1.0, 1.0]]
        );
        assert_eq!(r.signed_area(), 1.0);
        assert_eq!(r.centroid(), [1.5, 1.5]);
        // Too coarse a tolerance would collapse it: it stays a square.
        assert_eq!(outlines(&i, 5.0).unwrap()[0].points.len(), 5);
    }

    #[test]
    fn traced_area_equals_the_pixel_count_for_concave_shapes() {
        // A spiral-like nucleus whose background bays all open to the outside: the boundary
        // runs into every bay, so the area is exactly the 15 pixels.
        let rows = ["#####", "#...#", "#.#.#", "###.#", "....#"];
        for c in [Connectivity::Eight, Connectivity::Four] {
            let i = instances(&rows, c);
            let rings = outlines(&i, 0.0).unwrap();
            assert_eq!(rings.len(), 1);
            assert!(rings[0].is_closed());
            assert_eq!(rings[0].signed_area(), 15.0, "{c:?}");
        }
        // A ring of pixels around a hole: the outer boundary encloses the hole too.
        let ring = instances(&["###", "#.#", "###"], Connectivity::Eight);
        assert_eq!(outlines(&ring, 0.0).unwrap()[0].signed_area(), 9.0);
        let l = instances(&["#..", "#..", "###"], Connectivity::Four);
        let r = &outlines(&l, 0.0).unwrap()[0];
        assert_eq!(r.signed_area(), 5.0);
        assert_eq!(r.points.len(), 7, "{:?}", r.points);
    }

    #[test]
    fn diagonal_pixels_follow_the_labelling_connectivity() {
        let rows = ["#.", ".#"];
        let eight = instances(&rows, Connectivity::Eight);
        let rings = outlines(&eight, 0.0).unwrap();
        assert_eq!(rings.len(), 1);
        assert_eq!(rings[0].signed_area(), 2.0);
        assert_eq!(rings[0].points.len(), 9, "{:?}", rings[0].points);
        let four = instances(&rows, Connectivity::Four);
        let rings = outlines(&four, 0.0).unwrap();
        assert_eq!(rings.len(), 2);
        assert!(rings.iter().all(|r| r.signed_area() == 1.0));
    }

    #[test]
    fn simplification_keeps_the_shape_within_tolerance() {
        // A 20×10 rectangle with a one-pixel notch on its top edge.
        let mut rows = vec![String::new(); 10];
        for (y, row) in rows.iter_mut().enumerate() {
            for x in 0..20 {
                row.push(if y == 0 && x == 10 { '.' } else { '#' });
            }
        }
        let rows: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
        let i = instances(&rows, Connectivity::Eight);
        let exact = &outlines(&i, 0.0).unwrap()[0];
        assert_eq!(exact.signed_area(), 199.0);
        let coarse = &outlines(&i, 1.5).unwrap()[0];
        assert!(coarse.is_closed());
        assert_eq!(coarse.points.len(), 5, "{:?}", coarse.points);
        assert_eq!(coarse.signed_area(), 200.0);
        assert!(outlines(&i, -1.0).is_err());
    }
}
