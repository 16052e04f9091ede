//! Pillow's geometric resampling, reproduced pixel for pixel where the
//! training recipe uses it: `Image.rotate(angle, resample, fillcolor=0)`
//! (bicubic for colour, nearest for depth) and `Image.resize(size,
//! NEAREST)` for depth maps. Pillow computes source coordinates in double
//! precision from pixel centres; nearest rotation of 8- and 32-bit images
//! goes through 16.16 fixed point, of 16-bit images through the generic
//! double path; nearest resize accumulates its steps. Each path is
//! followed here because they round differently at pixel boundaries.

/// A single-channel map in the sample types depth files use.
#[derive(Debug, Clone, PartialEq)]
pub enum Plane {
    /// Pillow mode `L`.
    U8(Vec<u8>),
    /// Pillow mode `I;16` (16-bit PNG).
    U16(Vec<u16>),
    /// Pillow mode `F`.
    F32(Vec<f32>),
}

impl Plane {
    pub fn len(&self) -> usize {
        match self {
            Plane::U8(v) => v.len(),
            Plane::U16(v) => v.len(),
            Plane::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Plane::U8(v) => v.iter().map(|&x| x as f32).collect(),
            Plane::U16(v) => v.iter().map(|&x| x as f32).collect(),
            Plane::F32(v) => v.clone(),
        }
    }

    /// The same kind of plane holding `pick(i)` (a source index, or None
    /// for the fill value 0) at each output position.
    fn gather(&self, n: usize, pick: impl Fn(usize) -> Option<usize>) -> Plane {
        fn g<T: Copy + Default>(src: &[T], n: usize, pick: &dyn Fn(usize) -> Option<usize>) -> Vec<T> {
            (0..n).map(|i| pick(i).map(|j| src[j]).unwrap_or_default()).collect()
        }
        match self {
            Plane::U8(v) => Plane::U8(g(v, n, &pick)),
            Plane::U16(v) => Plane::U16(g(v, n, &pick)),
            Plane::F32(v) => Plane::F32(g(v, n, &pick)),
        }
    }
}

/// C's `(int)` of a coordinate as Pillow's `COORD`: -1 below zero.
fn coord(v: f64) -> i64 {
    if v < 0.0 { -1 } else { v as i64 }
}

/// Pillow's `FLOOR`.
fn floor(v: f64) -> i64 {
    if v < 0.0 { v.floor() as i64 } else { v as i64 }
}

/// Python's `round(x, 15)`: the nearest double to the decimal rounding.
fn round15(x: f64) -> f64 {
    format!("{x:.15}").parse().unwrap_or(x)
}

/// What `Image.rotate(angle)` (no expand, centre, translation) does.
enum Rotation {
    Copy,
    Half,
    /// Quarter turn of a square image: 90 or 270 degrees.
    Quarter(bool),
    /// The inverse affine map (destination pixel centre -> source).
    Affine([f64; 6]),
}

fn rotation(angle_deg: f64, w: usize, h: usize) -> Rotation {
    let angle = angle_deg.rem_euclid(360.0);
    if angle == 0.0 {
        return Rotation::Copy;
    }
    if angle == 180.0 {
        return Rotation::Half;
    }
    if (angle == 90.0 || angle == 270.0) && w == h {
        return Rotation::Quarter(angle == 90.0);
    }
    let a = -angle.to_radians();
    let mut m = [round15(a.cos()), round15(a.sin()), 0.0, round15(-a.sin()), round15(a.cos()), 0.0];
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let (x, y) = (-cx, -cy);
    m[2] = m[0] * x + m[1] * y + m[2];
    m[5] = m[3] * x + m[4] * y + m[5];
    m[2] += cx;
    m[5] += cy;
    Rotation::Affine(m)
}

/// Source index of a lossless rotation (copy, half or quarter turn).
fn lossless(r: &Rotation, w: usize, h: usize, x: usize, y: usize) -> usize {
    match r {
        Rotation::Copy => y * w + x,
        Rotation::Half => (h - 1 - y) * w + (w - 1 - x),
        // Counter-clockwise quarter turn (PIL ROTATE_90): out(x, y) = in(w - 1 - y, x).
        Rotation::Quarter(true) => x * w + (w - 1 - y),
        Rotation::Quarter(false) => (h - 1 - x) * w + y,
        Rotation::Affine(_) => unreachable!("not lossless"),
    }
}

