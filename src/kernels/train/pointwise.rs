//! 1x1 convolution and the 2x2 stride-2 transposed convolution, each with
//! its bias, as one op with its backward pass: a GEMM per image (for the
//! transposed convolution followed by interleaving the four output phases)
//! with the bias added in the same pass, and in the backward pass the bias
//! gradient summed in parallel. Composed from tensor ops these cost a
//! matmul, a transpose copy, a broadcast add and, backwards, a slow
//! broadcast reduction and more copies.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::contiguous_f32;
use crate::kernels::gemm::{matmul, MatRef};

/// The layer a call computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Conv 1x1: weight (C_out, C_in, 1, 1), output (B, C_out, H, W).
    Conv1x1,
    /// ConvTranspose 2x2 stride 2: weight (C_in, C_out, 2, 2), output (B, C_out, 2H, 2W).
    Up2x2,
}

/// (x, weight, bias) -> y, differentiable.
#[derive(Debug, Clone, Copy)]
pub struct Pointwise(pub Kind);

/// The (rows x C_in) matrix the GEMM multiplies by: the 1x1 weights as
/// stored, or for the transposed conv one row per (c_out, dy, dx).
fn lhs_matrix(kind: Kind, w: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    match kind {
        Kind::Conv1x1 => w.to_vec(),
        Kind::Up2x2 => {
            let mut m = vec![0f32; 4 * c_out * c_in];
            for ci in 0..c_in {
                for co in 0..c_out {
                    for p in 0..4 {
                        m[(co * 4 + p) * c_in + ci] = w[(ci * c_out + co) * 4 + p];
                    }
                }
            }
            m
        }
    }
}

fn dims(kind: Kind, xl: &Layout, wl: &Layout) -> Result<(usize, usize, usize, usize, usize)> {
    let (b, c_in, h, w) = xl.shape().dims4()?;
    let c_out = match (kind, wl.shape().dims4()?) {
        (Kind::Conv1x1, (co, ci, 1, 1)) if ci == c_in => co,
        (Kind::Up2x2, (ci, co, 2, 2)) if ci == c_in => co,
        _ => candle_core::bail!("{kind:?}: weights {:?} do not fit input {:?}", wl.shape(), xl.shape()),
    };
    Ok((b, c_in, c_out, h, w))
}

