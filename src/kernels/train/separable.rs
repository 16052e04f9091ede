//! Separable linear maps of (B, C, H, W) planes, `out = R X C^T` with
//! sparse R (H_out x H) and C (W_out x W), and their exact adjoints for the
//! backward pass (`dX = R^T dOut C`). Bilinear resizes (align_corners
//! false or true) and a zero-padded Gaussian blur are all such maps, so one
//! differentiable op serves the decoder's skips, the output resize and the
//! SSIM loss. candle has no backward for its bilinear resize.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::contiguous_f32;

/// A sparse (out_len x in_len) matrix, one row of (index, weight) pairs per
/// output position.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisMap {
    in_len: usize,
    /// Row r spans `starts[r]..starts[r + 1]` of `index` and `weight`.
    starts: Vec<usize>,
    index: Vec<usize>,
    /// Weights as computed in the run's precision (f32 values are exact here).
    weight: Vec<f64>,
}

impl AxisMap {
    pub fn from_rows(in_len: usize, rows: impl IntoIterator<Item = Vec<(usize, f64)>>) -> Self {
        let mut map = Self { in_len, starts: vec![0], index: Vec::new(), weight: Vec::new() };
        for row in rows {
            for (i, w) in row {
                assert!(i < in_len, "axis map index {i} beyond {in_len}");
                map.index.push(i);
                map.weight.push(w);
            }
            map.starts.push(map.index.len());
        }
        map
    }

    /// PyTorch's bilinear interpolation along one axis (`F.interpolate`,
    /// no antialias): with align_corners false the source coordinate is
    /// `(dst + 0.5) * in / out - 0.5` clamped at 0, with align_corners true
    /// `dst * (in - 1) / (out - 1)`. Weights are formed as PyTorch forms
    /// them: in f32 for f32 maps, in f64 when `f64_math` (double maps).
    pub fn bilinear(in_len: usize, out_len: usize, align_corners: bool, f64_math: bool) -> Self {
        fn weights<F: Float>(in_len: usize, out_len: usize, align_corners: bool) -> Vec<Vec<(usize, f64)>> {
            let (inf, outf) = (F::from_usize(in_len), F::from_usize(out_len));
            let scale = if align_corners {
                if out_len > 1 { (inf - F::one()) / (outf - F::one()) } else { F::zero() }
            } else {
                inf / outf
            };
            let half = F::from_f64(0.5);
            (0..out_len)
                .map(|d| {
                    let df = F::from_usize(d);
                    let src = if align_corners { scale * df } else { (scale * (df + half) - half).max_zero() };
                    let i0 = src.floor_usize().min(in_len - 1);
                    let i1 = if i0 + 1 < in_len { i0 + 1 } else { i0 };
                    let l1 = src - F::from_usize(i0);
                    let l0 = F::one() - l1;
                    if i1 == i0 { vec![(i0, (l0 + l1).to_f64())] } else { vec![(i0, l0.to_f64()), (i1, l1.to_f64())] }
                })
                .collect()
        }
        let rows = if f64_math { weights::<f64>(in_len, out_len, align_corners) } else { weights::<f32>(in_len, out_len, align_corners) };
        Self::from_rows(in_len, rows)
    }

    /// Correlation with `kernel` (odd length, centred) and zero padding:
    /// the same length out as in, as `F.conv2d(padding = k / 2)` along one axis.
    pub fn convolution(len: usize, kernel: &[f64]) -> Self {
        let r = kernel.len() / 2;
        Self::from_rows(
            len,
            (0..len).map(|o| {
                kernel
                    .iter()
                    .enumerate()
                    .filter_map(|(k, &w)| (o + k).checked_sub(r).filter(|&i| i < len).map(|i| (i, w)))
                    .collect()
            }),
        )
    }

    pub fn in_len(&self) -> usize {
        self.in_len
    }

    pub fn out_len(&self) -> usize {
        self.starts.len() - 1
    }

