//! Tissue plan of one photo: where the fibres, fascicle borders, vessels and
//! inflammatory foci are, and which fibres carry the class's pathology.
//!
//! All lengths are in pixels of the output photo.

use std::f32::consts::{FRAC_PI_2, TAU};

use rand::Rng;

use super::noise::{gauss, smoothstep, ValueNoise};
use super::SynthClass;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FibreState {
    Healthy,
    /// Small fibre at a fascicle border (dermatomyositis).
    Atrophic,
    /// Regenerating fibre: RNA-rich sarcoplasm stains bluish.
    Basophilic,
    /// Pale, washed-out sarcoplasm; in inflammatory photos it is being
    /// cleared by macrophages.
    Necrotic,
    /// Non-necrotic fibre with lymphocytes crossing its border.
    Invaded,
}

#[derive(Clone, Debug)]
pub(crate) struct Fibre {
    pub x: f32,
    pub y: f32,
    /// Packing radius; the power-diagram weight is `r²`.
    pub r: f32,
    /// The profile is clipped to a disc of `roundness × r`: large values
    /// keep the polygon, values near 1 give the rounded fibres of myopathy.
    pub roundness: f32,
    /// Eosin uptake relative to the slide's average fibre.
    pub tone: f32,
    pub state: FibreState,
    pub internal_nuclei: u8,
    /// Whether the lesion mask covers this fibre.
    pub lesion: bool,
}

/// A perimysium band (fascicle border): a gently wavy strip of connective tissue.
#[derive(Clone, Debug)]
pub(crate) struct Band {
    px: f32,
    py: f32,
    dx: f32,
    dy: f32,
    pub half_width: f32,
    amp: f32,
    freq: f32,
    phase: f32,
}

impl Band {
    /// Band with centre line through (x, y), tilted `angle` radians from vertical.
    /// `d` (fibre diameter) scales the waviness, `h` (photo height) its wavelength.
    fn new(
        x: f32,
        y: f32,
        angle: f32,
        half_width: f32,
        d: f32,
        h: f32,
        rng: &mut impl Rng,
    ) -> Self {
        Self {
            px: x,
            py: y,
            dx: angle.sin(),
            dy: angle.cos(),
            half_width,
            amp: d * rng.gen_range(0.0..0.6),
            freq: TAU / (h * rng.gen_range(0.7..1.8)),
            phase: rng.gen_range(0.0..TAU),
        }
    }

    /// (position along the band, signed offset from its wavy centre line).
    pub(crate) fn coords(&self, x: f32, y: f32) -> (f32, f32) {
        let (rx, ry) = (x - self.px, y - self.py);
        let along = rx * self.dx + ry * self.dy;
        let across = -rx * self.dy + ry * self.dx;
        (
            along,
            across - self.amp * (self.freq * along + self.phase).sin(),
        )
    }

    /// Distance to the band's edge, negative inside the band.
    pub(crate) fn edge_distance(&self, x: f32, y: f32) -> f32 {
        self.coords(x, y).1.abs() - self.half_width
    }

    /// Inverse of [`Band::coords`].
    pub(crate) fn point(&self, along: f32, across: f32) -> (f32, f32) {
        let off = across + self.amp * (self.freq * along + self.phase).sin();
        (
            self.px + along * self.dx - off * self.dy,
            self.py + along * self.dy + off * self.dx,
        )
    }

    /// Direction of the centre line at `along`, as an angle in image space.
    pub(crate) fn tangent_angle(&self, along: f32) -> f32 {
        let slope = self.amp * self.freq * (self.freq * along + self.phase).cos();
        let (tx, ty) = (self.dx - slope * self.dy, self.dy + slope * self.dx);
        ty.atan2(tx)
    }

    /// Range of `along` in which the band crosses a w × h photo.
    pub(crate) fn along_range(&self, w: f32, h: f32) -> (f32, f32) {
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        for (x, y) in [(0.0, 0.0), (w, 0.0), (0.0, h), (w, h)] {
            let a = (x - self.px) * self.dx + (y - self.py) * self.dy;
            lo = lo.min(a);
            hi = hi.max(a);
        }
        (lo, hi)
    }
}

/// Centre of an inflammatory infiltrate. The endomysium around it is widened
/// (oedema and cells push fibres apart), which is what gives the cells room.
#[derive(Clone, Debug)]
pub(crate) struct Focus {
    pub x: f32,
    pub y: f32,
    pub sigma: f32,
    pub widening: f32,
}

