//! The parameters an operator can change while the node runs (`ros2 param
//! set`): the depth ranges, the output size, the cloud's decimation, which
//! outputs to publish, the batching and the diagnostics thresholds, shared
//! and per camera (`NAME.max_range`, ...). A change is checked together with
//! everything it affects (a new `min_range` against every camera's
//! `max_range`) and applied whole or not at all, so the node always runs on
//! a valid set; [`NodeSettings`] is that set, per camera.

use std::time::Duration;

use crate::geometry::{resolve_range, RangeLimits};

use super::health::HealthThresholds;
use super::output_size::OutputSize;

/// Shared parameters that can change while the node runs.
pub const LIVE_SHARED: [&str; 13] = [
    "output_width",
    "output_height",
    "min_range",
    "max_range",
    "cloud_decimation",
    "publish_cloud",
    "publish_colormap",
    "batch_window_ms",
    "max_batch_size",
    "diagnostics_warn_after",
    "diagnostics_error_after",
    "inference_warn_after",
    "inference_error_after",
];

/// Per-camera overrides (`NAME.<override>`) that can change while the node
/// runs; every other shared value is the same for all cameras.
pub const CAMERA_OVERRIDES: [&str; 5] = ["output_width", "output_height", "min_range", "max_range", "cloud_decimation"];

/// Longest batch window accepted [ms].
pub const MAX_BATCH_WINDOW_MS: f64 = 1000.0;

/// A parameter value as ROS carries it, without ROS types.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveValue {
    Bool(bool),
    Integer(i64),
    Double(f64),
    /// Not set: for a per-camera override, back to the shared value.
    Unset,
    /// Any other type (a string, an array), named for the error.
    Other(&'static str),
}

impl LiveValue {
    fn type_name(&self) -> &'static str {
        match self {
            LiveValue::Bool(_) => "a bool",
            LiveValue::Integer(_) => "an integer",
            LiveValue::Double(_) => "a double",
            LiveValue::Unset => "not set",
            LiveValue::Other(t) => t,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LiveError {
    /// The value is refused; the message names the parameter and why.
    #[error("{0}")]
    Invalid(String),
    /// A parameter read only at start (model, topics, QoS).
    #[error("parameter {0} is read only at start")]
    NotLive(String),
    #[error("no parameter {0}")]
    Unknown(String),
}

/// The shared values.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedTunables {
    pub output_width: i64,
    pub output_height: i64,
    pub min_range: f64,
    pub max_range: f64,
    pub cloud_decimation: i64,
    pub publish_cloud: bool,
    pub publish_colormap: bool,
    pub batch_window_ms: f64,
    pub max_batch_size: i64,
    pub diagnostics_warn_after: f64,
    pub diagnostics_error_after: f64,
    pub inference_warn_after: f64,
    pub inference_error_after: f64,
}

impl Default for SharedTunables {
    fn default() -> Self {
        Self {
            output_width: 0,
            output_height: 0,
            min_range: 0.0,
            max_range: 0.0,
            cloud_decimation: 1,
            publish_cloud: true,
            publish_colormap: false,
            batch_window_ms: 0.0,
            max_batch_size: 0,
            diagnostics_warn_after: 2.0,
            diagnostics_error_after: 10.0,
            // A CPU pass of the largest model (DepthBLIP-2's EVA ViT-g) takes
            // seconds; a CUDA pass's first call compiles kernels.
            inference_warn_after: 10.0,
            inference_error_after: 30.0,
        }
    }
}

/// One camera's overrides of the shared values (None: the shared one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraOverrides {
    pub output_width: Option<i64>,
    pub output_height: Option<i64>,
    pub min_range: Option<f64>,
    pub max_range: Option<f64>,
    pub cloud_decimation: Option<i64>,
}

/// What one camera's frames are processed with.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraSettings {
    pub output: OutputSize,
    pub range: RangeLimits,
    pub cloud_decimation: usize,
    pub publish_cloud: bool,
    pub publish_colormap: bool,
}

/// The whole validated set, one [`CameraSettings`] per camera in order.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    pub cameras: Vec<CameraSettings>,
    pub batch_window: Duration,
    /// 0: one frame of every camera.
    pub max_batch_size: usize,
    /// Silent cameras (`diagnostics_*_after`).
    pub thresholds: HealthThresholds,
    /// A stalled inference (`inference_*_after`).
    pub inference_thresholds: HealthThresholds,
}

