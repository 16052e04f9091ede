//! `clip_depth_node`: camera images in, metric depth (SPACE-CLIP or
//! DepthCLIP, as the model config's `model_type` says), camera_info
//! and point clouds out (r2r + tokio), for one camera or several sharing
//! one model (`cameras`: each camera's newest frames go through the model
//! together). Health per camera on `/diagnostics`. Start-up problems (bad
//! parameter, missing or bad weights) end the process with exit code 2 and
//! one line; bad frames at run time are skipped and the node carries on; if
//! the inference or ROS thread dies anyway, the process exits with code 1
//! so that a supervisor (a launch file's `respawn`) can restart it.

mod camera_sync;
mod diagnostics;
mod frame_slot;
mod messages;
mod params;
mod supervise;
mod throttle;
mod worker;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use r2r::clip_depth_msgs::msg::DepthStats;
use r2r::diagnostic_msgs::msg::DiagnosticArray;
use r2r::sensor_msgs::msg::{CameraInfo, CompressedImage, Image, PointCloud2};
use r2r::QosProfile;

use clip_depth_ros::node::{camera_topic, Level};
use clip_depth_ros::DepthEstimator;

use frame_slot::{Payload, FrameSlots};
use params::{LiveParams, NodeParams, Parameters};
use worker::{CameraOutputs, Worker};

const NODE_NAME: &str = "clip_depth";

type Images = std::pin::Pin<Box<dyn futures::Stream<Item = Payload> + Send>>;

/// How a started node ended.
enum Ended {
    /// SIGINT / SIGTERM: exit 0.
    Signal,
    /// A thread the node cannot work without ended: exit 1.
    ThreadDied,
}

