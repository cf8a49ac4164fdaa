//! The stdout and file sinks: one JSON object per line,
//! `{"topic": ..., "key": ..., "value": ...}`, where `key` and `value` are the encoded
//! event's JSON (or `null` for a null key and for a tombstone).
//!
//! Records are formatted into an in-memory buffer as they arrive; the buffer is written out
//! when it grows past [`WRITE_THRESHOLD`] and on every flush. Only a flush — write, flush
//! the stream and, for files with `fsync = true`, `fsync(2)` — advances the
//! [`Delivered`] counter, so a record counts as delivered only once the operating system
//! (or the disk) has it. A line is never split across a crash boundary in a way that loses
//! data: a crash may leave a partial last line, which the next session's re-delivery follows
//! with a full copy (readers skip a line that does not parse).
//!
//! The [`NullSink`] (`type = "null"`) lives here too: it drops records, for benchmarks.

mod null;
pub use null::NullSink;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use walrus_core::error::SinkError;
use walrus_core::sink::{Delivered, FlushReason, Record, Sink};

/// Buffered bytes beyond which records are written out before the next flush.
pub const WRITE_THRESHOLD: usize = 1 << 20;

enum Target {
    Stdout(std::io::Stdout),
    File {
        file: File,
        path: PathBuf,
        fsync: bool,
    },
}

/// A JSON Lines sink on stdout or a file.
pub struct LinesSink {
    target: Target,
    buf: Vec<u8>,
    sent: u64,
    written: u64,
    delivered: Delivered,
    name: &'static str,
}

impl LinesSink {
    /// A sink writing to standard output.
    pub fn stdout(delivered: Delivered) -> Self {
        LinesSink {
            target: Target::Stdout(std::io::stdout()),
            buf: Vec::with_capacity(WRITE_THRESHOLD),
            sent: 0,
            written: 0,
            delivered,
            name: "stdout",
        }
    }

    /// A sink appending to `path` (created if missing); with `fsync`, every flush reaches
    /// the disk before records count as delivered.
    pub fn file(path: &Path, fsync: bool, delivered: Delivered) -> Result<Self, SinkError> {
        let io = |source| SinkError::Io {
            sink: "file",
            target: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(io)?;
        // A crash can leave a partial last line; start on a fresh line so the re-delivered
        // records that follow are not glued to it.
        if ends_mid_line(&mut file).map_err(io)? {
            file.write_all(b"\n").map_err(io)?;
        }
        Ok(LinesSink {
            target: Target::File {
                file,
                path: path.to_path_buf(),
                fsync,
            },
            buf: Vec::with_capacity(WRITE_THRESHOLD),
            sent: 0,
            written: 0,
            delivered,
            name: "file",
        })
    }

    fn io_error(&self, source: std::io::Error) -> SinkError {
        let target = match &self.target {
            Target::Stdout(_) => "stdout".to_string(),
            Target::File { path, .. } => path.display().to_string(),
        };
        SinkError::Io {
            sink: self.name,
            target,
            source,
        }
    }

    /// Writes the buffer out; with `durable`, also flushes (and fsyncs) and reports the
    /// records delivered.
    fn write_out(&mut self, durable: bool) -> Result<(), SinkError> {
        let buf = std::mem::take(&mut self.buf);
        let result = tokio::task::block_in_place(|| -> std::io::Result<()> {
            match &mut self.target {
                Target::Stdout(out) => {
                    let mut lock = out.lock();
                    lock.write_all(&buf)?;
                    if durable {
                        lock.flush()?;
                    }
                }
                Target::File { file, fsync, .. } => {
                    file.write_all(&buf)?;
                    if durable && *fsync {
                        file.sync_data()?;
                    }
                }
            }
            Ok(())
        });
        self.buf = buf;
        self.buf.clear();
        result.map_err(|e| self.io_error(e))?;
        self.written = self.sent;
        if durable {
            self.delivered.advance_to(self.written);
        }
        Ok(())
    }
}

fn ends_mid_line(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// Appends one JSON Lines record to `out`.
pub fn format_line(record: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"topic\":");
    // Topic names are plain, but escaping keeps the line valid JSON whatever they hold.
    let _ = serde_json::to_writer(&mut *out, &*record.topic);
    out.extend_from_slice(b",\"key\":");
    match &record.key {
        Some(k) => out.extend_from_slice(k),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"value\":");
    match &record.value {
        Some(v) => out.extend_from_slice(v),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}\n");
}

impl Sink for LinesSink {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn send(&mut self, records: Vec<Record>) -> Result<(), SinkError> {
        for r in &records {
            format_line(r, &mut self.buf);
            self.sent += 1;
            if self.buf.len() >= WRITE_THRESHOLD {
                self.write_out(false)?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self, _reason: FlushReason) -> Result<(), SinkError> {
        if self.sent == self.delivered.get() {
            return Ok(());
        }
        self.write_out(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;

    fn rec(key: Option<&str>, value: Option<&str>) -> Record {
        Record {
            topic: Arc::from("app.public.t"),
            key: key.map(|k| Bytes::from(k.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            event_headers: None,
            headers: vec![],
            timestamp_ms: 0,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn file_counts_delivered_only_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let delivered = Delivered::new();
        let mut sink = LinesSink::file(&path, true, delivered.clone()).unwrap();
        sink.send(vec![
            rec(Some(r#"{"id":1}"#), Some(r#"{"op":"c"}"#)),
            rec(Some(r#"{"id":1}"#), None),
        ])
        .await
        .unwrap();
        assert_eq!(delivered.get(), 0);
        sink.flush(FlushReason::Idle).await.unwrap();
        assert_eq!(delivered.get(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["topic"], "app.public.t");
        assert_eq!(lines[0]["key"]["id"], 1);
        assert_eq!(lines[0]["value"]["op"], "c");
        assert!(lines[1]["value"].is_null());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn appends_to_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"topic\":\"x\",\"key\":null,\"value\":null}\n").unwrap();
        let mut sink = LinesSink::file(&path, false, Delivered::new()).unwrap();
        sink.send(vec![rec(None, Some("{}"))]).await.unwrap();
        sink.flush(FlushReason::Shutdown).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn partial_last_line_is_terminated_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"topic\":\"x\",\"ke").unwrap();
        let mut sink = LinesSink::file(&path, false, Delivered::new()).unwrap();
        sink.send(vec![rec(None, Some("{}"))]).await.unwrap();
        sink.flush(FlushReason::Shutdown).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap();
        assert!(
            serde_json::from_str::<serde_json::Value>(last).is_ok(),
            "{text}"
        );
    }

    #[test]
    fn unwritable_path_is_a_named_error() {
        let err = LinesSink::file(
            Path::new("/nonexistent-dir/x.jsonl"),
            false,
            Delivered::new(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("/nonexistent-dir/x.jsonl"), "{err}");
    }
}
