//! Painting: stain concentrations per pixel, cells as stamped ellipses, then
//! the microscope (Beer–Lambert colour, illumination, blur, camera noise).

use std::f32::consts::{FRAC_PI_2, PI, TAU};

use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::Rng;

use super::geometry::{Geometry, NONE};
use super::layout::{FibreState, Layout};
use super::noise::{gauss, lerp, smoothstep, white, white_gauss, ValueNoise};
use super::style::SlideStyle;
use super::SynthClass;

/// Optical density of red blood cells: haemoglobin plus eosin looks
/// orange-red, which no mix of the two stain vectors reproduces.
const RBC_OD: [f32; 3] = [0.18, 0.78, 0.85];

/// Stain concentrations per pixel (haematoxylin, eosin, red cells) plus the mask.
struct Canvas {
    w: usize,
    h: usize,
    hc: Vec<f32>,
    ec: Vec<f32>,
    rc: Vec<f32>,
    mask: Vec<u8>,
}

/// A cell or nucleus: an ellipse of stain with a soft edge.
#[derive(Clone, Copy, Debug)]
struct Blob {
    x: f32,
    y: f32,
    a: f32,
    b: f32,
    angle: f32,
    h: f32,
    e: f32,
    rbc: f32,
}

impl Blob {
    fn round(x: f32, y: f32, r: f32, h: f32, e: f32) -> Self {
        Self {
            x,
            y,
            a: r,
            b: r,
            angle: 0.0,
            h,
            e,
            rbc: 0.0,
        }
    }
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        let n = w * h;
        Self {
            w,
            h,
            hc: vec![0.0; n],
            ec: vec![0.0; n],
            rc: vec![0.0; n],
            mask: vec![0; n],
        }
    }

    /// `grain_freq` is the chromatin clump frequency in 1/pixels.
    fn stamp(&mut self, blob: &Blob, grain: &ValueNoise, grain_freq: f32) {
        let (s, c) = blob.angle.sin_cos();
        let ext = blob.a.max(blob.b) + 1.5;
        let Some((xa, xb, ya, yb)) = self.clip(blob.x, blob.y, ext) else {
            return;
        };
        for y in ya..yb {
            let dy = y as f32 + 0.5 - blob.y;
            for x in xa..xb {
                let dx = x as f32 + 0.5 - blob.x;
                let u = (dx * c + dy * s) / blob.a;
                let v = (-dx * s + dy * c) / blob.b;
                let q = (u * u + v * v).sqrt();
                // Approximate pixel distance to the outline, so that thin
                // nuclei get as crisp an edge as round ones.
                let (au, av) = (u.abs(), v.abs());
                let scale = if au + av > 1e-6 {
                    (blob.a * au + blob.b * av) / (au + av)
                } else {
                    blob.b
                };
                let cov = smoothstep(0.7, -0.7, (q - 1.0) * scale);
                if cov <= 0.0 {
                    continue;
                }
                let i = y * self.w + x;
                // Clumped chromatin: nuclei are not flat ink.
                let g = 0.8 + 0.35 * grain.at(x as f32 * grain_freq, y as f32 * grain_freq);
                self.hc[i] += blob.h * g * cov;
                self.ec[i] = self.ec[i] * (1.0 - 0.45 * cov) + blob.e * cov;
                self.rc[i] += blob.rbc * cov;
            }
        }
    }

    fn mark_disc(&mut self, cx: f32, cy: f32, r: f32) {
        let Some((xa, xb, ya, yb)) = self.clip(cx, cy, r) else {
            return;
        };
        let r2 = r * r;
        for y in ya..yb {
            let dy = y as f32 + 0.5 - cy;
            for x in xa..xb {
                let dx = x as f32 + 0.5 - cx;
                if dx * dx + dy * dy <= r2 {
                    self.mask[y * self.w + x] = 255;
                }
            }
        }
    }

    /// Pixel bounds of a square of half-side `ext`, `None` when off the photo.
    fn clip(&self, cx: f32, cy: f32, ext: f32) -> Option<(usize, usize, usize, usize)> {
        let xa = (cx - ext).floor().max(0.0) as usize;
        let ya = (cy - ext).floor().max(0.0) as usize;
        let xb = ((cx + ext).ceil().max(0.0) as usize).min(self.w);
        let yb = ((cy + ext).ceil().max(0.0) as usize).min(self.h);
        (xa < xb && ya < yb).then_some((xa, xb, ya, yb))
    }
}

