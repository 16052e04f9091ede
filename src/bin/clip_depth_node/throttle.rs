//! Warnings that repeat at most once per period per reason, so a broken
//! camera cannot flood the log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Throttle {
    period: Duration,
    last: HashMap<&'static str, Instant>,
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Self { period, last: HashMap::new() }
    }

    /// True when a message with this key may be logged now.
    pub fn allow(&mut self, key: &'static str) -> bool {
        let now = Instant::now();
        match self.last.get(key) {
            Some(t) if now.duration_since(*t) < self.period => false,
            _ => {
                self.last.insert(key, now);
                true
            }
        }
    }
}
