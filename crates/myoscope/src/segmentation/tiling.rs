//! Cutting a C×H×W image into fixed-size square tiles for the network, and stitching per-tile
//! class probabilities back into one full-size C×H×W map.
//!
//! **Layout.** Tiles are `tile × tile` (480 by default, the paper's size). Neighbouring tiles
//! overlap by at least `overlap` pixels (64 by default), and the grid extends `overlap / 2`
//! pixels beyond every image edge, so that border pixels are seen with context instead of at
//! the very edge of a tile, where a CNN's own zero padding makes its output least reliable.
//! Along each axis the tiles are spread evenly from `−overlap/2` to `length + overlap/2`; an
//! image no longer than one tile along an axis gets a single tile, centred.
//!
//! **Why 64.** Nuclei at 20× (≈ 0.5 µm/px) are 10–25 px across: a 64 px seam holds whole
//! nuclei, so a nucleus cut by one tile's edge lies entirely inside its neighbour, and a
//! 32 px context margin is more than the distance over which the network's zero-padding
//! artefacts reach at the tile edge. It is a multiple of 8, like the encoder's stride at depth 3.
//! For 1920×1440 it costs 5×4 = 20 tiles instead of the 4×3 = 12 of a gapless cut.
//!
//! **Padding.** Tile pixels outside the image are filled by mirror reflection (`dcba|abcd…`
//! without repeating the edge pixel, repeated for images smaller than the padding), so the
//! network sees tissue-like texture and intensity rather than an artificial black edge; a
//! zero fill (background, for fluorescence) is available as [`Padding::Zero`].
//!
//! **Blending.** Each tile's predictions are weighted by a separable trapezoid: 1 in the
//! middle, falling linearly over `overlap` pixels to `1 / (overlap + 1)` at the tile edge,
//! never 0. Every image pixel lies in at least one tile, so its total weight is positive, and
//! the stitched value is the weighted mean of the tiles that cover it: no pixel is dropped,
//! none counted twice, and identical tile values stitch back exactly. In the overlap the two
//! ramps cross-fade, hiding seams.
use anyhow::{bail, Result};

/// Tile geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileConfig {
    /// Side of the square tile in pixels.
    pub tile: usize,
    /// Minimum overlap of neighbouring tiles, in pixels; also twice the context margin
    /// outside the image.
    pub overlap: usize,
    pub padding: Padding,
}

/// How tile pixels outside the image are filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Mirror the image at its edges (default).
    Reflect,
    /// Zeros: for fluorescence, background.
    Zero,
}

impl Default for TileConfig {
    fn default() -> Self {
        TileConfig {
            tile: 480,
            overlap: 64,
            padding: Padding::Reflect,
        }
    }
}

impl TileConfig {
    pub fn new(tile: usize, overlap: usize) -> Result<TileConfig> {
        let c = TileConfig {
            tile,
            overlap,
            padding: Padding::Reflect,
        };
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        if self.tile == 0 {
            bail!("tile size must be at least 1 pixel (the default is 480)");
        }
        if self.overlap >= self.tile {
            bail!(
                "overlap {} must be smaller than the tile size {} (tiles would never advance); \
                 use for example --overlap {}",
                self.overlap,
                self.tile,
                (self.tile / 8).max(1).min(self.tile - 1)
            );
        }
        Ok(())
    }

    /// An error unless the tile size divides by `2^depth`, which an encoder that halves the
    /// resolution `depth` times needs so that its skip connections line up.
    pub fn check_divisible(&self, depth: u32) -> Result<()> {
        let f = 1usize << depth;
        if !self.tile.is_multiple_of(f) {
            let down = self.tile / f * f;
            let up = down + f;
            let hint = if down == 0 {
                format!("use {up}")
            } else {
                format!("use {down} or {up}")
            };
            bail!(
                "tile size {} is not divisible by {f}: an encoder of depth {depth} halves the \
                 tile {depth} times; {hint}",
                self.tile
            );
        }
        Ok(())
    }
}

/// One tile: its place in the grid and its top-left corner in image coordinates (negative
/// when it starts in the padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub index: usize,
    pub row: usize,
    pub col: usize,
    pub y: isize,
    pub x: isize,
}

/// The tiles covering one H×W image.
#[derive(Clone, Debug, PartialEq)]
pub struct TileGrid {
    pub height: usize,
    pub width: usize,
    pub config: TileConfig,
    /// Tile origins along y and x.
    pub ys: Vec<isize>,
    pub xs: Vec<isize>,
}

