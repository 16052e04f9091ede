//! The node's ROS parameters (set from YAML or `-p`), and their validation
//! into settings the node can trust. Every check names its parameter. All
//! of them are read once at start: [`StartupOnly`] refuses later changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2r::indexmap::IndexMap;
use r2r::{Parameter, ParameterValue, QosProfile, RosParams};

use clip_depth_ros::estimator::{ModelFamily, ModelOverrides};
use clip_depth_ros::geometry::DepthEncoding;
use clip_depth_ros::model::depthclip::PromptOverrides;
use clip_depth_ros::{DeviceSpec, ModelDType, ModelFiles};

#[derive(RosParams, Debug, Clone)]
pub struct NodeParams {
    /// Model YAML: a SPACE-CLIP training YAML, or DepthCLIP's (model_type: depthclip)
    pub model_config: String,
    /// Model family, replacing the model config's model_type: space_clip or depthclip ("" = the config's)
    pub model_type: String,
    /// DepthCLIP: sentence templates with two {} (object, distance), a YAML list ("" = the config's)
    pub depth_templates: String,
    /// DepthCLIP: objects named in the prompts, a YAML list ("" = the config's)
    pub obj_classes: String,
    /// DepthCLIP: distance words, nearest first, a YAML list ("" = the config's)
    pub depth_classes: String,
    /// DepthCLIP: depth of each class in metres, a YAML list ("" = the config's)
    pub bin_list: String,
    /// DepthCLIP: factor on every bin (0 = the config's)
    pub depth_scale: f64,
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
    /// Depth image width in pixels (0 = the camera's)
    pub output_width: i64,
    /// Depth image height in pixels (0 = the camera's)
    pub output_height: i64,
    /// 32FC1 (metres) or 16UC1 (millimetres)
    pub depth_encoding: String,
    /// Nearer than this [m]: -Inf in the depth image, NaN in the cloud (0 = the model's min_depth)
    pub min_range: f64,
    /// Farther than this [m]: +Inf in the depth image, NaN in the cloud (0 = the model's max_depth)
    pub max_range: f64,
    /// Accept min_range/max_range outside the model's [min_depth, max_depth]
    pub allow_out_of_model_range: bool,
    /// Publish the organised point cloud on points
    pub publish_cloud: bool,
    /// Keep every n-th pixel in both directions in the cloud (1 = all)
    pub cloud_decimation: i64,
    /// Add a packed rgb field to the cloud (point_step 32)
    pub cloud_rgb: bool,
    /// Publish a bgr8 picture of the depth on depth/colormap
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
}