/// Noise fields of one photo, drawn once so that painting order cannot
/// change the random stream.
struct Fields {
    texture: ValueNoise,
    mottle: ValueNoise,
    streak: ValueNoise,
    grain: ValueNoise,
    white_seed: u64,
}

pub(crate) fn render(
    layout: &Layout,
    geom: &Geometry,
    style: &SlideStyle,
    rng: &mut impl Rng,
) -> (RgbImage, GrayImage) {
    let fields = Fields {
        texture: ValueNoise::new(rng.gen()),
        mottle: ValueNoise::new(rng.gen()),
        streak: ValueNoise::new(rng.gen()),
        grain: ValueNoise::new(rng.gen()),
        white_seed: rng.gen(),
    };
    let mut cv = Canvas::new(geom.w, geom.h);
    paint_tissue(&mut cv, layout, geom, &fields, rng);

    // Chromatin clumps are about 1/20 of a fibre across, but never finer
    // than the pixel grid can show.
    let grain_freq = (20.0 / layout.d).min(0.9);
    // Cytoplasm and red cells go under the nuclei.
    let mut under: Vec<Blob> = Vec::new();
    let mut over: Vec<Blob> = Vec::new();
    paint_vessels(&mut cv, layout, &fields, rng, &mut under, &mut over);
    myonuclei(layout, geom, rng, &mut over);
    perimysial_cells(layout, geom, rng, &mut over);
    if layout.class == SynthClass::Inflammatory {
        infiltrate(&mut cv, layout, geom, rng, &mut under, &mut over);
    }
    for b in under.iter().chain(over.iter()) {
        cv.stamp(b, &fields.grain, grain_freq);
    }
    mark_lesion_fibres(&mut cv, layout, geom);

    let rgb = develop(&cv, style, rng);
    let mask = GrayImage::from_fn(cv.w as u32, cv.h as u32, |x, y| {
        Luma([cv.mask[y as usize * cv.w + x as usize]])
    });
    (rgb, mask)
}

