//! Rigid transforms of 3D points (rotation and translation), as TF carries
//! them between frames.

/// A rigid transform `p' = R p + t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rigid {
    /// Row-major rotation.
    pub r: [[f64; 3]; 3],
    pub t: [f64; 3],
}

impl Rigid {
    pub const IDENTITY: Rigid = Rigid { r: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], t: [0.0; 3] };

    /// From a translation and a quaternion (x, y, z, w; normalised here).
    /// `None` for a zero or non-finite quaternion.
    pub fn from_translation_quaternion(t: [f64; 3], q: [f64; 4]) -> Option<Self> {
        let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        if !(n.is_finite() && n > 1e-9 && t.iter().all(|v| v.is_finite())) {
            return None;
        }
        let [x, y, z, w] = q.map(|v| v / n);
        let r = [
            [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)],
            [2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)],
            [2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)],
        ];
        Some(Self { r, t })
    }

    pub fn apply(&self, p: [f64; 3]) -> [f64; 3] {
        let r = &self.r;
        [
            r[0][0] * p[0] + r[0][1] * p[1] + r[0][2] * p[2] + self.t[0],
            r[1][0] * p[0] + r[1][1] * p[1] + r[1][2] * p[2] + self.t[1],
            r[2][0] * p[0] + r[2][1] * p[1] + r[2][2] * p[2] + self.t[2],
        ]
    }

    /// `self ∘ other`: first `other`, then `self`.
    pub fn then_after(&self, other: &Rigid) -> Rigid {
        let mut r = [[0.0; 3]; 3];
        for (i, row) in r.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..3).map(|k| self.r[i][k] * other.r[k][j]).sum();
            }
        }
        Rigid { r, t: self.apply(other.t) }
    }

    pub fn inverse(&self) -> Rigid {
        let mut r = [[0.0; 3]; 3];
        for (i, row) in r.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = self.r[j][i];
            }
        }
        let t = [
            -(r[0][0] * self.t[0] + r[0][1] * self.t[1] + r[0][2] * self.t[2]),
            -(r[1][0] * self.t[0] + r[1][1] * self.t[1] + r[1][2] * self.t[2]),
            -(r[2][0] * self.t[0] + r[2][1] * self.t[1] + r[2][2] * self.t[2]),
        ];
        Rigid { r, t }
    }
}

/// A rotation matrix as a quaternion (x, y, z, w).
pub fn quaternion(m: &[[f64; 3]; 3]) -> [f64; 4] {
    let trace = m[0][0] + m[1][1] + m[2][2];
    if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        [(m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s, 0.25 * s]
    } else if m[0][0] > m[1][1] && m[0][0] > m[2][2] {
        let s = (1.0 + m[0][0] - m[1][1] - m[2][2]).sqrt() * 2.0;
        [0.25 * s, (m[0][1] + m[1][0]) / s, (m[0][2] + m[2][0]) / s, (m[2][1] - m[1][2]) / s]
    } else if m[1][1] > m[2][2] {
        let s = (1.0 + m[1][1] - m[0][0] - m[2][2]).sqrt() * 2.0;
        [(m[0][1] + m[1][0]) / s, 0.25 * s, (m[1][2] + m[2][1]) / s, (m[0][2] - m[2][0]) / s]
    } else {
        let s = (1.0 + m[2][2] - m[0][0] - m[1][1]).sqrt() * 2.0;
        [(m[0][2] + m[2][0]) / s, (m[1][2] + m[2][1]) / s, 0.25 * s, (m[1][0] - m[0][1]) / s]
    }
}