impl TileGrid {
    pub fn new(height: usize, width: usize, config: TileConfig) -> Result<TileGrid> {
        config.validate()?;
        if height == 0 || width == 0 {
            bail!("cannot tile an empty image ({width}×{height})");
        }
        Ok(TileGrid {
            height,
            width,
            config,
            ys: axis_origins(height, config.tile, config.overlap),
            xs: axis_origins(width, config.tile, config.overlap),
        })
    }

    pub fn tile_size(&self) -> usize {
        self.config.tile
    }

    /// Number of tiles.
    pub fn len(&self) -> usize {
        self.ys.len() * self.xs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All tiles, row by row.
    pub fn tiles(&self) -> Vec<Tile> {
        let mut out = Vec::with_capacity(self.len());
        for (row, &y) in self.ys.iter().enumerate() {
            for (col, &x) in self.xs.iter().enumerate() {
                out.push(Tile {
                    index: out.len(),
                    row,
                    col,
                    y,
                    x,
                });
            }
        }
        out
    }

    /// The pixels of `tile` from every channel: C × tile × tile values, row-major.
    pub fn extract(&self, image: &PlaneStack<'_>, tile: &Tile) -> Result<Vec<f32>> {
        let t = self.config.tile;
        let mut out = vec![0.0; image.channels * t * t];
        self.extract_into(image, tile, &mut out)?;
        Ok(out)
    }

    /// Like [`Self::extract`], into a caller's buffer (a slot of a batch).
    pub fn extract_into(&self, image: &PlaneStack<'_>, tile: &Tile, out: &mut [f32]) -> Result<()> {
        self.check_image(image)?;
        self.check_tile(tile)?;
        let t = self.config.tile;
        if out.len() != image.channels * t * t {
            bail!(
                "tile buffer holds {} values; {} channels × {t}² need {}",
                out.len(),
                image.channels,
                image.channels * t * t
            );
        }
        let (h, w) = (self.height, self.width);
        let rows: Vec<Option<usize>> = (0..t)
            .map(|i| source_index(tile.y + i as isize, h, self.config.padding))
            .collect();
        let cols: Vec<Option<usize>> = (0..t)
            .map(|j| source_index(tile.x + j as isize, w, self.config.padding))
            .collect();
        for c in 0..image.channels {
            let plane = &image.data[c * h * w..(c + 1) * h * w];
            let dst = &mut out[c * t * t..(c + 1) * t * t];
            for (i, r) in rows.iter().enumerate() {
                let line = &mut dst[i * t..(i + 1) * t];
                match r {
                    None => line.fill(0.0),
                    Some(r) => {
                        let src = &plane[r * w..(r + 1) * w];
                        for (v, cidx) in line.iter_mut().zip(&cols) {
                            *v = cidx.map_or(0.0, |x| src[x]);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn check_image(&self, image: &PlaneStack<'_>) -> Result<()> {
        if (image.height, image.width) != (self.height, self.width) {
            bail!(
                "image is {}×{} but the tile grid was made for {}×{}",
                image.width,
                image.height,
                self.width,
                self.height
            );
        }
        Ok(())
    }

    fn check_tile(&self, tile: &Tile) -> Result<()> {
        let ok = tile.index < self.len()
            && self.ys.get(tile.row) == Some(&tile.y)
            && self.xs.get(tile.col) == Some(&tile.x)
            && tile.index == tile.row * self.xs.len() + tile.col;
        if !ok {
            bail!(
                "tile {:?} does not belong to this {}×{} grid; take tiles from TileGrid::tiles",
                tile,
                self.width,
                self.height
            );
        }
        Ok(())
    }
}

/// A borrowed C×H×W image: `channels` row-major planes of `height × width`, one after another.
#[derive(Clone, Copy, Debug)]
pub struct PlaneStack<'a> {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: &'a [f32],
}

impl<'a> PlaneStack<'a> {
    pub fn new(data: &'a [f32], channels: usize, height: usize, width: usize) -> Result<Self> {
        if channels == 0 || height == 0 || width == 0 {
            bail!(
                "an image needs at least one channel and one pixel ({channels}×{height}×{width})"
            );
        }
        if data.len() != channels * height * width {
            bail!(
                "a {channels}×{height}×{width} image needs {} values, got {}",
                channels * height * width,
                data.len()
            );
        }
        Ok(PlaneStack {
            channels,
            height,
            width,
            data,
        })
    }
}

/// Accumulates per-tile class probabilities into a full-size, blended C×H×W map.
pub struct Stitcher {
    grid: TileGrid,
    classes: usize,
    sum: Vec<f32>,
    weight: Vec<f32>,
    window: Vec<f32>,
    added: Vec<bool>,
}

impl Stitcher {
    pub fn new(grid: &TileGrid, classes: usize) -> Result<Stitcher> {
        if classes == 0 {
            bail!("stitching needs at least one output channel");
        }
        let (h, w) = (grid.height, grid.width);
        Ok(Stitcher {
            grid: grid.clone(),
            classes,
            sum: vec![0.0; classes * h * w],
            weight: vec![0.0; h * w],
            window: ramp_window(grid.config.tile, grid.config.overlap),
            added: vec![false; grid.len()],
        })
    }

    /// Adds one tile's output: `classes × tile × tile` values, row-major.
    pub fn add(&mut self, tile: &Tile, values: &[f32]) -> Result<()> {
        self.grid.check_tile(tile)?;
        let t = self.grid.config.tile;
        if values.len() != self.classes * t * t {
            bail!(
                "tile output holds {} values; {} classes × {t}² need {}",
                values.len(),
                self.classes,
                self.classes * t * t
            );
        }
        if std::mem::replace(&mut self.added[tile.index], true) {
            bail!("tile {} was added twice", tile.index);
        }
        let (h, w) = (self.grid.height, self.grid.width);
        // Only the part of the tile inside the image contributes.
        let y0 = tile.y.max(0) as usize;
        let x0 = tile.x.max(0) as usize;
        let y1 = ((tile.y + t as isize).min(h as isize)).max(0) as usize;
        let x1 = ((tile.x + t as isize).min(w as isize)).max(0) as usize;
        for y in y0..y1 {
            let ty = (y as isize - tile.y) as usize;
            for x in x0..x1 {
                let tx = (x as isize - tile.x) as usize;
                let wgt = self.window[ty] * self.window[tx];
                self.weight[y * w + x] += wgt;
                for c in 0..self.classes {
                    self.sum[(c * h + y) * w + x] += wgt * values[(c * t + ty) * t + tx];
                }
            }
        }
        Ok(())
    }

    /// The blended C×H×W map. Every tile of the grid must have been added.
    pub fn finish(self) -> Result<Vec<f32>> {
        let missing: Vec<usize> = (0..self.added.len()).filter(|&i| !self.added[i]).collect();
        if !missing.is_empty() {
            bail!(
                "stitching needs all {} tiles; {} missing (first: tile {})",
                self.added.len(),
                missing.len(),
                missing[0]
            );
        }
        let (h, w) = (self.grid.height, self.grid.width);
        if let Some(p) = self.weight.iter().position(|&v| v.is_nan() || v <= 0.0) {
            bail!(
                "pixel (x={}, y={}) is covered by no tile; this is a bug in the tile grid",
                p % w,
                p / w
            );
        }
        let mut out = self.sum;
        for c in 0..self.classes {
            for (v, wt) in out[c * h * w..(c + 1) * h * w].iter_mut().zip(&self.weight) {
                *v /= wt;
            }
        }
        Ok(out)
    }

    /// Total blending weight per pixel so far (H×W), for checks and pictures.
    pub fn weights(&self) -> &[f32] {
        &self.weight
    }
}

/// Tile origins along one axis of `length` pixels (see the module notes).
fn axis_origins(length: usize, tile: usize, overlap: usize) -> Vec<isize> {
    let (l, t) = (length as isize, tile as isize);
    if l <= t {
        return vec![-((t - l) / 2)];
    }
    let margin = (overlap / 2) as isize;
    let stride = (tile - overlap) as isize;
    let span = l + 2 * margin - t; // distance from the first origin to the last
    if span <= 0 {
        return vec![-((t - l) / 2)];
    }
    let steps = (span + stride - 1) / stride; // ceil: every gap ≤ stride
    (0..=steps)
        .map(|i| -margin + (i * span + steps / 2) / steps)
        .collect()
}

/// The image row/column that padded coordinate `i` reads, or `None` for zero padding.
fn source_index(i: isize, n: usize, padding: Padding) -> Option<usize> {
    if (0..n as isize).contains(&i) {
        return Some(i as usize);
    }
    match padding {
        Padding::Zero => None,
        Padding::Reflect if n == 1 => Some(0),
        Padding::Reflect => {
            let period = 2 * (n as isize - 1);
            let m = i.rem_euclid(period);
            Some(if m < n as isize { m } else { period - m } as usize)
        }
    }
}

/// 1-D blending weights: `min(1, (i + 1) / (r + 1), (t − i) / (r + 1))` with `r = overlap`.
fn ramp_window(tile: usize, overlap: usize) -> Vec<f32> {
    let r = overlap.max(1) as f32 + 1.0;
    (0..tile)
        .map(|i| (((i + 1) as f32 / r).min((tile - i) as f32 / r)).min(1.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic, non-symmetric test image, C×H×W.
    fn image(c: usize, h: usize, w: usize) -> Vec<f32> {
        (0..c * h * w)
            .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 + (i / (h * w)) as f32)
            .collect()
    }

    fn round_trip(c: usize, h: usize, w: usize, cfg: TileConfig) -> (TileGrid, Vec<f32>, Vec<f32>) {
        let img = image(c, h, w);
        let grid = TileGrid::new(h, w, cfg).unwrap();
        let stack = PlaneStack::new(&img, c, h, w).unwrap();
        let mut st = Stitcher::new(&grid, c).unwrap();
        for tile in grid.tiles() {
            let px = grid.extract(&stack, &tile).unwrap();
            st.add(&tile, &px).unwrap();
        }
        assert!(st.weights().iter().all(|&v| v > 0.0));
        let out = st.finish().unwrap();
        (grid, img, out)
    }

    #[test]
    fn identity_network_reproduces_the_image() {
        let cfg = |tile, overlap| TileConfig::new(tile, overlap).unwrap();
        // Smaller than a tile, exactly a tile, one pixel more, non-square real shapes at 1/4
        // scale (1408×1876 DEDL DAPI, 1920×1440 Vectra) and a one-pixel-wide strip.
        for (c, h, w, config) in [
            (1, 50, 70, cfg(120, 16)),
            (2, 120, 120, cfg(120, 16)),
            (1, 121, 119, cfg(120, 16)),
            (1, 352, 469, cfg(120, 16)),
            (3, 360, 480, cfg(120, 16)),
            (1, 1, 300, cfg(64, 8)),
            (1, 37, 41, cfg(8, 7)),
        ] {
            for padding in [Padding::Reflect, Padding::Zero] {
                let (_, img, out) = round_trip(c, h, w, TileConfig { padding, ..config });
                let worst = img
                    .iter()
                    .zip(&out)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst <= 1e-6, "{c}×{h}×{w} {padding:?}: max error {worst}");
            }
        }
    }

    #[test]
    fn tiles_cover_the_image_with_the_promised_overlap() {
        for (len, tile, overlap) in [
            (1920, 480, 64),
            (1440, 480, 64),
            (1876, 480, 64),
            (481, 480, 64),
            (5, 480, 64),
            (1000, 100, 0),
        ] {
            let o = axis_origins(len, tile, overlap);
            let (t, l) = (tile as isize, len as isize);
            assert!(o[0] <= 0 && o[o.len() - 1] + t >= l, "{len}: {o:?}");
            for pair in o.windows(2) {
                let gap = pair[1] - pair[0];
                assert!(gap > 0 && gap <= t - overlap as isize, "{len}: {o:?}");
            }
            if len > tile {
                // Border pixels sit at least overlap/2 inside a tile.
                assert_eq!(o[0], -(overlap as isize / 2), "{len}: {o:?}");
                assert_eq!(o[o.len() - 1] + t, l + overlap as isize / 2, "{len}: {o:?}");
            }
        }
    }

    #[test]
    fn tile_counts() {
        let grid = |h, w| TileGrid::new(h, w, TileConfig::default()).unwrap();
        // 1920 wide: (1920 + 64 − 480) / 416 → 4 gaps, 5 tiles; 1440 high: 4 tiles.
        let g = grid(1440, 1920);
        assert_eq!((g.ys.len(), g.xs.len(), g.len()), (4, 5, 20));
        let g = grid(1408, 1876);
        assert_eq!((g.ys.len(), g.xs.len()), (4, 5));
        assert_eq!(grid(480, 480).len(), 1);
        assert_eq!(grid(256, 256).len(), 1);
        assert_eq!(grid(481, 100).len(), 2);
        assert_eq!(grid(260, 348).tiles()[0].y, -110); // centred: (480 − 260) / 2
        let g = TileGrid::new(1000, 1000, TileConfig::new(100, 0).unwrap()).unwrap();
        assert_eq!(g.len(), 100);
        assert_eq!(g.xs, (0..10).map(|i| i * 100).collect::<Vec<_>>());
    }

    #[test]
    fn reflect_and_zero_padding() {
        let n = 4;
        let got: Vec<usize> = (-5..9)
            .map(|i| source_index(i, n, Padding::Reflect).unwrap())
            .collect();
        assert_eq!(got, [1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
        assert_eq!(source_index(-3, 1, Padding::Reflect), Some(0));
        assert_eq!(source_index(-1, 4, Padding::Zero), None);
        // A 1×3 image in an 8×8 tile: rows mirror, the centre row is the image.
        let img = [1.0, 2.0, 3.0];
        let grid = TileGrid::new(1, 3, TileConfig::new(8, 2).unwrap()).unwrap();
        let stack = PlaneStack::new(&img, 1, 1, 3).unwrap();
        let tile = grid.tiles()[0];
        assert_eq!((tile.y, tile.x), (-3, -2));
        let px = grid.extract(&stack, &tile).unwrap();
        assert_eq!(&px[..8], [3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0]);
        assert!(px.chunks(8).all(|r| r == &px[..8]));
        let zero = TileGrid::new(
            1,
            3,
            TileConfig {
                padding: Padding::Zero,
                ..TileConfig::new(8, 2).unwrap()
            },
        )
        .unwrap();
        let px = zero.extract(&stack, &tile).unwrap();
        assert_eq!(&px[24..32], [0.0, 0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0]);
        assert!(px[..24].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn blending_window_is_positive_and_flat_in_the_middle() {
        let w = ramp_window(480, 64);
        assert!(w.iter().all(|&v| v > 0.0 && v <= 1.0));
        assert_eq!(w[0], 1.0 / 65.0);
        assert_eq!(w[240], 1.0);
        assert_eq!(w[0], w[479]);
        assert!(ramp_window(1, 0)[0] > 0.0);
    }

    #[test]
    fn stitching_blends_different_tile_values_smoothly() {
        // Tiles that disagree (value = tile index) give, in an overlap, a value between them.
        let grid = TileGrid::new(10, 30, TileConfig::new(16, 6).unwrap()).unwrap();
        let mut st = Stitcher::new(&grid, 1).unwrap();
        for t in grid.tiles() {
            st.add(&t, &vec![t.index as f32; 256]).unwrap();
        }
        let out = st.finish().unwrap();
        assert!(out
            .iter()
            .all(|&v| (0.0..=(grid.len() - 1) as f32).contains(&v)));
        let row: Vec<f32> = out[..30].to_vec();
        assert!(row.windows(2).all(|p| p[1] >= p[0] - 1e-6), "{row:?}");
    }

    #[test]
    fn bad_arguments_say_how_to_fix_them() {
        let e = TileConfig::new(0, 0).unwrap_err().to_string();
        assert!(e.contains("at least 1"), "{e}");
        let e = TileConfig::new(480, 480).unwrap_err().to_string();
        assert!(
            e.contains("smaller than the tile size") && e.contains("--overlap 60"),
            "{e}"
        );
        let e = TileConfig::new(500, 64)
            .unwrap()
            .check_divisible(3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("use 496 or 504"), "{e}");
        assert!(TileConfig::default().check_divisible(3).is_ok());
        assert!(TileConfig::default().check_divisible(5).is_ok());
        assert!(TileGrid::new(0, 5, TileConfig::default()).is_err());
        let e = PlaneStack::new(&[0.0; 5], 1, 2, 3).unwrap_err().to_string();
        assert!(e.contains("needs 6 values, got 5"), "{e}");

        let grid = TileGrid::new(20, 20, TileConfig::new(16, 4).unwrap()).unwrap();
        let img = vec![0.0; 400];
        let other = PlaneStack::new(&img, 1, 10, 40).unwrap();
        assert!(grid.extract(&other, &grid.tiles()[0]).is_err());
        let mut st = Stitcher::new(&grid, 2).unwrap();
        let tiles = grid.tiles();
        assert!(st.add(&tiles[0], &[0.0; 256]).is_err()); // 1 class given, 2 expected
        st.add(&tiles[0], &[0.0; 512]).unwrap();
        let e = st.add(&tiles[0], &[0.0; 512]).unwrap_err().to_string();
        assert!(e.contains("added twice"), "{e}");
        let forged = Tile { x: 3, ..tiles[1] };
        assert!(st.add(&forged, &[0.0; 512]).is_err());
        let e = st.finish().unwrap_err().to_string();
        assert!(e.contains("needs all 4 tiles; 3 missing"), "{e}");
    }
}
