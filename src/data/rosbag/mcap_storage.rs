//! rosbag2's MCAP storage (the Jazzy default): channels named by topic,
//! schemas named by type (`sensor_msgs/msg/Image`, `ros2msg` encoding),
//! CDR message payloads, log time in nanoseconds. Read front to back with
//! the `mcap` crate's streaming reader (memory bounded by the largest
//! chunk); the summary, when the file has one, gives the topic list
//! without reading the data.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::ops::ControlFlow;
use std::path::Path;

use mcap::sans_io::summary_reader::{SummaryReadEvent, SummaryReader, SummaryReaderOptions};
use mcap::sans_io::LinearReaderOptions;

use super::{BagError, BagMessage, FileRead, Topic};

/// The largest record (or decompressed chunk) accepted: far above any
/// camera frame, far below what a corrupt length field can ask for.
const MAX_RECORD_BYTES: usize = 1 << 30;

fn io(path: &Path, e: std::io::Error) -> BagError {
    BagError::Io { path: path.to_owned(), source: e }
}

/// The topics in the file's summary; `None` when it has none (a recording
/// cut short) or it cannot be read.
pub fn topics(path: &Path) -> Result<Option<Vec<Topic>>, BagError> {
    let mut file = File::open(path).map_err(|e| io(path, e))?;
    // With the file's size and a record limit the reader never allocates
    // more than the file can hold, whatever a damaged length field says.
    let size = file.metadata().map_err(|e| io(path, e))?.len();
    let options = SummaryReaderOptions::default().with_file_size(size).with_record_length_limit(MAX_RECORD_BYTES);
    let mut reader = SummaryReader::new_with_options(options);
    while let Some(event) = reader.next_event() {
        let step = match event {
            Ok(SummaryReadEvent::ReadRequest(need)) => file.read(reader.insert(need)).map(|n| reader.notify_read(n)),
            Ok(SummaryReadEvent::SeekRequest(to)) => file.seek(to).map(|p| reader.notify_seeked(p)),
            Err(_) => return Ok(None),
        };
        if step.is_err() {
            return Ok(None);
        }
    }
    let Some(summary) = reader.finish() else { return Ok(None) };
    let counts: BTreeMap<u16, u64> = summary.stats.as_ref().map(|s| s.channel_message_counts.clone()).unwrap_or_default();
    let mut topics: Vec<Topic> = summary
        .channels
        .values()
        .map(|c| Topic {
            name: c.topic.clone(),
            type_name: c.schema.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
            serialization_format: c.message_encoding.clone(),
            message_count: summary.stats.as_ref().map(|_| counts.get(&c.id).copied().unwrap_or(0)),
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    topics.dedup_by(|a, b| a.name == b.name);
    Ok(Some(topics))
}

/// Streams the messages of `wanted` topics from `source` (a file, or its
/// zstd decompressor), in file order, to `visit`. A read error after some
/// messages (a truncated or damaged file) ends the file and is returned in
/// [`FileRead::error`]; the messages before it have been delivered.
pub fn read(
    source: Box<dyn Read + Send>,
    wanted: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(BagMessage<'_>) -> ControlFlow<()>,
) -> FileRead {
    let mut done = FileRead::default();
    // Lengths in a damaged file are garbage: refuse records over the limit
    // instead of allocating for them, and check chunk CRCs so a damaged
    // chunk ends the file rather than yielding garbage messages.
    let options = LinearReaderOptions::default().with_record_length_limit(MAX_RECORD_BYTES).with_validate_chunk_crcs(true);
    let reader = mcap::io::MessageReader::new_with_options(BufReader::with_capacity(1 << 20, source), options);
    for item in reader {
        let msg = match item {
            Ok(m) => m,
            Err(e) => {
                done.error = Some(e.to_string());
                break;
            }
        };
        done.messages += 1;
        if !wanted(&msg.channel.topic) {
            continue;
        }
        let type_name = msg.channel.schema.as_ref().map(|s| s.name.as_str()).unwrap_or("");
        let log_time = i64::try_from(msg.log_time).unwrap_or(i64::MAX);
        let m = BagMessage { topic: &msg.channel.topic, type_name, encoding: &msg.channel.message_encoding, log_time, data: &msg.data };
        if visit(m).is_break() {
            done.stopped = true;
            break;
        }
    }
    done
}