/// `Image.rotate(angle, BICUBIC, fillcolor=(0, 0, 0))` of an RGB image
/// (`rgb` packed, 3 bytes a pixel).
pub fn rotate_rgb_bicubic(rgb: &[u8], w: usize, h: usize, angle_deg: f64) -> Vec<u8> {
    let r = rotation(angle_deg, w, h);
    let m = match r {
        Rotation::Affine(m) => m,
        _ => {
            let mut out = vec![0u8; w * h * 3];
            for y in 0..h {
                for x in 0..w {
                    let s = lossless(&r, w, h, x, y);
                    out[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&rgb[s * 3..s * 3 + 3]);
                }
            }
            return out;
        }
    };
    let (wi, hi) = (w as i64, h as i64);
    let xclip = |x: i64| x.clamp(0, wi - 1) as usize;
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let (xc, yc) = (x as f64 + 0.5, y as f64 + 0.5);
            let xin = m[0] * xc + m[1] * yc + m[2];
            let yin = m[3] * xc + m[4] * yc + m[5];
            if xin < 0.0 || xin >= w as f64 || yin < 0.0 || yin >= h as f64 {
                continue; // the fill colour, 0
            }
            let (xin, yin) = (xin - 0.5, yin - 0.5);
            let (fx, fy) = (floor(xin), floor(yin));
            let (dx, dy) = (xin - fx as f64, yin - fy as f64);
            let (x0, y0) = (fx - 1, fy - 1);
            let cols = [xclip(x0), xclip(x0 + 1), xclip(x0 + 2), xclip(x0 + 3)];
            for b in 0..3 {
                let row = |yy: usize| -> f64 {
                    let p = |c: usize| rgb[(yy * w + c) * 3 + b] as f64;
                    cubic(p(cols[0]), p(cols[1]), p(cols[2]), p(cols[3]), dx)
                };
                let v1 = row(y0.clamp(0, hi - 1) as usize);
                let v2 = if (0..hi).contains(&(y0 + 1)) { row((y0 + 1) as usize) } else { v1 };
                let v3 = if (0..hi).contains(&(y0 + 2)) { row((y0 + 2) as usize) } else { v2 };
                let v4 = if (0..hi).contains(&(y0 + 3)) { row((y0 + 3) as usize) } else { v3 };
                let v = cubic(v1, v2, v3, v4, dy);
                out[(y * w + x) * 3 + b] = if v <= 0.0 {
                    0
                } else if v >= 255.0 {
                    255
                } else {
                    v as u8
                };
            }
        }
    }
    out
}

/// Pillow's `BICUBIC` macro (a = -1 cubic convolution, as its transform uses).
fn cubic(v1: f64, v2: f64, v3: f64, v4: f64, d: f64) -> f64 {
    let p1 = v2;
    let p2 = -v1 + v3;
    let p3 = 2.0 * (v1 - v2) + v3 - v4;
    let p4 = -v1 + v2 - v3 + v4;
    p1 + d * (p2 + d * (p3 + d * p4))
}

/// `Image.rotate(angle, NEAREST, fillcolor=0)` of a single-channel map.
pub fn rotate_nearest(plane: &Plane, w: usize, h: usize, angle_deg: f64) -> Plane {
    let r = rotation(angle_deg, w, h);
    let m = match r {
        Rotation::Affine(m) => m,
        _ => return plane.gather(w * h, |i| Some(lossless(&r, w, h, i % w, i / w))),
    };
    let (wi, hi) = (w as i64, h as i64);
    match plane {
        // 16-bit images take the generic transform: double coordinates.
        Plane::U16(_) => plane.gather(w * h, |i| {
            let (xc, yc) = ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
            let x = coord(m[0] * xc + m[1] * yc + m[2]);
            let y = coord(m[3] * xc + m[4] * yc + m[5]);
            ((0..wi).contains(&x) && (0..hi).contains(&y)).then(|| (y * wi + x) as usize)
        }),
        // 8- and 32-bit images: 16.16 fixed point, stepped per pixel.
        _ => {
            let fix = |v: f64| floor(v * 65536.0 + 0.5) as i32;
            let (a0, a1, a3, a4) = (fix(m[0]), fix(m[1]), fix(m[3]), fix(m[4]));
            let mut a2 = fix(m[2] + m[0] * 0.5 + m[1] * 0.5);
            let mut a5 = fix(m[5] + m[3] * 0.5 + m[4] * 0.5);
            let mut index = vec![None; w * h];
            for y in 0..h {
                let (mut xx, mut yy) = (a2, a5);
                for x in 0..w {
                    let (xs, ys) = ((xx >> 16) as i64, (yy >> 16) as i64);
                    if (0..wi).contains(&xs) && (0..hi).contains(&ys) {
                        index[y * w + x] = Some((ys * wi + xs) as usize);
                    }
                    xx = xx.wrapping_add(a0);
                    yy = yy.wrapping_add(a3);
                }
                a2 = a2.wrapping_add(a1);
                a5 = a5.wrapping_add(a4);
            }
            plane.gather(w * h, |i| index[i])
        }
    }
}