impl Focus {
    pub(crate) fn widening_at(&self, x: f32, y: f32) -> f32 {
        let d2 = (x - self.x).powi(2) + (y - self.y).powi(2);
        let s2 = self.sigma * self.sigma;
        if d2 > 9.0 * s2 {
            0.0
        } else {
            self.widening * (-d2 / (2.0 * s2)).exp()
        }
    }
}

/// Perimysial blood vessel, always centred in a band (which it may bulge).
#[derive(Clone, Debug)]
pub(crate) struct Vessel {
    pub x: f32,
    pub y: f32,
    pub r: f32,
}

impl Vessel {
    pub(crate) fn edge_distance(&self, x: f32, y: f32) -> f32 {
        ((x - self.x).powi(2) + (y - self.y).powi(2)).sqrt() - self.r
    }
}

pub(crate) struct Layout {
    pub class: SynthClass,
    /// Mean diameter of a healthy fibre.
    pub d: f32,
    /// Endomysium width between healthy fibres.
    pub gap: f32,
    /// Corner-rounding radius of fibre profiles.
    pub corner: f32,
    pub fibres: Vec<Fibre>,
    pub bands: Vec<Band>,
    pub foci: Vec<Focus>,
    pub vessels: Vec<Vessel>,
    /// Small domain warp applied before the diagram, so that fibre borders
    /// are not ruler-straight.
    pub warp: ValueNoise,
    pub warp_amp: f32,
}

impl Layout {
    pub(crate) fn half_gap_at(&self, x: f32, y: f32) -> f32 {
        self.gap * 0.5 + self.foci.iter().map(|f| f.widening_at(x, y)).sum::<f32>()
    }

    /// Distance to the nearest perimysium edge (negative inside), +∞ without bands.
    pub(crate) fn band_distance(&self, x: f32, y: f32) -> f32 {
        self.bands
            .iter()
            .map(|b| b.edge_distance(x, y))
            .fold(f32::INFINITY, f32::min)
    }

    /// Distance to the nearest perimysium (band or vessel), negative inside.
    pub(crate) fn stroma_distance(&self, x: f32, y: f32) -> f32 {
        self.vessels
            .iter()
            .map(|v| v.edge_distance(x, y))
            .fold(self.band_distance(x, y), f32::min)
    }

    /// Nearest band with its (along, across) coordinates.
    pub(crate) fn nearest_band(&self, x: f32, y: f32) -> Option<(&Band, f32, f32)> {
        self.bands
            .iter()
            .map(|b| {
                let (along, across) = b.coords(x, y);
                (b, along, across)
            })
            .min_by(|a, b| (a.2.abs() - a.0.half_width).total_cmp(&(b.2.abs() - b.0.half_width)))
    }
}

/// How much a fibre at distance `db` from a fascicle border has shrunk.
fn atrophy_factor(db: f32, d: f32) -> f32 {
    0.42 + 0.58 * smoothstep(0.1 * d, 1.7 * d, db)
}

