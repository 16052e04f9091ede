//! Random scenes, deterministic by (seed, index): rooms (floor, walls,
//! ceiling) furnished with boxes, spheres, cylinders and panels leaning at
//! an angle, or a street (ground, building blocks on both sides, cars,
//! poles, sky); textured surfaces, one light; and a camera pose inside.
//! World axes: y up; the ground at y = 0.

use std::f64::consts::PI;

use super::shapes::{add, cross, norm, scale, unit, Shape, V3};
use super::texture::{random_colour, Texture};
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SceneKind {
    Indoor,
    Street,
}

impl std::str::FromStr for SceneKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "indoor" => Ok(SceneKind::Indoor),
            "street" => Ok(SceneKind::Street),
            other => Err(format!("scene kind {other:?}: expected indoor or street")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Light {
    /// A lamp at a point (indoors).
    Point(V3),
    /// The sun: unit direction towards it.
    Sun(V3),
}

#[derive(Debug, Clone)]
pub struct Scene {
    pub kind: SceneKind,
    pub objects: Vec<(Shape, Texture)>,
    pub light: Light,
}

/// Where a camera is and where it looks: the columns of `axes` are the
/// optical frame's x (right), y (down) and z (forward) in world coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    pub position: V3,
    pub axes: [V3; 3],
}

impl Pose {
    /// Looking along `yaw` (about the vertical; 0 = +z) and `pitch` (up
    /// positive), turned by `roll` about the viewing direction.
    pub fn looking(position: V3, yaw: f64, pitch: f64, roll: f64) -> Self {
        let f = [yaw.sin() * pitch.cos(), pitch.sin(), yaw.cos() * pitch.cos()];
        let x0 = unit(cross([0.0, -1.0, 0.0], f));
        let y0 = cross(f, x0);
        let (s, c) = roll.sin_cos();
        let x = add(scale(x0, c), scale(y0, s));
        let y = add(scale(y0, c), scale(x0, -s));
        Self { position, axes: [x, y, f] }
    }

    /// This pose moved by `offset` and turned by `turn` (both in this
    /// camera's own optical frame): a second camera on the same rig.
    pub fn rig(&self, offset: V3, turn: [[f64; 3]; 3]) -> Self {
        let to_world = |v: V3| add(add(scale(self.axes[0], v[0]), scale(self.axes[1], v[1])), scale(self.axes[2], v[2]));
        let col = |j: usize| to_world([turn[0][j], turn[1][j], turn[2][j]]);
        Self { position: add(self.position, to_world(offset)), axes: [col(0), col(1), col(2)] }
    }
}

fn tex(rng: &mut Rng) -> Texture {
    let base = random_colour(rng);
    Texture::random(rng, base)
}

fn far_enough(p: V3, from: V3, r: f64) -> bool {
    ((p[0] - from[0]).powi(2) + (p[2] - from[2]).powi(2)).sqrt() > r
}