/// The live parameters of a node: shared values, per-camera overrides, and
/// what ranges are checked against (the loaded model's).
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub shared: SharedTunables,
    cameras: Vec<(String, CameraOverrides)>,
    model_range: (f32, f32),
    allow_out_of_model_range: bool,
}

fn as_f64(name: &str, v: &LiveValue) -> Result<f64, LiveError> {
    match v {
        LiveValue::Double(x) => Ok(*x),
        // `ros2 param set ... max_range 5` sends an integer.
        LiveValue::Integer(i) => Ok(*i as f64),
        other => Err(LiveError::Invalid(format!("parameter {name} must be a number, got {}", other.type_name()))),
    }
}

fn as_i64(name: &str, v: &LiveValue) -> Result<i64, LiveError> {
    match v {
        LiveValue::Integer(i) => Ok(*i),
        other => Err(LiveError::Invalid(format!("parameter {name} must be an integer, got {}", other.type_name()))),
    }
}

fn as_bool(name: &str, v: &LiveValue) -> Result<bool, LiveError> {
    match v {
        LiveValue::Bool(b) => Ok(*b),
        other => Err(LiveError::Invalid(format!("parameter {name} must be true or false, got {}", other.type_name()))),
    }
}

fn in_range<T: PartialOrd + std::fmt::Display>(name: &str, v: T, lo: T, hi: T, unit: &str) -> Result<T, LiveError> {
    if v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(LiveError::Invalid(format!("parameter {name} must be in {lo}..={hi}{unit}, got {v}")))
    }
}

fn decimation(name: &str, v: i64) -> Result<i64, LiveError> {
    in_range(name, v, 1, 64, "")
}

fn side(name: &str, v: i64) -> Result<i64, LiveError> {
    in_range(name, v, 0, super::output_size::MAX_SIDE, " (0 = follow the camera)")
}

fn seconds(name: &str, v: f64) -> Result<f64, LiveError> {
    if v.is_finite() && v > 0.0 && v <= 3600.0 {
        Ok(v)
    } else {
        Err(LiveError::Invalid(format!("parameter {name} must be in (0, 3600] seconds, got {v}")))
    }
}

fn finite_range(name: &str, v: f64) -> Result<f64, LiveError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(LiveError::Invalid(format!("parameter {name} must be a finite number >= 0 (0 = the model's), got {v}")))
    }
}

impl LiveConfig {
    /// `cameras`: the camera names in order (`[""]` for the unnamed one).
    pub fn new(shared: SharedTunables, cameras: &[String], model_range: (f32, f32), allow_out_of_model_range: bool) -> Self {
        Self {
            shared,
            cameras: cameras.iter().map(|c| (c.clone(), CameraOverrides::default())).collect(),
            model_range,
            allow_out_of_model_range,
        }
    }

    /// The model's range, once it is loaded (ranges are checked against it).
    pub fn set_model_range(&mut self, model_range: (f32, f32)) {
        self.model_range = model_range;
    }

    pub fn camera_names(&self) -> impl Iterator<Item = &str> {
        self.cameras.iter().map(|(n, _)| n.as_str())
    }

