//! Per-pixel fibre geometry: which fibre a pixel belongs to and how far it
//! lies inside that fibre's profile.

use super::layout::Layout;
use super::noise::smin;

pub(crate) const NONE: u32 = u32::MAX;

/// What the renderer needs to know about a fibre's visible profile.
#[derive(Clone, Debug, Default)]
pub(crate) struct FibreStats {
    /// Visible pixels inside the profile.
    pub area: u32,
    /// Deepest interior point (pole of inaccessibility): where a central
    /// nucleus sits and where rays to the border start.
    pub pole_x: f32,
    pub pole_y: f32,
    pub pole_depth: f32,
}

pub(crate) struct Geometry {
    pub w: usize,
    pub h: usize,
    /// Power-diagram cell of each pixel ([`NONE`] where no fibre reaches).
    pub id: Vec<u32>,
    /// Signed distance to the fibre border in pixels, positive inside.
    pub sdf: Vec<f32>,
    pub stats: Vec<FibreStats>,
}

impl Geometry {
    /// Power (Laguerre) diagram with weights `r²`, computed by splatting each
    /// site over its neighbourhood and keeping the three best per pixel.
    /// The distance from a pixel to the radical axis between its first and
    /// second site is `(p2 − p1) / (2 |s1 − s2|)` — a true Euclidean distance,
    /// so borders have constant width whatever the weights.
    pub(crate) fn build(layout: &Layout, w: u32, h: u32) -> Self {
        let (w, h) = (w as usize, h as usize);
        let n = w * h;
        // Warped pixel positions: the diagram is computed in warped space.
        let mut wpos = vec![(0.0f32, 0.0f32); n];
        let scale = 1.0 / (0.35 * layout.d);
        for y in 0..h {
            for x in 0..w {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let (u, v) = (px * scale, py * scale);
                wpos[y * w + x] = (
                    px + layout.warp_amp * layout.warp.at(u, v),
                    py + layout.warp_amp * layout.warp.at(u + 31.7, v - 12.3),
                );
            }
        }
        let mut best_d = vec![[f32::INFINITY; 3]; n];
        let mut best_i = vec![[NONE; 3]; n];
        let slack = layout.d * 0.35;
        for (i, f) in layout.fibres.iter().enumerate() {
            // Generous reach: a small disc next to a void owns more than its
            // disc, and a pixel missing its true site would show as a seam.
            let reach = 1.8 * f.r + slack + layout.warp_amp;
            let xa = ((f.x - reach).floor().max(0.0)) as usize;
            let ya = ((f.y - reach).floor().max(0.0)) as usize;
            let xb = ((f.x + reach).ceil().max(0.0) as usize).min(w);
            let yb = ((f.y + reach).ceil().max(0.0) as usize).min(h);
            let reach2 = reach * reach;
            let weight = f.r * f.r;
            for y in ya..yb {
                let row = y * w;
                for x in xa..xb {
                    let (qx, qy) = wpos[row + x];
                    let (dx, dy) = (qx - f.x, qy - f.y);
                    let e2 = dx * dx + dy * dy;
                    if e2 > reach2 {
                        continue;
                    }
                    let p = e2 - weight;
                    let bd = &mut best_d[row + x];
                    let bi = &mut best_i[row + x];
                    if p < bd[0] {
                        *bd = [p, bd[0], bd[1]];
                        *bi = [i as u32, bi[0], bi[1]];
                    } else if p < bd[1] {
                        bd[2] = bd[1];
                        bi[2] = bi[1];
                        bd[1] = p;
                        bi[1] = i as u32;
                    } else if p < bd[2] {
                        bd[2] = p;
                        bi[2] = i as u32;
                    }
                }
            }
        }

        let fibres = &layout.fibres;
        let mut id = vec![NONE; n];
        let mut sdf = vec![-1.0e3f32; n];
        let mut stats = vec![FibreStats::default(); fibres.len()];
        let k = layout.corner;
        let gap_scale = 1.0 / (0.8 * layout.d);
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let [i1, i2, i3] = best_i[i];
                if i1 == NONE {
                    continue;
                }
                let [d1, d2, d3] = best_d[i];
                let (px, py) = wpos[i];
                let f1 = &fibres[i1 as usize];
                let axis = |j: u32, dj: f32| -> f32 {
                    if j == NONE {
                        return 1.0e3;
                    }
                    let fj = &fibres[j as usize];
                    let sep = ((fj.x - f1.x).powi(2) + (fj.y - f1.y).powi(2))
                        .sqrt()
                        .max(1e-3);
                    (dj - d1) / (2.0 * sep)
                };
                let cell = smin(axis(i2, d2), axis(i3, d3), k);
                let centre = ((px - f1.x).powi(2) + (py - f1.y).powi(2)).sqrt();
                // Retraction during freezing opens some fibre borders more than others.
                let crack = 1.0 + 0.6 * layout.warp.at(px * gap_scale + 71.3, py * gap_scale - 5.1);
                let half_gap = layout.half_gap_at(px, py) * crack;
                let mut v = smin(cell - half_gap, f1.roundness * f1.r - centre, k);
                if !layout.bands.is_empty() {
                    v = smin(
                        v,
                        layout.stroma_distance(px, py) - layout.gap * 0.5,
                        k * 0.5,
                    );
                }
                id[i] = i1;
                sdf[i] = v;
                if v > 0.0 {
                    let s = &mut stats[i1 as usize];
                    s.area += 1;
                    if v > s.pole_depth {
                        s.pole_depth = v;
                        s.pole_x = x as f32 + 0.5;
                        s.pole_y = y as f32 + 0.5;
                    }
                }
            }
        }
        Self {
            w,
            h,
            id,
            sdf,
            stats,
        }
    }

    /// Fibre id and signed distance at a point, `None` outside the photo.
    pub(crate) fn at(&self, x: f32, y: f32) -> Option<(u32, f32)> {
        if x < 0.0 || y < 0.0 {
            return None;
        }
        let (xi, yi) = (x as usize, y as usize);
        if xi >= self.w || yi >= self.h {
            return None;
        }
        let i = yi * self.w + xi;
        Some((self.id[i], self.sdf[i]))
    }
}
