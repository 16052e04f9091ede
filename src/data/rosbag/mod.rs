//! rosbag2 recordings read without a ROS installation: bag folders (with
//! `metadata.yaml`, split into several files or not, zstd-compressed per
//! file or per message) and single `.mcap` / `.db3` files, the CDR messages
//! a depth dataset is made of, and a writer for the MCAP bags the synthetic
//! scenes can be saved as.
//!
//! Damage is expected in recordings (a robot's battery dies mid-write): a
//! truncated or corrupt file ends with a counted warning after the messages
//! before the damage have been delivered; the storage parsers run under a
//! panic guard so that hostile bytes cannot take the process down.

pub mod cdr;
pub mod colour;
pub mod compressed_depth;
pub mod depth;
mod mcap_storage;
pub mod messages;
pub mod metadata;
pub mod pairing;
pub mod scenes;
mod sqlite_storage;
pub mod tf;
pub mod to_dataset;
pub mod warnings;
pub mod writer;

use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

pub use warnings::Warnings;

#[derive(Debug, thiserror::Error)]
pub enum BagError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Metadata { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Storage { path: PathBuf, message: String },
    #[error("{path} is not a rosbag2 bag: {message}")]
    NotABag { path: PathBuf, message: String },
    #[error("{0}")]
    Decode(String),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// A topic as the bag describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    /// `sensor_msgs/msg/Image`, ...
    pub type_name: String,
    /// `cdr` for every ROS 2 bag this reads.
    pub serialization_format: String,
    pub message_count: Option<u64>,
}

/// How the bag's files are compressed (rosbag2's `compression_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// Each file is one zstd stream (`*.mcap.zstd`, `*.db3.zstd`).
    File,
    /// Each message's payload is a zstd frame.
    Message,
}

/// One message as stored: its topic, type, receive time and CDR bytes.
#[derive(Debug, Clone, Copy)]
pub struct BagMessage<'a> {
    pub topic: &'a str,
    pub type_name: &'a str,
    pub encoding: &'a str,
    /// When the recorder received it (ns since the epoch).
    pub log_time: i64,
    pub data: &'a [u8],
}

/// What reading one file did.
#[derive(Debug, Default)]
pub struct FileRead {
    pub messages: u64,
    /// Records that could not be read and were skipped.
    pub bad_records: u64,
    /// The visitor asked to stop.
    pub stopped: bool,
    /// Why the file ended before its end, if it did.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    Mcap,
    Sqlite3,
}

#[derive(Debug, Clone)]
struct BagFile {
    path: PathBuf,
    storage: Storage,
    zstd_file: bool,
}

/// An opened bag: its files and (when the bag records them) its topics.
#[derive(Debug, Clone)]
pub struct Bag {
    path: PathBuf,
    files: Vec<BagFile>,
    topics: Vec<Topic>,
    topics_known: bool,
    compression: Compression,
}

const MCAP_MAGIC: &[u8] = b"\x89MCAP";
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

fn sniff(path: &Path) -> Result<BagFile, BagError> {
    let mut head = [0u8; 16];
    let mut f = File::open(path).map_err(|e| BagError::Io { path: path.to_owned(), source: e })?;
    let n = f.read(&mut head).map_err(|e| BagError::Io { path: path.to_owned(), source: e })?;
    let head = &head[..n];
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let zstd_file = head.starts_with(ZSTD_MAGIC);
    let storage = if head.starts_with(MCAP_MAGIC) || (zstd_file && name.contains(".mcap")) {
        Storage::Mcap
    } else if head.starts_with(SQLITE_MAGIC) || (zstd_file && name.contains(".db3")) {
        Storage::Sqlite3
    } else {
        return Err(BagError::NotABag {
            path: path.to_owned(),
            message: "neither MCAP nor SQLite data (nor a zstd-compressed .mcap/.db3)".into(),
        });
    };
    Ok(BagFile { path: path.to_owned(), storage, zstd_file })
}

fn is_bag_file_name(p: &Path) -> bool {
    let name = p.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    [".mcap", ".db3", ".mcap.zstd", ".db3.zstd"].iter().any(|ext| name.ends_with(ext))
}

/// How many times its own size a `.db3.zstd` may expand to: far more than
/// recorded images and depth compress by, and a bound on what a damaged or
/// hostile file (a zstd bomb) can write to the disk.
const MAX_DB3_EXPANSION: u64 = 64;
/// Small files may expand to this much whatever their ratio.
const MIN_DB3_BOUND: u64 = 256 << 20;