    /// The transposed matrix (in_len x out_len).
    pub fn transpose(&self) -> Self {
        let mut rows = vec![Vec::new(); self.in_len];
        for r in 0..self.out_len() {
            for k in self.starts[r]..self.starts[r + 1] {
                rows[self.index[k]].push((r, self.weight[k]));
            }
        }
        Self::from_rows(self.out_len(), rows)
    }

    /// As a dense (out_len x in_len) tensor, for devices without the CPU op.
    pub fn dense(&self, device: &Device) -> Result<Tensor> {
        let mut m = vec![0f64; self.out_len() * self.in_len];
        for r in 0..self.out_len() {
            for k in self.starts[r]..self.starts[r + 1] {
                m[r * self.in_len + self.index[k]] += self.weight[k];
            }
        }
        Tensor::from_vec(m, (self.out_len(), self.in_len), device)
    }

    fn row(&self, r: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        (self.starts[r]..self.starts[r + 1]).map(move |k| (self.index[k], self.weight[k] as f32))
    }
}

/// `out = rows X cols^T` per plane; differentiable (the backward is the
/// same op with both maps transposed).
#[derive(Debug, Clone)]
pub struct SeparableMap {
    pub rows: Arc<AxisMap>,
    pub cols: Arc<AxisMap>,
}

impl SeparableMap {
    pub fn new(rows: AxisMap, cols: AxisMap) -> Self {
        Self { rows: Arc::new(rows), cols: Arc::new(cols) }
    }

    /// Applies the map to `x` (B, C, H, W): the CPU kernel in f32, dense
    /// matrix products elsewhere (exact and differentiable as well).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if crate::kernels::is_cpu_f32(x) {
            return x.contiguous()?.apply_op1(self.clone());
        }
        let r = self.rows.dense(x.device())?.to_dtype(x.dtype())?;
        let c = self.cols.dense(x.device())?.to_dtype(x.dtype())?;
        r.broadcast_matmul(&x.broadcast_matmul(&c.t()?)?)
    }

    fn transposed(&self) -> Self {
        Self { rows: Arc::new(self.rows.transpose()), cols: Arc::new(self.cols.transpose()) }
    }
}

impl CustomOp1 for SeparableMap {
    fn name(&self) -> &'static str {
        "separable-map-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = layout.shape().dims4()?;
        if (h, w) != (self.rows.in_len, self.cols.in_len) {
            candle_core::bail!(
                "separable map: input {h}x{w}, the map takes {}x{}",
                self.rows.in_len,
                self.cols.in_len
            );
        }
        let x = contiguous_f32(storage, layout, "separable map input")?;
        let (oh, ow) = (self.rows.out_len(), self.cols.out_len());
        let mut out = vec![0f32; b * c * oh * ow];
        if oh * ow > 0 && h * w > 0 {
            out.par_chunks_exact_mut(oh * ow).zip(x.par_chunks_exact(h * w)).for_each_init(Vec::new, |tmp, (o, s)| {
                // Columns first: every input row -> out_w values.
                tmp.clear();
                tmp.resize(h * ow, 0.0);
                for (y, trow) in tmp.chunks_exact_mut(ow).enumerate() {
                    let srow = &s[y * w..(y + 1) * w];
                    for (x, t) in trow.iter_mut().enumerate() {
                        *t = self.cols.row(x).fold(0.0, |acc, (i, wt)| acc + wt * srow[i]);
                    }
                }
                for (y, orow) in o.chunks_exact_mut(ow).enumerate() {
                    for (i, wt) in self.rows.row(y) {
                        let trow = &tmp[i * ow..(i + 1) * ow];
                        orow.iter_mut().zip(trow).for_each(|(o, t)| *o += wt * t);
                    }
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&self.transposed())?))
    }
}

