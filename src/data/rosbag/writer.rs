//! Writes rosbag2 bags in the MCAP storage, as `ros2 bag record` lays them
//! out: a folder holding `<name>_0.mcap` (profile `ros2`, `ros2msg` schemas,
//! CDR messages, zstd chunks) and `metadata.yaml` (version 8), so that
//! `ros2 bag play`, `ros2 bag info` and other readers take them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::messages::definition;
use super::BagError;

struct TopicState {
    channel: u16,
    type_name: String,
    count: u64,
    latched: bool,
}

pub struct BagWriter {
    dir: PathBuf,
    file_name: String,
    mcap: Option<mcap::Writer<BufWriter<File>>>,
    topics: BTreeMap<String, TopicState>,
    start: Option<i64>,
    end: i64,
}

fn qos(latched: bool) -> String {
    // rosbag2's QoS notation (version 8): enums as integers; reliable (1),
    // transient local (1) for latched topics like /tf_static, else volatile (2).
    let inf = "{sec: 2147483647, nsec: 4294967295}";
    format!(
        "- history: 3\n  depth: 0\n  reliability: 1\n  durability: {}\n  deadline: {inf}\n  lifespan: {inf}\n  \
         liveliness: 1\n  liveliness_lease_duration: {inf}\n  avoid_ros_namespace_conventions: false",
        if latched { 1 } else { 2 }
    )
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

impl BagWriter {
    /// Creates the bag folder `dir`, which must not exist yet (as `ros2 bag
    /// record -o`).
    pub fn create(dir: &Path) -> Result<Self, BagError> {
        let werr = |path: &Path, message: String| BagError::Write { path: path.to_owned(), message };
        if dir.exists() {
            return Err(werr(dir, "already exists (a bag is written into a new folder)".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| werr(dir, e.to_string()))?;
        let stem = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bag".into());
        let file_name = format!("{stem}_0.mcap");
        let path = dir.join(&file_name);
        let file = File::create(&path).map_err(|e| werr(&path, e.to_string()))?;
        let opts = mcap::WriteOptions::new().profile("ros2").library(concat!("clip_depth_ros ", env!("CARGO_PKG_VERSION")));
        let mcap = opts.create(BufWriter::new(file)).map_err(|e| werr(&path, e.to_string()))?;
        Ok(Self { dir: dir.to_owned(), file_name, mcap: Some(mcap), topics: BTreeMap::new(), start: None, end: 0 })
    }

    fn mcap(&mut self) -> Result<&mut mcap::Writer<BufWriter<File>>, BagError> {
        let path = self.dir.join(&self.file_name);
        self.mcap.as_mut().ok_or(BagError::Write { path, message: "the bag is already finished".into() })
    }

    /// Declares a topic of a type this crate encodes; `latched` for
    /// `/tf_static`-like topics (transient local).
    pub fn add_topic(&mut self, topic: &str, type_name: &str, latched: bool) -> Result<(), BagError> {
        let path = self.dir.join(&self.file_name);
        let def = definition(type_name)
            .ok_or_else(|| BagError::Write { path: path.clone(), message: format!("no message definition for {type_name}") })?;
        let werr = |e: mcap::McapError| BagError::Write { path: path.clone(), message: e.to_string() };
        let mcap = self.mcap()?;
        let schema = mcap.add_schema(type_name, "ros2msg", def.as_bytes()).map_err(werr)?;
        let metadata = BTreeMap::from([("offered_qos_profiles".to_string(), qos(latched))]);
        let channel = mcap.add_channel(schema, topic, "cdr", &metadata).map_err(werr)?;
        self.topics.insert(topic.to_string(), TopicState { channel, type_name: type_name.into(), count: 0, latched });
        Ok(())
    }

    /// Writes one CDR message received at `log_time` (ns).
    pub fn write(&mut self, topic: &str, log_time: i64, data: &[u8]) -> Result<(), BagError> {
        let path = self.dir.join(&self.file_name);
        let state = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| BagError::Write { path: path.clone(), message: format!("topic {topic} was not added") })?;
        state.count += 1;
        let header = mcap::records::MessageHeader {
            channel_id: state.channel,
            sequence: state.count as u32,
            log_time: log_time.max(0) as u64,
            publish_time: log_time.max(0) as u64,
        };
        self.start = Some(self.start.map_or(log_time, |s| s.min(log_time)));
        self.end = self.end.max(log_time);
        self.mcap()?.write_to_known_channel(&header, data).map_err(|e| BagError::Write { path, message: e.to_string() })
    }

    /// Closes the MCAP file and writes `metadata.yaml`.
    pub fn finish(mut self) -> Result<PathBuf, BagError> {
        let path = self.dir.join(&self.file_name);
        let werr = |message: String| BagError::Write { path: path.clone(), message };
        let mut mcap = self.mcap.take().ok_or_else(|| werr("already finished".into()))?;
        mcap.finish().map_err(|e| werr(e.to_string()))?;
        drop(mcap);
        let start = self.start.unwrap_or(0);
        let duration = self.end - start;
        let total: u64 = self.topics.values().map(|t| t.count).sum();
        let mut y = String::from("rosbag2_bagfile_information:\n  version: 8\n  storage_identifier: mcap\n");
        y += &format!("  duration:\n    nanoseconds: {duration}\n  starting_time:\n    nanoseconds_since_epoch: {start}\n");
        y += &format!("  message_count: {total}\n  topics_with_message_count:\n");
        for (name, t) in &self.topics {
            y += &format!(
                "    - topic_metadata:\n        name: {}\n        type: {}\n        serialization_format: cdr\n        \
                 offered_qos_profiles: {}\n        type_description_hash: ''\n      message_count: {}\n",
                yaml_str(name),
                yaml_str(&t.type_name),
                yaml_str(&qos(t.latched)),
                t.count
            );
        }
        y += "  compression_format: ''\n  compression_mode: ''\n";
        y += &format!("  relative_file_paths:\n    - {}\n", yaml_str(&self.file_name));
        y += &format!(
            "  files:\n    - path: {}\n      starting_time:\n        nanoseconds_since_epoch: {start}\n      \
             duration:\n        nanoseconds: {duration}\n      message_count: {total}\n",
            yaml_str(&self.file_name)
        );
        y += "  custom_data: ~\n  ros_distro: jazzy\n";
        let meta = self.dir.join("metadata.yaml");
        std::fs::write(&meta, y).map_err(|e| BagError::Write { path: meta.clone(), message: e.to_string() })?;
        Ok(self.dir.clone())
    }
}
