//! The node's ROS parameters (set from YAML or `-p`), and their validation
//! into settings the node can trust. Every check names its parameter. The
//! model, topic and QoS parameters are read once at start and refuse later
//! changes; the live ones (ranges, output size, cloud, batching,
//! diagnostics thresholds, and their per-camera overrides `NAME.<param>`)
//! are checked as a whole by the library's `LiveConfig` and take effect on
//! the next frame ([`Parameters`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use r2r::indexmap::IndexMap;
use r2r::{Parameter, ParameterValue, QosProfile, RosParams};

use clip_depth_ros::estimator::{ModelFamily, ModelOverrides};
use clip_depth_ros::geometry::DepthEncoding;
use clip_depth_ros::model::prompt_bins::{BeyondBins, PromptOverrides};
use clip_depth_ros::node::live::CAMERA_OVERRIDES;
use clip_depth_ros::node::{parse_camera_names, LiveConfig, LiveValue, NodeSettings, SharedTunables};
use clip_depth_ros::{DeviceSpec, ModelDType, ModelFiles};

#[derive(RosParams, Debug, Clone)]
pub struct NodeParams {
    /// Camera names, a list: camera NAME reads NAME/image and NAME/camera_info and publishes under NAME/ ("" = one unnamed camera, no prefix)
    pub cameras: String,
    /// Model YAML: a SPACE-CLIP training YAML, or DepthCLIP's / DepthBLIP-2's (model_type: depthclip / depthblip2)
    pub model_config: String,
    /// Model family, replacing the model config's model_type: space_clip, depthclip or depthblip2 ("" = the config's)
    pub model_type: String,
    /// DepthCLIP / DepthBLIP-2: sentence templates with two {} (object, distance), a YAML list ("" = the config's)
    pub depth_templates: String,
    /// DepthCLIP / DepthBLIP-2: objects named in the prompts, a YAML list ("" = the config's)
    pub obj_classes: String,
    /// DepthCLIP / DepthBLIP-2: distance words, nearest first, a YAML list ("" = the config's)
    pub depth_classes: String,
    /// DepthCLIP / DepthBLIP-2: depth of each class in metres, a YAML list ("" = the config's)
    pub bin_list: String,
    /// DepthCLIP / DepthBLIP-2: factor on every bin (0 = the config's)
    pub depth_scale: f64,
    /// DepthCLIP / DepthBLIP-2: softmax temperature over the distance classes (0 = the config's)
    pub temperature: f64,
    /// DepthCLIP / DepthBLIP-2: mark (+Inf where the farthest distance class is the most likely, -Inf where the nearest is: REP 117's too far / too close) or keep (the bins' weighted mean everywhere)
    pub beyond_bins: String,
    /// Checkpoint: train.py .pt/.pth or a .safetensors state dict
    pub checkpoint: String,
    /// Separate HF CLIP model.safetensors for a decoder-only checkpoint ("" = none)
    pub clip_weights: String,
    /// Backbone HF config.json ("" = beside clip_weights, else the preset of clip_model_name)
    pub clip_config: String,
    /// cpu, cuda or cuda:N
    pub device: String,
    /// Model precision: f32, f16 or bf16
    pub dtype: String,
    /// raw (subscribe image) or compressed (subscribe image/compressed)
    pub image_transport: String,
    /// Depth image width in pixels (0 = the camera's, or kept to its aspect ratio when output_height is set); live
    pub output_width: i64,
    /// Depth image height in pixels (0 = the camera's, or kept to its aspect ratio when output_width is set); live
    pub output_height: i64,
    /// 32FC1 (metres) or 16UC1 (millimetres)
    pub depth_encoding: String,
    /// Nearer than this [m]: -Inf in the depth image, NaN in the cloud (0 = the model's min_depth); live
    pub min_range: f64,
    /// Farther than this [m]: +Inf in the depth image, NaN in the cloud (0 = the model's max_depth); live
    pub max_range: f64,
    /// Accept min_range/max_range outside the model's [min_depth, max_depth]
    pub allow_out_of_model_range: bool,
    /// Publish the organised point cloud on points; live
    pub publish_cloud: bool,
    /// Keep every n-th pixel in both directions in the cloud (1 = all); live
    pub cloud_decimation: i64,
    /// Add a packed rgb field to the cloud (point_step 32)
    pub cloud_rgb: bool,
    /// Publish a bgr8 picture of the depth on depth/colormap; live
    pub publish_colormap: bool,
    /// How long to wait for the camera_info with the image's exact stamp [s] (while stamps match at all)
    pub camera_info_sync_window: f64,
    /// After the window, pair with the newest camera_info (else skip the cloud)
    pub use_latest_camera_info: bool,
    /// Input QoS reliability: best_effort (sensor data) or reliable
    pub input_reliability: String,
    /// Input QoS history depth
    pub input_depth: i64,
    /// Output QoS reliability: reliable or best_effort
    pub output_reliability: String,
    /// Output QoS history depth
    pub output_depth: i64,
    /// Longest wait [ms] for the other cameras' frames before a forward pass (0 = take what is there); live
    pub batch_window_ms: f64,
    /// Most frames in one forward pass, the longest-waiting cameras first (0 = one of every camera); live
    pub max_batch_size: i64,
    /// /diagnostics: WARN when a camera sent no image for this long [s]; live
    pub diagnostics_warn_after: f64,
    /// /diagnostics: ERROR when a camera sent no image for this long [s]; live
    pub diagnostics_error_after: f64,
    /// /diagnostics: seconds between two DiagnosticArrays
    pub diagnostics_period: f64,
    /// /diagnostics: inference WARN when frames wait and no forward pass has finished for this long [s]; live
    pub inference_warn_after: f64,
    /// /diagnostics: inference ERROR when frames wait and no forward pass has finished for this long [s]; live
    pub inference_error_after: f64,
}