impl CustomOp3 for Pointwise {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Conv1x1 => "conv1x1-train-f32",
            Kind::Up2x2 => "conv-transpose-2x2-train-f32",
        }
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c_in, c_out, h, w) = dims(self.0, xl, wl)?;
        let x = contiguous_f32(xs, xl, "input")?;
        let bias = contiguous_f32(bs, bl, "bias")?;
        let lhs = lhs_matrix(self.0, contiguous_f32(ws, wl, "weight")?, c_in, c_out);
        let hw = h * w;
        let rows = lhs.len() / c_in;
        let mut out = vec![0f32; b * c_out * hw * if self.0 == Kind::Up2x2 { 4 } else { 1 }];
        let mut prod = vec![0f32; if self.0 == Kind::Up2x2 { rows * hw } else { 0 }];
        let per_out = out.len() / b;
        for (xi, oi) in x.chunks_exact(c_in * hw).zip(out.chunks_exact_mut(per_out)) {
            let target: &mut [f32] = if self.0 == Kind::Up2x2 { &mut prod } else { &mut *oi };
            matmul(MatRef::dense(&lhs, rows, c_in), MatRef::dense(xi, c_in, hw), target, hw, false);
            match self.0 {
                Kind::Conv1x1 => oi.par_chunks_exact_mut(hw).zip(bias).for_each(|(plane, &bv)| plane.iter_mut().for_each(|v| *v += bv)),
                Kind::Up2x2 => {
                    let prod = &prod;
                    oi.par_chunks_exact_mut(4 * hw).enumerate().for_each(|(co, plane)| {
                        let bv = bias[co];
                        for y in 0..h {
                            for dy in 0..2 {
                                let row = &mut plane[(2 * y + dy) * 2 * w..(2 * y + dy + 1) * 2 * w];
                                let p0 = &prod[(co * 4 + dy * 2) * hw + y * w..][..w];
                                let p1 = &prod[(co * 4 + dy * 2 + 1) * hw + y * w..][..w];
                                for x in 0..w {
                                    row[2 * x] = p0[x] + bv;
                                    row[2 * x + 1] = p1[x] + bv;
                                }
                            }
                        }
                    });
                }
            }
        }
        let shape = match self.0 {
            Kind::Conv1x1 => Shape::from((b, c_out, h, w)),
            Kind::Up2x2 => Shape::from((b, c_out, 2 * h, 2 * w)),
        };
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (bsz, c_in, h, wd) = x.dims4()?;
        let c_out = match self.0 {
            Kind::Conv1x1 => w.dim(0)?,
            Kind::Up2x2 => w.dim(1)?,
        };
        let hw = h * wd;
        let x = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let lhs = lhs_matrix(self.0, &w.flatten_all()?.to_vec1::<f32>()?, c_in, c_out);
        let rows = lhs.len() / c_in;
        let per_g = g.len() / bsz;
        // Per image, the gradient as (rows x HW): the 1x1 planes as they
        // are; for the transposed conv, the four phases gathered back.
        let mut q = vec![0f32; rows * hw];
        let mut dx = vec![0f32; x.len()];
        let mut dw = vec![0f32; rows * c_in];
        for (i, gi) in g.chunks_exact(per_g).enumerate() {
            let gq: &[f32] = match self.0 {
                Kind::Conv1x1 => gi,
                Kind::Up2x2 => {
                    q.par_chunks_exact_mut(hw).enumerate().for_each(|(r, dst)| {
                        let (co, dy, dx) = (r / 4, (r % 4) / 2, r % 2);
                        let plane = &gi[co * 4 * hw..(co + 1) * 4 * hw];
                        for y in 0..h {
                            let row = &plane[(2 * y + dy) * 2 * wd..(2 * y + dy + 1) * 2 * wd];
                            for xx in 0..wd {
                                dst[y * wd + xx] = row[2 * xx + dx];
                            }
                        }
                    });
                    &q
                }
            };
            let xi = &x[i * c_in * hw..(i + 1) * c_in * hw];
            // dX = L^T Q; dL += Q X^T.
            matmul(MatRef::dense(&lhs, rows, c_in).t(), MatRef::dense(gq, rows, hw), &mut dx[i * c_in * hw..(i + 1) * c_in * hw], hw, false);
            matmul(MatRef::dense(gq, rows, hw), MatRef::dense(xi, c_in, hw).t(), &mut dw, c_in, i > 0);
        }
        let db: Vec<f32> = (0..c_out)
            .into_par_iter()
            .map(|co| {
                let plane = per_g / c_out;
                (0..bsz).map(|i| g[i * per_g + co * plane..i * per_g + (co + 1) * plane].iter().map(|&v| v as f64).sum::<f64>()).sum::<f64>() as f32
            })
            .collect();
        let dw = match self.0 {
            Kind::Conv1x1 => dw,
            Kind::Up2x2 => {
                let mut out = vec![0f32; dw.len()];
                for ci in 0..c_in {
                    for co in 0..c_out {
                        for p in 0..4 {
                            out[(ci * c_out + co) * 4 + p] = dw[(co * 4 + p) * c_in + ci];
                        }
                    }
                }
                out
            }
        };
        let dev = grad.device();
        Ok((
            Some(Tensor::from_vec(dx, (bsz, c_in, h, wd), dev)?),
            Some(Tensor::from_vec(dw, w.shape(), dev)?),
            Some(Tensor::from_vec(db, c_out, dev)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_and_gradients_equal_candle_ops() {
        let dev = Device::Cpu;
        for kind in [Kind::Conv1x1, Kind::Up2x2] {
            let (b, ci, co, h, w) = (2, 5, 3, 4, 6);
            let x = Var::randn(0f32, 1.0, (b, ci, h, w), &dev).unwrap();
            let wt = match kind {
                Kind::Conv1x1 => Var::randn(0f32, 1.0, (co, ci, 1, 1), &dev).unwrap(),
                Kind::Up2x2 => Var::randn(0f32, 1.0, (ci, co, 2, 2), &dev).unwrap(),
            };
            let bias = Var::randn(0f32, 1.0, co, &dev).unwrap();
            let ours = x.as_tensor().apply_op3(wt.as_tensor(), bias.as_tensor(), Pointwise(kind)).unwrap();
            let theirs = match kind {
                Kind::Conv1x1 => x.as_tensor().conv2d(wt.as_tensor(), 0, 1, 1, 1).unwrap(),
                Kind::Up2x2 => x.as_tensor().conv_transpose2d(wt.as_tensor(), 0, 0, 2, 1).unwrap(),
            }
            .broadcast_add(&bias.reshape((1, co, 1, 1)).unwrap())
            .unwrap();
            let probe = Tensor::randn(0f32, 1.0, theirs.shape(), &dev).unwrap();
            let d = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-5, "{kind:?} forward {d}");
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &wt, &bias] {
                let d = (g1.get(v.as_tensor()).unwrap() - g2.get(v.as_tensor()).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(d < 1e-4, "{kind:?} gradient {d} for {:?}", v.shape());
            }
        }
    }
}