fn main() -> ExitCode {
    clip_depth_ros::tune_cpu_runtime();
    clip_depth_ros::error::one_line_panics("clip_depth_node");
    supervise::install_panic_hook();
    match run() {
        Ok(Ended::Signal) => ExitCode::SUCCESS,
        Ok(Ended::ThreadDied) => ExitCode::from(1),
        Err(msg) => {
            eprintln!("clip_depth_node: error: {}", msg.replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<Ended, String> {
    let ctx = r2r::Context::create().map_err(|e| format!("cannot initialise ROS 2: {e}"))?;
    let mut node = r2r::Node::create(ctx, NODE_NAME, "").map_err(|e| format!("cannot create the node: {e}"))?;
    let logger = node.logger().to_string();

    start_up_values_as_given(&node)?;
    let params = Arc::new(Mutex::new(Parameters::new(NodeParams::default())));
    let (param_handler, _param_events) = node
        .make_derived_parameter_handler(params.clone())
        .map_err(|e| format!("bad parameter: {e}"))?;
    warn_unknown_parameters(&node, &params, &logger);
    let settings = {
        let p = params.lock().map_err(|_| "parameter lock poisoned".to_string())?;
        p.base.validate_with(&p.camera_values)?
    };

    let t = Instant::now();
    let mut estimator = DepthEstimator::load_with(&settings.files, &settings.overrides, settings.device, settings.dtype)
        .map_err(|e| format!("parameter {}: {e}", culprit_parameter(&e, &settings)))?;
    estimator.set_beyond_bins(settings.beyond_bins);
    // Before anything is logged: a bad range is a start-up error (one line).
    let mut config = settings.live.clone();
    config.set_model_range(estimator.depth_range());
    let resolved = config.resolve().map_err(|e| e.to_string())?;
    r2r::log_info!(
        &logger,
        "model {} loaded in {:.1} s on {} ({}); depth range {:?} m",
        estimator.model_name(),
        t.elapsed().as_secs_f64(),
        settings.device,
        settings.dtype,
        estimator.depth_range()
    );

    let shared = Arc::new(FrameSlots::new(settings.cameras.len()));
    let err = |what: String| move |e: r2r::Error| format!("cannot create {what}: {e}");
    let mut inputs: Vec<(usize, Images, _)> = Vec::new();
    let mut outputs = Vec::new();
    for (index, camera) in settings.cameras.iter().enumerate() {
        let topic = |t: &str| camera_topic(&camera.name, t);
        let in_qos = settings.input_qos.clone();
        let images: Images = if camera.compressed {
            let t = topic("image/compressed");
            Box::pin(node.subscribe::<CompressedImage>(&t, in_qos.clone()).map_err(err(format!("{t} subscription")))?.map(Payload::Compressed))
        } else {
            let t = topic("image");
            Box::pin(node.subscribe::<Image>(&t, in_qos.clone()).map_err(err(format!("{t} subscription")))?.map(Payload::Raw))
        };
        let t = topic("camera_info");
        let infos = node.subscribe::<CameraInfo>(&t, in_qos).map_err(err(format!("{t} subscription")))?;
        inputs.push((index, images, infos));
        outputs.push(camera_outputs(&mut node, &camera.name, &settings.output_qos)?);
        let cam = &resolved.cameras[index];
        r2r::log_info!(
            &logger,
            "{}listening on {} + {}; publishing {} ({}), {}, {} (decimation {}{}), {}{}; ranges {:?} m",
            if camera.name.is_empty() { String::new() } else { format!("camera {}: ", camera.name) },
            topic(if camera.compressed { "image/compressed" } else { "image" }),
            topic("camera_info"),
            topic("depth/image"),
            settings.depth_encoding.ros_encoding(),
            topic("depth/camera_info"),
            topic("points"),
            cam.cloud_decimation,
            if cam.publish_cloud { "" } else { ", off" },
            topic("depth/colormap"),
            if cam.publish_colormap { "" } else { " (off)" },
            (cam.range.min, cam.range.max),
        );
    }
    let diagnostics_pub = node
        .create_publisher::<DiagnosticArray>("/diagnostics", QosProfile::default().keep_last(10).reliable())
        .map_err(err("/diagnostics publisher".into()))?;

    let live = Arc::new(Mutex::new(LiveParams::new(config, resolved)));
    params
        .lock()
        .map_err(|_| "parameter lock poisoned".to_string())?
        .go_live(live.clone(), node.params.clone(), logger.clone());
    let diagnostics = diagnostics::Diagnostics {
        shared: shared.clone(),
        live: live.clone(),
        publisher: diagnostics_pub,
        node_name: node.name().unwrap_or_else(|_| NODE_NAME.to_string()),
        cameras: settings.cameras.iter().map(|c| c.name.clone()).collect(),
        period: settings.diagnostics_period,
        model: estimator.model_name().to_string(),
        device: format!("{} {}", settings.device, settings.dtype),
        logger: logger.clone(),
        started: Instant::now(),
        inference_level: std::cell::Cell::new(Level::Ok as u8),
    };
    let settings_cameras: Vec<String> = settings.cameras.iter().map(|c| c.name.clone()).collect();
    let worker = Worker::new(shared.clone(), live, estimator, settings, outputs, logger.clone());

    // Each thread says when it ends; before shutdown that is a death.
    let (ended_tx, mut ended_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let watched = |name: &'static str, body: Box<dyn FnOnce() + Send>| {
        let tx = ended_tx.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let why = supervise::supervised(body).err().unwrap_or_else(|| "it returned".into());
                let _ = tx.send(format!("the {name} thread ended: {why}"));
            })
            .map_err(|e| format!("cannot start the {name} thread: {e}"))
    };
    let worker_thread = watched("inference", Box::new(move || worker.run()))?;
    let diagnostics_thread = watched("diagnostics", Box::new(move || diagnostics.run()))?;

    // ROS executor: its own thread, draining rcl into the streams.
    let spin_shared = shared.clone();
    let spin_thread = watched(
        "ros-spin",
        Box::new(move || {
            while !spin_shared.shutting_down() {
                node.spin_once(Duration::from_millis(20));
            }
        }),
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    let ended = runtime.block_on(async {
        // Every task the node needs is watched: one that ends or panics
        // (a camera's forwarding, the parameter handler) ends the node with
        // exit code 1 and its name, rather than stopping a camera silently.
        let mut tasks = tokio::task::JoinSet::new();
        let mut names = std::collections::HashMap::new();
        names.insert(tasks.spawn(param_handler).id(), "the parameter handler".to_string());
        for (camera, mut images, mut infos) in inputs {
            let label = match settings_cameras.get(camera).map(String::as_str) {
                Some("") | None => "the camera".to_string(),
                Some(name) => format!("camera {name}"),
            };
            let s = shared.clone();
            let id = tasks
                .spawn(async move {
                    while let Some(payload) = images.next().await {
                        supervise::test_hook("forward", &payload.header().frame_id);
                        s.put_frame(camera, payload);
                    }
                })
                .id();
            names.insert(id, format!("{label}'s image forwarding"));
            let s = shared.clone();
            let id = tasks
                .spawn(async move {
                    while let Some(info) = infos.next().await {
                        s.put_camera_info(camera, info);
                    }
                })
                .id();
            names.insert(id, format!("{label}'s camera_info forwarding"));
        }
        let task_ended = |joined: Result<(tokio::task::Id, ()), tokio::task::JoinError>| match joined {
            Ok((id, ())) => format!("{} ended", names.get(&id).map_or("a task", String::as_str)),
            Err(e) => {
                let name = names.get(&e.id()).map_or("a task", String::as_str).to_string();
                if e.is_panic() {
                    format!("{name} panicked: {}", clip_depth_ros::error::panic_message(&*e.into_panic()))
                } else {
                    format!("{name} was cancelled")
                }
            }
        };
        let why = tokio::select! {
            _ = wait_for_signal() => return Ended::Signal,
            Some(why) = ended_rx.recv() => why,
            Some(joined) = tasks.join_next_with_id() => task_ended(joined),
        };
        r2r::log_error!(&logger, "{why}; exiting with code 1 so that a supervisor (launch respawn) can restart the node");
        Ended::ThreadDied
    });

    r2r::log_info!(&logger, "shutting down");
    shared.shut_down();
    // The inference thread may be mid-forward pass (seconds on a CPU with a
    // big backbone): give it a moment, then leave without it.
    let deadline = Instant::now() + Duration::from_millis(600);
    let threads = [&worker_thread, &spin_thread, &diagnostics_thread];
    while !threads.iter().all(|t| t.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(ended)
}

/// One camera's publishers (relative names under the camera's name).
fn camera_outputs(node: &mut r2r::Node, camera: &str, qos: &QosProfile) -> Result<CameraOutputs, String> {
    fn publisher<T: r2r::WrappedTypesupport>(node: &mut r2r::Node, topic: &str, qos: &QosProfile) -> Result<r2r::Publisher<T>, String> {
        node.create_publisher::<T>(topic, qos.clone()).map_err(|e| format!("cannot create the {topic} publisher: {e}"))
    }
    let topic = |t: &str| camera_topic(camera, t);
    let stats = if camera.is_empty() { "~/stats".to_string() } else { format!("~/{camera}/stats") };
    Ok(CameraOutputs {
        depth: publisher(node, &topic("depth/image"), qos)?,
        depth_info: publisher(node, &topic("depth/camera_info"), qos)?,
        cloud: publisher::<PointCloud2>(node, &topic("points"), qos)?,
        colormap: publisher(node, &topic("depth/colormap"), qos)?,
        stats: publisher::<DepthStats>(node, &stats, qos)?,
    })
}

/// The parameter a model-loading error is about, for the one-line message.
fn culprit_parameter(err: &clip_depth_ros::Error, settings: &params::Settings) -> &'static str {
    use clip_depth_ros::Error;
    let files = &settings.files;
    let by_path = |path: &std::path::Path| {
        if path == files.config {
            "model_config"
        } else if Some(path) == files.clip_weights.as_deref() {
            "clip_weights"
        } else if Some(path) == files.clip_config.as_deref() {
            "clip_config"
        } else {
            "checkpoint"
        }
    };
    // A prompt or bin list the parameters replaced is theirs to answer for.
    if let Error::Config { path, message } = err {
        if path == &files.config && !settings.overrides.prompts.is_empty() {
            if let Some(param) = params::LIST_PARAMETERS.iter().chain(["depth_scale"].iter()).copied().find(|p| message.starts_with(p)) {
                return param;
            }
        }
    }
    match err {
        Error::Io { path, .. } | Error::Config { path, .. } | Error::Weights { path, .. } => by_path(path),
        Error::ModelConfig(_) => "model_config",
        Error::Device(_) => "device",
        _ => "checkpoint",
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Puts into the node's parameter table the value each start-up parameter
/// was last given (command line and params files in order), where rcl
/// left one of another type in front of it (see `node::ros_args`).
fn start_up_values_as_given(node: &r2r::Node) -> Result<(), String> {
    use clip_depth_ros::node::ros_args::{last_values, parameter_sources, ArgValue};
    use r2r::{Parameter, ParameterValue};
    let args: Vec<String> = std::env::args().collect();
    let name = node.name().map_err(|e| format!("cannot read the node's name: {e}"))?;
    let qualified = node.fully_qualified_name().map_err(|e| format!("cannot read the node's name: {e}"))?;
    let values = last_values(&parameter_sources(&args), &[&name, &qualified])?;
    let mut table = node.params.lock().map_err(|_| "parameter table lock poisoned".to_string())?;
    for (param, value) in values {
        let value = match value {
            ArgValue::Bool(v) => ParameterValue::Bool(v),
            ArgValue::Integer(v) => ParameterValue::Integer(v),
            ArgValue::Double(v) => ParameterValue::Double(v),
            ArgValue::String(v) => ParameterValue::String(v),
            ArgValue::BoolArray(v) => ParameterValue::BoolArray(v),
            ArgValue::IntegerArray(v) => ParameterValue::IntegerArray(v),
            ArgValue::DoubleArray(v) => ParameterValue::DoubleArray(v),
            ArgValue::StringArray(v) => ParameterValue::StringArray(v),
        };
        table.insert(param, Parameter::new(value));
    }
    Ok(())
}

/// A typo in `-p name:=value` would otherwise be silently ignored.
fn warn_unknown_parameters(node: &r2r::Node, params: &Mutex<Parameters>, logger: &str) {
    let names = node.params.lock().map(|p| p.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    let Ok(mut params) = params.lock() else { return };
    for name in names {
        if !params.knows(&name) {
            r2r::log_warn!(logger, "unknown parameter {name:?} is ignored");
        }
    }
}
