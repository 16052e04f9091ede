//! Loads samples on worker threads ahead of the model, a bounded number of
//! batches ahead, and hands them out in order. A sample that fails (a bad
//! line, a missing or corrupt file, a panic in a decoder) comes back as an
//! error for the caller to count and warn about; it never stops a worker.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Loads the job at a position of the epoch order.
pub type LoadFn<T> = dyn Fn(usize) -> Result<T, String> + Send + Sync;

struct Window {
    /// Positions below this have been handed out.
    consumed: Mutex<usize>,
    changed: Condvar,
}

pub struct Loader<T: Send + 'static> {
    results: Receiver<(usize, Result<T, String>)>,
    pending: BTreeMap<usize, Result<T, String>>,
    next: usize,
    len: usize,
    window: Arc<Window>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> Loader<T> {
    /// Starts `workers` threads loading positions `0..len` with `load`,
    /// at most `ahead` positions past the last one handed out.
    pub fn new(len: usize, workers: usize, ahead: usize, load: Arc<LoadFn<T>>) -> Self {
        let (tx, rx) = sync_channel(ahead.max(1));
        let window = Arc::new(Window { consumed: Mutex::new(0), changed: Condvar::new() });
        let stop = Arc::new(AtomicBool::new(false));
        let counter = Arc::new(AtomicUsize::new(0));
        let handles = (0..workers.max(1))
            .map(|_| {
                let (tx, window, stop, counter, load) = (tx.clone(), window.clone(), stop.clone(), counter.clone(), load.clone());
                std::thread::spawn(move || loop {
                    let pos = counter.fetch_add(1, Ordering::SeqCst);
                    if pos >= len {
                        return;
                    }
                    {
                        let mut consumed = window.consumed.lock().unwrap_or_else(|p| p.into_inner());
                        while pos >= *consumed + ahead.max(1) && !stop.load(Ordering::SeqCst) {
                            consumed = window.changed.wait(consumed).unwrap_or_else(|p| p.into_inner());
                        }
                    }
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let result = catch_unwind(AssertUnwindSafe(|| load(pos)))
                        .unwrap_or_else(|panic| Err(format!("internal error while loading: {}", crate::error::panic_message(&*panic))));
                    if tx.send((pos, result)).is_err() {
                        return;
                    }
                })
            })
            .collect();
        Self { results: rx, pending: BTreeMap::new(), next: 0, len, window, stop, workers: handles }
    }

    /// The next position's result, in order; `None` at the end.
    pub fn next_item(&mut self) -> Option<(usize, Result<T, String>)> {
        if self.next >= self.len {
            return None;
        }
        while !self.pending.contains_key(&self.next) {
            match self.results.recv() {
                Ok((pos, r)) => {
                    self.pending.insert(pos, r);
                }
                Err(_) => return None,
            }
        }
        let pos = self.next;
        let r = self.pending.remove(&pos)?;
        self.next += 1;
        *self.window.consumed.lock().unwrap_or_else(|p| p.into_inner()) = self.next;
        self.window.changed.notify_all();
        Some((pos, r))
    }

    /// The results of the next `n` positions (fewer at the end).
    pub fn next_chunk(&mut self, n: usize) -> Vec<(usize, Result<T, String>)> {
        (0..n).map_while(|_| self.next_item()).collect()
    }
}

impl<T: Send + 'static> Drop for Loader<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.window.changed.notify_all();
        // Unblock senders waiting on a full channel.
        while self.results.try_recv().is_ok() {}
        for h in self.workers.drain(..) {
            while !h.is_finished() {
                while self.results.try_recv().is_ok() {}
                std::thread::yield_now();
            }
            let _ = h.join();
        }
    }
}

/// Counts skipped samples and prints the first `limit` warnings, then one
/// line saying the rest are suppressed (as the authors' loader does).
#[derive(Debug)]
pub struct SkipLog {
    pub enabled: bool,
    pub limit: usize,
    count: AtomicUsize,
}

impl SkipLog {
    pub fn new(enabled: bool, limit: usize) -> Self {
        Self { enabled, limit, count: AtomicUsize::new(0) }
    }

    pub fn skip(&self, what: &str, reason: &str) {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        if !self.enabled {
            return;
        }
        if n < self.limit {
            eprintln!("warning: skipping sample: {what}: {reason}");
        } else if n == self.limit {
            eprintln!("warning: skip warning limit ({}) reached; further skipped samples are only counted", self.limit);
        }
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_arrive_in_order_with_failures_and_panics_reported() {
        let load: Arc<LoadFn<usize>> = Arc::new(|pos| match pos {
            3 => Err("bad".into()),
            5 => panic!("decoder exploded"),
            _ => {
                std::thread::sleep(std::time::Duration::from_millis((7 - pos as u64 % 7) * 2));
                Ok(pos * 10)
            }
        });
        let mut loader = Loader::new(9, 3, 2, load);
        let mut seen = Vec::new();
        while let Some((pos, r)) = loader.next_item() {
            seen.push((pos, r));
        }
        assert_eq!(seen.len(), 9);
        for (i, (pos, r)) in seen.iter().enumerate() {
            assert_eq!(*pos, i);
            match i {
                3 => assert_eq!(r.as_ref().unwrap_err(), "bad"),
                5 => assert!(r.as_ref().unwrap_err().contains("decoder exploded")),
                _ => assert_eq!(*r.as_ref().unwrap(), i * 10),
            }
        }
    }

    #[test]
    fn dropping_early_stops_the_workers() {
        let load: Arc<LoadFn<usize>> = Arc::new(Ok);
        let mut loader = Loader::new(1000, 2, 4, load);
        assert_eq!(loader.next_chunk(3).len(), 3);
        drop(loader);
    }
}
