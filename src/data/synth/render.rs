//! Ray casting one pinhole camera into a scene: per pixel the nearest
//! surface along the ray through the pixel centre gives the exact depth
//! (along the optical axis, REP 118) and, shaded, the colour: Lambertian
//! with ambient light, one lamp or the sun, and a shadow ray.

use super::scene::{Light, Pose, Scene, SceneKind};
use super::shapes::{add, dot, norm, scale, sub, Hit, V3};
use super::texture::Colour;
use crate::geometry::PinholeIntrinsics;

/// A camera: intrinsics, image size and pose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub intrinsics: PinholeIntrinsics,
    pub width: usize,
    pub height: usize,
    pub pose: Pose,
}

/// Intrinsics of a `width` x `height` camera with horizontal field of view
/// `hfov` (radians), square pixels, principal point at the image centre.
pub fn intrinsics_for(width: usize, height: usize, hfov: f64) -> PinholeIntrinsics {
    let f = width as f64 / (2.0 * (hfov / 2.0).tan());
    PinholeIntrinsics { fx: f, fy: f, cx: (width as f64 - 1.0) / 2.0, cy: (height as f64 - 1.0) / 2.0 }
}

impl View {
    /// The ray through pixel (u, v): origin and a direction whose component
    /// along the optical axis is 1, so the ray parameter is the depth.
    pub fn ray(&self, u: f64, v: f64) -> (V3, V3) {
        let i = &self.intrinsics;
        let [x, y, z] = self.pose.axes;
        let d = add(add(scale(x, (u - i.cx) / i.fx), scale(y, (v - i.cy) / i.fy)), z);
        (self.pose.position, d)
    }
}

const FAR: f64 = 1.0e4;

fn nearest(scene: &Scene, o: V3, d: V3, t_max: f64) -> Option<(Hit, usize)> {
    let mut best: Option<(Hit, usize)> = None;
    for (k, (shape, _)) in scene.objects.iter().enumerate() {
        let limit = best.map_or(t_max, |(h, _)| h.t);
        if let Some(h) = shape.intersect(o, d, 1e-9, limit) {
            best = Some((h, k));
        }
    }
    best
}

fn occluded(scene: &Scene, p: V3, towards: V3, dist: f64) -> bool {
    scene.objects.iter().any(|(shape, _)| shape.intersect(p, towards, 1e-4, dist).is_some())
}

fn sky(d: V3) -> Colour {
    let up = (d[1] / norm(d)).clamp(-1.0, 1.0) as f32;
    let t = up.max(0.0).powf(0.6);
    [0.75 - 0.45 * t, 0.82 - 0.32 * t, 0.95 - 0.05 * t]
}

/// sRGB-like encoding of a linear value in 0..1.
fn encode(c: f32) -> u8 {
    (c.clamp(0.0, 1.0).powf(1.0 / 2.2) * 255.0 + 0.5) as u8
}

fn shade(scene: &Scene, o: V3, d: V3, hit: &Hit, k: usize) -> Colour {
    let p = add(o, scale(d, hit.t));
    let n = if dot(hit.normal, d) > 0.0 { scale(hit.normal, -1.0) } else { hit.normal };
    let albedo = scene.objects[k].1.at(hit.uv);
    let lift = add(p, scale(n, 1e-6 * (1.0 + hit.t)));
    let light = match scene.light {
        Light::Point(lamp) => {
            let to = sub(lamp, lift);
            let dist = norm(to);
            let l = scale(to, 1.0 / dist);
            let lambert = dot(n, l).max(0.0);
            let lit = if lambert > 0.0 && !occluded(scene, lift, l, dist) { 1.0 } else { 0.0 };
            // Ambient plus the lamp, falling off with distance.
            0.22 + 1.1 * lambert * lit / (1.0 + 0.08 * dist * dist)
        }
        Light::Sun(s) => {
            let lambert = dot(n, s).max(0.0);
            let lit = if lambert > 0.0 && !occluded(scene, lift, s, FAR) { 1.0 } else { 0.0 };
            0.3 + 0.85 * lambert * lit
        }
    } as f32;
    [albedo[0] * light, albedo[1] * light, albedo[2] * light]
}

/// Renders colour (packed RGB8) and depth (metres, 0 where the ray leaves
/// the scene) of one view.
pub fn render(scene: &Scene, view: &View) -> (Vec<u8>, Vec<f32>) {
    let (w, h) = (view.width, view.height);
    let mut rgb = vec![0u8; w * h * 3];
    let mut depth = vec![0f32; w * h];
    for v in 0..h {
        for u in 0..w {
            let (o, d) = view.ray(u as f64, v as f64);
            let i = v * w + u;
            let c = match nearest(scene, o, d, FAR) {
                Some((hit, k)) => {
                    depth[i] = hit.t as f32;
                    shade(scene, o, d, &hit, k)
                }
                None if scene.kind == SceneKind::Street => sky(d),
                None => [0.0; 3],
            };
            for ch in 0..3 {
                rgb[i * 3 + ch] = encode(c[ch]);
            }
        }
    }
    (rgb, depth)
}

/// Depth only (what a depth camera on the same rig sees).
pub fn render_depth(scene: &Scene, view: &View) -> Vec<f32> {
    let (w, h) = (view.width, view.height);
    let mut depth = vec![0f32; w * h];
    for v in 0..h {
        for u in 0..w {
            let (o, d) = view.ray(u as f64, v as f64);
            if let Some((hit, _)) = nearest(scene, o, d, FAR) {
                depth[v * w + u] = hit.t as f32;
            }
        }
    }
    depth
}
