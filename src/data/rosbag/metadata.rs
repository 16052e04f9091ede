//! A rosbag2 folder's `metadata.yaml`: storage plugin, file names, topics
//! with their types and counts, and compression. Read leniently (versions
//! 1 to 9 differ in fields this does not need).

use std::path::Path;

use serde_norway::Value;

use super::{BagError, Compression, Topic};

#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// `mcap` or `sqlite3`.
    pub storage: String,
    pub files: Vec<String>,
    pub topics: Vec<Topic>,
    pub compression: Compression,
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

pub fn read(path: &Path) -> Result<Metadata, BagError> {
    let bad = |msg: String| BagError::Metadata { path: path.to_owned(), message: msg };
    let raw = std::fs::read_to_string(path).map_err(|e| BagError::Io { path: path.to_owned(), source: e })?;
    let doc: Value = serde_norway::from_str(&raw).map_err(|e| bad(format!("not valid YAML: {e}")))?;
    let info = doc.get("rosbag2_bagfile_information").ok_or_else(|| bad("no rosbag2_bagfile_information".into()))?;
    let storage = text(info, "storage_identifier").ok_or_else(|| bad("no storage_identifier".into()))?.to_string();
    let files: Vec<String> = info
        .get("relative_file_paths")
        .and_then(Value::as_sequence)
        .map(|s| s.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let topics = info
        .get("topics_with_message_count")
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|t| {
                    let m = t.get("topic_metadata")?;
                    Some(Topic {
                        name: text(m, "name")?.to_string(),
                        type_name: text(m, "type").unwrap_or_default().to_string(),
                        serialization_format: text(m, "serialization_format").unwrap_or("cdr").to_string(),
                        message_count: t.get("message_count").and_then(Value::as_u64),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mode = text(info, "compression_mode").unwrap_or("").to_ascii_lowercase();
    let format = text(info, "compression_format").unwrap_or("").to_ascii_lowercase();
    let compression = match (mode.as_str(), format.as_str()) {
        ("" | "none", _) => Compression::None,
        (_, f) if f != "zstd" => return Err(bad(format!("compression format {f:?} is not supported (zstd only)"))),
        ("file", _) => Compression::File,
        ("message", _) => Compression::Message,
        (m, _) => return Err(bad(format!("compression mode {m:?} is not supported (file or message)"))),
    };
    Ok(Metadata { storage, files, topics, compression })
}