/// A `.db3.zstd` decompressed to a private temporary file (created with a
/// random name, exclusively, readable by this user only; removed when
/// dropped), for SQLite to open.
fn decompress_to_temp(path: &Path) -> Result<tempfile::TempPath, BagError> {
    let io = |e: std::io::Error| BagError::Storage { path: path.to_owned(), message: format!("cannot decompress: {e}") };
    let input = File::open(path).map_err(|e| BagError::Io { path: path.to_owned(), source: e })?;
    let bound = input.metadata().map_err(io)?.len().saturating_mul(MAX_DB3_EXPANSION).max(MIN_DB3_BOUND);
    let decoder = zstd::stream::read::Decoder::new(BufReader::new(input)).map_err(io)?;
    let mut out = tempfile::Builder::new().prefix("clip_depth_bag_").suffix(".db3").tempfile().map_err(io)?;
    let written = std::io::copy(&mut decoder.take(bound + 1), out.as_file_mut()).map_err(io)?;
    if written > bound {
        return Err(BagError::Storage {
            path: path.to_owned(),
            message: format!("expands to more than {bound} bytes ({MAX_DB3_EXPANSION} times its size): damaged, or not a recording"),
        });
    }
    Ok(out.into_temp_path())
}

/// The largest message payload a compressed message may expand to.
const MAX_MESSAGE_BYTES: u64 = 1 << 30;

fn decompress_message(data: &[u8]) -> Result<Vec<u8>, String> {
    let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    decoder.take(MAX_MESSAGE_BYTES).read_to_end(&mut out).map_err(|e| format!("zstd: {e}"))?;
    Ok(out)
}