fn paint_tissue(cv: &mut Canvas, layout: &Layout, geom: &Geometry, f: &Fields, rng: &mut impl Rng) {
    let d = layout.d;
    let e_fibre = rng.gen_range(0.6..0.8f32);
    // Myopathies thicken the endomysium (fibrosis), so it is pinker there.
    let e_endo = match layout.class {
        SynthClass::CentralNuclei => rng.gen_range(0.1..0.18f32),
        _ => rng.gen_range(0.04..0.09f32),
    };
    let e_peri = rng.gen_range(0.16..0.28f32);
    for y in 0..cv.h {
        for x in 0..cv.w {
            let i = y * cv.w + x;
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let m = f.mottle.at(px / (0.35 * d), py / (0.35 * d));
            let mut hb = 0.015;
            let mut eb = e_endo * (1.0 + 0.35 * m);
            // Oedematous, inflamed stroma around infiltrates is not empty.
            let swell: f32 = layout
                .foci
                .iter()
                .map(|fc| fc.widening_at(px, py) / fc.widening)
                .sum();
            if swell > 0.05 {
                eb += 0.16 * swell.min(1.0) * (1.0 + 0.4 * m);
                hb += 0.1 * swell.min(1.0);
            }
            if let Some((band, along, across)) = layout.nearest_band(px, py) {
                let bd = across.abs() - band.half_width;
                if bd < layout.gap + 1.0 {
                    // Collagen bundles run along the fascicle border.
                    // Warping the coordinates makes the bundles wavy, not ruled.
                    let warp = 0.8 * f.mottle.at(along / (0.7 * d), across / (0.5 * d));
                    let s = f
                        .streak
                        .fbm(along / (0.6 * d), across / (0.09 * d) + warp, 3);
                    let collagen = e_peri * (0.3 + smoothstep(-0.25, 0.45, s));
                    let t = smoothstep(0.5, -0.5, bd);
                    eb = lerp(eb, collagen, t);
                    hb = lerp(hb, 0.03, t);
                }
            }
            let (id, sdf) = (geom.id[i], geom.sdf[i]);
            let (mut hc, mut ec) = (hb, eb);
            if id != NONE && sdf > -1.0 {
                let fib = &layout.fibres[id as usize];
                let grain = f.texture.fbm(px / (0.07 * d), py / (0.07 * d), 2);
                let wn = white(f.white_seed, x as u32, y as u32);
                let mut e = e_fibre * fib.tone * (1.0 + 0.14 * grain + 0.07 * m + 0.06 * wn);
                let mut hf = 0.05;
                match fib.state {
                    FibreState::Healthy | FibreState::Invaded => {}
                    FibreState::Atrophic => e *= 1.06,
                    FibreState::Basophilic => {
                        e *= 0.55;
                        hf += 0.3;
                    }
                    FibreState::Necrotic => {
                        // Necrotic sarcoplasm is pale and glassy.
                        e = e_fibre * fib.tone * 0.45 * (1.0 + 0.2 * m);
                        hf += 0.05;
                    }
                }
                let a = smoothstep(-0.8, 0.8, sdf);
                hc = lerp(hb, hf, a);
                ec = lerp(eb, e, a);
            }
            cv.hc[i] = hc;
            cv.ec[i] = ec;
        }
    }
}

fn paint_vessels(
    cv: &mut Canvas,
    layout: &Layout,
    f: &Fields,
    rng: &mut impl Rng,
    under: &mut Vec<Blob>,
    over: &mut Vec<Blob>,
) {
    let d = layout.d;
    for v in &layout.vessels {
        let r_in = v.r * rng.gen_range(0.45..0.65);
        let e_wall = rng.gen_range(0.35..0.5f32);
        if let Some((xa, xb, ya, yb)) = cv.clip(v.x, v.y, v.r + 1.0) {
            for y in ya..yb {
                for x in xa..xb {
                    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                    let dist = ((px - v.x).powi(2) + (py - v.y).powi(2)).sqrt();
                    let wall = smoothstep(v.r + 0.7, v.r - 0.7, dist);
                    let lumen = smoothstep(r_in + 0.7, r_in - 0.7, dist);
                    if wall <= 0.0 {
                        continue;
                    }
                    let i = y * cv.w + x;
                    let t = f.texture.at(px / (0.08 * d), py / (0.08 * d));
                    cv.ec[i] = lerp(cv.ec[i], e_wall * (1.0 + 0.15 * t), wall);
                    cv.hc[i] = lerp(cv.hc[i], 0.06, wall);
                    cv.ec[i] = lerp(cv.ec[i], 0.03, lumen);
                    cv.hc[i] = lerp(cv.hc[i], 0.01, lumen);
                }
            }
        }
        let rbc = (d * 0.045).max(1.0);
        if r_in > 2.0 * rbc {
            let n = ((r_in / rbc).powi(2) * rng.gen_range(0.15..0.6)) as usize;
            for _ in 0..n {
                let rr = (r_in - rbc) * rng.gen::<f32>().sqrt();
                let th = rng.gen_range(0.0..TAU);
                let mut b = Blob::round(v.x + rr * th.cos(), v.y + rr * th.sin(), rbc, 0.0, 0.0);
                b.rbc = rng.gen_range(0.7..1.0);
                under.push(b);
            }
        }
        // Endothelium lines the lumen, smooth muscle sits in the wall; both
        // are flattened along the circumference.
        let nuc_b = (d * 0.022).max(0.8);
        for k in 0..rng.gen_range(4..9) {
            let th = rng.gen_range(0.0..TAU);
            let rr = if k < 3 {
                r_in
            } else {
                rng.gen_range(r_in..v.r.max(r_in + 0.1))
            };
            over.push(Blob {
                x: v.x + rr * th.cos(),
                y: v.y + rr * th.sin(),
                a: d * rng.gen_range(0.06..0.085),
                b: nuc_b,
                angle: th + FRAC_PI_2,
                h: rng.gen_range(0.9..1.2),
                e: 0.05,
                rbc: 0.0,
            });
        }
    }
}

