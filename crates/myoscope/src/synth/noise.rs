//! Seeding, hashing and smooth noise shared by the layout and the renderer.
//!
//! Everything here is a pure function of its inputs so that a photo is a pure
//! function of its seed, whatever thread renders it.

use rand::Rng;

/// SplitMix64 finaliser: a cheap bijective mixer with good avalanche, so that
/// neighbouring indices (slide 3 vs slide 4) give unrelated seeds.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Order-sensitive combination of several integers into one seed, so that
/// (seed, slide, photo) and (seed, photo, slide) do not collide.
pub(crate) fn derive_seed(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x6D79_6F73_636F_7065, |acc, &p| mix64(acc ^ mix64(p)))
}

/// Standard normal deviate (Box–Muller); `rand` 0.8 has no normal
/// distribution without the extra `rand_distr` crate.
pub(crate) fn gauss(rng: &mut impl Rng) -> f32 {
    let u1: f32 = 1.0 - rng.gen::<f32>(); // (0, 1], keeps ln finite
    let u2: f32 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Hermite smoothstep that also accepts `e0 > e1` (a falling edge).
pub(crate) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

pub(crate) fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// Polynomial smooth minimum: rounds the corner where two distance fields
/// meet, which is what turns Voronoi polygons into fibre-like profiles.
pub(crate) fn smin(a: f32, b: f32, k: f32) -> f32 {
    if k <= 0.0 {
        return a.min(b);
    }
    let h = (k - (a - b).abs()).max(0.0) / k;
    a.min(b) - h * h * k * 0.25
}

/// Hash of an integer lattice point to [-1, 1].
fn hash2(seed: u64, ix: i32, iy: i32) -> f32 {
    let key = ((ix as u32 as u64) << 32) | iy as u32 as u64;
    // One mixing round is plenty for texture; this is the renderer's hot path.
    let h = mix64(seed ^ key.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    (h >> 40) as f32 * (2.0 / (1u64 << 24) as f32) - 1.0
}

/// Per-pixel white noise in [-1, 1], addressed by pixel so it needs no RNG state.
pub(crate) fn white(seed: u64, x: u32, y: u32) -> f32 {
    hash2(seed, x as i32, y as i32)
}

/// Approximately standard-normal noise addressed by an index: the sum of
/// four 16-bit uniforms (Irwin–Hall), rescaled to unit variance. Camera
/// noise needs the bell shape, not exact tails, and this is far cheaper
/// than Box–Muller on every pixel and channel.
pub(crate) fn white_gauss(seed: u64, index: u64) -> f32 {
    let h = mix64(seed ^ index.wrapping_mul(0x9FB2_1C65_1E98_DF25));
    let sum = (h & 0xFFFF) + ((h >> 16) & 0xFFFF) + ((h >> 32) & 0xFFFF) + (h >> 48);
    // Each term is uniform on [0, 65535]: mean 2·65535, variance 4·65536²/12.
    (sum as f32 - 2.0 * 65535.0) * (3.0f32.sqrt() / 65536.0)
}

/// Lattice value noise: smooth, band-limited and cheap, enough for stain
/// mottling and sarcoplasm texture (gradient noise would buy nothing visible).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ValueNoise {
    seed: u64,
}

impl ValueNoise {
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// Noise in [-1, 1] with features about one unit apart.
    pub(crate) fn at(&self, x: f32, y: f32) -> f32 {
        let (fx, fy) = (x.floor(), y.floor());
        let (ix, iy) = (fx as i32, fy as i32);
        let (tx, ty) = (x - fx, y - fy);
        let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
        let a = hash2(self.seed, ix, iy);
        let b = hash2(self.seed, ix + 1, iy);
        let c = hash2(self.seed, ix, iy + 1);
        let d = hash2(self.seed, ix + 1, iy + 1);
        lerp(lerp(a, b, sx), lerp(c, d, sx), sy)
    }

    /// Fractal sum of octaves, normalised back to about [-1, 1].
    pub(crate) fn fbm(&self, x: f32, y: f32, octaves: u32) -> f32 {
        let (mut sum, mut amp, mut norm, mut f) = (0.0, 1.0, 0.0, 1.0);
        for o in 0..octaves {
            // Offsetting each octave avoids the lattice origins lining up.
            let off = o as f32 * 17.31;
            sum += amp * self.at(x * f + off, y * f - off);
            norm += amp;
            amp *= 0.5;
            f *= 2.03;
        }
        sum / norm
    }
}
