//! Per-camera health for `/diagnostics`: counters since start, input and
//! processed rates and latency percentiles over the last few seconds, and a
//! level an operator can alarm on (WARN when a camera has sent nothing for
//! a while or frames are being skipped, ERROR when it has been silent
//! longer). Times are passed in, so the levels are tested without waiting.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Rates, latencies and recent problems are measured over this window.
pub const WINDOW: Duration = Duration::from_secs(5);
/// Latency samples kept (bounded however fast the camera).
const MAX_SAMPLES: usize = 512;

/// `diagnostic_msgs/DiagnosticStatus` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok = 0,
    Warn = 1,
    Error = 2,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthThresholds {
    /// No image for this long: WARN.
    pub warn_after: Duration,
    /// No image for this long: ERROR.
    pub error_after: Duration,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self { warn_after: Duration::from_secs(2), error_after: Duration::from_secs(10) }
    }
}

/// The shared forward passes' level. A stall is work waiting (a pass in
/// progress, or frames that arrived) with no progress for `stalled_for`:
/// a forward pass that hangs (a stuck GPU call) or an inference thread that
/// stopped taking frames. The node cannot interrupt a pass; it says so.
pub fn inference_level(stalled_for: Duration, pending_frames: usize, thresholds: &HealthThresholds) -> (Level, Option<String>) {
    let level = if stalled_for >= thresholds.error_after {
        Level::Error
    } else if stalled_for >= thresholds.warn_after {
        Level::Warn
    } else {
        return (Level::Ok, None);
    };
    let message = format!(
        "no forward pass has finished for {:.1} s with {pending_frames} frame(s) waiting: the inference is stalled",
        stalled_for.as_secs_f64()
    );
    (level, Some(message))
}

/// One status: level, one-line message, and key/value pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub level: Level,
    pub message: String,
    pub values: Vec<(String, String)>,
}

/// Everything known about one camera's frames.
#[derive(Debug, Clone)]
pub struct CameraHealth {
    started: Instant,
    pub received: u64,
    pub processed: u64,
    pub dropped_stale: u64,
    pub failed: u64,
    /// Frames skipped as invalid, by reason (decode, camera_info, ...).
    pub skipped: BTreeMap<&'static str, u64>,
    last_image: Option<Instant>,
    last_camera_info: Option<Instant>,
    arrivals: VecDeque<Instant>,
    completions: VecDeque<(Instant, f32)>,
    problems: VecDeque<Instant>,
}

fn trim<T>(q: &mut VecDeque<T>, now: Instant, at: impl Fn(&T) -> Instant) {
    while q.front().is_some_and(|x| now.saturating_duration_since(at(x)) > WINDOW) || q.len() > MAX_SAMPLES {
        q.pop_front();
    }
}

fn percentile(sorted: &[f32], p: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

impl CameraHealth {
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            received: 0,
            processed: 0,
            dropped_stale: 0,
            failed: 0,
            skipped: BTreeMap::new(),
            last_image: None,
            last_camera_info: None,
            arrivals: VecDeque::new(),
            completions: VecDeque::new(),
            problems: VecDeque::new(),
        }
    }

    pub fn image_received(&mut self, now: Instant) {
        self.received += 1;
        self.last_image = Some(now);
        self.arrivals.push_back(now);
        trim(&mut self.arrivals, now, |t| *t);
    }

    pub fn camera_info_received(&mut self, now: Instant) {
        self.last_camera_info = Some(now);
    }

    /// When the last image arrived.
    pub fn last_image(&self) -> Option<Instant> {
        self.last_image
    }

    /// A depth image was published; `latency_ms` from the image stamp.
    pub fn processed(&mut self, now: Instant, latency_ms: f32) {
        self.processed += 1;
        self.completions.push_back((now, latency_ms));
        trim(&mut self.completions, now, |c| c.0);
    }

    pub fn skipped(&mut self, now: Instant, reason: &'static str) {
        *self.skipped.entry(reason).or_insert(0) += 1;
        self.problem(now);
    }

    pub fn failed(&mut self, now: Instant) {
        self.failed += 1;
        self.problem(now);
    }

    fn problem(&mut self, now: Instant) {
        self.problems.push_back(now);
        trim(&mut self.problems, now, |t| *t);
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    pub fn report(&self, now: Instant, thresholds: &HealthThresholds) -> HealthReport {
        let age = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
        // Until a first image, silence counts from the start.
        let silent = age(self.last_image).unwrap_or_else(|| now.saturating_duration_since(self.started));
        let span = now.saturating_duration_since(self.started).min(WINDOW).max(Duration::from_millis(100));
        let in_window = |t: &Instant| now.saturating_duration_since(*t) <= WINDOW;
        let rate = |n: usize| n as f64 / span.as_secs_f64();
        let input_rate = rate(self.arrivals.iter().filter(|t| in_window(t)).count());
        let recent: Vec<f32> = self.completions.iter().filter(|c| in_window(&c.0)).map(|c| c.1).collect();
        let processed_rate = rate(recent.len());
        let mut sorted = recent.clone();
        sorted.sort_by(f32::total_cmp);
        let problems = self.problems.iter().filter(|t| in_window(t)).count();
        let info_age = age(self.last_camera_info);

        let never = self.last_image.is_none();
        let (level, message) = if silent >= thresholds.error_after {
            (Level::Error, silence_message(never, silent))
        } else if silent >= thresholds.warn_after {
            (Level::Warn, silence_message(never, silent))
        } else if never {
            (Level::Ok, "waiting for the first image".to_string())
        } else if problems > 0 {
            (Level::Warn, format!("{problems} frame(s) skipped or lost in the last {} s", WINDOW.as_secs()))
        } else if info_age.is_none_or(|a| a >= thresholds.warn_after) {
            let since = info_age.map_or("never received".to_string(), |a| format!("none for {:.1} s", a.as_secs_f64()));
            (Level::Warn, format!("camera_info {since}: depth only, no depth/camera_info or points"))
        } else {
            (Level::Ok, format!("{processed_rate:.1} of {input_rate:.1} frames/s processed"))
        };

        let secs = |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{:.2}", d.as_secs_f64()));
        let mut values = vec![
            ("input rate [Hz]".to_string(), format!("{input_rate:.2}")),
            ("processed rate [Hz]".to_string(), format!("{processed_rate:.2}")),
            ("frames received".to_string(), self.received.to_string()),
            ("frames processed".to_string(), self.processed.to_string()),
            ("frames dropped (stale)".to_string(), self.dropped_stale.to_string()),
            ("frames skipped".to_string(), self.skipped_total().to_string()),
        ];
        values.extend(self.skipped.iter().map(|(reason, n)| (format!("frames skipped: {reason}"), n.to_string())));
        values.extend([
            ("frames failed".to_string(), self.failed.to_string()),
            ("latency median [ms]".to_string(), format!("{:.1}", percentile(&sorted, 0.5))),
            ("latency p95 [ms]".to_string(), format!("{:.1}", percentile(&sorted, 0.95))),
            ("last image age [s]".to_string(), secs(age(self.last_image))),
            ("last camera_info age [s]".to_string(), secs(info_age)),
        ]);
        HealthReport { level, message, values }
    }
}