/// `Image.resize((out_w, out_h), NEAREST)` of a single-channel map.
pub fn resize_nearest(plane: &Plane, w: usize, h: usize, out_w: usize, out_h: usize) -> Plane {
    if (w, h) == (out_w, out_h) {
        return plane.clone();
    }
    let (sx, sy) = (w as f64 / out_w as f64, h as f64 / out_h as f64);
    match plane {
        // Generic transform: each coordinate computed afresh.
        Plane::U16(_) => plane.gather(out_w * out_h, |i| {
            let x = coord(sx * ((i % out_w) as f64 + 0.5));
            let y = coord(sy * ((i / out_w) as f64 + 0.5));
            ((0..w as i64).contains(&x) && (0..h as i64).contains(&y)).then(|| y as usize * w + x as usize)
        }),
        // Scale path: positions accumulated step by step.
        _ => {
            let steps = |n: usize, s: f64, limit: usize| -> Vec<Option<usize>> {
                let mut pos = s * 0.5;
                (0..n)
                    .map(|_| {
                        let c = coord(pos);
                        pos += s;
                        (0..limit as i64).contains(&c).then_some(c as usize)
                    })
                    .collect()
            };
            let (xs, ys) = (steps(out_w, sx, w), steps(out_h, sy, h));
            plane.gather(out_w * out_h, |i| Some(ys[i / out_w]? * w + xs[i % out_w]?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossless_turns_move_pixels_exactly() {
        let (w, h) = (3, 2);
        let p = Plane::U16((0..6).collect());
        assert_eq!(rotate_nearest(&p, w, h, 360.0), p);
        assert_eq!(rotate_nearest(&p, w, h, 180.0), Plane::U16(vec![5, 4, 3, 2, 1, 0]));
        let sq = Plane::U8((0..4).collect());
        // PIL ROTATE_90 (counter-clockwise): [[0, 1], [2, 3]] -> [[1, 3], [0, 2]].
        assert_eq!(rotate_nearest(&sq, 2, 2, 90.0), Plane::U8(vec![1, 3, 0, 2]));
        assert_eq!(rotate_nearest(&sq, 2, 2, -90.0), Plane::U8(vec![2, 0, 3, 1]));
    }

    #[test]
    fn small_rotation_keeps_the_centre_and_fills_corners() {
        let (w, h) = (9, 9);
        let p = Plane::U16(vec![7; w * h]);
        let Plane::U16(r) = rotate_nearest(&p, w, h, 30.0) else { unreachable!() };
        assert_eq!(r[4 * w + 4], 7);
        assert_eq!(r[0], 0, "corner outside the rotated image is filled with 0");
        let rgb = vec![200u8; w * h * 3];
        let out = rotate_rgb_bicubic(&rgb, w, h, 1.0);
        assert_eq!(&out[(4 * w + 4) * 3..(4 * w + 4) * 3 + 3], &[200, 200, 200]);
    }

    #[test]
    fn nearest_resize_picks_pixel_centres() {
        let p = Plane::F32((0..4).map(|v| v as f32).collect());
        assert_eq!(resize_nearest(&p, 4, 1, 2, 1), Plane::F32(vec![1.0, 3.0]));
        let p = Plane::U16(vec![1, 2]);
        assert_eq!(resize_nearest(&p, 2, 1, 4, 1), Plane::U16(vec![1, 1, 2, 2]));
    }
}
