//! Pairing images with camera_info by stamp, without message_filters: keep
//! the last few camera_infos, look for the image's exact stamp, and fall
//! back to the newest one when asked to.

use std::collections::VecDeque;

/// A ROS time as nanoseconds since the epoch.
pub type StampNs = i64;

pub fn stamp_ns(sec: i32, nanosec: u32) -> StampNs {
    sec as i64 * 1_000_000_000 + nanosec as i64
}

/// The most recent camera_infos (bounded).
#[derive(Debug)]
pub struct CameraInfoCache<T> {
    entries: VecDeque<(StampNs, T)>,
    capacity: usize,
}

/// How an image found its camera_info.
#[derive(Debug, Clone, PartialEq)]
pub enum Pairing<T> {
    Exact(T),
    /// The newest one, with its stamp, when none matched.
    Latest(StampNs, T),
    None,
}

impl<T: Clone> CameraInfoCache<T> {
    pub fn new(capacity: usize) -> Self {
        Self { entries: VecDeque::with_capacity(capacity), capacity: capacity.max(1) }
    }

    pub fn push(&mut self, stamp: StampNs, info: T) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((stamp, info));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn exact(&self, stamp: StampNs) -> Option<T> {
        self.entries.iter().rev().find(|(s, _)| *s == stamp).map(|(_, i)| i.clone())
    }

    pub fn latest(&self) -> Option<(StampNs, T)> {
        self.entries.back().cloned()
    }

    /// Exact match, else the newest when `fallback`, else none.
    pub fn pair(&self, stamp: StampNs, fallback: bool) -> Pairing<T> {
        if let Some(info) = self.exact(stamp) {
            return Pairing::Exact(info);
        }
        match (fallback, self.latest()) {
            (true, Some((s, info))) => Pairing::Latest(s, info),
            _ => Pairing::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_latest_then_none() {
        let mut cache = CameraInfoCache::new(3);
        assert_eq!(cache.pair(5, true), Pairing::None);
        for s in [1, 2, 3, 4] {
            cache.push(s, s * 10);
        }
        assert_eq!(cache.pair(3, true), Pairing::Exact(30));
        assert_eq!(cache.pair(1, true), Pairing::Latest(4, 40), "oldest entry was evicted");
        assert_eq!(cache.pair(9, false), Pairing::None);
        assert_eq!(stamp_ns(2, 5), 2_000_000_005);
    }
}
