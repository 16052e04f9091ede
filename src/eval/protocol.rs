//! The evaluation protocol of the authors' `validate()`: which pixels of
//! one image count (the depth range, the dataset's crop), median scaling,
//! clipping, then the metrics.

use super::metrics::{compute_errors, Metrics};
/// Which evaluation crop: `none`, `eigen` or `garg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalCrop {
    None,
    Eigen,
    Garg,
}

impl std::str::FromStr for EvalCrop {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "eigen" => Ok(Self::Eigen),
            "garg" => Ok(Self::Garg),
            other => Err(format!("unknown crop {other:?} (none, eigen or garg)")),
        }
    }
}

impl EvalCrop {
    /// `eval_crop` as the authors' config spells it: `auto` (or empty)
    /// falls back to the older `garg_crop` / `eigen_crop` flags.
    pub fn resolve(eval_crop: &str, garg_crop: bool, eigen_crop: bool) -> Result<Self, String> {
        match eval_crop.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(if garg_crop {
                Self::Garg
            } else if eigen_crop {
                Self::Eigen
            } else {
                Self::None
            }),
            other => other.parse().map_err(|e| format!("eval_crop: {e}")),
        }
    }
}


#[derive(Debug, Clone, PartialEq)]
pub struct Protocol {
    /// `nyu`, `kitti` or another dataset name (lower case).
    pub dataset: String,
    pub min_depth: f64,
    pub max_depth: f64,
    pub crop: EvalCrop,
    pub median_scaling: bool,
}

/// The crop rectangle (rows, cols as half-open ranges) of `crop` for an
/// `h` x `w` map, or `None` when the dataset has none for it.
pub fn crop_rect(dataset: &str, crop: EvalCrop, h: usize, w: usize) -> Option<((usize, usize), (usize, usize))> {
    let frac = |f: f64, n: usize| (f * n as f64) as usize;
    match (crop, dataset) {
        (EvalCrop::None, _) => None,
        (EvalCrop::Garg, "kitti") => Some(((frac(0.40810811, h), frac(0.99189189, h)), (frac(0.03594771, w), frac(0.96405229, w)))),
        (EvalCrop::Garg, _) => None,
        (EvalCrop::Eigen, "kitti") => Some(((frac(0.3324324, h), frac(0.91351351, h)), (frac(0.0359477, w), frac(0.96405229, w)))),
        (EvalCrop::Eigen, "nyu") => Some(((45.min(h), 471.min(h)), (41.min(w), 601.min(w)))),
        (EvalCrop::Eigen, _) => None,
    }
}

/// float32 median as numpy computes it (mean of the two middle values
/// for an even count, in float32).
fn median_f32(v: &[f32]) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

impl Protocol {
    /// The valid ground-truth pixels of an `h` x `w` map: in range (float32
    /// comparisons, as numpy's) and inside the crop.
    pub fn mask(&self, gt: &[f32], h: usize, w: usize) -> Vec<bool> {
        let (lo, hi) = (self.min_depth as f32, self.max_depth as f32);
        let rect = crop_rect(&self.dataset, self.crop, h, w);
        gt.iter()
            .enumerate()
            .map(|(i, &g)| {
                let (y, x) = (i / w, i % w);
                let inside = rect.is_none_or(|((y0, y1), (x0, x1))| y >= y0 && y < y1 && x >= x0 && x < x1);
                g > lo && g < hi && inside
            })
            .collect()
    }

    /// Metrics of one image, `None` when no pixel is valid.
    pub fn image_metrics(&self, gt: &[f32], pred: &[f32], h: usize, w: usize) -> Option<Metrics> {
        let mask = self.mask(gt, h, w);
        let (g, mut p): (Vec<f32>, Vec<f32>) = gt.iter().zip(pred).zip(&mask).filter(|(_, &m)| m).map(|((&g, &p), _)| (g, p)).unzip();
        if g.is_empty() {
            return None;
        }
        if self.median_scaling {
            let (pm, gm) = (median_f32(&p), median_f32(&g));
            if pm.is_finite() && gm.is_finite() && pm > 1e-6 {
                let ratio = gm / pm;
                p.iter_mut().for_each(|v| *v *= ratio);
            }
        }
        let (lo, hi) = (self.min_depth as f32, self.max_depth as f32);
        p.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
        Some(compute_errors(&g, &p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_follow_the_fractions() {
        assert_eq!(crop_rect("kitti", EvalCrop::Eigen, 352, 704), Some(((117, 321), (25, 678))));
        assert_eq!(crop_rect("nyu", EvalCrop::Eigen, 480, 640), Some(((45, 471), (41, 601))));
        assert_eq!(crop_rect("nyu", EvalCrop::Garg, 480, 640), None);
        assert_eq!(crop_rect("robot", EvalCrop::Eigen, 480, 640), None);
    }

    #[test]
    fn median_scaling_removes_a_global_factor() {
        let p = Protocol { dataset: "nyu".into(), min_depth: 1e-3, max_depth: 10.0, crop: EvalCrop::None, median_scaling: true };
        let gt = [1.0f32, 2.0, 3.0, 4.0];
        let pred: Vec<f32> = gt.iter().map(|g| g * 3.0).collect();
        let m = p.image_metrics(&gt, &pred, 2, 2).unwrap();
        assert!(m.abs_rel < 1e-6, "{}", m.abs_rel);
        assert!(p.image_metrics(&[0.0; 4], &pred, 2, 2).is_none());
    }
}