/// Myonuclei sit just under the sarcolemma, flattened along the border;
/// internal ones are rounder and sit near the fibre's deepest point.
fn myonuclei(layout: &Layout, geom: &Geometry, rng: &mut impl Rng, over: &mut Vec<Blob>) {
    let d = layout.d;
    for (fi, fib) in layout.fibres.iter().enumerate() {
        let st = &geom.stats[fi];
        if st.area < 6 {
            continue;
        }
        let eq_r = (st.area as f32 / PI).sqrt();
        let expected = 2.0 * eq_r / d * rng.gen_range(0.7..2.2);
        let n = expected as usize + usize::from(rng.gen::<f32>() < expected.fract());
        for _ in 0..n {
            let a = d * rng.gen_range(0.085..0.12);
            let b = (d * rng.gen_range(0.035..0.048)).max(0.9);
            let th = rng.gen_range(0.0..TAU);
            let (s, c) = th.sin_cos();
            let mut t = 0.0;
            let limit = 3.0 * eq_r + 4.0;
            let mut hit = None;
            while t < limit {
                let (x, y) = (st.pole_x + c * t, st.pole_y + s * t);
                match geom.at(x, y) {
                    None => break,
                    Some((id, sdf)) if id != fi as u32 || sdf < b * 1.1 => {
                        hit = Some((x, y));
                        break;
                    }
                    _ => t += 0.5,
                }
            }
            let Some((x, y)) = hit else { continue };
            // Orient along the border using the distance field's gradient;
            // fall back to the ray direction where the field is ambiguous.
            let sd = |x: f32, y: f32| geom.at(x, y).filter(|p| p.0 == fi as u32).map(|p| p.1);
            let angle = match (
                sd(x + 1.0, y),
                sd(x - 1.0, y),
                sd(x, y + 1.0),
                sd(x, y - 1.0),
            ) {
                (Some(xp), Some(xm), Some(yp), Some(ym))
                    if (xp - xm).abs() + (yp - ym).abs() > 1e-3 =>
                {
                    (yp - ym).atan2(xp - xm) + FRAC_PI_2
                }
                _ => th + FRAC_PI_2,
            };
            over.push(Blob {
                x,
                y,
                a,
                b,
                angle,
                h: rng.gen_range(1.0..1.35),
                e: 0.08,
                rbc: 0.0,
            });
        }
        for k in 0..fib.internal_nuclei {
            // Internal nuclei of myopathies are often enlarged and vesicular.
            let a = (d * rng.gen_range(0.075..0.095)).max(1.3);
            let jitter = st.pole_depth * 0.3;
            let (mut x, mut y) = (
                st.pole_x + jitter * gauss(rng).clamp(-1.0, 1.0),
                st.pole_y + jitter * gauss(rng).clamp(-1.0, 1.0),
            );
            if fib.internal_nuclei == 2 {
                let th = rng.gen_range(0.0..TAU);
                let off = if k == 0 { 1.3 * a } else { -1.3 * a };
                x = st.pole_x + off * th.cos();
                y = st.pole_y + off * th.sin();
            }
            over.push(Blob {
                x,
                y,
                a,
                b: a * rng.gen_range(0.75..1.0),
                angle: rng.gen_range(0.0..PI),
                h: rng.gen_range(1.15..1.45),
                e: 0.08,
                rbc: 0.0,
            });
        }
    }
}

