//! Surface patterns for the synthetic scenes, functions of a surface's own
//! coordinates (metres): checkers, smooth value noise, stripes and
//! gradients between two colours. Texture gives the model the cues real
//! surfaces give (scale shrinking with distance, converging lines).

use crate::rng::Rng;

pub type Colour = [f32; 3];

#[derive(Debug, Clone)]
pub enum Texture {
    Checker { a: Colour, b: Colour, size: f64 },
    Noise { a: Colour, b: Colour, size: f64, seed: u64 },
    Stripes { a: Colour, b: Colour, width: f64, angle: f64 },
    Gradient { a: Colour, b: Colour, length: f64, angle: f64 },
}

fn mix(a: Colour, b: Colour, t: f32) -> Colour {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

/// A pseudo-random value in [0, 1) for a lattice point.
fn lattice(seed: u64, x: i64, y: i64) -> f32 {
    let mut h = seed ^ (x as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (y as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// Two octaves of smoothly interpolated lattice noise.
fn value_noise(seed: u64, u: f64, v: f64) -> f32 {
    let octave = |s: u64, u: f64, v: f64| {
        let (x0, y0) = (u.floor(), v.floor());
        let (fx, fy) = ((u - x0) as f32, (v - y0) as f32);
        let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
        let (x, y) = (x0 as i64, y0 as i64);
        let top = lattice(s, x, y) + (lattice(s, x + 1, y) - lattice(s, x, y)) * sx;
        let bottom = lattice(s, x, y + 1) + (lattice(s, x + 1, y + 1) - lattice(s, x, y + 1)) * sx;
        top + (bottom - top) * sy
    };
    0.65 * octave(seed, u, v) + 0.35 * octave(seed ^ 0x55, u * 2.7, v * 2.7)
}

impl Texture {
    pub fn at(&self, uv: [f64; 2]) -> Colour {
        match *self {
            Texture::Checker { a, b, size } => {
                let k = (uv[0] / size).floor() as i64 + (uv[1] / size).floor() as i64;
                if k.rem_euclid(2) == 0 {
                    a
                } else {
                    b
                }
            }
            Texture::Noise { a, b, size, seed } => mix(a, b, value_noise(seed, uv[0] / size, uv[1] / size)),
            Texture::Stripes { a, b, width, angle } => {
                let s = uv[0] * angle.cos() + uv[1] * angle.sin();
                if ((s / width).floor() as i64).rem_euclid(2) == 0 {
                    a
                } else {
                    b
                }
            }
            Texture::Gradient { a, b, length, angle } => {
                let s = (uv[0] * angle.cos() + uv[1] * angle.sin()) / length;
                mix(a, b, (s.rem_euclid(2.0) - 1.0).abs() as f32)
            }
        }
    }

    /// A random pattern in colours around `base` (RGB in 0..1).
    pub fn random(rng: &mut Rng, base: Colour) -> Self {
        let shade = |rng: &mut Rng, c: Colour, k: f64| {
            let f = rng.uniform_range(1.0 - k, 1.0 + k) as f32;
            [(c[0] * f).clamp(0.02, 1.0), (c[1] * f).clamp(0.02, 1.0), (c[2] * f).clamp(0.02, 1.0)]
        };
        let a = shade(rng, base, 0.1);
        let b = if rng.uniform() < 0.5 { shade(rng, base, 0.5) } else { random_colour(rng) };
        match rng.below_inclusive(3) {
            0 => Texture::Checker { a, b, size: rng.uniform_range(0.1, 0.6) },
            1 => Texture::Noise { a, b, size: rng.uniform_range(0.05, 0.5), seed: rng.next_u64() },
            2 => Texture::Stripes { a, b, width: rng.uniform_range(0.05, 0.4), angle: rng.uniform_range(0.0, std::f64::consts::PI) },
            _ => Texture::Gradient { a, b, length: rng.uniform_range(0.5, 3.0), angle: rng.uniform_range(0.0, std::f64::consts::PI) },
        }
    }
}

/// A random, not too dark, not too saturated colour.
pub fn random_colour(rng: &mut Rng) -> Colour {
    let hue = rng.uniform() * 6.0;
    let sat = rng.uniform_range(0.15, 0.75) as f32;
    let val = rng.uniform_range(0.35, 0.95) as f32;
    let f = (hue - hue.floor()) as f32;
    let (p, q, t) = (val * (1.0 - sat), val * (1.0 - sat * f), val * (1.0 - sat * (1.0 - f)));
    match hue as u32 {
        0 => [val, t, p],
        1 => [q, val, p],
        2 => [p, val, t],
        3 => [p, q, val],
        4 => [t, p, val],
        _ => [val, p, q],
    }
}