fn indoor(rng: &mut Rng) -> (Scene, Pose) {
    let (w, d, h) = (rng.uniform_range(3.0, 7.0), rng.uniform_range(3.0, 8.0), rng.uniform_range(2.4, 3.2));
    let (hw, hd) = (w / 2.0, d / 2.0);
    let mut objects = vec![
        (Shape::Plane { n: [0.0, 1.0, 0.0], d: 0.0, u_axis: [1.0, 0.0, 0.0] }, tex(rng)),
        (Shape::Plane { n: [0.0, -1.0, 0.0], d: -h, u_axis: [1.0, 0.0, 0.0] }, tex(rng)),
        (Shape::Plane { n: [1.0, 0.0, 0.0], d: -hw, u_axis: [0.0, 0.0, 1.0] }, tex(rng)),
        (Shape::Plane { n: [-1.0, 0.0, 0.0], d: -hw, u_axis: [0.0, 0.0, 1.0] }, tex(rng)),
        (Shape::Plane { n: [0.0, 0.0, 1.0], d: -hd, u_axis: [1.0, 0.0, 0.0] }, tex(rng)),
        (Shape::Plane { n: [0.0, 0.0, -1.0], d: -hd, u_axis: [1.0, 0.0, 0.0] }, tex(rng)),
    ];
    let cam = [rng.uniform_range(-hw + 0.4, hw - 0.4), rng.uniform_range(0.8, 1.8), rng.uniform_range(-hd + 0.4, hd - 0.4)];
    let yaw = rng.uniform_range(0.0, 2.0 * PI);
    let pose = Pose::looking(cam, yaw, rng.uniform_range(-0.35, 0.08), rng.uniform_range(-0.05, 0.05));
    let count = 4 + rng.below_inclusive(6) as usize;
    let mut placed = 0;
    for _ in 0..count * 20 {
        if placed == count {
            break;
        }
        // Most objects in front of the camera, the rest anywhere.
        let (x, z) = if rng.uniform() < 0.65 {
            let (ahead, side) = (rng.uniform_range(1.0, 4.0), rng.uniform_range(-1.5, 1.5));
            let (x, z) = (cam[0] + ahead * yaw.sin() + side * yaw.cos(), cam[2] + ahead * yaw.cos() - side * yaw.sin());
            (x.clamp(-hw + 0.3, hw - 0.3), z.clamp(-hd + 0.3, hd - 0.3))
        } else {
            (rng.uniform_range(-hw + 0.3, hw - 0.3), rng.uniform_range(-hd + 0.3, hd - 0.3))
        };
        let shape = match rng.below_inclusive(3) {
            0 => {
                let half = [rng.uniform_range(0.15, 0.6), rng.uniform_range(0.15, 0.6), rng.uniform_range(0.15, 0.6)];
                Shape::Block { base: [x, 0.0, z], half, yaw: rng.uniform_range(0.0, PI) }
            }
            1 => {
                let r = rng.uniform_range(0.15, 0.5);
                let y = if rng.uniform() < 0.6 { r } else { rng.uniform_range(r, h - r) };
                Shape::Sphere { centre: [x, y, z], r }
            }
            2 => Shape::Cylinder { base: [x, 0.0, z], r: rng.uniform_range(0.08, 0.4), h: rng.uniform_range(0.3, h - 0.1) },
            _ => {
                // A board leaning at an angle: axis b tilted from the vertical.
                let turn = rng.uniform_range(0.0, PI);
                let tilt = rng.uniform_range(0.2, 1.2);
                let a = [turn.cos(), 0.0, turn.sin()];
                let b = unit([-turn.sin() * tilt.sin(), tilt.cos(), turn.cos() * tilt.sin()]);
                let (ha, hb) = (rng.uniform_range(0.3, 1.0), rng.uniform_range(0.3, 0.9));
                let y = hb * b[1] + 0.01;
                Shape::Panel { centre: [x, y, z], a, b, ha, hb }
            }
        };
        let reach = match &shape {
            Shape::Block { half, .. } => norm([half[0], 0.0, half[2]]),
            Shape::Sphere { r, .. } | Shape::Cylinder { r, .. } => *r,
            Shape::Panel { ha, hb, .. } => ha.max(*hb),
            Shape::Plane { .. } => 0.0,
        };
        if far_enough([x, 0.0, z], cam, reach + 0.5) {
            objects.push((shape, tex(rng)));
            placed += 1;
        }
    }
    let lamp = [rng.uniform_range(-hw + 0.3, hw - 0.3), h - 0.15, rng.uniform_range(-hd + 0.3, hd - 0.3)];
    (Scene { kind: SceneKind::Indoor, objects, light: Light::Point(lamp) }, pose)
}

