//! Warnings that repeat at most once per period per distinct message, so a
//! broken camera cannot flood the log while a new kind of fault still shows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Distinct messages remembered; past this the memory is reset (bounded).
const MAX_KEYS: usize = 256;

pub struct Throttle {
    period: Duration,
    last: HashMap<String, Instant>,
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Self { period, last: HashMap::new() }
    }

    /// True when this message may be logged now.
    pub fn allow(&mut self, message: &str) -> bool {
        let now = Instant::now();
        match self.last.get(message) {
            Some(t) if now.duration_since(*t) < self.period => false,
            _ => {
                if self.last.len() >= MAX_KEYS {
                    self.last.clear();
                }
                self.last.insert(message.to_string(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_held_back_but_new_messages_pass() {
        let mut t = Throttle::new(Duration::from_secs(60));
        assert!(t.allow("a"));
        assert!(!t.allow("a"));
        assert!(t.allow("b"));
        for i in 0..2 * MAX_KEYS {
            t.allow(&i.to_string());
        }
        assert!(t.last.len() <= MAX_KEYS);
    }
}
