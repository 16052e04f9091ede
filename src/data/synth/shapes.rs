//! The primitives the synthetic scenes are built from, each with an exact
//! ray intersection (for rendering) and a signed distance (for checking
//! renders against the geometry independently): planes, boxes turned about
//! the vertical, spheres, upright capped cylinders and rectangular panels
//! at any angle.

pub type V3 = [f64; 3];

pub fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
pub fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
pub fn scale(a: V3, s: f64) -> V3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
pub fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
pub fn cross(a: V3, b: V3) -> V3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
pub fn norm(a: V3) -> f64 {
    dot(a, a).sqrt()
}
pub fn unit(a: V3) -> V3 {
    scale(a, 1.0 / norm(a))
}

/// Where a ray met a surface: ray parameter, outward normal, and surface
/// coordinates in metres for textures.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub t: f64,
    pub normal: V3,
    pub uv: [f64; 2],
}

#[derive(Debug, Clone)]
pub enum Shape {
    /// `dot(n, p) = d`, facing along `n` (room walls face inwards).
    Plane {
        n: V3,
        d: f64,
        u_axis: V3,
    },
    /// A box resting on its base: centre of the base, half sizes (x, y, z)
    /// and a turn `yaw` about the vertical (y) axis.
    Block {
        base: V3,
        half: V3,
        yaw: f64,
    },
    Sphere {
        centre: V3,
        r: f64,
    },
    /// An upright cylinder from `base` up by `h`.
    Cylinder {
        base: V3,
        r: f64,
        h: f64,
    },
    /// A rectangle (two-sided) at `centre` spanned by unit axes `a`, `b`
    /// with half sizes `ha`, `hb`.
    Panel {
        centre: V3,
        a: V3,
        b: V3,
        ha: f64,
        hb: f64,
    },
}

fn yaw_rotate(p: V3, yaw: f64) -> V3 {
    let (s, c) = yaw.sin_cos();
    [c * p[0] + s * p[2], p[1], -s * p[0] + c * p[2]]
}

impl Shape {
    /// The nearest hit with `t` in `(t_min, t_max)` of the ray `o + t d`
    /// (`d` need not be unit length).
    pub fn intersect(&self, o: V3, d: V3, t_min: f64, t_max: f64) -> Option<Hit> {
        let ok = |t: f64| t > t_min && t < t_max;
        match self {
            Shape::Plane { n, d: dist, u_axis } => {
                let den = dot(*n, d);
                if den.abs() < 1e-12 {
                    return None;
                }
                let t = (dist - dot(*n, o)) / den;
                if !ok(t) {
                    return None;
                }
                let p = add(o, scale(d, t));
                let v_axis = cross(*n, *u_axis);
                let normal = if den < 0.0 { *n } else { scale(*n, -1.0) };
                Some(Hit { t, normal, uv: [dot(p, *u_axis), dot(p, v_axis)] })
            }
            Shape::Block { base, half, yaw } => {
                // Slabs in the box's own frame (centre at the origin).
                let centre = add(*base, [0.0, half[1], 0.0]);
                let lo = yaw_rotate(sub(o, centre), -yaw);
                let ld = yaw_rotate(d, -yaw);
                let (mut t0, mut t1, mut axis0, mut axis1) = (f64::NEG_INFINITY, f64::INFINITY, 0, 0);
                for k in 0..3 {
                    if ld[k].abs() < 1e-15 {
                        if lo[k].abs() > half[k] {
                            return None;
                        }
                        continue;
                    }
                    let (mut a, mut b) = ((-half[k] - lo[k]) / ld[k], (half[k] - lo[k]) / ld[k]);
                    if a > b {
                        std::mem::swap(&mut a, &mut b);
                    }
                    if a > t0 {
                        t0 = a;
                        axis0 = k;
                    }
                    if b < t1 {
                        t1 = b;
                        axis1 = k;
                    }
                }
                if t0 > t1 {
                    return None;
                }
                let (t, axis) = if ok(t0) {
                    (t0, axis0)
                } else if ok(t1) {
                    (t1, axis1)
                } else {
                    return None;
                };
                let p = add(lo, scale(ld, t));
                let mut ln = [0.0; 3];
                ln[axis] = p[axis].signum();
                let (i, j) = match axis {
                    0 => (2, 1),
                    1 => (0, 2),
                    _ => (0, 1),
                };
                Some(Hit { t, normal: yaw_rotate(ln, *yaw), uv: [p[i] + half[i], p[j] + half[j]] })
            }
            Shape::Sphere { centre, r } => {
                let oc = sub(o, *centre);
                let (a, b, c) = (dot(d, d), dot(oc, d), dot(oc, oc) - r * r);
                let disc = b * b - a * c;
                if disc < 0.0 {
                    return None;
                }
                let s = disc.sqrt();
                let t = [(-b - s) / a, (-b + s) / a].into_iter().find(|&t| ok(t))?;
                let n = scale(sub(add(o, scale(d, t)), *centre), 1.0 / r);
                Some(Hit { t, normal: n, uv: [r * n[2].atan2(n[0]), r * n[1].clamp(-1.0, 1.0).asin()] })
            }
            Shape::Cylinder { base, r, h } => {
                let mut best: Option<Hit> = None;
                let (ox, oz) = (o[0] - base[0], o[2] - base[2]);
                let a = d[0] * d[0] + d[2] * d[2];
                if a > 1e-15 {
                    let b = ox * d[0] + oz * d[2];
                    let c = ox * ox + oz * oz - r * r;
                    let disc = b * b - a * c;
                    if disc >= 0.0 {
                        let s = disc.sqrt();
                        for t in [(-b - s) / a, (-b + s) / a] {
                            let y = o[1] + t * d[1] - base[1];
                            if ok(t) && (0.0..=*h).contains(&y) {
                                let (nx, nz) = ((ox + t * d[0]) / r, (oz + t * d[2]) / r);
                                best = Some(Hit { t, normal: [nx, 0.0, nz], uv: [r * nz.atan2(nx), y] });
                                break;
                            }
                        }
                    }
                }
                if d[1].abs() > 1e-15 {
                    for (cap_y, ny) in [(base[1], -1.0), (base[1] + h, 1.0)] {
                        let t = (cap_y - o[1]) / d[1];
                        let (x, z) = (ox + t * d[0], oz + t * d[2]);
                        if ok(t) && x * x + z * z <= r * r && best.is_none_or(|b| t < b.t) {
                            best = Some(Hit { t, normal: [0.0, ny, 0.0], uv: [x, z] });
                        }
                    }
                }
                best
            }
            Shape::Panel { centre, a, b, ha, hb } => {
                let n = cross(*a, *b);
                let den = dot(n, d);
                if den.abs() < 1e-12 {
                    return None;
                }
                let t = dot(n, sub(*centre, o)) / den;
                if !ok(t) {
                    return None;
                }
                let rel = sub(add(o, scale(d, t)), *centre);
                let (u, v) = (dot(rel, *a), dot(rel, *b));
                if u.abs() > *ha || v.abs() > *hb {
                    return None;
                }
                Some(Hit { t, normal: if den < 0.0 { n } else { scale(n, -1.0) }, uv: [u + ha, v + hb] })
            }
        }
    }

