//! rosbag2's sqlite3 storage (`.db3`, the default before Iron): a `topics`
//! table (id, name, type, serialization_format, ...) and a `messages` table
//! (topic_id, timestamp in nanoseconds, CDR blob), read in timestamp order
//! with SQLite bundled into the binary (no system library).

use std::ops::ControlFlow;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{BagError, BagMessage, FileRead, Topic};

fn open(path: &Path) -> Result<Connection, BagError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| BagError::Storage { path: path.to_owned(), message: one_line(&e) })?;
    Ok(conn)
}

struct TopicRow {
    id: i64,
    topic: Topic,
}

fn topic_rows(conn: &Connection, path: &Path) -> Result<Vec<TopicRow>, BagError> {
    let bad = |e: rusqlite::Error| BagError::Storage { path: path.to_owned(), message: format!("cannot read the topics table: {}", one_line(&e)) };
    let mut stmt = conn.prepare("SELECT id, name, type, serialization_format FROM topics").map_err(bad)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(TopicRow {
                id: r.get(0)?,
                topic: Topic { name: r.get(1)?, type_name: r.get(2)?, serialization_format: r.get(3)?, message_count: None },
            })
        })
        .map_err(bad)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    Ok(rows)
}

/// The topics table, with message counts.
pub fn topics(path: &Path) -> Result<Vec<Topic>, BagError> {
    let conn = open(path)?;
    let mut rows = topic_rows(&conn, path)?;
    for row in &mut rows {
        row.topic.message_count = conn
            .query_row("SELECT COUNT(*) FROM messages WHERE topic_id = ?1", [row.id], |r| r.get::<_, i64>(0))
            .ok()
            .map(|n| n.max(0) as u64);
    }
    Ok(rows.into_iter().map(|r| r.topic).collect())
}

/// Streams the messages of `wanted` topics in timestamp order to `visit`.
/// An error part-way (a damaged database) ends the file and is returned in
/// [`FileRead::error`].
pub fn read(
    path: &Path,
    wanted: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(BagMessage<'_>) -> ControlFlow<()>,
) -> Result<FileRead, BagError> {
    let conn = open(path)?;
    let topics: Vec<TopicRow> = topic_rows(&conn, path)?.into_iter().filter(|t| wanted(&t.topic.name)).collect();
    let mut done = FileRead::default();
    if topics.is_empty() {
        return Ok(done);
    }
    let ids: Vec<String> = topics.iter().map(|t| t.id.to_string()).collect();
    let sql = format!("SELECT topic_id, timestamp, data FROM messages WHERE topic_id IN ({}) ORDER BY timestamp, id", ids.join(","));
    let bad = |e: rusqlite::Error| BagError::Storage { path: path.to_owned(), message: one_line(&e) };
    let mut stmt = conn.prepare(&sql).map_err(bad)?;
    let mut rows = stmt.query([]).map_err(bad)?;
    loop {
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => {
                done.error = Some(one_line(&e));
                break;
            }
        };
        let fields = (|| -> rusqlite::Result<(i64, i64, &[u8])> { Ok((row.get(0)?, row.get(1)?, row.get_ref(2)?.as_blob()?)) })();
        let (topic_id, log_time, data) = match fields {
            Ok(f) => f,
            Err(_) => {
                done.bad_records += 1;
                continue;
            }
        };
        done.messages += 1;
        let Some(t) = topics.iter().find(|t| t.id == topic_id) else { continue };
        let m = BagMessage { topic: &t.topic.name, type_name: &t.topic.type_name, encoding: &t.topic.serialization_format, log_time, data };
        if visit(m).is_break() {
            done.stopped = true;
            break;
        }
    }
    Ok(done)
}

/// SQLite's messages quote the schema they failed on, newlines and all.
fn one_line(e: &rusqlite::Error) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}