impl Default for NodeParams {
    fn default() -> Self {
        let live = SharedTunables::default();
        Self {
            cameras: String::new(),
            model_config: String::new(),
            model_type: String::new(),
            depth_templates: String::new(),
            obj_classes: String::new(),
            depth_classes: String::new(),
            bin_list: String::new(),
            depth_scale: 0.0,
            temperature: 0.0,
            beyond_bins: "mark".into(),
            checkpoint: String::new(),
            clip_weights: String::new(),
            clip_config: String::new(),
            device: "cpu".into(),
            dtype: "f32".into(),
            image_transport: "raw".into(),
            output_width: 0,
            output_height: 0,
            depth_encoding: "32FC1".into(),
            min_range: 0.0,
            max_range: 0.0,
            allow_out_of_model_range: false,
            publish_cloud: true,
            cloud_decimation: 1,
            cloud_rgb: false,
            publish_colormap: false,
            camera_info_sync_window: 0.05,
            use_latest_camera_info: true,
            input_reliability: "best_effort".into(),
            input_depth: 5,
            output_reliability: "reliable".into(),
            output_depth: 5,
            batch_window_ms: live.batch_window_ms,
            max_batch_size: live.max_batch_size,
            diagnostics_warn_after: live.diagnostics_warn_after,
            diagnostics_error_after: live.diagnostics_error_after,
            diagnostics_period: 1.0,
            inference_warn_after: live.inference_warn_after,
            inference_error_after: live.inference_error_after,
        }
    }
}

/// One camera as set up at start.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraSetup {
    /// "" for the single unnamed camera.
    pub name: String,
    /// Subscribe to `image/compressed` rather than `image`.
    pub compressed: bool,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub files: ModelFiles,
    /// The model family and DepthCLIP's prompts and bins, when set.
    pub overrides: ModelOverrides,
    pub device: DeviceSpec,
    pub dtype: ModelDType,
    pub beyond_bins: BeyondBins,
    pub cameras: Vec<CameraSetup>,
    pub depth_encoding: DepthEncoding,
    pub cloud_rgb: bool,
    pub sync_window: Duration,
    pub use_latest_camera_info: bool,
    pub input_qos: QosProfile,
    pub output_qos: QosProfile,
    pub diagnostics_period: Duration,
    /// The live parameters, checked one by one; checked together (ranges
    /// against the model's) once the model is loaded: `LiveConfig::resolve`.
    pub live: LiveConfig,
}

fn existing_file(param: &str, value: &str, required: bool) -> Result<Option<PathBuf>, String> {
    if value.is_empty() {
        return if required { Err(format!("parameter {param} is required (a file path)")) } else { Ok(None) };
    }
    let path = Path::new(value);
    if !path.is_file() {
        return Err(format!("parameter {param}: no such file {value:?}"));
    }
    Ok(Some(path.to_owned()))
}

fn qos(param: &str, reliability: &str, depth_param: &str, depth: i64) -> Result<QosProfile, String> {
    if !(1..=1000).contains(&depth) {
        return Err(format!("parameter {depth_param} must be in 1..=1000, got {depth}"));
    }
    let base = QosProfile::default().keep_last(depth as usize).volatile();
    match reliability {
        "best_effort" | "sensor_data" => Ok(base.best_effort()),
        "reliable" => Ok(base.reliable()),
        other => Err(format!("parameter {param} must be best_effort or reliable, got {other:?}")),
    }
}

/// The parameters that hold lists. ROS has array parameters, which r2r's
/// derived handler cannot declare; a YAML list written as one string (or,
/// from a params file, a real array, see [`StartupOnly`]) stands for them.
pub const LIST_PARAMETERS: [&str; 4] = ["depth_templates", "obj_classes", "depth_classes", "bin_list"];

fn list<T: serde::de::DeserializeOwned>(param: &str, value: &str) -> Result<Option<Vec<T>>, String> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    serde_norway::from_str::<Vec<T>>(value)
        .map(Some)
        .map_err(|e| format!("parameter {param} must be a list such as [\"a\", \"b\"] (YAML or a ROS array), got {value:?}: {}", e.to_string().replace('\n', " ")))
}