fn street(rng: &mut Rng) -> (Scene, Pose) {
    let road = rng.uniform_range(6.0, 12.0);
    let walk = rng.uniform_range(1.5, 4.0);
    let mut objects = vec![(
        Shape::Plane { n: [0.0, 1.0, 0.0], d: 0.0, u_axis: [1.0, 0.0, 0.0] },
        Texture::Noise { a: [0.25, 0.25, 0.27], b: [0.45, 0.44, 0.42], size: rng.uniform_range(0.2, 0.8), seed: rng.next_u64() },
    )];
    // Lane markings and kerbs as thin slabs on the ground.
    objects.push((
        Shape::Block { base: [0.0, 0.0, 60.0], half: [0.08, 0.005, 60.0], yaw: 0.0 },
        Texture::Stripes { a: [0.9, 0.9, 0.85], b: [0.3, 0.3, 0.3], width: 3.0, angle: PI / 2.0 },
    ));
    for side in [-1.0, 1.0] {
        objects.push((
            Shape::Block { base: [side * (road / 2.0 + walk / 2.0), 0.0, 60.0], half: [walk / 2.0, 0.12, 60.0], yaw: 0.0 },
            tex(rng),
        ));
        let mut z = -10.0;
        while z < 110.0 {
            let len = rng.uniform_range(6.0, 20.0);
            let depth = rng.uniform_range(6.0, 15.0);
            let height = rng.uniform_range(4.0, 22.0);
            let x = side * (road / 2.0 + walk + rng.uniform_range(0.0, 2.0) + depth / 2.0);
            objects
                .push((Shape::Block { base: [x, 0.0, z + len / 2.0], half: [depth / 2.0, height / 2.0, len / 2.0], yaw: 0.0 }, tex(rng)));
            z += len + rng.uniform_range(0.0, 4.0);
        }
        for _ in 0..3 {
            let z = rng.uniform_range(5.0, 60.0);
            objects.push((
                Shape::Cylinder {
                    base: [side * (road / 2.0 + 0.4), 0.0, z],
                    r: rng.uniform_range(0.06, 0.2),
                    h: rng.uniform_range(2.5, 6.0),
                },
                tex(rng),
            ));
        }
    }
    // A far row closing the street, so most pixels are within range.
    objects.push((Shape::Block { base: [0.0, 0.0, 115.0], half: [60.0, 15.0, 5.0], yaw: 0.0 }, tex(rng)));
    for _ in 0..rng.below_inclusive(5) {
        let (lane, z) = (rng.uniform_range(-road / 2.0 + 1.2, road / 2.0 - 1.2), rng.uniform_range(12.0, 70.0));
        let body = [rng.uniform_range(0.85, 1.0), rng.uniform_range(0.7, 0.9), rng.uniform_range(2.0, 2.6)];
        objects.push((Shape::Block { base: [lane, 0.0, z], half: body, yaw: rng.uniform_range(-0.1, 0.1) }, tex(rng)));
        if rng.uniform() < 0.5 {
            objects.push((Shape::Sphere { centre: [lane, 0.9, z - body[2] - 1.5], r: 0.35 }, tex(rng)));
        }
    }
    let elevation = rng.uniform_range(0.4, 1.2);
    let azimuth = rng.uniform_range(0.0, 2.0 * PI);
    let sun = [elevation.cos() * azimuth.sin(), elevation.sin(), elevation.cos() * azimuth.cos()];
    let cam = [rng.uniform_range(-road / 4.0, road / 4.0), rng.uniform_range(1.2, 2.0), rng.uniform_range(-5.0, 5.0)];
    let pose = Pose::looking(cam, rng.uniform_range(-0.25, 0.25), rng.uniform_range(-0.1, 0.03), rng.uniform_range(-0.02, 0.02));
    (Scene { kind: SceneKind::Street, objects, light: Light::Sun(sun) }, pose)
}

/// Scene `index` of the series `seed`, with its camera pose.
pub fn generate(kind: SceneKind, seed: u64, index: u64) -> (Scene, Pose) {
    let mut rng = Rng::derive(seed, &[0x5ce9e, kind as u64, index]);
    match kind {
        SceneKind::Indoor => indoor(&mut rng),
        SceneKind::Street => street(&mut rng),
    }
}
