//! The CPU f32 kernels of the model's Linear layer: one GEMM into an output
//! pre-filled with the bias, the activation applied in the same pass.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::avx512::{Epilogue, PackedLinear};
use super::contiguous_f32;
use super::activation::Activation;

/// [`crate::model::layers::Linear`] with weights packed for the AVX-512 kernel: (x, bias) ->
/// act(x W^T + b).
pub struct CpuPackedLinear {
    pub weights: Arc<PackedLinear>,
    pub act: Option<Activation>,
}

impl CustomOp2 for CpuPackedLinear {
    fn name(&self) -> &'static str {
        "linear-packed-f32"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, bs: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, _) = xl.shape().dims2()?;
        let n = self.weights.out_features();
        let x = contiguous_f32(xs, xl, "linear input")?;
        let bias = contiguous_f32(bs, bl, "linear bias")?;
        let mut out = vec![0f32; m * n];
        let (epilogue, rest) = match self.act {
            None => (Epilogue::None, None),
            Some(Activation::Relu) => (Epilogue::Relu, None),
            Some(Activation::QuickGelu) => (Epilogue::QuickGelu, None),
            Some(other) => (Epilogue::None, Some(other)),
        };
        self.weights.forward(x, m, bias, epilogue, &mut out);
        Ok((CpuStorage::F32(apply_activation(out, m, n, rest)?), Shape::from((m, n))))
    }
}

/// The CPU f32 kernel of [`crate::model::layers::Linear`]: (x, weight, bias) -> act(x W^T + b).
pub struct CpuLinear {
    pub act: Option<Activation>,
}


impl CustomOp3 for CpuLinear {
    fn name(&self) -> &'static str {
        "linear-f32"
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
        let (m, k) = xl.shape().dims2()?;
        let (n, wk) = wl.shape().dims2()?;
        if k != wk {
            candle_core::bail!("linear: input has {k} features, weights expect {wk}");
        }
        let x = contiguous_f32(xs, xl, "linear input")?;
        let w = contiguous_f32(ws, wl, "linear weight")?;
        let bias = contiguous_f32(bs, bl, "linear bias")?;
        let mut out = Vec::with_capacity(m * n);
        for _ in 0..m {
            out.extend_from_slice(bias);
        }
        let threads = candle_core::utils::get_num_threads();
        let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        // SAFETY: out is m x n (row stride n); x is m x k (row stride k);
        // rhs = W^T read in place from W (n x k, row stride k): element
        // (kk, nn) at nn * k + kk, i.e. row stride 1, column stride k.
        unsafe {
            gemm::gemm(
                m, n, k,
                out.as_mut_ptr(), 1, n as isize, true,
                x.as_ptr(), 1, k as isize,
                w.as_ptr(), k as isize, 1,
                1.0, 1.0, false, false, false, parallelism,
            );
        }
        Ok((CpuStorage::F32(apply_activation(out, m, n, self.act)?), Shape::from((m, n))))
    }
}

/// The activation applied in place over a GEMM's (m x n) output.
pub fn apply_activation(mut out: Vec<f32>, m: usize, n: usize, act: Option<Activation>) -> Result<Vec<f32>> {
    match act {
        Some(Activation::QuickGelu) => out.iter_mut().for_each(|v| *v /= 1.0 + (-1.702 * *v).exp()),
        Some(Activation::Relu) => out.iter_mut().for_each(|v| *v = v.max(0.0)),
        Some(Activation::GeluTanh) => out.iter_mut().for_each(|v| {
            let x = *v;
            *v = 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044_715 * x * x * x)).tanh());
        }),
        Some(Activation::Gelu) => {
            // No f32 erf in std: exact GELU goes through candle.
            let t = Tensor::from_vec(out, (m, n), &candle_core::Device::Cpu)?.gelu_erf()?;
            return t.flatten_all()?.to_vec1::<f32>();
        }
        None => {}
    }
    Ok(out)
}