impl NodeParams {
    /// The model family and prompt settings the parameters replace.
    fn overrides(&self) -> Result<ModelOverrides, String> {
        let model_type = match self.model_type.trim() {
            "" => None,
            name => Some(ModelFamily::parse(name).map_err(|e| format!("parameter model_type: {e}"))?),
        };
        let depth_scale = match self.depth_scale {
            0.0 => None,
            v if v.is_finite() && v > 0.0 => Some(v),
            v => return Err(format!("parameter depth_scale must be positive (0 = the model config's), got {v}")),
        };
        let temperature = match self.temperature {
            0.0 => None,
            v if v.is_finite() && v > 0.0 => Some(v),
            v => return Err(format!("parameter temperature must be positive (0 = the model config's), got {v}")),
        };
        let prompts = PromptOverrides {
            depth_templates: list("depth_templates", &self.depth_templates)?,
            obj_classes: list("obj_classes", &self.obj_classes)?,
            depth_classes: list("depth_classes", &self.depth_classes)?,
            bin_list: list("bin_list", &self.bin_list)?,
            depth_scale,
            temperature,
        };
        if let Some(family) = model_type.filter(|f| !prompts.is_empty() && !f.imp().takes_prompts()) {
            return Err(format!(
                "parameters depth_templates/obj_classes/depth_classes/bin_list/depth_scale/temperature are the prompt families'; model_type is {}",
                family.name()
            ));
        }
        Ok(ModelOverrides { model_type, prompts })
    }

    #[cfg(test)]
    pub fn validate(&self) -> Result<Settings, String> {
        self.validate_with(&[])
    }

    /// As [`Self::validate`], with the per-camera values given at start
    /// (`NAME.<param>`, in the order given).
    pub fn validate_with(&self, camera_values: &[(String, ParameterValue)]) -> Result<Settings, String> {
        let names: Vec<String> = list("cameras", &self.cameras)?.unwrap_or_default();
        let names = parse_camera_names(&names).map_err(|e| e.to_string())?;
        let overrides = self.overrides()?;
        let files = ModelFiles {
            config: existing_file("model_config", &self.model_config, true)?.unwrap_or_default(),
            checkpoint: existing_file("checkpoint", &self.checkpoint, true)?.unwrap_or_default(),
            clip_weights: existing_file("clip_weights", &self.clip_weights, false)?,
            clip_config: existing_file("clip_config", &self.clip_config, false)?,
        };
        let device = self.device.parse().map_err(|e| format!("parameter device: {e}"))?;
        let dtype = self.dtype.parse().map_err(|e| format!("parameter dtype: {e}"))?;
        let beyond_bins = self.beyond_bins.parse().map_err(|e| format!("parameter {e}"))?;
        let transport = |param: &str, value: &str| match value {
            "raw" => Ok(false),
            "compressed" => Ok(true),
            other => Err(format!("parameter {param} must be raw or compressed, got {other:?}")),
        };
        let compressed = transport("image_transport", &self.image_transport)?;
        let mut cameras: Vec<CameraSetup> = names.iter().map(|name| CameraSetup { name: name.clone(), compressed }).collect();
        let depth_encoding = match self.depth_encoding.as_str() {
            "32FC1" => DepthEncoding::Float32,
            "16UC1" => DepthEncoding::U16Millimetres,
            other => return Err(format!("parameter depth_encoding must be 32FC1 or 16UC1, got {other:?}")),
        };
        if !(self.camera_info_sync_window.is_finite() && (0.0..=10.0).contains(&self.camera_info_sync_window)) {
            return Err(format!(
                "parameter camera_info_sync_window must be in 0..=10 seconds, got {}",
                self.camera_info_sync_window
            ));
        }
        if !(self.diagnostics_period.is_finite() && (0.05..=60.0).contains(&self.diagnostics_period)) {
            return Err(format!("parameter diagnostics_period must be in 0.05..=60 seconds, got {}", self.diagnostics_period));
        }
        // The live values, each checked alone now (the model's range is not
        // known yet: the range checks come once it is loaded).
        let mut live = LiveConfig::new(SharedTunables::default(), &names, (0.0, f32::MAX), self.allow_out_of_model_range);
        let shared: [(&str, LiveValue); 13] = [
            ("output_width", LiveValue::Integer(self.output_width)),
            ("output_height", LiveValue::Integer(self.output_height)),
            ("min_range", LiveValue::Double(self.min_range)),
            ("max_range", LiveValue::Double(self.max_range)),
            ("cloud_decimation", LiveValue::Integer(self.cloud_decimation)),
            ("publish_cloud", LiveValue::Bool(self.publish_cloud)),
            ("publish_colormap", LiveValue::Bool(self.publish_colormap)),
            ("batch_window_ms", LiveValue::Double(self.batch_window_ms)),
            ("max_batch_size", LiveValue::Integer(self.max_batch_size)),
            ("diagnostics_warn_after", LiveValue::Double(self.diagnostics_warn_after)),
            ("diagnostics_error_after", LiveValue::Double(self.diagnostics_error_after)),
            ("inference_warn_after", LiveValue::Double(self.inference_warn_after)),
            ("inference_error_after", LiveValue::Double(self.inference_error_after)),
        ];
        for (name, value) in &shared {
            live.apply(name, value).map_err(|e| e.to_string())?;
        }
        for (name, value) in camera_values {
            let (camera, key) = name.split_once('.').unwrap_or_default();
            let Some(index) = names.iter().position(|n| n == camera) else { continue };
            if key == "image_transport" {
                let text = match value {
                    ParameterValue::String(t) => t.as_str(),
                    _ => return Err(format!("parameter {name} must be raw or compressed (a string)")),
                };
                cameras[index].compressed = transport(name, text)?;
                continue;
            }
            if !CAMERA_OVERRIDES.contains(&key) {
                return Err(format!(
                    "parameter {name}: camera {camera} has no parameter {key:?}; per camera: {}, image_transport",
                    CAMERA_OVERRIDES.join(", ")
                ));
            }
            live.apply(name, &live_value(value)).map_err(|e| e.to_string())?;
        }
        // Ranges against the model's come once it is loaded; their order and
        // everything else can be told now.
        live.resolve().map_err(|e| e.to_string())?;
        Ok(Settings {
            files,
            overrides,
            device,
            dtype,
            beyond_bins,
            cameras,
            depth_encoding,
            cloud_rgb: self.cloud_rgb,
            sync_window: Duration::from_secs_f64(self.camera_info_sync_window),
            use_latest_camera_info: self.use_latest_camera_info,
            input_qos: qos("input_reliability", &self.input_reliability, "input_depth", self.input_depth)?,
            output_qos: qos("output_reliability", &self.output_reliability, "output_depth", self.output_depth)?,
            diagnostics_period: Duration::from_secs_f64(self.diagnostics_period),
            live,
        })
    }
}