impl Bag {
    /// Opens a bag folder (with or without `metadata.yaml`) or a single
    /// `.mcap` / `.db3` file (optionally `.zstd`).
    pub fn open(path: &Path) -> Result<Self, BagError> {
        if path.is_dir() {
            let meta_path = path.join("metadata.yaml");
            if meta_path.is_file() {
                let meta = metadata::read(&meta_path)?;
                let mut files = Vec::new();
                let mut missing = Vec::new();
                for rel in &meta.files {
                    let p = path.join(rel);
                    if p.is_file() {
                        files.push(sniff(&p)?);
                    } else {
                        missing.push(rel.clone());
                    }
                }
                if files.is_empty() {
                    return Err(BagError::NotABag {
                        path: path.to_owned(),
                        message: format!("metadata.yaml lists {:?} but none of them exists", meta.files),
                    });
                }
                let known = !meta.topics.is_empty() && missing.is_empty();
                let mut bag = Bag { path: path.to_owned(), files, topics: meta.topics, topics_known: known, compression: meta.compression };
                if !known {
                    bag.discover_topics();
                }
                return Ok(bag);
            }
            let mut names: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| BagError::Io { path: path.to_owned(), source: e })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_bag_file_name(p))
                .collect();
            names.sort();
            if names.is_empty() {
                return Err(BagError::NotABag { path: path.to_owned(), message: "no metadata.yaml and no .mcap or .db3 file".into() });
            }
            let files = names.iter().map(|p| sniff(p)).collect::<Result<Vec<_>, _>>()?;
            let compression = if files.iter().any(|f| f.zstd_file) { Compression::File } else { Compression::None };
            let mut bag = Bag { path: path.to_owned(), files, topics: Vec::new(), topics_known: false, compression };
            bag.discover_topics();
            return Ok(bag);
        }
        if !path.exists() {
            return Err(BagError::Io { path: path.to_owned(), source: std::io::Error::from(std::io::ErrorKind::NotFound) });
        }
        let file = sniff(path)?;
        let compression = if file.zstd_file { Compression::File } else { Compression::None };
        let mut bag = Bag { path: path.to_owned(), files: vec![file], topics: Vec::new(), topics_known: false, compression };
        bag.discover_topics();
        Ok(bag)
    }

    /// Topics from the files themselves (no metadata.yaml): the MCAP
    /// summary or the sqlite topics table. Unknown when a file has neither.
    fn discover_topics(&mut self) {
        let mut topics: Vec<Topic> = Vec::new();
        let mut known = true;
        for f in &self.files {
            let found = catch_unwind(AssertUnwindSafe(|| match (f.storage, f.zstd_file) {
                (Storage::Mcap, false) => mcap_storage::topics(&f.path).ok().flatten(),
                (Storage::Sqlite3, false) => sqlite_storage::topics(&f.path).ok(),
                _ => None,
            }))
            .ok()
            .flatten();
            match found {
                Some(ts) => {
                    for t in ts {
                        match topics.iter_mut().find(|x| x.name == t.name) {
                            Some(x) => {
                                x.message_count = x.message_count.zip(t.message_count).map(|(a, b)| a + b);
                            }
                            None => topics.push(t),
                        }
                    }
                }
                None => known = false,
            }
        }
        self.topics = topics;
        self.topics_known = known;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bag's topics; complete only when [`Bag::topics_known`].
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    /// Whether the topic list is complete (from `metadata.yaml`, MCAP
    /// summaries or sqlite tables); a cut-short MCAP has none, and its
    /// topics are only known once read.
    pub fn topics_known(&self) -> bool {
        self.topics_known
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// Streams the messages of the `wanted` topics, file after file, to
    /// `visit` (which may stop the read). Damage costs counted warnings
    /// (`damaged bag file`, `bad message`); the error is only for a bag
    /// none of whose files could be read.
    pub fn read(
        &self,
        wanted: &dyn Fn(&str) -> bool,
        visit: &mut dyn FnMut(BagMessage<'_>) -> ControlFlow<()>,
        warnings: &Warnings,
    ) -> Result<u64, BagError> {
        let mut delivered_files = 0;
        let mut total = 0;
        let mut last_error = None;
        for f in &self.files {
            let mut stopped = false;
            // The guard below is for the storage parsers fed untrusted
            // bytes; a panic in `visit` is the caller's bug, not damage in
            // the file: it is carried past the guard and resumed.
            let mut visitor_panic = None;
            let mut visit_guarded = |m: BagMessage<'_>| match catch_unwind(AssertUnwindSafe(|| visit(m))) {
                Ok(flow) => flow,
                Err(payload) => {
                    visitor_panic = Some(payload);
                    ControlFlow::Break(())
                }
            };
            let mut inner = |m: BagMessage<'_>| -> ControlFlow<()> {
                if m.encoding != "cdr" {
                    warnings.warn("unsupported serialization", format!("topic {} is {:?}, not CDR: skipped", m.topic, m.encoding));
                    return ControlFlow::Continue(());
                }
                let flow = if self.compression == Compression::Message {
                    match decompress_message(m.data) {
                        Ok(data) => visit_guarded(BagMessage { data: &data, ..m }),
                        Err(e) => {
                            warnings.warn("bad message", format!("{} at {} ns: cannot decompress: {e}", m.topic, m.log_time));
                            ControlFlow::Continue(())
                        }
                    }
                } else {
                    visit_guarded(m)
                };
                if flow.is_break() {
                    stopped = true;
                }
                flow
            };
            let result = catch_unwind(AssertUnwindSafe(|| -> Result<FileRead, BagError> {
                match f.storage {
                    Storage::Mcap => {
                        let file = File::open(&f.path).map_err(|e| BagError::Io { path: f.path.clone(), source: e })?;
                        let source: Box<dyn Read + Send> = if f.zstd_file {
                            Box::new(zstd::stream::read::Decoder::new(file).map_err(|e| BagError::Io { path: f.path.clone(), source: e })?)
                        } else {
                            Box::new(file)
                        };
                        Ok(mcap_storage::read(source, wanted, &mut inner))
                    }
                    Storage::Sqlite3 if f.zstd_file => {
                        let tmp = decompress_to_temp(&f.path)?;
                        sqlite_storage::read(&tmp, wanted, &mut inner)
                    }
                    Storage::Sqlite3 => sqlite_storage::read(&f.path, wanted, &mut inner),
                }
            }));
            drop(inner);
            if let Some(payload) = visitor_panic {
                std::panic::resume_unwind(payload);
            }
            let name = f.path.display();
            match result {
                Ok(Ok(done)) => {
                    delivered_files += 1;
                    total += done.messages;
                    if done.bad_records > 0 {
                        warnings.warn("damaged bag file", format!("{name}: {} unreadable records skipped", done.bad_records));
                    }
                    if let Some(e) = done.error {
                        warnings.warn(
                            "damaged bag file",
                            format!("{name} ends early after {} messages (truncated or damaged): {e}", done.messages),
                        );
                    }
                }
                Ok(Err(e)) => {
                    warnings.warn("damaged bag file", format!("{e}"));
                    last_error = Some(e);
                }
                Err(p) => {
                    let e = BagError::Storage {
                        path: f.path.clone(),
                        message: format!("the reader failed on damaged data ({})", crate::error::panic_message(&*p)),
                    };
                    warnings.warn("damaged bag file", format!("{e}"));
                    last_error = Some(e);
                }
            }
            if stopped {
                break;
            }
        }
        match (delivered_files, last_error) {
            (0, Some(e)) => Err(e),
            _ => Ok(total),
        }
    }
}
