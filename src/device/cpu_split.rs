//! Frames of a CPU batch side by side. On a CPU a batch costs about the sum
//! of its frames, and one forward pass spread over every core leaves cores
//! idle in its less parallel stretches (attention, norms, resizes): two
//! frames each on its own core finish sooner than the two as one batch on
//! both (ViT-B/16 SPACE-CLIP, 640x480, 2 cores: 463-475 ms a pair against
//! 542-625 ms). So a CPU batch is cut into groups, one per core (or per
//! share of the cores), each run in its own thread pool, at once.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

/// Set to 1 to run a CPU batch as one forward pass over every core.
pub const NO_SPLIT_ENV: &str = "CLIP_DEPTH_NO_BATCH_SPLIT";

/// The frames of each group for a batch of `frames` on `threads` cores:
/// `None` when the batch runs whole (one frame, one core, or turned off).
pub fn plan(frames: usize, threads: usize) -> Option<Vec<Range<usize>>> {
    // Read once: this runs for every batch.
    static OFF: OnceLock<bool> = OnceLock::new();
    if *OFF.get_or_init(|| std::env::var(NO_SPLIT_ENV).is_ok_and(|v| v == "1")) {
        return None;
    }
    groups(frames, threads)
}

fn groups(frames: usize, threads: usize) -> Option<Vec<Range<usize>>> {
    let n = frames.min(threads);
    if n < 2 {
        return None;
    }
    let (base, extra) = (frames / n, frames % n);
    let mut start = 0;
    Some(
        (0..n)
            .map(|i| {
                let len = base + usize::from(i < extra);
                let r = start..start + len;
                start += len;
                r
            })
            .collect(),
    )
}

/// `groups` thread pools sharing `threads` cores (the first ones get the
/// remainder), made once per process and shape.
pub fn pools(groups: usize, threads: usize) -> std::result::Result<Arc<[ThreadPool]>, String> {
    static POOLS: OnceLock<Mutex<HashMap<(usize, usize), Arc<[ThreadPool]>>>> = OnceLock::new();
    let mut cache = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache.get(&(groups, threads)) {
        return Ok(p.clone());
    }
    let made = (0..groups)
        .map(|i| {
            let n = (threads / groups + usize::from(i < threads % groups)).max(1);
            ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(move |t| format!("clip-depth-g{i}-{t}"))
                .build()
                .map_err(|e| format!("cannot start a thread pool: {e}"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let made: Arc<[ThreadPool]> = made.into();
    cache.insert((groups, threads), made.clone());
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_cover_the_batch_in_order() {
        assert_eq!(groups(1, 2), None);
        assert_eq!(groups(4, 1), None);
        assert_eq!(groups(2, 2), Some(vec![0..1, 1..2]));
        assert_eq!(groups(5, 2), Some(vec![0..3, 3..5]));
        assert_eq!(groups(3, 8), Some(vec![0..1, 1..2, 2..3]));
    }

    #[test]
    fn pools_share_the_cores() {
        let p = pools(3, 8).unwrap();
        let sizes: Vec<usize> = p.iter().map(|p| p.current_num_threads()).collect();
        assert_eq!(sizes, vec![3, 3, 2]);
        assert!(Arc::ptr_eq(&p, &pools(3, 8).unwrap()), "made once");
    }
}