/// A ROS parameter value for the library's live parameters.
pub fn live_value(value: &ParameterValue) -> LiveValue {
    match value {
        ParameterValue::NotSet => LiveValue::Unset,
        ParameterValue::Bool(b) => LiveValue::Bool(*b),
        ParameterValue::Integer(i) => LiveValue::Integer(*i),
        ParameterValue::Double(d) => LiveValue::Double(*d),
        ParameterValue::String(_) => LiveValue::Other("a string"),
        _ => LiveValue::Other("an array"),
    }
}

fn ros_value(value: LiveValue) -> ParameterValue {
    match value {
        LiveValue::Bool(b) => ParameterValue::Bool(b),
        LiveValue::Integer(i) => ParameterValue::Integer(i),
        LiveValue::Double(d) => ParameterValue::Double(d),
        LiveValue::Unset | LiveValue::Other(_) => ParameterValue::NotSet,
    }
}

/// The live configuration while the node runs: what `ros2 param set`
/// changes, and the resolved set the inference thread reads per batch.
pub struct LiveParams {
    config: LiveConfig,
    resolved: Arc<NodeSettings>,
}

impl LiveParams {
    pub fn new(config: LiveConfig, resolved: NodeSettings) -> Self {
        Self { config, resolved: Arc::new(resolved) }
    }

    /// The current settings (cheap: shared until the next change).
    pub fn resolved(&self) -> Arc<NodeSettings> {
        self.resolved.clone()
    }
}

/// Locks `live`; a poisoned lock (a panic mid-change, which `set` cannot
/// leave half done) still holds a valid set.
pub fn lock_live(live: &Mutex<LiveParams>) -> std::sync::MutexGuard<'_, LiveParams> {
    live.lock().unwrap_or_else(|e| e.into_inner())
}

/// The node's parameters behind r2r's parameter services. Start-up
/// parameters (model, device, topics, QoS) are read once: `ros2 param set`
/// on them fails with the reason rather than reporting a success the node
/// would ignore (r2r 0.9 has no read-only flag in its descriptors; refusing
/// the set is what it offers). LiveParams ones go through [`LiveConfig::set`]:
/// refused with the reason and the old value kept, or applied for the next
/// frame. Per-camera overrides are parameters of their own once set (at
/// start or at run time); setting one to "not set" (`ros2 param delete`)
/// returns the camera to the shared value.
pub struct Parameters {
    pub base: NodeParams,
    /// `NAME.<param>` values given at start, in order.
    pub camera_values: Vec<(String, ParameterValue)>,
    /// Set once the node runs.
    running: Option<Running>,
}

struct Running {
    live: Arc<Mutex<LiveParams>>,
    /// The node's parameter table, to add and remove per-camera entries.
    table: Arc<Mutex<IndexMap<String, Parameter>>>,
    logger: String,
}

impl Parameters {
    pub fn new(base: NodeParams) -> Self {
        Self { base, camera_values: Vec::new(), running: None }
    }

    pub fn refusal(name: &str) -> r2r::Error {
        r2r::Error::ParameterValueConv {
            name: name.to_string(),
            msg: "it is read-only: clip_depth reads it once at start (model, device, cameras, topics, QoS); \
                  restart the node with the new value"
                .into(),
        }
    }

    /// From now on, live parameters change `live`.
    pub fn go_live(&mut self, live: Arc<Mutex<LiveParams>>, table: Arc<Mutex<IndexMap<String, Parameter>>>, logger: String) {
        self.running = Some(Running { live, table, logger });
    }