impl Default for NodeParams {
    fn default() -> Self {
        Self {
            model_config: String::new(),
            model_type: String::new(),
            depth_templates: String::new(),
            obj_classes: String::new(),
            depth_classes: String::new(),
            bin_list: String::new(),
            depth_scale: 0.0,
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
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub files: ModelFiles,
    /// The model family and DepthCLIP's prompts and bins, when set.
    pub overrides: ModelOverrides,
    pub device: DeviceSpec,
    pub dtype: ModelDType,
    pub compressed: bool,
    pub output_size: Option<(usize, usize)>,
    pub depth_encoding: DepthEncoding,
    /// 0 = the model's; checked against the model's range once it is
    /// loaded (`clip_depth_ros::geometry::resolve_range`).
    pub min_range: f64,
    pub max_range: f64,
    pub allow_out_of_model_range: bool,
    pub publish_cloud: bool,
    pub cloud_decimation: usize,
    pub cloud_rgb: bool,
    pub publish_colormap: bool,
    pub sync_window: Duration,
    pub use_latest_camera_info: bool,
    pub input_qos: QosProfile,
    pub output_qos: QosProfile,
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
        let prompts = PromptOverrides {
            depth_templates: list("depth_templates", &self.depth_templates)?,
            obj_classes: list("obj_classes", &self.obj_classes)?,
            depth_classes: list("depth_classes", &self.depth_classes)?,
            bin_list: list("bin_list", &self.bin_list)?,
            depth_scale,
            temperature: None,
        };
        if !prompts.is_empty() && model_type == Some(ModelFamily::SpaceClip) {
            return Err("parameters depth_templates/obj_classes/depth_classes/bin_list/depth_scale are DepthCLIP's; model_type is space_clip".into());
        }
        Ok(ModelOverrides { model_type, prompts })
    }

    pub fn validate(&self) -> Result<Settings, String> {
        let overrides = self.overrides()?;
        let files = ModelFiles {
            config: existing_file("model_config", &self.model_config, true)?.unwrap_or_default(),
            checkpoint: existing_file("checkpoint", &self.checkpoint, true)?.unwrap_or_default(),
            clip_weights: existing_file("clip_weights", &self.clip_weights, false)?,
            clip_config: existing_file("clip_config", &self.clip_config, false)?,
        };
        let device = self.device.parse().map_err(|e| format!("parameter device: {e}"))?;
        let dtype = self.dtype.parse().map_err(|e| format!("parameter dtype: {e}"))?;
        let compressed = match self.image_transport.as_str() {
            "raw" => false,
            "compressed" => true,
            other => return Err(format!("parameter image_transport must be raw or compressed, got {other:?}")),
        };
        let output_size = match (self.output_width, self.output_height) {
            (0, 0) => None,
            (w, h) if (1..=16384).contains(&w) && (1..=16384).contains(&h) => Some((w as usize, h as usize)),
            (w, h) => {
                return Err(format!(
                    "parameters output_width/output_height must both be 0 (camera size) or in 1..=16384, got {w}x{h}"
                ))
            }
        };
        let depth_encoding = match self.depth_encoding.as_str() {
            "32FC1" => DepthEncoding::Float32,
            "16UC1" => DepthEncoding::U16Millimetres,
            other => return Err(format!("parameter depth_encoding must be 32FC1 or 16UC1, got {other:?}")),
        };
        if !(1..=64).contains(&self.cloud_decimation) {
            return Err(format!("parameter cloud_decimation must be in 1..=64, got {}", self.cloud_decimation));
        }
        if !(self.camera_info_sync_window.is_finite() && (0.0..=10.0).contains(&self.camera_info_sync_window)) {
            return Err(format!(
                "parameter camera_info_sync_window must be in 0..=10 seconds, got {}",
                self.camera_info_sync_window
            ));
        }
        Ok(Settings {
            files,
            overrides,
            device,
            dtype,
            compressed,
            output_size,
            depth_encoding,
            min_range: self.min_range,
            max_range: self.max_range,
            allow_out_of_model_range: self.allow_out_of_model_range,
            publish_cloud: self.publish_cloud,
            cloud_decimation: self.cloud_decimation as usize,
            cloud_rgb: self.cloud_rgb,
            publish_colormap: self.publish_colormap,
            sync_window: Duration::from_secs_f64(self.camera_info_sync_window),
            use_latest_camera_info: self.use_latest_camera_info,
            input_qos: qos("input_reliability", &self.input_reliability, "input_depth", self.input_depth)?,
            output_qos: qos("output_reliability", &self.output_reliability, "output_depth", self.output_depth)?,
        })
    }
}

/// The node's parameters behind r2r's parameter services, read-only: every
/// one is read once at start (the model, the subscriptions and the QoS are
/// built from them), so `ros2 param set` must fail with the reason rather
/// than report a success the node would ignore. r2r 0.9 has no read-only
/// flag in its parameter descriptors; refusing the set is what it offers.
pub struct StartupOnly(pub NodeParams);

impl StartupOnly {
    pub fn refusal(name: &str) -> r2r::Error {
        r2r::Error::ParameterValueConv {
            name: name.to_string(),
            msg: "it is read-only: clip_depth reads its parameters once at start; \
                  restart the node with the new value"
                .into(),
        }
    }
}

impl RosParams for StartupOnly {
    fn register_parameters(
        &mut self,
        prefix: &str,
        param: Option<Parameter>,
        params: &mut IndexMap<String, Parameter>,
    ) -> r2r::Result<()> {
        // Start-up values (command line, params file) are applied here.
        // List parameters given as ROS arrays become their YAML text.
        for name in LIST_PARAMETERS {
            if let Some(p) = params.get_mut(name) {
                let text = match &p.value {
                    ParameterValue::StringArray(v) => serde_json::to_string(v).ok(),
                    ParameterValue::DoubleArray(v) => serde_json::to_string(v).ok(),
                    ParameterValue::IntegerArray(v) => serde_json::to_string(v).ok(),
                    _ => None,
                };
                if let Some(text) = text {
                    p.value = ParameterValue::String(text);
                }
            }
        }
        self.0.register_parameters(prefix, param, params)
    }

