//! `clip_depth_node`: camera images in, metric depth (SPACE-CLIP or
//! DepthCLIP, as the model config's `model_type` says), camera_info
//! and point clouds out (r2r + tokio). Start-up problems (bad parameter,
//! missing or bad weights) end the process with exit code 2 and one line;
//! bad frames at run time are skipped and the node carries on; if the
//! inference or ROS thread dies anyway, the process exits with code 1 so
//! that a supervisor (a launch file's `respawn`) can restart it.

mod camera_sync;
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
use r2r::sensor_msgs::msg::{CameraInfo, CompressedImage, Image, PointCloud2};

use clip_depth_ros::geometry::resolve_range;
use clip_depth_ros::DepthEstimator;

use frame_slot::{Payload, Shared};
use params::{NodeParams, StartupOnly};
use worker::{Outputs, Worker};

const NODE_NAME: &str = "clip_depth";

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

    let params = Arc::new(Mutex::new(StartupOnly(NodeParams::default())));
    let (param_handler, _param_events) = node
        .make_derived_parameter_handler(params.clone())
        .map_err(|e| format!("bad parameter: {e}"))?;
    warn_unknown_parameters(&node, &logger);
    let settings = params.lock().map_err(|_| "parameter lock poisoned".to_string())?.0.validate()?;

    let t = Instant::now();
    let estimator = DepthEstimator::load_with(&settings.files, &settings.overrides, settings.device, settings.dtype)
        .map_err(|e| format!("parameter {}: {e}", culprit_parameter(&e, &settings)))?;
    // Before anything is logged: a bad range is a start-up error (one line).
    let range = resolve_range(
        settings.min_range,
        settings.max_range,
        estimator.depth_range(),
        settings.allow_out_of_model_range,
    )
    .map_err(|e| e.to_string())?;
    r2r::log_info!(
        &logger,
        "model {} loaded in {:.1} s on {} ({}); depth range {:?} m",
        estimator.model_name(),
        t.elapsed().as_secs_f64(),
        settings.device,
        settings.dtype,
        estimator.depth_range()
    );

    let shared = Arc::new(Shared::new());
    let in_qos = settings.input_qos.clone();
    let out_qos = settings.output_qos.clone();
    let err = |what: &'static str| move |e: r2r::Error| format!("cannot create {what}: {e}");

    let images: std::pin::Pin<Box<dyn futures::Stream<Item = Payload> + Send>> = if settings.compressed {
        Box::pin(node.subscribe::<CompressedImage>("image/compressed", in_qos.clone()).map_err(err("image/compressed subscription"))?.map(Payload::Compressed))
    } else {
        Box::pin(node.subscribe::<Image>("image", in_qos.clone()).map_err(err("image subscription"))?.map(Payload::Raw))
    };
    let infos = node.subscribe::<CameraInfo>("camera_info", in_qos).map_err(err("camera_info subscription"))?;
    let outputs = Outputs {
        depth: node.create_publisher::<Image>("depth/image", out_qos.clone()).map_err(err("depth/image publisher"))?,
        depth_info: node.create_publisher::<CameraInfo>("depth/camera_info", out_qos.clone()).map_err(err("depth/camera_info publisher"))?,
        cloud: if settings.publish_cloud {
            Some(node.create_publisher::<PointCloud2>("points", out_qos.clone()).map_err(err("points publisher"))?)
        } else {
            None
        },
        colormap: if settings.publish_colormap {
            Some(node.create_publisher::<Image>("depth/colormap", out_qos.clone()).map_err(err("depth/colormap publisher"))?)
        } else {
            None
        },
        stats: node.create_publisher::<DepthStats>("~/stats", out_qos).map_err(err("~/stats publisher"))?,
    };

    let worker = Worker::new(shared.clone(), estimator, settings.clone(), range, outputs, logger.clone());
    r2r::log_info!(
        &logger,
        "listening on {} + camera_info; publishing depth/image ({}), depth/camera_info{}{}, ~/stats; ranges {:?} m",
        if settings.compressed { "image/compressed" } else { "image" },
        settings.depth_encoding.ros_encoding(),
        if settings.publish_cloud { format!(", points (decimation {})", settings.cloud_decimation) } else { String::new() },
        if settings.publish_colormap { ", depth/colormap" } else { "" },
        (range.min, range.max),
    );
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
        tokio::spawn(param_handler);
        let s = shared.clone();
        tokio::spawn(async move {
            let mut images = images;
            while let Some(payload) = images.next().await {
                s.put_frame(payload);
            }
        });
        let s = shared.clone();
        tokio::spawn(async move {
            let mut infos = infos;
            while let Some(info) = infos.next().await {
                s.put_camera_info(info);
            }
        });
        tokio::select! {
            _ = wait_for_signal() => Ended::Signal,
            Some(why) = ended_rx.recv() => {
                r2r::log_error!(&logger, "{why}; exiting with code 1 so that a supervisor (launch respawn) can restart the node");
                Ended::ThreadDied
            }
        }
    });

    r2r::log_info!(&logger, "shutting down");
    shared.shut_down();
    // The inference thread may be mid-forward pass (seconds on a CPU with a
    // big backbone): give it a moment, then leave without it.
    let deadline = Instant::now() + Duration::from_millis(600);
    while !(worker_thread.is_finished() && spin_thread.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(ended)
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

/// A typo in `-p name:=value` would otherwise be silently ignored.
fn warn_unknown_parameters(node: &r2r::Node, logger: &str) {
    let known: Vec<String> = {
        let defaults = NodeParams::default();
        let mut names = Vec::new();
        let mut probe = defaults;
        for name in node.params.lock().map(|p| p.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            if r2r::RosParams::get_parameter(&mut probe, &name).is_ok() || name == "use_sim_time" {
                names.push(name);
            } else {
                r2r::log_warn!(logger, "unknown parameter {name:?} is ignored");
            }
        }
        names
    };
    let _ = known;
}