pub(crate) fn plan(class: SynthClass, w: u32, h: u32, rng: &mut impl Rng) -> Layout {
    let (wf, hf) = (w as f32, h as f32);
    // About eleven fibres across the short side: a 10× objective on a
    // 1360×1024 camera, enlarged a little so nuclei survive a 128 px crop.
    let d = wf.min(hf) / 11.0 * rng.gen_range(0.85..1.2);
    let r0 = d / 2.5;
    let gap = d * rng.gen_range(0.035..0.065);
    let bands = plan_bands(class, wf, hf, d, rng);
    let mut foci = if class == SynthClass::Inflammatory {
        plan_foci(wf, hf, d, rng)
    } else {
        Vec::new()
    };
    let vessels = plan_vessels(class, &bands, wf, hf, d, rng);
    if class == SynthClass::Inflammatory {
        // Perivascular cuffs are the other classic site of infiltrates.
        for v in &vessels {
            if rng.gen_bool(0.6) {
                foci.push(Focus {
                    x: v.x,
                    y: v.y,
                    sigma: v.r + d * rng.gen_range(0.3..0.6),
                    widening: d * rng.gen_range(0.1..0.2),
                });
            }
        }
    }

    let r_max = match class {
        SynthClass::CentralNuclei => 0.9 * 2.3 * r0,
        _ => 1.3 * r0,
    };
    // Moderate, not extreme, rounding and size variation: when every fibre of the photo already
    // shouts "central nuclei" by its shape, a classifier need not look at the nuclei at all,
    // and its heat-map lands anywhere (the pointing game was at chance, 0.54 with 45 % of the
    // area marked). The internal nuclei, which the mask marks, must be the sign that decides.
    let cn_spread = rng.gen_range(0.22..0.30f32);
    let radius_at = |rng: &mut _, x: f32, y: f32| -> f32 {
        match class {
            SynthClass::CentralNuclei => r0 * 0.9 * (cn_spread * gauss(rng)).exp().clamp(0.7, 2.3),
            SynthClass::PerifascicularAtrophy => {
                let db = bands
                    .iter()
                    .map(|b| b.edge_distance(x, y))
                    .fold(f32::INFINITY, f32::min);
                r0 * (1.0 + 0.08 * gauss(rng)).clamp(0.8, 1.25) * atrophy_factor(db, d)
            }
            SynthClass::Inflammatory => r0 * (1.0 + 0.1 * gauss(rng)).clamp(0.75, 1.3),
            SynthClass::Normal => r0 * (1.0 + 0.07 * gauss(rng)).clamp(0.8, 1.25),
        }
    };
    // Only the steep size gradient of perifascicular atrophy leaves voids
    // worth filling; elsewhere shrinking would just add stray small fibres.
    let shrink = class == SynthClass::PerifascicularAtrophy;
    let sites = DiscPacker::new(wf, hf, r0, r_max, &bands, &vessels, shrink).pack(rng, radius_at);

    let cn_fraction = rng.gen_range(0.38..0.62);
    let mut fibres: Vec<Fibre> = sites
        .into_iter()
        .map(|(x, y, r)| {
            let mut f = Fibre {
                x,
                y,
                r,
                // Large enough that a cell next to a packing void still fills it.
                roundness: 2.2,
                tone: 1.0 + 0.06 * gauss(rng),
                state: FibreState::Healthy,
                internal_nuclei: 0,
                lesion: false,
            };
            match class {
                // Up to ~3 % of normal fibres have an internal nucleus; it is
                // not pathological, so it is not in the mask.
                SynthClass::Normal => {
                    if rng.gen_bool(0.015) {
                        f.internal_nuclei = 1;
                    }
                }
                SynthClass::CentralNuclei => {
                    f.roundness = rng.gen_range(1.6..1.9);
                    if rng.gen_bool(cn_fraction) {
                        f.internal_nuclei = if rng.gen_bool(0.25) { 2 } else { 1 };
                        f.lesion = true;
                    }
                }
                SynthClass::PerifascicularAtrophy => {
                    let db = bands
                        .iter()
                        .map(|b| b.edge_distance(x, y))
                        .fold(f32::INFINITY, f32::min);
                    if atrophy_factor(db, d) < 0.8 {
                        f.lesion = true;
                        f.roundness = rng.gen_range(1.5..1.9);
                        let u: f32 = rng.gen();
                        f.state = if u < 0.32 {
                            FibreState::Basophilic
                        } else if u < 0.42 {
                            FibreState::Necrotic
                        } else {
                            FibreState::Atrophic
                        };
                    }
                }
                SynthClass::Inflammatory => {}
            }
            f
        })
        .collect();

    if class == SynthClass::Inflammatory {
        for focus in foci.iter().take(3) {
            let near = nearest_fibre(&fibres, focus.x, focus.y, &[]);
            if let Some(i) = near {
                if rng.gen_bool(0.6) {
                    fibres[i].state = FibreState::Invaded;
                    fibres[i].tone *= 0.9;
                }
            }
            if rng.gen_bool(0.3) {
                let skip = near.map(|i| vec![i]).unwrap_or_default();
                if let Some(j) = nearest_fibre(&fibres, focus.x, focus.y, &skip) {
                    fibres[j].state = FibreState::Necrotic;
                }
            }
        }
    }

    Layout {
        class,
        d,
        gap,
        corner: match class {
            SynthClass::CentralNuclei => d * 0.16,
            _ => d * 0.09,
        },
        fibres,
        bands,
        foci,
        vessels,
        warp: ValueNoise::new(rng.gen()),
        warp_amp: d * rng.gen_range(0.03..0.06),
    }
}

