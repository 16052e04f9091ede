//! The decoder's skip gate `skip * (1 + sigmoid(z))` in one pass, with its
//! backward (`d skip = g (1 + s)`, `dz = g skip s (1 - s)`), instead of
//! four tensor ops and their gradients.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::{contiguous_f32, is_cpu_f32};

/// `skip * (1 + sigmoid(z))`, differentiable.
pub fn gate(z: &Tensor, skip: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(z) && is_cpu_f32(skip) && z.shape() == skip.shape() {
        return z.contiguous()?.apply_op2(&skip.contiguous()?, Gate);
    }
    skip.mul(&(candle_nn::ops::sigmoid(z)? + 1.0)?)
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

const CHUNK: usize = 1 << 14;

struct Gate;

impl CustomOp2 for Gate {
    fn name(&self) -> &'static str {
        "skip-gate-f32"
    }

    fn cpu_fwd(&self, zs: &CpuStorage, zl: &Layout, ss: &CpuStorage, sl: &Layout) -> Result<(CpuStorage, Shape)> {
        let z = contiguous_f32(zs, zl, "gate input")?;
        let s = contiguous_f32(ss, sl, "gated skip")?;
        let out: Vec<f32> = z.par_iter().zip(s.par_iter()).with_min_len(CHUNK).map(|(&z, &s)| s * (1.0 + sigmoid(z))).collect();
        Ok((CpuStorage::F32(out), zl.shape().clone()))
    }

    fn bwd(&self, z: &Tensor, skip: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        let dz = z.contiguous()?.apply_op3_no_bwd(&skip.contiguous()?, &g, &GateGrad { wrt_z: true })?;
        let dskip = z.contiguous()?.apply_op3_no_bwd(&skip.contiguous()?, &g, &GateGrad { wrt_z: false })?;
        Ok((Some(dz), Some(dskip)))
    }
}

/// (z, skip, grad) -> the gradient with respect to z or to skip.
struct GateGrad {
    wrt_z: bool,
}

impl CustomOp3 for GateGrad {
    fn name(&self) -> &'static str {
        "skip-gate-grad-f32"
    }

    fn cpu_fwd(
        &self,
        zs: &CpuStorage,
        zl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let z = contiguous_f32(zs, zl, "gate input")?;
        let s = contiguous_f32(ss, sl, "gated skip")?;
        let g = contiguous_f32(gs, gl, "gate gradient")?;
        let wrt_z = self.wrt_z;
        let out: Vec<f32> = z
            .par_iter()
            .zip(s.par_iter())
            .zip(g.par_iter())
            .with_min_len(CHUNK)
            .map(|((&z, &s), &g)| {
                let sg = sigmoid(z);
                if wrt_z { g * s * sg * (1.0 - sg) } else { g * (1.0 + sg) }
            })
            .collect();
        Ok((CpuStorage::F32(out), zl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn value_and_gradients_equal_the_composite() {
        let z = Var::randn(0f32, 2.0, (2, 3, 5, 4), &Device::Cpu).unwrap();
        let s = Var::randn(0f32, 1.0, (2, 3, 5, 4), &Device::Cpu).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (2, 3, 5, 4), &Device::Cpu).unwrap();
        let ours = gate(z.as_tensor(), s.as_tensor()).unwrap();
        let theirs = s.as_tensor().mul(&(candle_nn::ops::sigmoid(z.as_tensor()).unwrap() + 1.0).unwrap()).unwrap();
        let d = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-6, "{d}");
        let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&z, &s] {
            let d = (g1.get(v.as_tensor()).unwrap() - g2.get(v.as_tensor()).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-5, "{d}");
        }
    }
}