fn silence_message(never: bool, silent: Duration) -> String {
    if never {
        format!("no image received yet ({:.1} s since start)", silent.as_secs_f64())
    } else {
        format!("no image for {:.1} s", silent.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_goes_warn_then_error() {
        let th = HealthThresholds { warn_after: Duration::from_secs(10), error_after: Duration::from_secs(30) };
        assert_eq!(inference_level(Duration::from_secs(9), 3, &th), (Level::Ok, None));
        let (level, msg) = inference_level(Duration::from_secs(12), 3, &th);
        assert_eq!(level, Level::Warn);
        assert!(msg.unwrap().contains("12.0 s with 3 frame(s) waiting"));
        assert_eq!(inference_level(Duration::from_secs(31), 1, &th).0, Level::Error);
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn value<'a>(r: &'a HealthReport, key: &str) -> &'a str {
        &r.values.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no {key}")).1
    }

    #[test]
    fn levels_follow_silence_and_recover() {
        let t0 = Instant::now();
        let th = HealthThresholds::default();
        let mut h = CameraHealth::new(t0);
        assert_eq!(h.report(at(t0, 500), &th).level, Level::Ok);
        assert_eq!(h.report(at(t0, 2_500), &th).level, Level::Warn);
        assert!(h.report(at(t0, 2_500), &th).message.contains("no image received yet"));
        assert_eq!(h.report(at(t0, 10_000), &th).level, Level::Error);
        // A stream at 10 Hz with camera_info: OK, rates measured.
        for i in 0..30 {
            let t = at(t0, 10_000 + 100 * i);
            h.image_received(t);
            h.camera_info_received(t);
            h.processed(t + Duration::from_millis(40), 40.0 + i as f32);
        }
        let now = at(t0, 13_000);
        let r = h.report(now, &th);
        assert_eq!(r.level, Level::Ok, "{r:?}");
        let rate: f64 = value(&r, "input rate [Hz]").parse().unwrap();
        assert!((rate - 6.0).abs() < 0.01, "30 frames in the 5 s window: {rate}");
        assert_eq!(value(&r, "frames processed"), "30");
        assert_eq!(value(&r, "latency median [ms]"), "55.0");
        // It stops: WARN after 2 s, ERROR after 10 s, OK again on resuming.
        let last = at(t0, 12_900);
        assert_eq!(h.report(last + Duration::from_millis(2_100), &th).level, Level::Warn);
        assert_eq!(h.report(last + Duration::from_millis(10_100), &th).level, Level::Error);
        let back = last + Duration::from_millis(11_000);
        h.image_received(back);
        h.camera_info_received(back);
        assert_eq!(h.report(back, &th).level, Level::Ok);
    }

    #[test]
    fn skipped_frames_and_a_missing_camera_info_warn() {
        let t0 = Instant::now();
        let th = HealthThresholds::default();
        let mut h = CameraHealth::new(t0);
        h.image_received(t0);
        let r = h.report(t0, &th);
        assert_eq!((r.level, r.message.contains("camera_info never")), (Level::Warn, true), "{r:?}");
        h.camera_info_received(t0);
        h.skipped(t0, "decode");
        h.skipped(t0, "decode");
        h.failed(t0);
        let r = h.report(t0, &th);
        assert_eq!(r.level, Level::Warn);
        assert_eq!((value(&r, "frames skipped: decode"), value(&r, "frames failed")), ("2", "1"));
        // Old problems age out of the window.
        h.image_received(at(t0, 6_000));
        h.camera_info_received(at(t0, 6_000));
        assert_eq!(h.report(at(t0, 6_000), &th).level, Level::Ok);
        assert_eq!(h.skipped_total(), 2);
    }
}