fn nearest_fibre(fibres: &[Fibre], x: f32, y: f32, skip: &[usize]) -> Option<usize> {
    fibres
        .iter()
        .enumerate()
        .filter(|(i, _)| !skip.contains(i))
        .map(|(i, f)| (i, (f.x - x).powi(2) + (f.y - y).powi(2)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

fn plan_bands(class: SynthClass, w: f32, h: f32, d: f32, rng: &mut impl Rng) -> Vec<Band> {
    let mut bands = Vec::new();
    if class == SynthClass::PerifascicularAtrophy {
        // The border must cross the middle so that the left, centre and right
        // square crops of the photo all contain atrophic fibres.
        let angle = rng.gen_range(-0.45..0.45f32);
        let (x, y) = (w * rng.gen_range(0.4..0.6), h * rng.gen_range(0.4..0.6));
        let hw = d * rng.gen_range(0.28..0.5);
        bands.push(Band::new(x, y, angle, hw, d, h, rng));
        if rng.gen_bool(0.35) {
            let x2 = if rng.gen_bool(0.5) {
                w * rng.gen_range(0.06..0.16)
            } else {
                w * rng.gen_range(0.84..0.94)
            };
            let a2 = angle + rng.gen_range(-0.2..0.2f32);
            let hw2 = d * rng.gen_range(0.25..0.45);
            bands.push(Band::new(x2, h * 0.5, a2, hw2, d, h, rng));
        }
    } else {
        let p = match class {
            SynthClass::Normal => 0.45,
            SynthClass::Inflammatory => 0.4,
            _ => 0.35,
        };
        if rng.gen_bool(p) {
            let angle = rng.gen_range(-FRAC_PI_2..FRAC_PI_2);
            let (x, y) = (w * rng.gen_range(0.15..0.85), h * rng.gen_range(0.2..0.8));
            let hw = d * rng.gen_range(0.18..0.35);
            bands.push(Band::new(x, y, angle, hw, d, h, rng));
        }
    }
    bands
}

fn plan_foci(w: f32, h: f32, d: f32, rng: &mut impl Rng) -> Vec<Focus> {
    // One focus in each half of the photo keeps every square crop inflamed;
    // a third, anywhere, varies the pattern.
    let mut xs = vec![w * rng.gen_range(0.2..0.4), w * rng.gen_range(0.6..0.8)];
    if rng.gen_bool(0.45) {
        xs.push(w * rng.gen_range(0.1..0.9));
    }
    xs.into_iter()
        .map(|x| Focus {
            x,
            y: h * rng.gen_range(0.2..0.8),
            sigma: d * rng.gen_range(0.6..1.0),
            widening: d * rng.gen_range(0.25..0.4),
        })
        .collect()
}

fn plan_vessels(
    class: SynthClass,
    bands: &[Band],
    w: f32,
    h: f32,
    d: f32,
    rng: &mut impl Rng,
) -> Vec<Vessel> {
    let p = if class == SynthClass::PerifascicularAtrophy {
        0.7
    } else {
        0.55
    };
    let mut vessels = Vec::new();
    for b in bands {
        if !rng.gen_bool(p) {
            continue;
        }
        let (lo, hi) = b.along_range(w, h);
        let span = hi - lo;
        let along = lo + span * rng.gen_range(0.2..0.8);
        let (x, y) = b.point(along, 0.0);
        if x < 0.0 || y < 0.0 || x > w || y > h {
            continue;
        }
        vessels.push(Vessel {
            x,
            y,
            r: (b.half_width * rng.gen_range(0.8..1.25)).max(d * 0.22),
        });
    }
    vessels
}

/// Variable-radius disc packing (Bridson-style dart throwing grown from
/// active discs). Packed discs give the power diagram its natural mix of
/// 5–7-sided fibres; the radius function sets local fibre size.
struct DiscPacker<'a> {
    /// Packing area: the photo plus a margin, because sites outside the
    /// photo close off the fibres cut by its border.
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
    r_mean: f32,
    r_max: f32,
    bands: &'a [Band],
    vessels: &'a [Vessel],
    /// Whether a disc that does not fit is retried a little smaller.
    shrink: bool,
    cell: f32,
    gw: usize,
    gh: usize,
    grid: Vec<Vec<u32>>,
    sites: Vec<(f32, f32, f32)>,
    active: Vec<u32>,
}

impl<'a> DiscPacker<'a> {
    fn new(
        w: f32,
        h: f32,
        r_mean: f32,
        r_max: f32,
        bands: &'a [Band],
        vessels: &'a [Vessel],
        shrink: bool,
    ) -> Self {
        let margin = 2.0 * r_max;
        let (x0, y0, x1, y1) = (-margin, -margin, w + margin, h + margin);
        let cell = r_mean;
        let gw = ((x1 - x0) / cell).ceil() as usize + 1;
        let gh = ((y1 - y0) / cell).ceil() as usize + 1;
        Self {
            x0,
            y0,
            x1,
            y1,
            r_mean,
            r_max,
            bands,
            vessels,
            shrink,
            cell,
            gw,
            gh,
            grid: vec![Vec::new(); gw * gh],
            sites: Vec::new(),
            active: Vec::new(),
        }
    }

    fn cell_of(&self, x: f32, y: f32) -> (usize, usize) {
        (
            (((x - self.x0) / self.cell) as usize).min(self.gw - 1),
            (((y - self.y0) / self.cell) as usize).min(self.gh - 1),
        )
    }

    fn fits(&self, x: f32, y: f32, r: f32) -> bool {
        if !(self.x0..=self.x1).contains(&x) || !(self.y0..=self.y1).contains(&y) {
            return false;
        }
        // Fibres pack against a fascicle border or vessel instead of straddling it.
        if self.bands.iter().any(|b| b.edge_distance(x, y) < 0.95 * r)
            || self
                .vessels
                .iter()
                .any(|v| v.edge_distance(x, y) < 0.95 * r)
        {
            return false;
        }
        let (cx, cy) = self.cell_of(x, y);
        let span = ((r + self.r_max) / self.cell).ceil() as usize;
        for gy in cy.saturating_sub(span)..=(cy + span).min(self.gh - 1) {
            for gx in cx.saturating_sub(span)..=(cx + span).min(self.gw - 1) {
                for &j in &self.grid[gy * self.gw + gx] {
                    let (sx, sy, sr) = self.sites[j as usize];
                    let min = r + sr;
                    if (sx - x).powi(2) + (sy - y).powi(2) < min * min {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn insert(&mut self, x: f32, y: f32, r: f32) {
        let (cx, cy) = self.cell_of(x, y);
        let idx = self.sites.len() as u32;
        self.sites.push((x, y, r));
        self.grid[cy * self.gw + cx].push(idx);
        self.active.push(idx);
    }

    fn pack<R: Rng>(
        mut self,
        rng: &mut R,
        radius_at: impl Fn(&mut R, f32, f32) -> f32,
    ) -> Vec<(f32, f32, f32)> {
        // Several starting discs, so that growth need not cross a band.
        let step = 5.0 * self.r_mean;
        let mut sy = self.y0;
        while sy < self.y1 {
            let mut sx = self.x0;
            while sx < self.x1 {
                let (x, y) = (sx + rng.gen::<f32>() * step, sy + rng.gen::<f32>() * step);
                let r = radius_at(rng, x, y);
                if self.fits(x, y, r) {
                    self.insert(x, y, r);
                }
                sx += step;
            }
            sy += step;
        }

        while !self.active.is_empty() {
            let ai = rng.gen_range(0..self.active.len());
            let (ax, ay, ar) = self.sites[self.active[ai] as usize];
            let mut placed = false;
            'tries: for _ in 0..24 {
                let theta = rng.gen_range(0.0..TAU);
                let (s, c) = theta.sin_cos();
                let mut r = radius_at(rng, ax + c * 2.0 * ar, ay + s * 2.0 * ar);
                let gap = rng.gen_range(0.0..0.3);
                // A disc that does not fit may be retried a little smaller:
                // otherwise voids between size zones stay empty and show as
                // holes. One modest step only, so interstices stay empty.
                for _ in 0..1 + usize::from(self.shrink) {
                    let dist = (ar + r) * (1.0 + gap);
                    let (x, y) = (ax + c * dist, ay + s * dist);
                    if self.fits(x, y, r) {
                        self.insert(x, y, r);
                        placed = true;
                        break 'tries;
                    }
                    r *= 0.8;
                }
            }
            if !placed {
                self.active.swap_remove(ai);
            }
        }
        self.sites
    }
}