/// Fibroblast nuclei in the perimysium, spindle-shaped along the collagen.
fn perimysial_cells(layout: &Layout, geom: &Geometry, rng: &mut impl Rng, over: &mut Vec<Blob>) {
    let d = layout.d;
    for band in &layout.bands {
        let (lo, hi) = band.along_range(geom.w as f32, geom.h as f32);
        let n = ((hi - lo) / d * rng.gen_range(0.5..1.1)) as usize;
        for _ in 0..n {
            let along = rng.gen_range(lo..hi);
            let across = band.half_width * rng.gen_range(-0.7..0.7);
            let (x, y) = band.point(along, across);
            if layout
                .vessels
                .iter()
                .any(|v| (v.x - x).powi(2) + (v.y - y).powi(2) < (v.r + 1.0).powi(2))
            {
                continue;
            }
            over.push(Blob {
                x,
                y,
                a: d * rng.gen_range(0.08..0.13),
                b: (d * 0.025).max(0.8),
                angle: band.tangent_angle(along) + rng.gen_range(-0.2..0.2),
                h: rng.gen_range(0.9..1.2),
                e: 0.05,
                rbc: 0.0,
            });
        }
    }
}

/// Mononuclear infiltrate: lymphocytes packed into the widened endomysium
/// (and perimysium) around each focus, a few macrophages, invasion of one
/// fibre and clearing of a necrotic one.
fn infiltrate(
    cv: &mut Canvas,
    layout: &Layout,
    geom: &Geometry,
    rng: &mut impl Rng,
    under: &mut Vec<Blob>,
    over: &mut Vec<Blob>,
) {
    let d = layout.d;
    let rl = (d * rng.gen_range(0.058..0.07)).max(1.1);
    let mut occ = Occupancy::new(geom.w as f32, geom.h as f32, 2.0 * rl);
    let in_vessel = |x: f32, y: f32| {
        layout
            .vessels
            .iter()
            .any(|v| (v.x - x).powi(2) + (v.y - y).powi(2) < (v.r + 0.5 * rl).powi(2))
    };
    let mut add_cell = |cv: &mut Canvas,
                        x: f32,
                        y: f32,
                        macrophage: bool,
                        lesion: bool,
                        rng: &mut dyn rand::RngCore| {
        if macrophage {
            under.push(Blob {
                x,
                y,
                a: 2.3 * rl,
                b: 1.8 * rl,
                angle: rng.gen_range(0.0..PI),
                h: 0.12,
                e: 0.32,
                rbc: 0.0,
            });
            over.push(Blob {
                x: x + rng.gen_range(-0.5..0.5) * rl,
                y: y + rng.gen_range(-0.5..0.5) * rl,
                a: 1.45 * rl,
                b: 1.0 * rl,
                angle: rng.gen_range(0.0..PI),
                h: rng.gen_range(0.7..0.9),
                e: 0.1,
                rbc: 0.0,
            });
        } else {
            let a = rl * rng.gen_range(0.85..1.15);
            over.push(Blob {
                x,
                y,
                a,
                b: a * rng.gen_range(0.82..1.0),
                angle: rng.gen_range(0.0..PI),
                h: rng.gen_range(1.4..2.0),
                e: 0.04,
                rbc: 0.0,
            });
        }
        if lesion {
            cv.mark_disc(x, y, if macrophage { 3.0 } else { 2.3 } * rl);
        }
    };

    for focus in &layout.foci {
        // Dart-throw over the whole swollen area until it jams: the cells
        // then fill the widened endomysium instead of a neat Gaussian blob.
        let reach = 2.4 * focus.sigma;
        let attempts = ((reach / rl).powi(2) * 12.0) as usize;
        for _ in 0..attempts {
            let x = focus.x + rng.gen_range(-reach..reach);
            let y = focus.y + rng.gen_range(-reach..reach);
            let swell = focus.widening_at(x, y) / focus.widening;
            if rng.gen::<f32>() > smoothstep(0.08, 0.45, swell) {
                continue;
            }
            let Some((id, sdf)) = geom.at(x, y) else {
                continue;
            };
            if in_vessel(x, y) {
                continue;
            }
            let room = layout.stroma_distance(x, y) < 0.0
                || sdf < -0.4 * rl
                || (id != NONE
                    && layout.fibres[id as usize].state == FibreState::Invaded
                    && sdf < 0.5 * geom.stats[id as usize].pole_depth
                    && rng.gen_bool(0.6));
            if !room {
                continue;
            }
            let macrophage = rng.gen_bool(0.07);
            let spacing = if macrophage { 2.4 * rl } else { 1.4 * rl };
            if !occ.free(x, y, spacing) {
                continue;
            }
            occ.insert(x, y);
            add_cell(cv, x, y, macrophage, true, rng);
        }
    }

    // Myophagocytosis: macrophages filling a necrotic fibre.
    for (fi, fib) in layout.fibres.iter().enumerate() {
        if fib.state != FibreState::Necrotic {
            continue;
        }
        let st = &geom.stats[fi];
        if st.area < 10 {
            continue;
        }
        let reach = 1.5 * (st.area as f32 / PI).sqrt();
        let n = (st.area as f32 / (PI * (2.2 * rl).powi(2)) * 0.8) as usize;
        let mut placed = 0;
        for _ in 0..n * 30 {
            if placed >= n {
                break;
            }
            let x = st.pole_x + rng.gen_range(-reach..reach);
            let y = st.pole_y + rng.gen_range(-reach..reach);
            match geom.at(x, y) {
                Some((id, sdf)) if id == fi as u32 && sdf > 0.8 * rl => {}
                _ => continue,
            }
            if !occ.free(x, y, 2.4 * rl) {
                continue;
            }
            occ.insert(x, y);
            add_cell(cv, x, y, rng.gen_bool(0.75), true, rng);
            placed += 1;
        }
        // Mask the whole fibre being cleared, not just the cells in it.
        for y in 0..cv.h {
            for x in 0..cv.w {
                let i = y * cv.w + x;
                if geom.id[i] == fi as u32 && geom.sdf[i] > 0.0 {
                    cv.mask[i] = 255;
                }
            }
        }
    }

    // Stray lymphocytes elsewhere are normal background, not a lesion.
    let strays = rng.gen_range(3..10);
    let mut placed = 0;
    for _ in 0..strays * 40 {
        if placed >= strays {
            break;
        }
        let x = rng.gen_range(0.0..geom.w as f32);
        let y = rng.gen_range(0.0..geom.h as f32);
        match geom.at(x, y) {
            Some((_, sdf)) if sdf < -0.3 * rl && !in_vessel(x, y) => {}
            _ => continue,
        }
        if !occ.free(x, y, 1.75 * rl) {
            continue;
        }
        occ.insert(x, y);
        add_cell(cv, x, y, false, false, rng);
        placed += 1;
    }
}

