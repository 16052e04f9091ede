//! The release's head (method "second"): per class, the C-channel
//! embedding read as (groups, h, w), reduced over the groups, divided by
//! the temperature; softmax over the classes weights the bins.

use candle_core::{DType, Result, Tensor};

use super::config::{GroupReduce, MapLayout};

/// How a class embedding becomes a logit map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapReading {
    pub groups: usize,
    pub height: usize,
    pub layout: MapLayout,
    pub reduce: GroupReduce,
    pub temperature: f64,
}

/// P_f (B, K, C) -> logits / temperature (B, K, h, w), f32.
pub fn class_logits(p_f: &Tensor, r: &MapReading) -> Result<Tensor> {
    let (b, k, c) = p_f.dims3()?;
    let (groups, height) = (r.groups, r.height);
    let w = c / (groups * height);
    let p_f = p_f.to_dtype(DType::F32)?;
    let (maps, axis) = match r.layout {
        MapLayout::GroupsOuter => (p_f.reshape((b, k, groups, height, w))?, 2),
        MapLayout::GroupsInner => (p_f.reshape((b, k, height, w, groups))?, 4),
    };
    let logits = match r.reduce {
        GroupReduce::Max => maps.max(axis)?,
        GroupReduce::Mean => maps.mean(axis)?,
    };
    logits / r.temperature
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Each layout against its index formula, written out.
    #[test]
    fn both_layouts_read_the_channels_the_releases_read() {
        let (b, k, g, h, w) = (2, 3, 3, 2, 4);
        let c = g * h * w;
        let values: Vec<f32> = (0..b * k * c).map(|i| ((i * 37) % 101) as f32 / 7.0).collect();
        let p_f = Tensor::from_vec(values.clone(), (b, k, c), &Device::Cpu).unwrap();
        for layout in [MapLayout::GroupsOuter, MapLayout::GroupsInner] {
            let r = MapReading { groups: g, height: h, layout, reduce: GroupReduce::Max, temperature: 0.5 };
            let got: Vec<f32> = class_logits(&p_f, &r).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            for n in 0..b * k {
                for i in 0..h {
                    for j in 0..w {
                        let channel = |gi: usize| match layout {
                            MapLayout::GroupsOuter => gi * h * w + i * w + j,
                            MapLayout::GroupsInner => (i * w + j) * g + gi,
                        };
                        let want = (0..g).map(|gi| values[n * c + channel(gi)]).fold(f32::NEG_INFINITY, f32::max) / 0.5;
                        assert_eq!(got[(n * h + i) * w + j], want, "{layout:?} ({n}, {i}, {j})");
                    }
                }
            }
        }
    }
}

/// Probabilities (B, K, h, w) and bins (1, K, 1, 1) -> depth (B, 1, h, w).
pub fn depth_from_probabilities(p: &Tensor, bins: &Tensor) -> Result<Tensor> {
    p.broadcast_mul(&bins.to_dtype(p.dtype())?)?.sum_keepdim(1)
}
