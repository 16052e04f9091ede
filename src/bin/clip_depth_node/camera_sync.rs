//! Pairing images with camera_info by stamp, without message_filters: keep
//! the last few camera_infos, look for the image's exact stamp, and fall
//! back to the newest one when asked to. [`StampMatching`] learns whether
//! waiting for the exact stamp is worth it.

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

    pub fn contains(&self, stamp: StampNs) -> bool {
        self.entries.iter().any(|(s, _)| *s == stamp)
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

/// Frames in a row without an exact-stamp camera_info after which the node
/// stops waiting for one.
pub const MISSES_BEFORE_NOT_WAITING: u32 = 5;

/// How many frames handled without waiting are remembered to notice a
/// camera_info that arrives for them late.
const REMEMBERED: usize = 8;

/// Whether to wait up to the sync window for the camera_info with a frame's
/// exact stamp. Drivers that stamp images and camera_infos alike deliver the
/// camera_info within a few ms, and waiting for it is right; drivers that
/// stamp them separately never match, and waiting would add the whole window
/// to every frame's latency. So: wait at first; after
/// [`MISSES_BEFORE_NOT_WAITING`] frames in a row without an exact match,
/// stop waiting (pair with the newest at once); wait again as soon as a
/// camera_info turns up with the stamp of a frame handled without it.
#[derive(Debug)]
pub struct StampMatching {
    misses: u32,
    waiting: bool,
    /// Stamps of frames recently handled without waiting or matching.
    unmatched: VecDeque<StampNs>,
}

/// A change of [`StampMatching`]'s mind, to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchingChange {
    /// No exact stamp for this many frames in a row: no more waiting.
    StopWaiting(u32),
    /// A camera_info arrived late for a frame: stamps do match; waiting again.
    WaitAgain,
}

impl Default for StampMatching {
    fn default() -> Self {
        Self { misses: 0, waiting: true, unmatched: VecDeque::with_capacity(REMEMBERED) }
    }
}

impl StampMatching {
    pub fn waiting(&self) -> bool {
        self.waiting
    }

    /// Before pairing a frame: did any frame handled without waiting get
    /// its exact camera_info after all (`arrived(stamp)`)? Then wait again.
    pub fn check_late(&mut self, arrived: impl Fn(StampNs) -> bool) -> Option<MatchingChange> {
        if self.waiting || !self.unmatched.iter().any(|&s| arrived(s)) {
            return None;
        }
        self.unmatched.clear();
        self.waiting = true;
        self.misses = 0;
        Some(MatchingChange::WaitAgain)
    }

    /// After pairing the frame with `stamp`: `exact` when its own camera_info
    /// was found.
    pub fn record(&mut self, stamp: StampNs, exact: bool) -> Option<MatchingChange> {
        if exact {
            self.misses = 0;
            return None;
        }
        self.misses = self.misses.saturating_add(1);
        if !self.waiting {
            if self.unmatched.len() == REMEMBERED {
                self.unmatched.pop_front();
            }
            self.unmatched.push_back(stamp);
            return None;
        }
        if self.misses >= MISSES_BEFORE_NOT_WAITING {
            self.waiting = false;
            self.unmatched.clear();
            self.unmatched.push_back(stamp);
            return Some(MatchingChange::StopWaiting(self.misses));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_stamps_keep_waiting() {
        let mut m = StampMatching::default();
        for s in 0..20 {
            assert!(m.waiting());
            // A few misses among matches (a dropped camera_info) do not count up.
            let exact = s % 4 != 0;
            assert_eq!(m.record(s, exact), None);
        }
        assert!(m.waiting());
    }

    #[test]
    fn never_matching_stamps_stop_the_wait_and_a_late_match_resumes_it() {
        let mut m = StampMatching::default();
        let no_late = |_: StampNs| false;
        for s in 1..MISSES_BEFORE_NOT_WAITING as i64 {
            assert_eq!(m.check_late(no_late), None);
            assert_eq!(m.record(s, false), None);
            assert!(m.waiting(), "still learning after {s} frames");
        }
        let last = MISSES_BEFORE_NOT_WAITING as i64;
        assert_eq!(m.record(last, false), Some(MatchingChange::StopWaiting(MISSES_BEFORE_NOT_WAITING)));
        assert!(!m.waiting());
        for s in 100..120 {
            assert_eq!(m.check_late(no_late), None);
            assert_eq!(m.record(s, false), None);
            assert!(!m.waiting());
        }
        // Only the recent frames are remembered: an old stamp turning up does nothing.
        assert_eq!(m.check_late(|s| s == last), None);
        // The camera_info of a recent frame arrives after all: wait again.
        assert_eq!(m.check_late(|s| s == 115), Some(MatchingChange::WaitAgain));
        assert!(m.waiting());
        assert_eq!(m.record(200, false), None, "learning starts over");
        assert!(m.waiting());
    }

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