fn mark_lesion_fibres(cv: &mut Canvas, layout: &Layout, geom: &Geometry) {
    if !layout.fibres.iter().any(|f| f.lesion) {
        return;
    }
    let half = layout.gap * 0.5 + 0.5;
    for y in 0..cv.h {
        for x in 0..cv.w {
            let i = y * cv.w + x;
            let id = geom.id[i];
            if id == NONE || !layout.fibres[id as usize].lesion || geom.sdf[i] < -half {
                continue;
            }
            if layout.stroma_distance(x as f32 + 0.5, y as f32 + 0.5) < 0.0 {
                continue;
            }
            cv.mask[i] = 255;
        }
    }
}

/// Bucket grid of placed cells, so spacing checks stay cheap in dense foci.
struct Occupancy {
    cell: f32,
    gw: usize,
    gh: usize,
    buckets: Vec<Vec<(f32, f32)>>,
}

impl Occupancy {
    fn new(w: f32, h: f32, cell: f32) -> Self {
        let gw = (w / cell).ceil() as usize + 1;
        let gh = (h / cell).ceil() as usize + 1;
        Self {
            cell,
            gw,
            gh,
            buckets: vec![Vec::new(); gw * gh],
        }
    }

    fn key(&self, x: f32, y: f32) -> (usize, usize) {
        (
            ((x.max(0.0) / self.cell) as usize).min(self.gw - 1),
            ((y.max(0.0) / self.cell) as usize).min(self.gh - 1),
        )
    }

