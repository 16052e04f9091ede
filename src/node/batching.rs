//! Which pending frames the next forward pass takes. Each camera has a
//! one-frame slot (its newest frame); a batch takes at most one frame per
//! camera, so a fast camera cannot crowd out a slow one: every camera with a
//! frame waiting is in the next batch, or, when `max_batch` is smaller than
//! the number waiting, those that have waited longest are.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchPlan {
    /// Run these cameras' pending frames now (oldest first).
    Take(Vec<usize>),
    /// Others are expected: wait for them until this instant at most.
    WaitUntil(Instant),
    /// Nothing pending.
    Idle,
}

/// `pending[i]`: when camera i's waiting frame arrived (None: no frame).
/// `streaming[i]`: camera i is expected to deliver a frame soon (it did
/// recently); a camera that stopped is not waited for. The first pending
/// frame waits at most `window` for the other streaming cameras;
/// `max_batch` 0 means no limit.
pub fn plan_batch(
    pending: &[Option<Instant>],
    streaming: &[bool],
    now: Instant,
    window: Duration,
    max_batch: usize,
) -> BatchPlan {
    let mut waiting: Vec<(Instant, usize)> = pending.iter().enumerate().filter_map(|(i, t)| t.map(|t| (t, i))).collect();
    let Some(&(oldest, _)) = waiting.iter().min() else {
        return BatchPlan::Idle;
    };
    let limit = if max_batch == 0 { pending.len() } else { max_batch };
    let expected = pending.iter().zip(streaming).filter(|(p, s)| p.is_some() || **s).count().min(limit);
    let deadline = oldest + window;
    if waiting.len() < expected && now < deadline {
        return BatchPlan::WaitUntil(deadline);
    }
    waiting.sort();
    BatchPlan::Take(waiting.into_iter().take(limit).map(|(_, i)| i).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn without_a_window_whatever_is_there_goes() {
        let t0 = Instant::now();
        let pending = [Some(ms(t0, 5)), None, Some(ms(t0, 1))];
        assert_eq!(plan_batch(&pending, &[true; 3], ms(t0, 6), Duration::ZERO, 0), BatchPlan::Take(vec![2, 0]));
        assert_eq!(plan_batch(&[None, None], &[true; 2], t0, Duration::ZERO, 0), BatchPlan::Idle);
    }

    #[test]
    fn a_window_waits_for_streaming_cameras_only_and_only_that_long() {
        let t0 = Instant::now();
        let w = Duration::from_millis(20);
        let pending = [Some(t0), None, None];
        // Camera 1 streams, camera 2 stopped: wait for 1 until t0 + 20 ms.
        let streaming = [true, true, false];
        assert_eq!(plan_batch(&pending, &streaming, ms(t0, 3), w, 0), BatchPlan::WaitUntil(ms(t0, 20)));
        assert_eq!(plan_batch(&pending, &streaming, ms(t0, 20), w, 0), BatchPlan::Take(vec![0]));
        // Everyone expected is there: no waiting.
        let both = [Some(t0), Some(ms(t0, 2)), None];
        assert_eq!(plan_batch(&both, &streaming, ms(t0, 3), w, 0), BatchPlan::Take(vec![0, 1]));
    }

    #[test]
    fn a_limited_batch_takes_the_longest_waiting_so_every_camera_gets_its_turn() {
        let t0 = Instant::now();
        let streaming = [true; 3];
        // Camera 0 (fast) always has a fresh frame; 1 and 2 waited longer.
        let pending = [Some(ms(t0, 30)), Some(ms(t0, 10)), Some(ms(t0, 20))];
        assert_eq!(plan_batch(&pending, &streaming, ms(t0, 31), Duration::ZERO, 2), BatchPlan::Take(vec![1, 2]));
        // Next round: 1 and 2 were taken, only 0 (and a new frame of 1) wait.
        let pending = [Some(ms(t0, 60)), Some(ms(t0, 65)), None];
        assert_eq!(plan_batch(&pending, &streaming, ms(t0, 66), Duration::ZERO, 2), BatchPlan::Take(vec![0, 1]));
    }

    #[test]
    fn a_full_limited_batch_does_not_wait() {
        let t0 = Instant::now();
        let pending = [Some(t0), Some(t0), None];
        assert_eq!(
            plan_batch(&pending, &[true; 3], t0, Duration::from_secs(1), 2),
            BatchPlan::Take(vec![0, 1])
        );
    }
}
