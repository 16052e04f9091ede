//! Counted, throttled warnings: bad messages in a long recording are
//! counted by kind; the first few of each kind are shown, then one every
//! few seconds with the running count, so that a bag with a million
//! corrupt frames neither floods the terminal nor hides the problem.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

type Sink = Box<dyn Fn(&str) + Send + Sync>;

pub struct Warnings {
    state: Mutex<BTreeMap<String, (u64, Option<Instant>)>>,
    show_first: u64,
    every: Duration,
    sink: Sink,
}

impl Warnings {
    /// Shown lines go to `sink` (stderr in the CLI).
    pub fn new(sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self { state: Mutex::new(BTreeMap::new()), show_first: 3, every: Duration::from_secs(10), sink: Box::new(sink) }
    }

    /// Counts only.
    pub fn silent() -> Self {
        Self::new(|_| {})
    }

    /// Counts one warning of `kind` and maybe shows `message`.
    pub fn warn(&self, kind: &str, message: impl std::fmt::Display) {
        let line = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let (count, last) = state.entry(kind.to_string()).or_insert((0, None));
            *count += 1;
            let due = *count <= self.show_first || last.is_none_or(|t| t.elapsed() >= self.every);
            if !due {
                return;
            }
            *last = Some(Instant::now());
            match *count {
                n if n < self.show_first => format!("warning: {message}"),
                n if n == self.show_first => {
                    format!("warning: {message} (further {kind:?} warnings are counted and shown every {} s)", self.every.as_secs())
                }
                n => format!("warning: {message} ({n} {kind:?} warnings so far)"),
            }
        };
        (self.sink)(&line);
    }

    /// Warnings so far by kind.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, (n, _))| (k.clone(), *n)).collect()
    }

    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_every_warning_and_shows_a_few() {
        let shown = Arc::new(Mutex::new(Vec::<String>::new()));
        let s = shown.clone();
        let w = Warnings::new(move |l| s.lock().unwrap().push(l.to_string()));
        for i in 0..100 {
            w.warn("bad image", format!("frame {i}"));
        }
        w.warn("other", "x");
        assert_eq!(w.counts()["bad image"], 100);
        assert_eq!(w.total(), 101);
        let shown = shown.lock().unwrap();
        assert_eq!(shown.len(), 4, "{shown:?}");
        assert!(shown[2].contains("further"));
    }
}
