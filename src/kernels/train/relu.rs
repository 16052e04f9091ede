//! ReLU with PyTorch's gradient: zero where the output is zero (candle's
//! own passes the gradient at exactly 0). One pass forward, one backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::{contiguous_f32, is_cpu_f32};

/// `max(x, 0)`, differentiable; candle's op off the CPU.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(x) {
        x.contiguous()?.apply_op1(Relu)
    } else {
        x.relu()
    }
}

/// `grad` where `output > 0`, else 0 (the backward of a ReLU).
pub fn relu_grad(grad: &Tensor, output: &Tensor) -> Result<Tensor> {
    grad.contiguous()?.apply_op2_no_bwd(&output.contiguous()?, &ReluGrad)
}

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "relu-train-f32"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "relu input")?;
        let out: Vec<f32> = x.par_iter().with_min_len(1 << 14).map(|v| v.max(0.0)).collect();
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(relu_grad(grad, res)?))
    }
}

/// (grad, output) -> grad where output > 0, else 0.
struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "relu-grad-f32"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout, rs: &CpuStorage, rl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = contiguous_f32(gs, gl, "relu gradient")?;
        let r = contiguous_f32(rs, rl, "relu output")?;
        let out: Vec<f32> =
            g.par_iter().zip(r.par_iter()).with_min_len(1 << 14).map(|(&g, &r)| if r > 0.0 { g } else { 0.0 }).collect();
        Ok((CpuStorage::F32(out), gl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn gradient_is_zero_at_zero_as_pytorch() {
        let x = Var::from_vec(vec![-1f32, 0.0, 2.0], 3, &Device::Cpu).unwrap();
        let y = relu(x.as_tensor()).unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), vec![0.0, 0.0, 2.0]);
        let g = (y * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![0.0, 0.0, 3.0]);
    }
}