    /// Distance from `p` to the surface (unsigned), computed from the
    /// shape's definition rather than from any ray.
    pub fn distance(&self, p: V3) -> f64 {
        match self {
            Shape::Plane { n, d, .. } => (dot(*n, p) - d).abs(),
            Shape::Block { base, half, yaw } => {
                let q = yaw_rotate(sub(p, add(*base, [0.0, half[1], 0.0])), -yaw);
                let e = [q[0].abs() - half[0], q[1].abs() - half[1], q[2].abs() - half[2]];
                let outside = norm([e[0].max(0.0), e[1].max(0.0), e[2].max(0.0)]);
                (outside + e[0].max(e[1]).max(e[2]).min(0.0)).abs()
            }
            Shape::Sphere { centre, r } => (norm(sub(p, *centre)) - r).abs(),
            Shape::Cylinder { base, r, h } => {
                let radial = ((p[0] - base[0]).powi(2) + (p[2] - base[2]).powi(2)).sqrt() - r;
                let axial = (p[1] - base[1] - h / 2.0).abs() - h / 2.0;
                let outside = (radial.max(0.0).powi(2) + axial.max(0.0).powi(2)).sqrt();
                (outside + radial.max(axial).min(0.0)).abs()
            }
            Shape::Panel { centre, a, b, ha, hb } => {
                let rel = sub(p, *centre);
                let n = cross(*a, *b);
                let (u, v) = ((dot(rel, *a).abs() - ha).max(0.0), (dot(rel, *b).abs() - hb).max(0.0));
                (u * u + v * v + dot(rel, n).powi(2)).sqrt()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_lie_on_their_surfaces() {
        let shapes = [
            Shape::Plane { n: [0.0, 1.0, 0.0], d: 0.0, u_axis: [1.0, 0.0, 0.0] },
            Shape::Block { base: [0.3, 0.0, 3.0], half: [0.5, 0.4, 0.3], yaw: 0.7 },
            Shape::Sphere { centre: [-0.2, 0.8, 4.0], r: 0.6 },
            Shape::Cylinder { base: [0.1, 0.0, 3.5], r: 0.3, h: 1.2 },
            Shape::Panel { centre: [0.0, 1.0, 5.0], a: unit([1.0, 0.0, 0.3]), b: [0.0, 1.0, 0.0], ha: 1.0, hb: 0.5 },
        ];
        let o = [0.0, 1.0, 0.0];
        let mut hits = 0;
        for i in 0..41 {
            for j in 0..31 {
                let d = [(i as f64 - 20.0) / 30.0, (j as f64 - 15.0) / 30.0, 1.0];
                for s in &shapes {
                    if let Some(h) = s.intersect(o, d, 1e-6, 100.0) {
                        let p = add(o, scale(d, h.t));
                        assert!(s.distance(p) < 1e-9, "{s:?} at {p:?}: {}", s.distance(p));
                        assert!((norm(h.normal) - 1.0).abs() < 1e-9);
                        assert!(dot(h.normal, d) <= 1e-12, "normal faces the ray");
                        hits += 1;
                    }
                }
            }
        }
        assert!(hits > 800, "{hits}");
    }
}