/// Bilinear resize (B, C, H, W) -> (B, C, h, w) as PyTorch's
/// `F.interpolate(mode="bilinear")`, differentiable; a no-op when the size
/// already matches.
pub fn resize_bilinear(x: &Tensor, h: usize, w: usize, align_corners: bool) -> Result<Tensor> {
    let (_, _, xh, xw) = x.dims4()?;
    if (xh, xw) == (h, w) {
        return Ok(x.clone());
    }
    let f64_math = x.dtype() == candle_core::DType::F64;
    SeparableMap::new(AxisMap::bilinear(xh, h, align_corners, f64_math), AxisMap::bilinear(xw, w, align_corners, f64_math)).apply(x)
}

/// The arithmetic the weights are formed in.
trait Float: Copy + std::ops::Add<Output = Self> + std::ops::Sub<Output = Self> + std::ops::Mul<Output = Self> + std::ops::Div<Output = Self> {
    fn from_usize(v: usize) -> Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn one() -> Self {
        Self::from_f64(1.0)
    }
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    fn max_zero(self) -> Self;
    fn floor_usize(self) -> usize;
}

impl Float for f32 {
    fn from_usize(v: usize) -> Self {
        v as f32
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn max_zero(self) -> Self {
        self.max(0.0)
    }
    fn floor_usize(self) -> usize {
        self as usize
    }
}

impl Float for f64 {
    fn from_usize(v: usize) -> Self {
        v as f64
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn max_zero(self) -> Self {
        self.max(0.0)
    }
    fn floor_usize(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    #[test]
    fn bilinear_equals_candle_resize() {
        let x = Tensor::randn(0f32, 1.0, (2, 3, 7, 5), &Device::Cpu).unwrap();
        for (h, w) in [(14, 10), (3, 2), (7, 5), (1, 1), (480, 640)] {
            let ours = resize_bilinear(&x, h, w, false).unwrap();
            let theirs = x.upsample_bilinear2d(h, w, false).unwrap();
            let d = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-5, "{h}x{w} align false: {d}");
            let ours = resize_bilinear(&x, h, w, true).unwrap();
            let theirs = x.upsample_bilinear2d(h, w, true).unwrap();
            let d = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-5, "{h}x{w} align true: {d}");
        }
    }

    #[test]
    fn backward_is_the_adjoint_and_matches_the_dense_path() {
        // <map(x), y> == <x, map^T(y)> for every x, y: check the gradient
        // of sum(map(x) * y) against the dense-matrix formulation.
        let x = Var::randn(0f32, 1.0, (2, 1, 6, 9), &Device::Cpu).unwrap();
        let y = Tensor::randn(0f32, 1.0, (2, 1, 11, 4), &Device::Cpu).unwrap();
        let map = SeparableMap::new(AxisMap::bilinear(6, 11, true, false), AxisMap::bilinear(9, 4, false, false));
        let g = (map.apply(x.as_tensor()).unwrap() * &y).unwrap().sum_all().unwrap().backward().unwrap();
        let ours = g.get(x.as_tensor()).unwrap().clone();
        let r = map.rows.dense(&Device::Cpu).unwrap().to_dtype(candle_core::DType::F32).unwrap();
        let c = map.cols.dense(&Device::Cpu).unwrap().to_dtype(candle_core::DType::F32).unwrap();
        let dense = r.t().unwrap().broadcast_matmul(&y).unwrap().broadcast_matmul(&c).unwrap();
        let d = (ours - dense).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{d}");
    }

    #[test]
    fn zero_padded_convolution_drops_taps_outside() {
        let m = AxisMap::convolution(3, &[1.0, 2.0, 3.0]);
        let rows: Vec<Vec<(usize, f32)>> = (0..3).map(|r| m.row(r).collect()).collect();
        assert_eq!(rows[0], vec![(0, 2.0), (1, 3.0)]);
        assert_eq!(rows[1], vec![(0, 1.0), (1, 2.0), (2, 3.0)]);
        assert_eq!(rows[2], vec![(1, 1.0), (2, 2.0)]);
    }
}
