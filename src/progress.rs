//! Progress of long jobs (training, evaluation, feature caching, dataset
//! export): a bar with rate and ETA on a terminal, plain lines at most every
//! few seconds in logs.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    unit: String,
    start: Instant,
    start_pos: u64,
    last_line: Option<Instant>,
    every: Duration,
    pos: u64,
    message: String,
}

impl Progress {
    /// `unit` names what is counted, plural ("steps", "images", ...).
    pub fn new(label: &str, total: u64, unit: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(&format!(
                "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}} {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar
        });
        Self {
            bar,
            label: label.into(),
            total,
            unit: unit.into(),
            start: Instant::now(),
            start_pos: 0,
            last_line: None,
            every: Duration::from_secs(10),
            pos: 0,
            message: String::new(),
        }
    }

    /// Counting resumes from `pos` (rates count only new work).
    pub fn starting_at(mut self, pos: u64) -> Self {
        self.start_pos = pos;
        self.pos = pos;
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            bar.reset_eta();
        }
        self
    }

    /// Plain-line interval (logs).
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    pub fn set(&mut self, pos: u64, message: impl Into<String>) {
        self.pos = pos;
        self.message = message.into();
        match &self.bar {
            Some(bar) => {
                bar.set_position(pos);
                bar.set_message(self.message.clone());
            }
            None => {
                let due = self.last_line.is_none_or(|t| t.elapsed() >= self.every) || pos >= self.total;
                if due {
                    eprintln!("{}", self.line());
                    self.last_line = Some(Instant::now());
                }
            }
        }
    }

    /// `label pos/total unit (pct) rate ETA message`.
    pub fn line(&self) -> String {
        let elapsed = self.start.elapsed().as_secs_f64().max(1e-9);
        let done = self.pos.saturating_sub(self.start_pos) as f64;
        let rate = done / elapsed;
        let eta = if rate > 0.0 { format_duration((self.total.saturating_sub(self.pos)) as f64 / rate) } else { "?".into() };
        let pct = if self.total > 0 { 100.0 * self.pos as f64 / self.total as f64 } else { 100.0 };
        format!(
            "{} {}/{} {} ({pct:.1}%) {rate:.2}/s ETA {eta} {}",
            self.label, self.pos, self.total, self.unit, self.message
        )
        .trim_end()
        .to_string()
    }

    /// Prints a line without breaking the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&mut self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => {
                if self.last_line.is_some_and(|t| t.elapsed() > Duration::ZERO) && self.pos < self.total {
                    eprintln!("{}", self.line());
                }
            }
        }
    }
}

/// `1h02m`, `3m05s`, `12s`.
pub fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(12.4), "12s");
        assert_eq!(format_duration(185.0), "3m05s");
        assert_eq!(format_duration(3720.0), "1h02m");
    }
}