    /// `name` split as `(camera index, override)` when it is a camera's override.
    fn split<'n>(&self, name: &'n str) -> Option<(usize, &'n str)> {
        let (camera, key) = name.split_once('.')?;
        let index = self.cameras.iter().position(|(c, _)| !c.is_empty() && c == camera)?;
        Some((index, key))
    }

    /// Whether `name` is a live parameter (shared or per camera).
    pub fn is_live(&self, name: &str) -> bool {
        LIVE_SHARED.contains(&name) || self.split(name).is_some_and(|(_, k)| CAMERA_OVERRIDES.contains(&k))
    }

    /// The value of a live parameter; for a camera's override that is not
    /// set, the shared value it follows.
    pub fn get(&self, name: &str) -> Option<LiveValue> {
        let s = &self.shared;
        if let Some((i, key)) = self.split(name) {
            let o = &self.cameras[i].1;
            return match key {
                "output_width" => Some(LiveValue::Integer(o.output_width.unwrap_or(s.output_width))),
                "output_height" => Some(LiveValue::Integer(o.output_height.unwrap_or(s.output_height))),
                "min_range" => Some(LiveValue::Double(o.min_range.unwrap_or(s.min_range))),
                "max_range" => Some(LiveValue::Double(o.max_range.unwrap_or(s.max_range))),
                "cloud_decimation" => Some(LiveValue::Integer(o.cloud_decimation.unwrap_or(s.cloud_decimation))),
                _ => None,
            };
        }
        Some(match name {
            "output_width" => LiveValue::Integer(s.output_width),
            "output_height" => LiveValue::Integer(s.output_height),
            "min_range" => LiveValue::Double(s.min_range),
            "max_range" => LiveValue::Double(s.max_range),
            "cloud_decimation" => LiveValue::Integer(s.cloud_decimation),
            "publish_cloud" => LiveValue::Bool(s.publish_cloud),
            "publish_colormap" => LiveValue::Bool(s.publish_colormap),
            "batch_window_ms" => LiveValue::Double(s.batch_window_ms),
            "max_batch_size" => LiveValue::Integer(s.max_batch_size),
            "diagnostics_warn_after" => LiveValue::Double(s.diagnostics_warn_after),
            "diagnostics_error_after" => LiveValue::Double(s.diagnostics_error_after),
            "inference_warn_after" => LiveValue::Double(s.inference_warn_after),
            "inference_error_after" => LiveValue::Double(s.inference_error_after),
            _ => return None,
        })
    }

    /// Whether a camera override is set (it is then its own parameter).
    pub fn is_overridden(&self, name: &str) -> bool {
        self.split(name).is_some_and(|(i, key)| {
            let o = &self.cameras[i].1;
            match key {
                "output_width" => o.output_width.is_some(),
                "output_height" => o.output_height.is_some(),
                "min_range" => o.min_range.is_some(),
                "max_range" => o.max_range.is_some(),
                "cloud_decimation" => o.cloud_decimation.is_some(),
                _ => false,
            }
        })
    }

    /// Applies one value after checking it alone (type and bounds); the
    /// checks across values are [`Self::resolve`]'s. At start, values are
    /// applied this way and resolved once; at run time use [`Self::set`].
    pub fn apply(&mut self, name: &str, value: &LiveValue) -> Result<(), LiveError> {
        if let Some((i, key)) = self.split(name) {
            let o = &mut self.cameras[i].1;
            let unset = *value == LiveValue::Unset;
            match key {
                "output_width" => o.output_width = if unset { None } else { Some(side(name, as_i64(name, value)?)?) },
                "output_height" => o.output_height = if unset { None } else { Some(side(name, as_i64(name, value)?)?) },
                "min_range" => o.min_range = if unset { None } else { Some(finite_range(name, as_f64(name, value)?)?) },
                "max_range" => o.max_range = if unset { None } else { Some(finite_range(name, as_f64(name, value)?)?) },
                "cloud_decimation" => {
                    o.cloud_decimation = if unset { None } else { Some(decimation(name, as_i64(name, value)?)?) }
                }
                _ => return Err(LiveError::Unknown(name.to_string())),
            }
            return Ok(());
        }
        if !LIVE_SHARED.contains(&name) {
            return Err(LiveError::NotLive(name.to_string()));
        }
        if *value == LiveValue::Unset {
            return Err(LiveError::Invalid(format!("parameter {name} cannot be unset")));
        }
        let s = &mut self.shared;
        match name {
            "output_width" => s.output_width = side(name, as_i64(name, value)?)?,
            "output_height" => s.output_height = side(name, as_i64(name, value)?)?,
            "min_range" => s.min_range = finite_range(name, as_f64(name, value)?)?,
            "max_range" => s.max_range = finite_range(name, as_f64(name, value)?)?,
            "cloud_decimation" => s.cloud_decimation = decimation(name, as_i64(name, value)?)?,
            "publish_cloud" => s.publish_cloud = as_bool(name, value)?,
            "publish_colormap" => s.publish_colormap = as_bool(name, value)?,
            "batch_window_ms" => {
                let v = as_f64(name, value)?;
                if !v.is_finite() {
                    return Err(LiveError::Invalid(format!("parameter {name} must be finite, got {v}")));
                }
                s.batch_window_ms = in_range(name, v, 0.0, MAX_BATCH_WINDOW_MS, " ms")?;
            }
            "max_batch_size" => s.max_batch_size = in_range(name, as_i64(name, value)?, 0, 64, " (0 = every camera)")?,
            "diagnostics_warn_after" => s.diagnostics_warn_after = seconds(name, as_f64(name, value)?)?,
            "diagnostics_error_after" => s.diagnostics_error_after = seconds(name, as_f64(name, value)?)?,
            "inference_warn_after" => s.inference_warn_after = seconds(name, as_f64(name, value)?)?,
            "inference_error_after" => s.inference_error_after = seconds(name, as_f64(name, value)?)?,
            _ => unreachable!("every LIVE_SHARED name is handled"),
        }
        Ok(())
    }

    /// A change at run time: applied and resolved together with everything
    /// else, kept only if the whole set is valid. Returns the new set.
    pub fn set(&mut self, name: &str, value: &LiveValue) -> Result<NodeSettings, LiveError> {
        let mut next = self.clone();
        next.apply(name, value)?;
        let resolved = next.resolve()?;
        *self = next;
        Ok(resolved)
    }

    /// Every camera's settings, or the first problem, naming the parameter
    /// to change (`front.max_range` when the camera overrides it).
    pub fn resolve(&self) -> Result<NodeSettings, LiveError> {
        let s = &self.shared;
        if s.diagnostics_error_after <= s.diagnostics_warn_after {
            return Err(LiveError::Invalid(format!(
                "parameter diagnostics_error_after ({} s) must be above diagnostics_warn_after ({} s)",
                s.diagnostics_error_after, s.diagnostics_warn_after
            )));
        }
        if s.inference_error_after <= s.inference_warn_after {
            return Err(LiveError::Invalid(format!(
                "parameter inference_error_after ({} s) must be above inference_warn_after ({} s)",
                s.inference_error_after, s.inference_warn_after
            )));
        }
        let mut cameras = Vec::with_capacity(self.cameras.len());
        for (camera, o) in &self.cameras {
            let blame = |param: &str, overridden: bool| {
                if overridden {
                    format!("{camera}.{param}")
                } else if camera.is_empty() {
                    param.to_string()
                } else {
                    format!("{param} (for camera {camera})")
                }
            };
            let (ow, oh) = (o.output_width.unwrap_or(s.output_width), o.output_height.unwrap_or(s.output_height));
            let output = OutputSize::new(ow, oh).map_err(|e| {
                let overridden = if e.param == "output_width" { o.output_width.is_some() } else { o.output_height.is_some() };
                LiveError::Invalid(e.to_string().replacen(e.param, &blame(e.param, overridden), 1))
            })?;
            let (min, max) = (o.min_range.unwrap_or(s.min_range), o.max_range.unwrap_or(s.max_range));
            let range = resolve_range(min, max, self.model_range, self.allow_out_of_model_range).map_err(|e| {
                let param = e.parameter();
                let overridden = if param == "min_range" { o.min_range.is_some() } else { o.max_range.is_some() };
                let text = e.to_string();
                LiveError::Invalid(text.replacen(&format!("parameter {param}"), &format!("parameter {}", blame(param, overridden)), 1))
            })?;
            cameras.push(CameraSettings {
                output,
                range,
                cloud_decimation: o.cloud_decimation.unwrap_or(s.cloud_decimation) as usize,
                publish_cloud: s.publish_cloud,
                publish_colormap: s.publish_colormap,
            });
        }
        Ok(NodeSettings {
            cameras,
            batch_window: Duration::from_secs_f64(s.batch_window_ms / 1e3),
            max_batch_size: s.max_batch_size as usize,
            thresholds: HealthThresholds {
                warn_after: Duration::from_secs_f64(s.diagnostics_warn_after),
                error_after: Duration::from_secs_f64(s.diagnostics_error_after),
            },
            inference_thresholds: HealthThresholds {
                warn_after: Duration::from_secs_f64(s.inference_warn_after),
                error_after: Duration::from_secs_f64(s.inference_error_after),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LiveConfig {
        LiveConfig::new(SharedTunables::default(), &["front".into(), "rear".into()], (0.1, 10.0), false)
    }

    fn invalid(r: Result<NodeSettings, LiveError>) -> String {
        match r {
            Err(LiveError::Invalid(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn shared_values_and_overrides_resolve_per_camera() {
        let mut c = config();
        c.apply("cloud_decimation", &LiveValue::Integer(2)).unwrap();
        c.apply("front.cloud_decimation", &LiveValue::Integer(4)).unwrap();
        c.apply("front.max_range", &LiveValue::Integer(5)).unwrap();
        c.apply("rear.output_width", &LiveValue::Integer(32)).unwrap();
        let r = c.resolve().unwrap();
        assert_eq!((r.cameras[0].cloud_decimation, r.cameras[1].cloud_decimation), (4, 2));
        assert_eq!((r.cameras[0].range.min, r.cameras[0].range.max), (0.1, 5.0));
        assert_eq!(r.cameras[1].range.max, 10.0);
        assert_eq!(r.cameras[1].output, OutputSize { width: 32, height: 0 });
        assert_eq!(c.get("front.max_range"), Some(LiveValue::Double(5.0)));
        assert_eq!(c.get("rear.max_range"), Some(LiveValue::Double(0.0)), "follows the shared value");
        assert!(c.is_overridden("front.max_range") && !c.is_overridden("rear.max_range"));
        // Unset: back to the shared value.
        c.apply("front.cloud_decimation", &LiveValue::Unset).unwrap();
        assert_eq!(c.resolve().unwrap().cameras[0].cloud_decimation, 2);
    }

    #[test]
    fn a_bad_change_is_refused_whole_and_names_the_parameter() {
        let mut c = config();
        c.apply("front.max_range", &LiveValue::Double(5.0)).unwrap();
        let before = c.resolve().unwrap();
        // min_range 6 is fine for rear (max 10) but not for front (max 5).
        let msg = invalid(c.set("min_range", &LiveValue::Double(6.0)));
        assert!(msg.contains("front.max_range") || msg.contains("camera front"), "{msg}");
        assert_eq!(c.resolve().unwrap(), before, "nothing changed");
        let msg = invalid(c.set("max_range", &LiveValue::Double(50.0)));
        assert!(msg.contains("max_range (for camera rear)") && msg.contains("outside the model"), "{msg}");
        let msg = invalid(c.set("rear.cloud_decimation", &LiveValue::Integer(0)));
        assert!(msg.starts_with("parameter rear.cloud_decimation must be in 1..=64"), "{msg}");
        let msg = invalid(c.set("cloud_decimation", &LiveValue::Double(2.0)));
        assert!(msg.contains("must be an integer"), "{msg}");
        let msg = invalid(c.set("publish_cloud", &LiveValue::Integer(1)));
        assert!(msg.contains("true or false"), "{msg}");
        let msg = invalid(c.set("diagnostics_error_after", &LiveValue::Double(1.0)));
        assert!(msg.contains("above diagnostics_warn_after"), "{msg}");
        assert!(invalid(c.set("batch_window_ms", &LiveValue::Double(f64::NAN))).contains("batch_window_ms"));
        assert_eq!(c.set("device", &LiveValue::Double(1.0)), Err(LiveError::NotLive("device".into())));
        assert_eq!(c.resolve().unwrap(), before, "nothing changed");
        // A good one goes through.
        let r = c.set("min_range", &LiveValue::Double(1.0)).unwrap();
        assert_eq!((r.cameras[0].range.min, r.cameras[1].range.min), (1.0, 1.0));
    }

    #[test]
    fn the_unnamed_camera_has_no_overrides() {
        let c = LiveConfig::new(SharedTunables::default(), &[String::new()], (0.1, 10.0), false);
        assert!(c.is_live("max_range") && !c.is_live(".max_range") && !c.is_live("model_config"));
        let mut c2 = c.clone();
        assert_eq!(c2.set("min_range", &LiveValue::Double(20.0)).unwrap_err().to_string().split(' ').nth(1), Some("min_range"));
        assert_eq!(c.resolve().unwrap().cameras.len(), 1);
    }
}