    fn free(&self, x: f32, y: f32, spacing: f32) -> bool {
        let (cx, cy) = self.key(x, y);
        let span = (spacing / self.cell).ceil() as usize;
        let s2 = spacing * spacing;
        for gy in cy.saturating_sub(span)..=(cy + span).min(self.gh - 1) {
            for gx in cx.saturating_sub(span)..=(cx + span).min(self.gw - 1) {
                for &(ox, oy) in &self.buckets[gy * self.gw + gx] {
                    if (ox - x).powi(2) + (oy - y).powi(2) < s2 {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn insert(&mut self, x: f32, y: f32) {
        let (cx, cy) = self.key(x, y);
        self.buckets[cy * self.gw + cx].push((x, y));
    }
}

/// The microscope and camera: Beer–Lambert colour under uneven light,
/// defocus, then sensor noise and 8-bit quantisation.
fn develop(cv: &Canvas, style: &SlideStyle, rng: &mut impl Rng) -> RgbImage {
    let (w, h) = (cv.w, cv.h);
    let hv = style
        .haematoxylin_od
        .map(|v| v * style.haematoxylin_strength);
    let ev = style.eosin_od.map(|v| v * style.eosin_strength);
    let (cx, cy) = (w as f32 * 0.5, h as f32 * 0.5);
    let rmax2 = (cx * cx + cy * cy).max(1.0);
    let rmax = rmax2.sqrt();
    let (gs, gc) = style.gradient_angle.sin_cos();
    let mut buf = vec![[0.0f32; 3]; w * h];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let light = 1.0 - style.vignetting * (dx * dx + dy * dy) / rmax2
                + style.gradient * (dx * gc + dy * gs) / rmax;
            let (hc, ec, rc) = (cv.hc[i], cv.ec[i], cv.rc[i]);
            for c in 0..3 {
                let od = hc * hv[c] + ec * ev[c] + rc * RBC_OD[c];
                buf[i][c] = style.illuminant[c] * light * (-od).exp();
            }
        }
    }
    blur(&mut buf, w, h, style.blur * h as f32);
    let mut img = RgbImage::new(w as u32, h as u32);
    let seed: u64 = rng.gen();
    for (i, px) in img.pixels_mut().enumerate() {
        // Sensor noise is mostly shared across channels (luminance) with a
        // smaller independent part (chroma).
        let base = 4 * i as u64;
        let common = white_gauss(seed, base) * style.noise;
        let mut out = [0u8; 3];
        for c in 0..3 {
            let v = buf[i][c] + common + 0.5 * style.noise * white_gauss(seed, base + 1 + c as u64);
            out[c] = v.round().clamp(0.0, 255.0) as u8;
        }
        *px = Rgb(out);
    }
    img
}

/// Separable Gaussian blur with clamped edges.
fn blur(buf: &mut [[f32; 3]], w: usize, h: usize, sigma: f32) {
    if sigma < 0.2 || w == 0 || h == 0 {
        return;
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let mut kernel: Vec<f32> = (-radius..=radius)
        .map(|k| (-(k * k) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    let mut tmp = vec![[0.0f32; 3]; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0.0f32; 3];
            for (j, k) in kernel.iter().enumerate() {
                let xx = (x as isize + j as isize - radius).clamp(0, w as isize - 1) as usize;
                let p = buf[y * w + xx];
                for c in 0..3 {
                    acc[c] += k * p[c];
                }
            }
            tmp[y * w + x] = acc;
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0.0f32; 3];
            for (j, k) in kernel.iter().enumerate() {
                let yy = (y as isize + j as isize - radius).clamp(0, h as isize - 1) as usize;
                let p = tmp[yy * w + x];
                for c in 0..3 {
                    acc[c] += k * p[c];
                }
            }
            buf[y * w + x] = acc;
        }
    }
}