    /// Whether `name` is one of the node's parameters (for the warning
    /// about unknown ones).
    pub fn knows(&mut self, name: &str) -> bool {
        name == "use_sim_time"
            || self.base.get_parameter(name).is_ok()
            || self.camera_values.iter().any(|(n, _)| n == name)
    }

    /// The names of the cameras as given (lenient: validation reports errors).
    fn camera_names(&self) -> Vec<String> {
        list::<String>("cameras", &self.base.cameras).ok().flatten().unwrap_or_default()
    }

    fn change(&mut self, name: &str, value: &ParameterValue, commit: bool) -> r2r::Result<()> {
        let Some(running) = &self.running else {
            return Err(Self::refusal(name));
        };
        let mut live = lock_live(&running.live);
        if !live.config.is_live(name) {
            return Err(if self.base.get_parameter(name).is_ok() || name.contains('.') && self.is_camera_param(name) {
                Self::refusal(name)
            } else {
                r2r::Error::InvalidParameterName { name: name.to_string() }
            });
        }
        let old = live.config.get(name).map(|v| plain(&ros_value(v))).unwrap_or_default();
        let mut next = live.config.clone();
        let resolved = next.set(name, &live_value(value)).map_err(|e| r2r::Error::ParameterValueConv {
            name: name.to_string(),
            msg: format!("rejected: {e}; it stays {old}"),
        })?;
        if !commit {
            return Ok(());
        }
        live.config = next;
        live.resolved = Arc::new(resolved);
        let shown = live.config.get(name).map(ros_value);
        drop(live);
        if name.contains('.') {
            // A per-camera override is its own parameter while set.
            let mut table = running.table.lock().unwrap_or_else(|e| e.into_inner());
            if *value == ParameterValue::NotSet {
                table.shift_remove(name);
            } else {
                table.insert(name.to_string(), Parameter { value: value.clone(), description: "per-camera override (live)" });
            }
        } else {
            // Keep the struct's copy in step (what get_parameter reports).
            let current = self.base.get_parameter(name).ok();
            self.base.set_parameter(name, &normalised(value, current))?;
        }
        r2r::log_info!(
            &running.logger,
            "parameter {name} set to {}; from the next frame on",
            shown.map_or("the shared value".to_string(), |v| plain(&v))
        );
        Ok(())
    }

    /// `NAME.<param>` of a camera, live or not.
    fn is_camera_param(&self, name: &str) -> bool {
        let (camera, key) = name.split_once('.').unwrap_or_default();
        self.camera_names().iter().any(|c| c == camera) && (CAMERA_OVERRIDES.contains(&key) || key == "image_transport")
    }
}

/// A value as an operator wrote it (`4.0`, `2`, `true`), for messages.
fn plain(value: &ParameterValue) -> String {
    match value {
        ParameterValue::Bool(b) => b.to_string(),
        ParameterValue::Integer(i) => i.to_string(),
        ParameterValue::Double(d) if d.fract() == 0.0 && d.is_finite() => format!("{d:.1}"),
        ParameterValue::Double(d) => d.to_string(),
        ParameterValue::String(s) => format!("{s:?}"),
        ParameterValue::NotSet => "not set".into(),
        other => format!("{other:?}"),
    }
}

/// An integer given for a double parameter (`ros2 param set ... max_range 5`)
/// stored as the double.
fn normalised(value: &ParameterValue, current: Option<ParameterValue>) -> ParameterValue {
    match (value, current) {
        (ParameterValue::Integer(i), Some(ParameterValue::Double(_))) => ParameterValue::Double(*i as f64),
        (v, _) => v.clone(),
    }
}

impl RosParams for Parameters {
    fn register_parameters(
        &mut self,
        prefix: &str,
        param: Option<Parameter>,
        params: &mut IndexMap<String, Parameter>,
    ) -> r2r::Result<()> {
        // Start-up values (command line, params file) are applied here, in
        // the type each parameter has: list parameters given as ROS arrays
        // become their YAML text, an integer given for a double parameter
        // its value, a whole double given for an integer one its integer.
        for (name, p) in params.iter_mut() {
            let list_param = LIST_PARAMETERS.contains(&name.as_str()) || name == "cameras";
            let value = match (&p.value, self.base.get_parameter(name)) {
                (ParameterValue::StringArray(v), _) if list_param => serde_json::to_string(v).ok().map(ParameterValue::String),
                (ParameterValue::DoubleArray(v), _) if list_param => serde_json::to_string(v).ok().map(ParameterValue::String),
                (ParameterValue::IntegerArray(v), _) if list_param => serde_json::to_string(v).ok().map(ParameterValue::String),
                (ParameterValue::Integer(i), Ok(ParameterValue::Double(_))) => Some(ParameterValue::Double(*i as f64)),
                (ParameterValue::Double(d), Ok(ParameterValue::Integer(_))) if d.fract() == 0.0 && d.abs() < 2f64.powi(53) => {
                    Some(ParameterValue::Integer(*d as i64))
                }
                _ => None,
            };
            if let Some(value) = value {
                p.value = value;
            }
        }
        self.base.register_parameters(prefix, param, params)?;
        // Per-camera values stay in the table as parameters of their own.
        let cameras = self.camera_names();
        self.camera_values = params
            .iter()
            .filter(|(name, _)| name.split_once('.').is_some_and(|(c, _)| cameras.iter().any(|n| n == c)))
            .map(|(name, p)| (name.clone(), p.value.clone()))
            .collect();
        Ok(())
    }

