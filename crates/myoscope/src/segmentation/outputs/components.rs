//! Connected components: a semantic mask → one label per nucleus.
//!
//! Two pixels belong to the same nucleus when they carry the same nonzero class and touch. With
//! [`Connectivity::Eight`] (the default, as in scikit-image's `label` on 2-D images) diagonal
//! neighbours touch too, so a nucleus drawn with a one-pixel diagonal stroke stays whole; with
//! [`Connectivity::Four`] only edge neighbours do, which splits nuclei that meet at a corner.
use super::LabelImage;
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connectivity {
    Four,
    #[default]
    Eight,
}

impl Connectivity {
    fn offsets(&self) -> &'static [(i64, i64)] {
        match self {
            Connectivity::Four => &[(1, 0), (-1, 0), (0, 1), (0, -1)],
            Connectivity::Eight => &[
                (1, 0),
                (-1, 0),
                (0, 1),
                (0, -1),
                (1, 1),
                (1, -1),
                (-1, 1),
                (-1, -1),
            ],
        }
    }
}

/// Nuclei labelled 1..=count in the raster order of their first (top-left-most) pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instances {
    pub labels: LabelImage,
    /// The semantic class of nucleus `i + 1`.
    pub classes: Vec<u32>,
    /// The pixel count of nucleus `i + 1`.
    pub areas: Vec<u64>,
    pub connectivity: Connectivity,
}

impl Instances {
    pub fn count(&self) -> usize {
        self.classes.len()
    }

    /// Takes an instance label image as it is (for example a ground-truth label TIFF): labels
    /// need not be consecutive; they are renumbered 1..=count in raster order, all class 1.
    pub fn from_instance_labels(labels: &LabelImage, connectivity: Connectivity) -> Result<Self> {
        let mut map = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(labels.labels().len());
        let mut areas: Vec<u64> = Vec::new();
        for &l in labels.labels() {
            if l == 0 {
                out.push(0);
                continue;
            }
            let next = map.len() as u32 + 1;
            let id = *map.entry(l).or_insert(next);
            if id as usize > areas.len() {
                areas.push(0);
            }
            areas[id as usize - 1] += 1;
            out.push(id);
        }
        Ok(Self {
            labels: LabelImage::new(labels.width(), labels.height(), out)?,
            classes: vec![1; areas.len()],
            areas,
            connectivity,
        })
    }

    /// Drops nuclei smaller than `min_area` pixels (speckle) and renumbers the rest.
    pub fn without_smaller_than(&self, min_area: u64) -> Result<Self> {
        let mut renumber = vec![0u32; self.count() + 1];
        let (mut classes, mut areas) = (Vec::new(), Vec::new());
        for i in 0..self.count() {
            if self.areas[i] >= min_area {
                classes.push(self.classes[i]);
                areas.push(self.areas[i]);
                renumber[i + 1] = classes.len() as u32;
            }
        }
        let labels = self
            .labels
            .labels()
            .iter()
            .map(|&l| renumber[l as usize])
            .collect();
        Ok(Self {
            labels: LabelImage::new(self.labels.width(), self.labels.height(), labels)?,
            classes,
            areas,
            connectivity: self.connectivity,
        })
    }
}

/// Labels the connected regions of equal nonzero value in `mask`.
pub fn connected_components(mask: &LabelImage, connectivity: Connectivity) -> Result<Instances> {
    let (w, h) = (mask.width(), mask.height());
    ensure!(
        (w as u64) * (h as u64) < u32::MAX as u64,
        "a {w}×{h} mask is too large to label"
    );
    let values = mask.labels();
    let mut labels = vec![0u32; values.len()];
    let (mut classes, mut areas) = (Vec::new(), Vec::new());
    let mut stack: Vec<usize> = Vec::new();
    for start in 0..values.len() {
        let class = values[start];
        if class == 0 || labels[start] != 0 {
            continue;
        }
        let id = classes.len() as u32 + 1;
        classes.push(class);
        let mut area = 0u64;
        labels[start] = id;
        stack.push(start);
        // Flood fill with an explicit stack: no recursion depth limit on big nuclei.
        while let Some(i) = stack.pop() {
            area += 1;
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            for &(dx, dy) in connectivity.offsets() {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                    continue;
                }
                let j = ny as usize * w + nx as usize;
                if labels[j] == 0 && values[j] == class {
                    labels[j] = id;
                    stack.push(j);
                }
            }
        }
        areas.push(area);
    }
    Ok(Instances {
        labels: LabelImage::new(w, h, labels)?,
        classes,
        areas,
        connectivity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> LabelImage {
        let w = rows[0].len();
        let v: Vec<u32> = rows
            .iter()
            .flat_map(|r| {
                r.bytes()
                    .map(|b| if b == b'.' { 0 } else { (b - b'0') as u32 })
            })
            .collect();
        LabelImage::new(w, rows.len(), v).unwrap()
    }

    #[test]
    fn diagonal_touches_join_only_with_eight_connectivity() {
        let m = mask(&["1..1", ".1..", "...1", "22.1"]);
        let eight = connected_components(&m, Connectivity::Eight).unwrap();
        // {(0,0),(1,1)}, {(3,0)}, {(3,2),(3,3)}, {(0,3),(1,3)} of class 2.
        assert_eq!(eight.count(), 4);
        assert_eq!(eight.areas, vec![2, 1, 2, 2]);
        assert_eq!(eight.classes, vec![1, 1, 1, 2]);
        let four = connected_components(&m, Connectivity::Four).unwrap();
        assert_eq!(four.count(), 5);
        assert_eq!(four.labels.labels()[0], 1);
        assert_eq!(four.labels.labels()[5], 3);
    }

    #[test]
    fn different_classes_never_merge_and_empty_masks_have_no_nuclei() {
        let m = mask(&["1122", "1122"]);
        assert_eq!(
            connected_components(&m, Connectivity::Eight)
                .unwrap()
                .count(),
            2
        );
        let empty = LabelImage::new(3, 2, vec![0; 6]).unwrap();
        assert_eq!(
            connected_components(&empty, Connectivity::Eight)
                .unwrap()
                .count(),
            0
        );
        let nothing = LabelImage::new(0, 0, vec![]).unwrap();
        assert_eq!(
            connected_components(&nothing, Connectivity::Four)
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn small_nuclei_are_dropped_and_labels_renumbered() {
        let m = mask(&["1..11", "...11"]);
        let all = connected_components(&m, Connectivity::Eight).unwrap();
        let big = all.without_smaller_than(2).unwrap();
        assert_eq!(big.count(), 1);
        assert_eq!(big.labels.labels(), &[0, 0, 0, 1, 1, 0, 0, 0, 1, 1]);
        let inst = LabelImage::new(3, 1, vec![7, 0, 3]).unwrap();
        let i = Instances::from_instance_labels(&inst, Connectivity::Eight).unwrap();
        assert_eq!(i.labels.labels(), &[1, 0, 2]);
    }
}
