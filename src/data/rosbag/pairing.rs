//! Colour and depth frames paired by header stamp while a bag streams by:
//! the depth frame with the same stamp, else the nearest one within
//! `max_offset`. A colour frame waits until no better depth frame can still
//! come (one stamped `max_offset` past it has arrived) or until it is
//! `horizon` of recording time old, so memory stays bounded by a few
//! seconds of frames however long the bag is. Each depth frame is used
//! once.

/// A frame with its header stamp and receive time (ns).
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped<T> {
    pub stamp: i64,
    pub log_time: i64,
    pub item: T,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Paired<T> {
    Pair {
        rgb: Stamped<T>,
        depth: Stamped<T>,
    },
    /// No depth frame within the offset.
    NoDepth {
        rgb: Stamped<T>,
    },
}

pub struct Pairer<T> {
    max_offset: i64,
    horizon: i64,
    rgb: Vec<Stamped<T>>,
    depth: Vec<Stamped<T>>,
    latest_depth_stamp: Option<i64>,
    latest_rgb_stamp: Option<i64>,
    latest_log: i64,
    unused_depth: u64,
}

impl<T> Pairer<T> {
    /// `max_offset_ns`: the largest stamp difference accepted;
    /// `horizon_ns`: how long (in receive time) a frame may wait.
    pub fn new(max_offset_ns: i64, horizon_ns: i64) -> Self {
        Self {
            max_offset: max_offset_ns.max(0),
            horizon: horizon_ns.max(0),
            rgb: Vec::new(),
            depth: Vec::new(),
            latest_depth_stamp: None,
            latest_rgb_stamp: None,
            latest_log: i64::MIN,
            unused_depth: 0,
        }
    }

    /// Depth frames that were never paired (so far).
    pub fn unused_depth(&self) -> u64 {
        self.unused_depth
    }

    /// Frames held, waiting.
    pub fn pending(&self) -> usize {
        self.rgb.len() + self.depth.len()
    }

    pub fn push_rgb(&mut self, frame: Stamped<T>) -> Vec<Paired<T>> {
        self.latest_log = self.latest_log.max(frame.log_time);
        self.latest_rgb_stamp = Some(self.latest_rgb_stamp.map_or(frame.stamp, |s| s.max(frame.stamp)));
        self.rgb.push(frame);
        self.resolve(false)
    }

    pub fn push_depth(&mut self, frame: Stamped<T>) -> Vec<Paired<T>> {
        self.latest_log = self.latest_log.max(frame.log_time);
        self.latest_depth_stamp = Some(self.latest_depth_stamp.map_or(frame.stamp, |s| s.max(frame.stamp)));
        self.depth.push(frame);
        self.resolve(false)
    }

    /// Resolves everything still waiting (end of the bag).
    pub fn finish(&mut self) -> Vec<Paired<T>> {
        let out = self.resolve(true);
        self.unused_depth += self.depth.len() as u64;
        self.depth.clear();
        out
    }

    fn resolve(&mut self, all: bool) -> Vec<Paired<T>> {
        let mut out = Vec::new();
        self.rgb.sort_by_key(|f| f.stamp);
        let mut i = 0;
        while i < self.rgb.len() {
            let (stamp, log_time) = (self.rgb[i].stamp, self.rgb[i].log_time);
            let exact = self.depth.iter().position(|d| d.stamp == stamp);
            let settled = all
                || exact.is_some()
                || self.latest_depth_stamp.is_some_and(|s| s >= stamp.saturating_add(self.max_offset))
                || self.latest_log.saturating_sub(log_time) > self.horizon;
            if !settled {
                i += 1;
                continue;
            }
            let rgb = self.rgb.remove(i);
            let best = exact.or_else(|| {
                self.depth
                    .iter()
                    .enumerate()
                    .map(|(j, d)| (j, d.stamp.abs_diff(stamp)))
                    .filter(|&(_, off)| off <= self.max_offset as u64)
                    .min_by_key(|&(_, off)| off)
                    .map(|(j, _)| j)
            });
            out.push(match best {
                Some(j) => Paired::Pair { rgb, depth: self.depth.remove(j) },
                None => Paired::NoDepth { rgb },
            });
        }
        // Depth frames no waiting or future colour frame can use.
        let oldest_useful = self.rgb.iter().map(|f| f.stamp).chain(self.latest_rgb_stamp).min();
        if let Some(oldest) = oldest_useful {
            let limit = oldest.saturating_sub(self.max_offset);
            let before = self.depth.len();
            self.depth.retain(|d| d.stamp >= limit);
            self.unused_depth += (before - self.depth.len()) as u64;
        }
        // And a memory bound when colour frames stop coming.
        let cutoff = self.latest_log.saturating_sub(self.horizon.saturating_mul(2));
        let before = self.depth.len();
        self.depth.retain(|d| d.log_time >= cutoff);
        self.unused_depth += (before - self.depth.len()) as u64;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    fn f(stamp_ms: i64, log_ms: i64, id: u32) -> Stamped<u32> {
        Stamped { stamp: stamp_ms * MS, log_time: log_ms * MS, item: id }
    }

    fn pairs(out: &[Paired<u32>]) -> Vec<(u32, Option<u32>)> {
        out.iter()
            .map(|p| match p {
                Paired::Pair { rgb, depth } => (rgb.item, Some(depth.item)),
                Paired::NoDepth { rgb } => (rgb.item, None),
            })
            .collect()
    }

    #[test]
    fn exact_first_then_nearest_within_the_offset() {
        let mut p = Pairer::new(10 * MS, 2000 * MS);
        let mut out = Vec::new();
        // Colour at 0, 100, 200, 300 ms; depth at 0 (exact), 104 (near),
        // 230 (too far from 200), 296 and 300 (300 exact wins over 296).
        out.extend(p.push_rgb(f(0, 1, 0)));
        out.extend(p.push_depth(f(0, 2, 100)));
        out.extend(p.push_rgb(f(100, 101, 1)));
        out.extend(p.push_depth(f(104, 105, 101)));
        out.extend(p.push_rgb(f(200, 201, 2)));
        out.extend(p.push_depth(f(230, 231, 102)));
        out.extend(p.push_depth(f(296, 297, 103)));
        out.extend(p.push_rgb(f(300, 301, 3)));
        out.extend(p.push_depth(f(300, 302, 104)));
        out.extend(p.finish());
        let mut got = pairs(&out);
        got.sort();
        assert_eq!(got, vec![(0, Some(100)), (1, Some(101)), (2, None), (3, Some(104))]);
        assert_eq!(p.unused_depth(), 2);
    }

    #[test]
    fn memory_stays_bounded_without_depth() {
        let mut p = Pairer::new(10 * MS, 500 * MS);
        let mut resolved = 0;
        for i in 0..100 {
            resolved += p.push_rgb(f(i * 33, i * 33, i as u32)).len();
            assert!(p.pending() <= 17, "{}", p.pending());
        }
        assert!(resolved > 80);
        for i in 0..100 {
            p.push_depth(f(10_000 + i * 33, 10_000 + i * 33, i as u32));
            assert!(p.pending() <= 40, "{}", p.pending());
        }
    }
}