    fn get_parameter(&mut self, name: &str) -> r2r::Result<ParameterValue> {
        self.0.get_parameter(name)
    }

    fn set_parameter(&mut self, name: &str, _value: &ParameterValue) -> r2r::Result<()> {
        Err(Self::refusal(name))
    }

    fn check_parameter(&self, name: &str, _value: &ParameterValue) -> r2r::Result<()> {
        Err(Self::refusal(name))
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

    #[test]
    fn defaults_with_the_model_files_are_valid() {
        let s = good().validate().unwrap();
        assert!(!s.compressed && s.output_size.is_none() && s.publish_cloud && !s.publish_colormap);
        assert_eq!((s.min_range, s.max_range, s.cloud_decimation), (0.0, 0.0, 1));
        assert_eq!(s.sync_window, Duration::from_millis(50));
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
        refused("image_transport", |p| p.image_transport = "theora".into());
        refused("output_width", |p| p.output_width = 640);
        refused("output_height", |p| (p.output_width, p.output_height) = (640, -1));
        refused("depth_encoding", |p| p.depth_encoding = "8UC1".into());
        refused("cloud_decimation", |p| p.cloud_decimation = 0);
        refused("cloud_decimation", |p| p.cloud_decimation = 65);
        refused("camera_info_sync_window", |p| p.camera_info_sync_window = f64::NAN);
        refused("camera_info_sync_window", |p| p.camera_info_sync_window = -0.1);
        refused("input_reliability", |p| p.input_reliability = "sometimes".into());
        refused("input_depth", |p| p.input_depth = 0);
        refused("output_depth", |p| p.output_depth = 1001);
    }

    #[test]
    fn accepted_values_come_through() {
        let mut p = good();
        (p.image_transport, p.output_width, p.output_height) = ("compressed".into(), 320, 240);
        (p.depth_encoding, p.cloud_decimation, p.camera_info_sync_window) = ("16UC1".into(), 4, 0.0);
        (p.input_reliability, p.output_reliability) = ("reliable".into(), "best_effort".into());
        let s = p.validate().unwrap();
        assert!(s.compressed);
        assert_eq!(s.output_size, Some((320, 240)));
        assert_eq!(s.depth_encoding, DepthEncoding::U16Millimetres);
        assert_eq!((s.cloud_decimation, s.sync_window), (4, Duration::ZERO));
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
        let mut params = StartupOnly(good());
        let mut map = IndexMap::new();
        map.insert("depth_classes".to_string(), Parameter::new(ParameterValue::StringArray(vec!["near".into(), "far".into()])));
        map.insert("bin_list".to_string(), Parameter::new(ParameterValue::DoubleArray(vec![1.0, 3.0])));
        params.register_parameters("", None, &mut map).unwrap();
        let s = params.0.validate().unwrap();
        assert_eq!(s.overrides.prompts.depth_classes.unwrap().len(), 2);
        assert_eq!(s.overrides.prompts.bin_list, Some(vec![1.0, 3.0]));
    }

    #[test]
    fn run_time_changes_are_refused_with_the_reason() {
        let mut params = StartupOnly(good());
        let err = params.set_parameter("device", &ParameterValue::String("cuda:0".into())).unwrap_err();
        assert!(err.to_string().contains("device") && err.to_string().contains("read-only"), "{err}");
        assert!(params.check_parameter("max_range", &ParameterValue::Double(5.0)).is_err());
        assert_eq!(params.0.device, "cpu", "the value must not change");
        assert_eq!(params.get_parameter("device").unwrap(), ParameterValue::String("cpu".into()));
        // Start-up values are still applied through registration.
        let mut map = IndexMap::new();
        map.insert("cloud_decimation".to_string(), Parameter::new(ParameterValue::Integer(3)));
        params.register_parameters("", None, &mut map).unwrap();
        assert_eq!(params.0.cloud_decimation, 3);
    }
}
