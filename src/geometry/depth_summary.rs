//! A few numbers that say what a depth frame looked like (for a node's
//! statistics topic): over the values that are published as readings only,
//! so that the summary agrees with what a consumer of the depth image sees.

use super::depth_image::RangeLimits;

/// Smallest, median and largest valid depth, and how many values were valid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DepthSummary {
    pub min: f32,
    /// The upper median (index `n / 2` of the sorted values).
    pub median: f32,
    pub max: f32,
    pub valid: usize,
}

impl DepthSummary {
    /// No valid value: NaN statistics (a float message field cannot be absent).
    pub const EMPTY: Self = Self { min: f32::NAN, median: f32::NAN, max: f32::NAN, valid: 0 };

    /// The summary of the values of `depth` within `range`
    /// ([`RangeLimits::contains`]); `scratch` is reused between frames to
    /// avoid an allocation per frame. Linear time (selection, not a sort).
    pub fn of(depth: &[f32], range: RangeLimits, scratch: &mut Vec<f32>) -> Self {
        scratch.clear();
        scratch.extend(depth.iter().copied().filter(|&d| range.contains(d)));
        if scratch.is_empty() {
            return Self::EMPTY;
        }
        let valid = scratch.len();
        let (lower, median, upper) = scratch.select_nth_unstable_by(valid / 2, f32::total_cmp);
        let median = *median;
        let min = lower.iter().copied().fold(median, f32::min);
        let max = upper.iter().copied().fold(median, f32::max);
        Self { min, median, max, valid }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary by sorting: the obvious reference.
    fn by_sorting(depth: &[f32], range: RangeLimits) -> DepthSummary {
        let mut v: Vec<f32> = depth.iter().copied().filter(|&d| range.contains(d)).collect();
        if v.is_empty() {
            return DepthSummary::EMPTY;
        }
        v.sort_by(f32::total_cmp);
        DepthSummary { min: v[0], median: v[v.len() / 2], max: v[v.len() - 1], valid: v.len() }
    }

    #[test]
    fn matches_sorting_on_random_frames_with_invalid_values() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let range = RangeLimits::new(0.5, 8.0);
        let mut scratch = Vec::new();
        for len in [1, 2, 3, 10, 101, 1000] {
            let depth: Vec<f32> = (0..len)
                .map(|i| match i % 11 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => 0.0,
                    _ => next() * 10.0,
                })
                .collect();
            let want = by_sorting(&depth, range);
            let got = DepthSummary::of(&depth, range, &mut scratch);
            if want.valid == 0 {
                assert!(got.min.is_nan() && got.median.is_nan() && got.max.is_nan() && got.valid == 0);
            } else {
                assert_eq!(got, want, "{len} values");
            }
        }
    }

    #[test]
    fn only_values_within_the_range_count() {
        let mut scratch = Vec::new();
        let s = DepthSummary::of(&[0.2, 1.0, 2.0, 3.0, 9.0, f32::NAN], RangeLimits::new(0.5, 5.0), &mut scratch);
        assert_eq!((s.min, s.median, s.max, s.valid), (1.0, 2.0, 3.0, 3));
        // Even count: the upper of the two middle values.
        let s = DepthSummary::of(&[4.0, 1.0, 3.0, 2.0], RangeLimits::UNLIMITED, &mut scratch);
        assert_eq!((s.min, s.median, s.max), (1.0, 3.0, 4.0));
        let s = DepthSummary::of(&[f32::NAN, 20.0], RangeLimits::new(0.5, 5.0), &mut scratch);
        assert_eq!(s.valid, 0);
        assert!(s.median.is_nan());
    }
}
