//! A ViT's position table at another token grid, as LAVIS resizes it when
//! BLIP-2 meets another input size: the class row kept, the g x g grid
//! resampled bicubically (PyTorch's `F.interpolate(mode="bicubic")`, A =
//! -0.75, border samples repeated; EVA with align_corners = false, LAVIS's
//! CLIP tower with align_corners = true).

/// PyTorch's cubic convolution weights of the four taps around `t` in [0, 1).
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// For each output index: the four clamped source indices and weights.
fn taps(in_len: usize, out_len: usize, align_corners: bool) -> Vec<([usize; 4], [f64; 4])> {
    (0..out_len)
        .map(|d| {
            let src = if align_corners {
                if out_len > 1 {
                    d as f64 * (in_len - 1) as f64 / (out_len - 1) as f64
                } else {
                    0.0
                }
            } else {
                (d as f64 + 0.5) * in_len as f64 / out_len as f64 - 0.5
            };
            let base = src.floor();
            let t = src - base;
            let base = base as isize;
            let at = |o: isize| (base + o).clamp(0, in_len as isize - 1) as usize;
            ([at(-1), at(0), at(1), at(2)], cubic_weights(t))
        })
        .collect()
}

/// (1 + g*g, width) -> (1 + gh*gw, width), rows in row-major grid order.
pub fn resize_positions(table: &[f32], width: usize, g: usize, gh: usize, gw: usize, align_corners: bool) -> Vec<f32> {
    let mut out = Vec::with_capacity((1 + gh * gw) * width);
    out.extend_from_slice(&table[..width]);
    let grid = &table[width..];
    let ys = taps(g, gh, align_corners);
    let xs = taps(g, gw, align_corners);
    let mut rows = vec![0f64; 4 * width];
    for (yi, yw) in &ys {
        for (xi, xw) in &xs {
            // Along x for each of the four source rows, then along y.
            for (r, &sy) in yi.iter().enumerate() {
                let row = &mut rows[r * width..(r + 1) * width];
                row.iter_mut().for_each(|v| *v = 0.0);
                for (&sx, &w) in xi.iter().zip(xw) {
                    let src = &grid[(sy * g + sx) * width..(sy * g + sx + 1) * width];
                    for (v, &s) in row.iter_mut().zip(src) {
                        *v += w * s as f64;
                    }
                }
            }
            for c in 0..width {
                let v: f64 = (0..4).map(|r| yw[r] * rows[r * width + c]).sum();
                out.push(v as f32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_grid_without_corners_is_the_identity() {
        let (g, width) = (3, 2);
        let table: Vec<f32> = (0..(1 + g * g) * width).map(|i| (i as f32 * 0.7).sin()).collect();
        let out = resize_positions(&table, width, g, g, g, false);
        for (a, b) in out.iter().zip(&table) {
            assert!((a - b).abs() < 1e-6);
        }
        let out = resize_positions(&table, width, g, g, g, true);
        for (a, b) in out.iter().zip(&table) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn weights_sum_to_one() {
        for t in [0.0, 0.25, 0.5, 0.9] {
            let s: f64 = cubic_weights(t).iter().sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
    }
}
