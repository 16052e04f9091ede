//! The static transform tree of a recording (`/tf_static`), enough to say
//! where one camera frame is relative to another: each frame's pose in its
//! parent (`geometry_msgs/TransformStamped`: child coordinates into the
//! parent frame), chained to a common root.

use std::collections::HashMap;

use super::messages::TfMessage;
pub use crate::geometry::Rigid;

fn clean(frame: &str) -> &str {
    frame.trim_start_matches('/')
}

/// Static transforms by child frame.
#[derive(Debug, Clone, Default)]
pub struct TfTree {
    parent_of: HashMap<String, (String, Rigid)>,
}

impl TfTree {
    /// Adds (or replaces) the transforms of one `/tf_static` message;
    /// returns how many were unusable (bad quaternion, empty names).
    pub fn add(&mut self, msg: &TfMessage) -> usize {
        let mut bad = 0;
        for t in &msg.transforms {
            let (parent, child) = (clean(&t.header.frame_id), clean(&t.child_frame_id));
            match Rigid::from_translation_quaternion(t.translation, t.rotation) {
                Some(rigid) if !parent.is_empty() && !child.is_empty() && parent != child => {
                    self.parent_of.insert(child.to_string(), (parent.to_string(), rigid));
                }
                _ => bad += 1,
            }
        }
        bad
    }

    pub fn is_empty(&self) -> bool {
        self.parent_of.is_empty()
    }

    /// The frame's pose in its tree's root and the root's name.
    fn to_root(&self, frame: &str) -> (String, Rigid) {
        let mut pose = Rigid::IDENTITY;
        let mut at = clean(frame).to_string();
        // A cycle cannot be a tree: stop after as many steps as there are edges.
        for _ in 0..=self.parent_of.len() {
            match self.parent_of.get(&at) {
                Some((parent, rigid)) => {
                    pose = rigid.then_after(&pose);
                    at = parent.clone();
                }
                None => break,
            }
        }
        (at, pose)
    }

    /// The transform taking coordinates in `source` into `target`, when
    /// both frames hang from the same root.
    pub fn lookup(&self, target: &str, source: &str) -> Option<Rigid> {
        if clean(target) == clean(source) {
            return Some(Rigid::IDENTITY);
        }
        let (root_s, s) = self.to_root(source);
        let (root_t, t) = self.to_root(target);
        (root_s == root_t).then(|| t.inverse().then_after(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rosbag::messages::{Header, TransformStamped};

    fn edge(parent: &str, child: &str, t: [f64; 3], q: [f64; 4]) -> TransformStamped {
        TransformStamped { header: Header::from_ns(0, parent), child_frame_id: child.into(), translation: t, rotation: q }
    }

    #[test]
    fn siblings_are_related_through_their_parent() {
        let s = 0.5f64.sqrt();
        let mut tree = TfTree::default();
        let msg = TfMessage {
            transforms: vec![
                // colour optical frame: 1 cm to the side of the link, rotated 90 deg about z.
                edge("link", "color", [0.0, 0.01, 0.0], [0.0, 0.0, s, s]),
                edge("/link", "depth", [0.0, -0.04, 0.0], [0.0, 0.0, s, s]),
                edge("link", "bad", [0.0; 3], [0.0; 4]),
            ],
        };
        assert_eq!(tree.add(&msg), 1);
        let t = tree.lookup("color", "depth").unwrap();
        // Both rotated alike: a pure offset of 5 cm along the link's -y,
        // which is the optical frames' -x after the 90 degree turn.
        let p = t.apply([0.0, 0.0, 2.0]);
        assert!((p[0] + 0.05).abs() < 1e-12 && p[1].abs() < 1e-12 && (p[2] - 2.0).abs() < 1e-12, "{p:?}");
        let back = tree.lookup("depth", "color").unwrap().apply(p);
        assert!((back[2] - 2.0).abs() < 1e-12 && back[0].abs() < 1e-12);
        assert!(tree.lookup("color", "elsewhere").is_none());
        assert_eq!(tree.lookup("x", "/x"), Some(Rigid::IDENTITY));
    }
}
