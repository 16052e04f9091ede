//! Bilinear resize of (B, C, H, W) f32 maps on the CPU, planes in parallel
//! (candle's CPU resize works per pixel).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};

use super::contiguous_f32;

pub struct CpuResizeBilinear {
    pub h: usize,
    pub w: usize,
}

impl CustomOp1 for CpuResizeBilinear {
    fn name(&self) -> &'static str {
        "resize-bilinear-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let (b, c, in_h, in_w) = layout.shape().dims4()?;
        let x = contiguous_f32(storage, layout, "resize input")?;
        let (h, w) = (self.h, self.w);
        let mut out = vec![0f32; b * c * h * w];
        out.par_chunks_exact_mut(h * w).zip(x.par_chunks_exact(in_h * in_w)).for_each_init(Vec::new, |rows, (o, s)| {
            super::bilinear::resize_plane(s, in_w, in_h, o, w, h, rows, |v| v)
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}

