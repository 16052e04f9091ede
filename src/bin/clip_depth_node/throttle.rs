//! Warnings that repeat at most once per period per distinct message, so a
//! broken camera cannot flood the log while a new kind of fault still shows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Distinct messages remembered (bounded): past this, the ones whose
/// period is over are forgotten first, then the longest-silent one.
const MAX_KEYS: usize = 256;

pub struct Throttle {
    period: Duration,
    /// Per message: when it was last let through, and last asked about.
    last: HashMap<String, (Instant, Instant)>,
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Self { period, last: HashMap::new() }
    }

    /// True when this message may be logged now.
    pub fn allow(&mut self, message: &str) -> bool {
        let now = Instant::now();
        if let Some((allowed, seen)) = self.last.get_mut(message) {
            *seen = now;
            if now.duration_since(*allowed) < self.period {
                return false;
            }
            *allowed = now;
            return true;
        }
        if self.last.len() >= MAX_KEYS {
            let period = self.period;
            self.last.retain(|_, (allowed, _)| now.duration_since(*allowed) < period);
            if self.last.len() >= MAX_KEYS {
                if let Some(oldest) = self.last.iter().min_by_key(|(_, (_, seen))| *seen).map(|(k, _)| k.clone()) {
                    self.last.remove(&oldest);
                }
            }
        }
        self.last.insert(message.to_string(), (now, now));
        true
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
            // A message repeating all along stays held back: the flood of
            // new ones does not make the throttle forget it.
            assert!(!t.allow("a"), "after {i} other messages");
        }
        assert!(t.last.len() <= MAX_KEYS);
    }
}