    fn get_parameter(&mut self, name: &str) -> r2r::Result<ParameterValue> {
        if let Some(running) = &self.running {
            let live = lock_live(&running.live);
            if live.config.is_live(name) {
                if let Some(v) = live.config.get(name) {
                    return Ok(ros_value(v));
                }
            }
        }
        if let Some((_, v)) = self.camera_values.iter().find(|(n, _)| n == name) {
            return Ok(v.clone());
        }
        self.base.get_parameter(name)
    }

    fn set_parameter(&mut self, name: &str, value: &ParameterValue) -> r2r::Result<()> {
        self.change(name, value, true)
    }

    fn check_parameter(&self, name: &str, value: &ParameterValue) -> r2r::Result<()> {
        // `change` without committing needs `&mut` only for its bookkeeping.
        let mut probe = Parameters {
            base: self.base.clone(),
            camera_values: self.camera_values.clone(),
            running: self.running.as_ref().map(|r| Running {
                live: r.live.clone(),
                table: r.table.clone(),
                logger: r.logger.clone(),
            }),
        };
        probe.change(name, value, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/tiny_clip/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn good() -> NodeParams {
        NodeParams { model_config: fixture("config.yaml"), checkpoint: fixture("checkpoint.pt"), ..Default::default() }
    }

    /// The error of `good()` changed by `edit`; it must name `param`.
    fn refused(param: &str, edit: impl FnOnce(&mut NodeParams)) -> String {
        let mut p = good();
        edit(&mut p);
        let err = p.validate().expect_err(param);
        assert!(err.contains(param), "{err:?} does not name {param}");
        err
    }

    fn resolved(s: &Settings) -> NodeSettings {
        let mut live = s.live.clone();
        live.set_model_range((0.001, 10.0));
        live.resolve().unwrap()
    }

    #[test]
    fn defaults_with_the_model_files_are_valid() {
        let s = good().validate().unwrap();
        assert_eq!(s.cameras, vec![CameraSetup { name: String::new(), compressed: false }]);
        let r = resolved(&s);
        let cam = &r.cameras[0];
        assert!(cam.output.is_camera_size() && cam.publish_cloud && !cam.publish_colormap);
        assert_eq!((cam.range.min, cam.range.max, cam.cloud_decimation), (0.001, 10.0, 1));
        assert_eq!((r.batch_window, r.max_batch_size), (Duration::ZERO, 0));
        assert_eq!(s.sync_window, Duration::from_millis(50));
        assert_eq!(s.diagnostics_period, Duration::from_secs(1));
        assert!(s.files.clip_weights.is_none() && s.files.clip_config.is_none());
    }

    #[test]
    fn each_bad_value_names_its_parameter() {
        refused("model_config", |p| p.model_config.clear());
        let err = refused("checkpoint", |p| p.checkpoint = "/nonexistent/best.pt".into());
        assert!(err.contains("/nonexistent/best.pt"), "{err}");
        refused("clip_weights", |p| p.clip_weights = "missing.safetensors".into());
        refused("device", |p| p.device = "tpu".into());
        refused("dtype", |p| p.dtype = "f64".into());
        refused("beyond_bins", |p| p.beyond_bins = "clamp".into());
        refused("image_transport", |p| p.image_transport = "theora".into());
        refused("output_width", |p| p.output_width = -640);
        refused("output_height", |p| (p.output_width, p.output_height) = (640, 20000));
        refused("depth_encoding", |p| p.depth_encoding = "8UC1".into());
        refused("cloud_decimation", |p| p.cloud_decimation = 0);
        refused("cloud_decimation", |p| p.cloud_decimation = 65);
        refused("camera_info_sync_window", |p| p.camera_info_sync_window = f64::NAN);
        refused("camera_info_sync_window", |p| p.camera_info_sync_window = -0.1);
        refused("input_reliability", |p| p.input_reliability = "sometimes".into());
        refused("input_depth", |p| p.input_depth = 0);
        refused("output_depth", |p| p.output_depth = 1001);
        refused("min_range", |p| p.min_range = -1.0);
        refused("max_range", |p| (p.min_range, p.max_range) = (5.0, 2.0));
        refused("batch_window_ms", |p| p.batch_window_ms = 5000.0);
        refused("max_batch_size", |p| p.max_batch_size = -1);
        refused("diagnostics_error_after", |p| p.diagnostics_error_after = 1.0);
        refused("diagnostics_period", |p| p.diagnostics_period = 0.0);
        refused("cameras", |p| p.cameras = "[front, front]".into());
        refused("cameras", |p| p.cameras = "[front/left]".into());
        refused("cameras", |p| p.cameras = "front".into());
    }

    #[test]
    fn accepted_values_come_through() {
        let mut p = good();
        (p.image_transport, p.output_width, p.output_height) = ("compressed".into(), 320, 240);
        (p.depth_encoding, p.cloud_decimation, p.camera_info_sync_window) = ("16UC1".into(), 4, 0.0);
        (p.input_reliability, p.output_reliability) = ("reliable".into(), "best_effort".into());
        let s = p.validate().unwrap();
        assert!(s.cameras[0].compressed);
        assert_eq!(s.depth_encoding, DepthEncoding::U16Millimetres);
        assert_eq!(s.sync_window, Duration::ZERO);
        let r = resolved(&s);
        assert_eq!((r.cameras[0].output.resolve(640, 480), r.cameras[0].cloud_decimation), ((320, 240), 4));
        // One side alone follows the camera's aspect ratio.
        p.output_height = 0;
        assert_eq!(resolved(&p.validate().unwrap()).cameras[0].output.resolve(640, 480), (320, 240));
    }

    #[test]
    fn cameras_and_their_overrides() {
        let mut p = good();
        p.cameras = r#"["front", "rear"]"#.into();
        p.cloud_decimation = 2;
        let values = vec![
            ("rear.cloud_decimation".to_string(), ParameterValue::Integer(8)),
            ("rear.image_transport".to_string(), ParameterValue::String("compressed".into())),
            ("front.output_width".to_string(), ParameterValue::Integer(32)),
        ];
        let s = p.validate_with(&values).unwrap();
        let names: Vec<(&str, bool)> = s.cameras.iter().map(|c| (c.name.as_str(), c.compressed)).collect();
        assert_eq!(names, [("front", false), ("rear", true)]);
        let r = resolved(&s);
        assert_eq!((r.cameras[0].cloud_decimation, r.cameras[1].cloud_decimation), (2, 8));
        assert_eq!(r.cameras[0].output.resolve(64, 48), (32, 24));
        let bad = |name: &str, value: ParameterValue| p.validate_with(&[(name.to_string(), value)]).unwrap_err();
        assert!(bad("rear.cloud_decimation", ParameterValue::Integer(0)).contains("rear.cloud_decimation"));
        assert!(bad("rear.image_transport", ParameterValue::String("x".into())).contains("rear.image_transport"));
        let err = bad("front.output_widht", ParameterValue::Integer(3));
        assert!(err.contains("front.output_widht") && err.contains("output_width"), "{err}");
    }

    #[test]
    fn depthclip_overrides_are_parsed_and_checked() {
        let mut p = good();
        p.model_type = "depthclip".into();
        p.depth_classes = "[near, far]".into();
        p.bin_list = "[1, 4.5]".into();
        p.depth_scale = 2.0;
        let s = p.validate().unwrap();
        assert_eq!(s.overrides.model_type, Some(ModelFamily::DepthClip));
        assert_eq!(s.overrides.prompts.depth_classes, Some(vec!["near".to_string(), "far".to_string()]));
        assert_eq!(s.overrides.prompts.bin_list, Some(vec![1.0, 4.5]));
        assert_eq!(s.overrides.prompts.depth_scale, Some(2.0));
        assert!(good().validate().unwrap().overrides == ModelOverrides::default());
        refused("model_type", |p| p.model_type = "midas".into());
        refused("bin_list", |p| p.bin_list = "[1, far]".into());
        refused("depth_templates", |p| p.depth_templates = "This {} is {}".into());
        refused("depth_scale", |p| p.depth_scale = -1.0);
    }

    #[test]
    fn ros_arrays_become_list_parameters() {
        let mut params = Parameters::new(good());
        let mut map = IndexMap::new();
        map.insert("depth_classes".to_string(), Parameter::new(ParameterValue::StringArray(vec!["near".into(), "far".into()])));
        map.insert("bin_list".to_string(), Parameter::new(ParameterValue::DoubleArray(vec![1.0, 3.0])));
        map.insert("cameras".to_string(), Parameter::new(ParameterValue::StringArray(vec!["a".into(), "b".into()])));
        map.insert("b.max_range".to_string(), Parameter::new(ParameterValue::Double(3.0)));
        map.insert("c.max_range".to_string(), Parameter::new(ParameterValue::Double(3.0)));
        params.register_parameters("", None, &mut map).unwrap();
        let s = params.base.validate_with(&params.camera_values).unwrap();
        assert_eq!(s.overrides.prompts.depth_classes.unwrap().len(), 2);
        assert_eq!(s.overrides.prompts.bin_list, Some(vec![1.0, 3.0]));
        assert_eq!(s.cameras.len(), 2);
        assert_eq!(params.camera_values, vec![("b.max_range".to_string(), ParameterValue::Double(3.0))]);
        assert!(params.knows("b.max_range") && !params.knows("c.max_range") && params.knows("max_range"));
    }

    /// config/clip_depth.yaml documents exactly the parameters the node
    /// declares (the docs' parameter table is held to that file), each with
    /// the declared default but for the file's deliberate choices.
    #[test]
    fn the_params_file_lists_every_declared_parameter_with_its_default() {
        let mut declared = IndexMap::new();
        NodeParams::default().register_parameters("", None, &mut declared).unwrap();
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/clip_depth.yaml")).unwrap();
        let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        let file = doc["/**"]["ros__parameters"].as_mapping().unwrap();
        let mut in_file: Vec<&str> = file.keys().map(|k| k.as_str().unwrap()).collect();
        let mut names: Vec<&str> = declared.keys().map(String::as_str).collect();
        in_file.sort();
        names.sort();
        assert_eq!(in_file, names);
        // The file's own choices, said in its comments: a full 640x480 cloud
        // is about 4.9 MB a frame, so the launched node keeps every 2nd pixel.
        let chosen = ["cloud_decimation"];
        for (name, p) in declared.iter().filter(|(n, _)| !chosen.contains(&n.as_str())) {
            let v = &file[name.as_str()];
            let same = match &p.value {
                ParameterValue::String(s) => v.as_str() == Some(s.as_str()),
                ParameterValue::Double(d) => v.as_f64() == Some(*d),
                ParameterValue::Integer(i) => v.as_i64() == Some(*i),
                ParameterValue::Bool(b) => v.as_bool() == Some(*b),
                other => panic!("{name}: unexpected type {other:?}"),
            };
            assert!(same, "{name}: the file says {v:?}, the node declares {:?}", p.value);
        }
    }

    fn running(p: NodeParams) -> (Parameters, Arc<Mutex<LiveParams>>, Arc<Mutex<IndexMap<String, Parameter>>>) {
        let s = p.validate().unwrap();
        let mut config = s.live.clone();
        config.set_model_range((0.001, 10.0));
        let live = Arc::new(Mutex::new(LiveParams::new(config.clone(), config.resolve().unwrap())));
        let table = Arc::new(Mutex::new(IndexMap::new()));
        let mut params = Parameters::new(p);
        params.go_live(live.clone(), table.clone(), "test".into());
        (params, live, table)
    }

    #[test]
    fn start_up_parameters_are_refused_with_the_reason() {
        let (mut params, _, _) = running(good());
        let err = params.set_parameter("device", &ParameterValue::String("cuda:0".into())).unwrap_err();
        assert!(err.to_string().contains("device") && err.to_string().contains("read-only"), "{err}");
        assert!(params.check_parameter("model_config", &ParameterValue::String("x".into())).is_err());
        assert_eq!(params.base.device, "cpu", "the value must not change");
        assert_eq!(params.get_parameter("device").unwrap(), ParameterValue::String("cpu".into()));
        assert!(matches!(
            params.set_parameter("no_such_thing", &ParameterValue::Bool(true)),
            Err(r2r::Error::InvalidParameterName { .. })
        ));
        // Before the node runs, nothing changes.
        let mut early = Parameters::new(good());
        assert!(early.set_parameter("max_range", &ParameterValue::Double(5.0)).is_err());
    }

    #[test]
    fn live_parameters_change_or_are_refused_with_the_old_value_kept() {
        let mut p = good();
        p.cameras = "[front, rear]".into();
        let (mut params, live, table) = running(p);
        params.set_parameter("max_range", &ParameterValue::Integer(5)).unwrap();
        assert_eq!(params.get_parameter("max_range").unwrap(), ParameterValue::Double(5.0));
        assert_eq!(params.base.max_range, 5.0);
        assert_eq!(lock_live(&live).resolved().cameras[1].range.max, 5.0);
        let err = params.set_parameter("min_range", &ParameterValue::Double(7.0)).unwrap_err().to_string();
        assert!(err.contains("rejected") && err.contains("min_range") && err.contains("stays"), "{err}");
        assert!(err.ends_with("it stays 0.0"), "the old value as written: {err}");
        assert_eq!(lock_live(&live).resolved().cameras[0].range.min, 0.001);
        assert!(params.check_parameter("cloud_decimation", &ParameterValue::Integer(0)).is_err());
        params.check_parameter("cloud_decimation", &ParameterValue::Integer(3)).unwrap();
        assert_eq!(lock_live(&live).resolved().cameras[0].cloud_decimation, 1, "a check changes nothing");
        // A per-camera override becomes a parameter, and goes on unset.
        params.set_parameter("rear.cloud_decimation", &ParameterValue::Integer(4)).unwrap();
        assert!(table.lock().unwrap().contains_key("rear.cloud_decimation"));
        assert_eq!(lock_live(&live).resolved().cameras[1].cloud_decimation, 4);
        params.set_parameter("rear.cloud_decimation", &ParameterValue::NotSet).unwrap();
        assert!(!table.lock().unwrap().contains_key("rear.cloud_decimation"));
        assert_eq!(lock_live(&live).resolved().cameras[1].cloud_decimation, 1);
        let err = params.set_parameter("rear.image_transport", &ParameterValue::String("compressed".into())).unwrap_err();
        assert!(err.to_string().contains("read-only"), "{err}");
    }
}
