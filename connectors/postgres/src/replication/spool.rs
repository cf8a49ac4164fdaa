//! Spools of streamed transactions: the pgoutput messages of a transaction PostgreSQL sends
//! while it still runs (`[source] streaming`, protocol 2+), kept until its Stream Commit.
//!
//! ```text
//!  Stream Start(xid) ─▶ Insert/Update/Delete/Truncate/Relation/Type/Message (subxid, …)
//!        │                 │ xid stripped, (lsn, message) framed
//!        │                 ▼
//!        │         Spool(xid): memory ──(past spool_memory_bytes)──▶ append-only file
//!        │                 │
//!  Stream Abort(xid, subxid) ─▶ truncate at subxid's first message (subxid == xid: drop all)
//!  Stream Commit(xid) ─▶ SpoolReader: (lsn, message) in order ─▶ the session's ordinary
//!                        Begin … Commit path (decode, convert, emit, ack)
//! ```
//!
//! What is spooled, and why not encoded records: an event's `source.ts_ms` (commit time),
//! `source.sequence` (the previous commit's end LSN) and the commit LSN the acknowledgement
//! needs are only known at Stream Commit, and interleaved transactions commit in an order
//! nobody knows while they stream. So the spool holds the pgoutput messages themselves,
//! with the per-message xid removed, and Stream Commit replays them through the very same
//! decode → convert → emit path as a transaction sent after its commit. The events are
//! therefore byte-identical to the non-streamed ones, and the spool is often smaller than
//! the encoded records would be.
//!
//! Subtransactions: inside a stream every change carries the xid of the (sub)transaction
//! that made it (pgoutput.c, `pgoutput_change`: "Remember XID of the (sub)transaction for
//! the change"), and `ROLLBACK TO SAVEPOINT` arrives as Stream Abort with that subxid. As
//! PostgreSQL's own apply worker does (worker.c, `subxact_info_add` and
//! `stream_abort_internal`), the spool records the offset of each subtransaction's first
//! message; aborting it truncates the spool there. Subtransactions nest and end before their
//! parent continues, so everything after that offset belongs to the aborted subtransaction,
//! its children, or (when its parent aborts too) to subtransactions whose own Stream Abort
//! follows. One exception is kept: pgoutput sends a table's Relation (and Type) message once
//! per streamed transaction, possibly inside a subtransaction; it does not send it again
//! after that subtransaction aborts, so those messages survive the truncation (re-appended).
//!
//! Memory: a spool holds at most `spool_memory_bytes` in memory; past that it is written to
//! `<spool_dir>/xid-<xid>.spool` through a 64 KiB buffer, and replayed through a 64 KiB
//! read buffer, one message at a time. Nothing proportional to the transaction stays in
//! memory but the per-subtransaction offsets (16 bytes each, as in PostgreSQL).
//!
//! Disk: the spools of all open streamed transactions together hold at most
//! `spool_max_bytes` (memory and files; 0 is no limit). A message that would pass it is
//! refused with [`SpoolLimitError`], which stops walrus: nothing can be skipped, PostgreSQL
//! would send the same transaction again after a restart, and until it commits nothing of
//! it is delivered or confirmed, so the slot keeps its WAL for a run with a larger limit
//! or with streaming off.
//!
//! Framing (walrus's own; the files never outlive a session): per message, a u32
//! little-endian payload length, a u64 little-endian LSN, then the payload (the pgoutput
//! message without its xid). Spool files of a previous process are deleted when a session
//! starts: PostgreSQL sends unfinished transactions again from their first change.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use walrus_core::error::{Classify, ErrorKind};
use walrus_core::ids::IdMap;
use walrus_core::Lsn;

/// Bytes of a frame header: payload length (u32) and LSN (u64).
const HEADER_LEN: usize = 12;
/// Write and read buffer of a spool file.
const FILE_BUFFER_BYTES: usize = 64 * 1024;
/// Largest payload accepted when reading a spool back: PostgreSQL's messages are limited
/// to 1 GB, so a bigger length means a damaged file.
const MAX_FRAME_BYTES: usize = 1 << 30;
/// File name prefix and suffix of spool files, so walrus deletes nothing else in the
/// directory.
const FILE_PREFIX: &str = "xid-";
const FILE_SUFFIX: &str = ".spool";

/// A spool could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("source.spool_dir: spool of streamed transaction {xid} ({path}): {action}: {source}")]
pub struct SpoolError {
    /// The streamed transaction.
    pub xid: u32,
    /// The spool file or directory.
    pub path: PathBuf,
    /// What walrus was doing.
    pub action: &'static str,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

impl Classify for SpoolError {
    fn kind(&self) -> ErrorKind {
        match self.source.kind() {
            // Not going away by itself: the directory is not walrus's to write, or not a
            // directory at all.
            std::io::ErrorKind::PermissionDenied
            | std::io::ErrorKind::ReadOnlyFilesystem
            | std::io::ErrorKind::NotADirectory => ErrorKind::Config,
            _ => ErrorKind::Spool,
        }
    }
}

/// A streamed transaction's next message would take the open spools past
/// `source.spool_max_bytes`. Fatal: PostgreSQL would send the same transaction again after
/// a restart, so retrying cannot help; skipping it would lose changes.
#[derive(Debug, thiserror::Error)]
#[error(
    "source.spool_max_bytes: streamed transaction {xid} has spooled {transaction_bytes} bytes so far and its next change would take the spools of the {open_transactions} open streamed transaction(s) past the limit of {limit} bytes ({open_bytes} bytes held now); walrus stops rather than skip it: nothing of the transaction was delivered or confirmed and the slot keeps its WAL. Raise source.spool_max_bytes (with that much free disk under source.spool_dir; 0 is no limit), or set source.streaming = \"off\" so that PostgreSQL sends large transactions after their commit, spilling them to its own pg_replslot directory meanwhile"
)]
pub struct SpoolLimitError {
    /// The streamed transaction whose message did not fit.
    pub xid: u32,
    /// Bytes that transaction had spooled before the message.
    pub transaction_bytes: u64,
    /// Bytes all open spools held before the message.
    pub open_bytes: u64,
    /// Streamed transactions open, this one included.
    pub open_transactions: usize,
    /// `source.spool_max_bytes`.
    pub limit: u64,
}

impl Classify for SpoolLimitError {
    fn kind(&self) -> ErrorKind {
        // The configured limit is the thing to change; the error names it and the fixes.
        ErrorKind::Config
    }
}

/// Whether a message inside a stream carries the (sub)transaction's xid after its tag:
/// Relation, Type, Insert, Update, Delete, Truncate and Message (logical replication
/// message formats, "Xid of the transaction (only present for streamed transactions)").
pub fn carries_stream_xid(tag: u8) -> bool {
    matches!(tag, b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M')
}

/// Splits a message received inside a stream into its (sub)transaction xid and the message
/// as it would arrive outside a stream (tag, then the body without the xid).
fn split_xid(message: &[u8]) -> Option<(u32, u8, &[u8])> {
    let (&tag, rest) = message.split_first()?;
    if !carries_stream_xid(tag) || rest.len() < 4 {
        return None;
    }
    let xid = u32::from_be_bytes(rest[..4].try_into().ok()?);
    Some((xid, tag, &rest[4..]))
}

/// The spools of the streamed transactions open in one session, by top-level xid.
pub struct Spools {
    dir: PathBuf,
    memory_limit: usize,
    /// `source.spool_max_bytes`; 0 is no limit.
    max_bytes: u64,
    open: IdMap<u32, Spool>,
    /// Bytes of all open spools together (the sum of their `len`).
    open_bytes: u64,
    /// The transaction of the current Stream Start … Stream Stop block.
    current: Option<u32>,
}

impl Spools {
    /// Spools under `dir`, each keeping up to `memory_limit` bytes in memory, all together
    /// at most `max_bytes` (0: no limit). Deletes the spool files a previous process left
    /// there (PostgreSQL sends those transactions again).
    pub fn new(dir: PathBuf, memory_limit: usize, max_bytes: u64) -> Result<Self, SpoolError> {
        remove_stale(&dir)?;
        Ok(Spools {
            dir,
            memory_limit,
            max_bytes,
            open: IdMap::default(),
            open_bytes: 0,
            current: None,
        })
    }

    /// Bytes the spools of the open streamed transactions hold (memory and files), the
    /// figure `source.spool_max_bytes` limits.
    pub fn open_bytes(&self) -> u64 {
        self.open_bytes
    }

    /// Removes a spool from the open ones, taking its bytes off the total.
    fn take(&mut self, xid: u32) -> Option<Spool> {
        let spool = self.open.remove(&xid)?;
        self.open_bytes -= spool.len;
        Some(spool)
    }

    /// Whether a streamed transaction has begun and not yet committed or aborted: its
    /// changes are not delivered, so no keepalive position may be confirmed past them.
    pub fn any_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Stream Start at `lsn`. `first_segment`: the first block of this transaction, which
    /// begins a fresh spool (replacing anything left of an earlier sending of it); its
    /// `lsn` is the transaction's first LSN, where a Begin would have been.
    pub fn start(&mut self, xid: u32, first_segment: bool, lsn: Lsn) -> Result<(), String> {
        if first_segment {
            self.take(xid);
        } else if !self.open.contains_key(&xid) {
            return Err(format!(
                "Stream Start of transaction {xid} continues a transaction whose first block walrus never received"
            ));
        }
        self.open
            .entry(xid)
            .or_insert_with(|| Spool::new(xid, &self.dir, self.memory_limit, lsn));
        self.current = Some(xid);
        Ok(())
    }

    /// Stream Stop: the block ends; the transaction stays open.
    pub fn stop(&mut self) {
        self.current = None;
    }

    /// A message received inside the current stream block (`carries_stream_xid`), at `lsn`.
    pub fn append(&mut self, lsn: Lsn, message: &[u8]) -> Result<(), AppendError> {
        let xid = self.current.ok_or(AppendError::NoStream)?;
        let (subxid, tag, body) = split_xid(message).ok_or(AppendError::Malformed)?;
        let spool = self.open.get_mut(&xid).ok_or(AppendError::NoStream)?;
        let frame = frame_len(body.len());
        if self.max_bytes != 0 && self.open_bytes + frame > self.max_bytes {
            return Err(AppendError::Limit(SpoolLimitError {
                xid,
                transaction_bytes: spool.len,
                open_bytes: self.open_bytes,
                open_transactions: self.open.len(),
                limit: self.max_bytes,
            }));
        }
        spool
            .append(subxid, lsn, tag, body)
            .map_err(AppendError::Io)?;
        self.open_bytes += frame;
        Ok(())
    }

    /// Stream Abort: the whole transaction (`subxid == xid`) or one subtransaction.
    /// Returns how many spooled messages were dropped.
    pub fn abort(&mut self, xid: u32, subxid: u32) -> Result<u64, SpoolError> {
        if xid == subxid {
            // Dropping the spool deletes its file.
            return Ok(self.take(xid).map_or(0, |s| s.messages));
        }
        match self.open.get_mut(&xid) {
            Some(spool) => {
                let before = spool.len;
                let result = spool.abort_subxact(subxid);
                // Shorter, whether or not it failed half-way (the Relation messages kept
                // are re-written after the truncation).
                self.open_bytes = self.open_bytes - before + spool.len;
                result
            }
            // Nothing of it was sent: an empty transaction.
            None => Ok(0),
        }
    }

    /// Stream Commit: the transaction's spool, to be replayed; `None` when nothing of it was
    /// sent (every change filtered out by the publication).
    pub fn commit(&mut self, xid: u32) -> Option<Spool> {
        self.take(xid)
    }
}

/// Why a message inside a stream could not be spooled.
#[derive(Debug)]
pub enum AppendError {
    /// A change arrived outside Stream Start … Stream Stop.
    NoStream,
    /// The message is too short to hold an xid.
    Malformed,
    /// Writing the spool failed.
    Io(SpoolError),
    /// The message would take the open spools past `source.spool_max_bytes`.
    Limit(SpoolLimitError),
}

/// Bytes a message with a body of `body_len` bytes takes in a spool: the frame header, the
/// tag and the body.
fn frame_len(body_len: usize) -> u64 {
    (HEADER_LEN + 1 + body_len) as u64
}

/// Deletes the spool files in `dir` (a missing directory is fine).
fn remove_stale(dir: &Path) -> Result<(), SpoolError> {
    let err = |action, source| SpoolError {
        xid: 0,
        path: dir.to_path_buf(),
        action,
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err("listing the spool directory", e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| err("listing the spool directory", e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(FILE_PREFIX) && name.ends_with(FILE_SUFFIX) {
            std::fs::remove_file(entry.path())
                .map_err(|e| err("deleting a spool file of an earlier run", e))?;
        }
    }
    Ok(())
}

/// The file part of a spool, once it outgrew memory.
struct SpoolFile {
    writer: BufWriter<File>,
}

/// One streamed transaction's messages, in arrival order.
pub struct Spool {
    xid: u32,
    path: PathBuf,
    memory_limit: usize,
    /// Where the first Stream Start was: the transaction's first LSN.
    first_lsn: Lsn,
    /// Frames while the spool is small; empty once `file` is in use.
    memory: Vec<u8>,
    file: Option<SpoolFile>,
    /// Bytes of frames in the spool (memory or file): the offset of the next frame.
    len: u64,
    /// Messages in the spool.
    messages: u64,
    /// Subtransactions in order of their first message, with that message's offset.
    subxacts: Vec<(u32, u64)>,
    /// Index into `subxacts` by subxid.
    subxact_index: IdMap<u32, usize>,
    /// The subxid of the last message, to skip the lookup for runs of one subtransaction.
    last_subxid: u32,
}

impl Spool {
    fn new(xid: u32, dir: &Path, memory_limit: usize, first_lsn: Lsn) -> Self {
        Spool {
            xid,
            path: dir.join(format!("{FILE_PREFIX}{xid}{FILE_SUFFIX}")),
            memory_limit,
            first_lsn,
            memory: Vec::new(),
            file: None,
            len: 0,
            messages: 0,
            subxacts: Vec::new(),
            subxact_index: IdMap::default(),
            last_subxid: xid,
        }
    }

    /// The transaction's xid.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// The transaction's first LSN (its first Stream Start's), where the Begin of the same
    /// transaction sent after its commit would be.
    pub fn first_lsn(&self) -> Lsn {
        self.first_lsn
    }

    /// Messages spooled.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Bytes spooled (frames, headers included).
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Whether the spool moved to a file.
    pub fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    fn error(&self, action: &'static str, source: std::io::Error) -> SpoolError {
        SpoolError {
            xid: self.xid,
            path: self.path.clone(),
            action,
            source,
        }
    }

    fn append(&mut self, subxid: u32, lsn: Lsn, tag: u8, body: &[u8]) -> Result<(), SpoolError> {
        if subxid != self.last_subxid {
            self.last_subxid = subxid;
            if subxid != self.xid && !self.subxact_index.contains_key(&subxid) {
                self.subxact_index.insert(subxid, self.subxacts.len());
                self.subxacts.push((subxid, self.len));
            }
        }
        self.write_frame(lsn, tag, body)
    }

    fn write_frame(&mut self, lsn: Lsn, tag: u8, body: &[u8]) -> Result<(), SpoolError> {
        let payload = 1 + body.len();
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&(payload as u32).to_le_bytes());
        header[4..].copy_from_slice(&lsn.0.to_le_bytes());
        let frame = frame_len(body.len());
        if self.file.is_none() && self.memory.len() + HEADER_LEN + payload > self.memory_limit {
            self.move_to_file()?;
        }
        match &mut self.file {
            Some(f) => {
                let w = &mut f.writer;
                w.write_all(&header)
                    .and_then(|()| w.write_all(&[tag]))
                    .and_then(|()| w.write_all(body))
                    .map_err(|e| self.error("writing", e))?;
            }
            None => {
                self.memory.extend_from_slice(&header);
                self.memory.push(tag);
                self.memory.extend_from_slice(body);
            }
        }
        self.len += frame;
        self.messages += 1;
        Ok(())
    }

    /// Past the memory limit: the frames so far go to a new file, and all later ones.
    fn move_to_file(&mut self) -> Result<(), SpoolError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| self.error("creating the spool directory", e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.path)
            .map_err(|e| self.error("creating", e))?;
        let mut writer = BufWriter::with_capacity(FILE_BUFFER_BYTES, file);
        writer
            .write_all(&self.memory)
            .map_err(|e| self.error("writing", e))?;
        self.memory = Vec::new();
        self.file = Some(SpoolFile { writer });
        tracing::debug!(xid = self.xid, path = %self.path.display(), "streamed transaction outgrew source.spool_memory_bytes; spooling it to disk");
        Ok(())
    }

    /// Stream Abort of subtransaction `subxid`: drops its messages and everything after
    /// them but the Relation and Type messages; returns how many were dropped. Unknown
    /// `subxid`: it made no change (or was dropped with an aborted ancestor).
    fn abort_subxact(&mut self, subxid: u32) -> Result<u64, SpoolError> {
        let Some(&index) = self.subxact_index.get(&subxid) else {
            return Ok(0);
        };
        let offset = self.subxacts[index].1;
        for (dropped, _) in self.subxacts.drain(index..) {
            self.subxact_index.remove(&dropped);
        }
        // The next message starts a run again, whatever its subxid.
        self.last_subxid = self.xid;
        let mut kept = Vec::new();
        let mut dropped_messages = 0u64;
        {
            let mut tail = self.read_from(offset)?;
            while let Some((lsn, payload)) = tail.next_frame()? {
                dropped_messages += 1;
                if matches!(payload.first(), Some(b'R' | b'Y')) {
                    kept.push((lsn, payload));
                }
            }
        }
        match &mut self.file {
            Some(f) => {
                let file = f.writer.get_mut();
                file.set_len(offset)
                    .and_then(|()| file.seek(SeekFrom::Start(offset)).map(|_| ()))
                    .map_err(|e| self.error("truncating", e))?;
            }
            None => self.memory.truncate(offset as usize),
        }
        self.len = offset;
        self.messages -= dropped_messages;
        let kept_messages = kept.len() as u64;
        for (lsn, payload) in kept {
            self.write_frame(lsn, payload[0], &payload[1..])?;
        }
        Ok(dropped_messages - kept_messages)
    }

    /// A reader of the frames from byte `offset` on (flushing the file first).
    fn read_from(&mut self, offset: u64) -> Result<SpoolReader, SpoolError> {
        match &mut self.file {
            None => Ok(SpoolReader {
                source: Source::Memory(Bytes::copy_from_slice(&self.memory[offset as usize..])),
                xid: self.xid,
                path: self.path.clone(),
                remove_on_drop: false,
            }),
            Some(f) => {
                f.writer.flush().map_err(|e| self.error("writing", e))?;
                let mut file = File::open(&self.path).map_err(|e| self.error("reading", e))?;
                file.seek(SeekFrom::Start(offset))
                    .map_err(|e| self.error("reading", e))?;
                Ok(SpoolReader {
                    source: Source::File(BufReader::with_capacity(FILE_BUFFER_BYTES, file)),
                    xid: self.xid,
                    path: self.path.clone(),
                    remove_on_drop: false,
                })
            }
        }
    }

    /// Stream Commit: the messages in order. The spool file is deleted when the reader is
    /// dropped.
    pub fn into_reader(mut self) -> Result<SpoolReader, SpoolError> {
        let mut reader = match self.file.take() {
            None => SpoolReader {
                source: Source::Memory(Bytes::from(std::mem::take(&mut self.memory))),
                xid: self.xid,
                path: self.path.clone(),
                remove_on_drop: false,
            },
            Some(f) => {
                let file = f
                    .writer
                    .into_inner()
                    .map_err(|e| self.error("writing", e.into_error()))?;
                let mut file = file;
                file.seek(SeekFrom::Start(0))
                    .map_err(|e| self.error("reading", e))?;
                SpoolReader {
                    source: Source::File(BufReader::with_capacity(FILE_BUFFER_BYTES, file)),
                    xid: self.xid,
                    path: self.path.clone(),
                    remove_on_drop: false,
                }
            }
        };
        reader.remove_on_drop = matches!(reader.source, Source::File(_));
        Ok(reader)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

enum Source {
    Memory(Bytes),
    File(BufReader<File>),
}

/// Reads a spool's messages back, one at a time, with a bounded buffer.
pub struct SpoolReader {
    source: Source,
    xid: u32,
    path: PathBuf,
    remove_on_drop: bool,
}

impl SpoolReader {
    /// The next message and its LSN, as it would have arrived outside a stream; `None` at
    /// the end.
    pub fn next_frame(&mut self) -> Result<Option<(Lsn, Bytes)>, SpoolError> {
        let err = |action, source| SpoolError {
            xid: self.xid,
            path: self.path.clone(),
            action,
            source,
        };
        let damaged =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        match &mut self.source {
            Source::Memory(buf) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                if buf.len() < HEADER_LEN {
                    return Err(err("reading", damaged("truncated frame header")));
                }
                let len = u32::from_le_bytes(buf[..4].try_into().unwrap_or_default()) as usize;
                let lsn = u64::from_le_bytes(buf[4..HEADER_LEN].try_into().unwrap_or_default());
                if buf.len() < HEADER_LEN + len {
                    return Err(err("reading", damaged("truncated frame")));
                }
                let frame = buf.split_to(HEADER_LEN + len);
                Ok(Some((Lsn(lsn), frame.slice(HEADER_LEN..))))
            }
            Source::File(reader) => {
                let mut header = [0u8; HEADER_LEN];
                // A clean end is an end exactly at a frame boundary.
                let mut got = 0;
                while got < HEADER_LEN {
                    let n = reader
                        .read(&mut header[got..])
                        .map_err(|e| err("reading", e))?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                if got == 0 {
                    return Ok(None);
                }
                if got < HEADER_LEN {
                    return Err(err("reading", damaged("truncated frame header")));
                }
                let len = u32::from_le_bytes(header[..4].try_into().unwrap_or_default()) as usize;
                let lsn = u64::from_le_bytes(header[4..].try_into().unwrap_or_default());
                if len > MAX_FRAME_BYTES {
                    return Err(err("reading", damaged("frame longer than 1 GB")));
                }
                let mut payload = vec![0u8; len];
                reader
                    .read_exact(&mut payload)
                    .map_err(|e| err("reading", e))?;
                Ok(Some((Lsn(lsn), Bytes::from(payload))))
            }
        }
    }
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as pgoutput sends it inside a stream: tag, subxid, body.
    fn streamed(tag: u8, subxid: u32, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&subxid.to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn drain(spool: Spool) -> Vec<(u64, Vec<u8>)> {
        let mut r = spool.into_reader().unwrap();
        let mut out = Vec::new();
        while let Some((lsn, m)) = r.next_frame().unwrap() {
            out.push((lsn.0, m.to_vec()));
        }
        out
    }

    fn spool_files(dir: &Path) -> usize {
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }

    #[test]
    fn frames_round_trip_without_the_xid_in_memory_and_on_disk() {
        for limit in [usize::MAX, 0, 40] {
            let dir = tempfile::tempdir().unwrap();
            let mut spools = Spools::new(dir.path().join("s"), limit, 0).unwrap();
            spools.start(7, true, Lsn(0)).unwrap();
            for i in 0..10u64 {
                spools
                    .append(Lsn(100 + i), &streamed(b'I', 7, &[i as u8; 5]))
                    .unwrap();
            }
            spools.stop();
            let spool = spools.commit(7).unwrap();
            assert_eq!(spool.messages(), 10);
            assert_eq!(spool.on_disk(), limit != usize::MAX, "limit {limit}");
            let path = spool.path.clone();
            let got = drain(spool);
            assert_eq!(got.len(), 10);
            for (i, (lsn, m)) in got.iter().enumerate() {
                assert_eq!(*lsn, 100 + i as u64);
                let mut want = vec![b'I'];
                want.extend_from_slice(&[i as u8; 5]);
                assert_eq!(m, &want);
            }
            assert!(!path.exists(), "the spool file is deleted after replay");
        }
    }

    #[test]
    fn memory_threshold_moves_the_spool_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut spools = Spools::new(dir.path().to_path_buf(), 100, 0).unwrap();
        spools.start(1, true, Lsn(0)).unwrap();
        // 12-byte header + 1 tag + 20 body = 33 bytes a frame: three fit in 100.
        for i in 0..3 {
            spools.append(Lsn(i), &streamed(b'I', 1, &[0; 20])).unwrap();
        }
        assert!(!spools.open[&1].on_disk());
        assert_eq!(spool_files(dir.path()), 0);
        spools.append(Lsn(3), &streamed(b'I', 1, &[0; 20])).unwrap();
        assert!(spools.open[&1].on_disk());
        assert!(spools.open[&1].memory.capacity() == 0, "memory is freed");
        assert_eq!(spool_files(dir.path()), 1);
        assert_eq!(drain(spools.commit(1).unwrap()).len(), 4);
        assert_eq!(spool_files(dir.path()), 0);
    }

    #[test]
    fn whole_abort_deletes_the_spool_and_interleaved_transactions_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut spools = Spools::new(dir.path().to_path_buf(), 0, 0).unwrap();
        spools.start(1, true, Lsn(0)).unwrap();
        spools.append(Lsn(1), &streamed(b'I', 1, b"a1")).unwrap();
        spools.stop();
        spools.start(2, true, Lsn(0)).unwrap();
        spools.append(Lsn(2), &streamed(b'I', 2, b"b1")).unwrap();
        spools.stop();
        spools.start(1, false, Lsn(0)).unwrap();
        spools.append(Lsn(3), &streamed(b'I', 1, b"a2")).unwrap();
        spools.stop();
        assert!(spools.any_open());
        assert_eq!(spool_files(dir.path()), 2);
        spools.abort(2, 2).unwrap();
        assert_eq!(spool_files(dir.path()), 1);
        let got = drain(spools.commit(1).unwrap());
        assert_eq!(
            got,
            vec![(1, b"Ia1".to_vec()), (3, b"Ia2".to_vec())],
            "transaction 1's messages only, in order"
        );
        assert!(!spools.any_open());
        assert!(spools.commit(2).is_none());
        assert_eq!(spool_files(dir.path()), 0);
    }

    #[test]
    fn subtransaction_abort_drops_only_its_messages_and_keeps_relations() {
        for limit in [usize::MAX, 0] {
            let dir = tempfile::tempdir().unwrap();
            let mut spools = Spools::new(dir.path().to_path_buf(), limit, 0).unwrap();
            spools.start(10, true, Lsn(0)).unwrap();
            let msgs: &[(u8, u32, &[u8])] = &[
                (b'I', 10, b"top1"),
                // SAVEPOINT a: subxact 11, released later.
                (b'I', 11, b"a1"),
                // SAVEPOINT b inside a: subxact 12, rolled back; it described a table.
                (b'R', 12, b"rel"),
                (b'I', 12, b"b1"),
                (b'I', 12, b"b2"),
            ];
            for (i, (tag, x, body)) in msgs.iter().enumerate() {
                spools
                    .append(Lsn(i as u64), &streamed(*tag, *x, body))
                    .unwrap();
            }
            assert_eq!(
                spools.abort(10, 12).unwrap(),
                2,
                "b1 and b2; the Relation stays"
            );
            // Unknown subtransaction (no changes): nothing happens.
            assert_eq!(spools.abort(10, 99).unwrap(), 0);
            spools.append(Lsn(10), &streamed(b'I', 11, b"a2")).unwrap();
            spools
                .append(Lsn(11), &streamed(b'I', 10, b"top2"))
                .unwrap();
            // SAVEPOINT c: subxact 13 rolled back at once.
            spools.append(Lsn(12), &streamed(b'I', 13, b"c1")).unwrap();
            spools.abort(10, 13).unwrap();
            let spool = spools.commit(10).unwrap();
            assert_eq!(spool.messages(), 5);
            let got: Vec<Vec<u8>> = drain(spool).into_iter().map(|(_, m)| m).collect();
            assert_eq!(
                got,
                vec![
                    b"Itop1".to_vec(),
                    b"Ia1".to_vec(),
                    b"Rrel".to_vec(),
                    b"Ia2".to_vec(),
                    b"Itop2".to_vec()
                ],
                "limit {limit}"
            );
        }
    }

    #[test]
    fn abort_of_a_parent_drops_its_released_child() {
        let dir = tempfile::tempdir().unwrap();
        let mut spools = Spools::new(dir.path().to_path_buf(), 0, 0).unwrap();
        spools.start(10, true, Lsn(0)).unwrap();
        spools.append(Lsn(1), &streamed(b'I', 10, b"t")).unwrap();
        // s1 made no change of its own before s2 (its child) did.
        spools
            .append(Lsn(2), &streamed(b'I', 12, b"child"))
            .unwrap();
        spools
            .append(Lsn(3), &streamed(b'I', 11, b"parent"))
            .unwrap();
        // ROLLBACK TO s1: PostgreSQL sends the child's abort first, then the parent's.
        spools.abort(10, 12).unwrap();
        spools.abort(10, 11).unwrap();
        spools.append(Lsn(4), &streamed(b'I', 10, b"u")).unwrap();
        let got: Vec<Vec<u8>> = drain(spools.commit(10).unwrap())
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        assert_eq!(got, vec![b"It".to_vec(), b"Iu".to_vec()]);
    }

    #[test]
    fn the_disk_limit_counts_every_open_spool_and_refuses_the_message_past_it() {
        let dir = tempfile::tempdir().unwrap();
        // 12-byte header + tag + 20-byte body: 33 bytes a frame; 100 bytes hold three.
        let mut spools = Spools::new(dir.path().to_path_buf(), 0, 100).unwrap();
        let row = |x| streamed(b'I', x, &[0; 20]);
        spools.start(1, true, Lsn(0)).unwrap();
        spools.append(Lsn(1), &row(1)).unwrap();
        spools.append(Lsn(2), &row(1)).unwrap();
        spools.stop();
        spools.start(2, true, Lsn(3)).unwrap();
        spools.append(Lsn(3), &row(2)).unwrap();
        assert_eq!(spools.open_bytes(), 99);
        // Transaction 2's second message would make 132 bytes with transaction 1's.
        let Err(AppendError::Limit(err)) = spools.append(Lsn(4), &row(2)) else {
            panic!("expected the limit to refuse the message");
        };
        assert_eq!(
            (
                err.xid,
                err.transaction_bytes,
                err.open_bytes,
                err.open_transactions,
                err.limit
            ),
            (2, 33, 99, 2, 100)
        );
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(err.kind().class(), walrus_core::error::ErrorClass::Fatal);
        let text = err.to_string();
        for want in [
            "source.spool_max_bytes",
            "transaction 2 ",
            "33 bytes so far",
            "limit of 100 bytes",
            "source.streaming = \"off\"",
        ] {
            assert!(text.contains(want), "{want:?} missing from: {text}");
        }
        assert_eq!(spools.open_bytes(), 99, "the refused message took nothing");
        spools.stop();
        // Ending a transaction frees its bytes: a whole abort, a subtransaction's abort and
        // a commit alike.
        spools.abort(2, 2).unwrap();
        assert_eq!(spools.open_bytes(), 66);
        spools.start(1, false, Lsn(5)).unwrap();
        spools.append(Lsn(5), &row(11)).unwrap();
        assert_eq!(spools.open_bytes(), 99);
        spools.abort(1, 11).unwrap();
        assert_eq!(spools.open_bytes(), 66);
        spools.append(Lsn(6), &row(1)).unwrap();
        spools.stop();
        let spool = spools.commit(1).unwrap();
        assert_eq!(spool.bytes(), 99);
        assert_eq!(spools.open_bytes(), 0);
        drop(spool);
        // A first segment sent again replaces the spool and its bytes.
        spools.start(3, true, Lsn(7)).unwrap();
        spools.append(Lsn(7), &row(3)).unwrap();
        spools.start(3, true, Lsn(7)).unwrap();
        assert_eq!(spools.open_bytes(), 0);
    }

    #[test]
    fn no_disk_limit_when_zero() {
        let dir = tempfile::tempdir().unwrap();
        let mut spools = Spools::new(dir.path().to_path_buf(), 0, 0).unwrap();
        spools.start(1, true, Lsn(0)).unwrap();
        for i in 0..1000 {
            spools
                .append(Lsn(i), &streamed(b'I', 1, &[0; 100]))
                .unwrap();
        }
        assert_eq!(spools.open_bytes(), 1000 * 113);
    }

    #[test]
    fn protocol_violations_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut spools = Spools::new(dir.path().to_path_buf(), 0, 0).unwrap();
        assert!(matches!(
            spools.append(Lsn(1), &streamed(b'I', 1, b"x")),
            Err(AppendError::NoStream)
        ));
        assert!(spools.start(5, false, Lsn(0)).is_err());
        spools.start(5, true, Lsn(0)).unwrap();
        assert!(matches!(
            spools.append(Lsn(1), b"I\0\0"),
            Err(AppendError::Malformed)
        ));
        assert!(matches!(
            spools.append(Lsn(1), &streamed(b'B', 5, b"x")),
            Err(AppendError::Malformed)
        ));
    }

    #[test]
    fn stale_files_of_an_earlier_run_are_deleted_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("xid-42.spool"), b"old").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"keep").unwrap();
        let _spools = Spools::new(dir.path().to_path_buf(), 0, 0).unwrap();
        assert!(!dir.path().join("xid-42.spool").exists());
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_short_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut spools = Spools::new(dir.path().to_path_buf(), 0, 0).unwrap();
        spools.start(3, true, Lsn(0)).unwrap();
        spools
            .append(Lsn(1), &streamed(b'I', 3, b"abcdef"))
            .unwrap();
        let mut spool = spools.commit(3).unwrap();
        let path = spool.path.clone();
        spool.file.as_mut().unwrap().writer.flush().unwrap();
        let full = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(full - 2)
            .unwrap();
        let mut r = spool.into_reader().unwrap();
        let err = r.next_frame().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Spool);
        assert!(err.to_string().contains("transaction 3"), "{err}");
    }

    #[test]
    fn errors_classify_by_cause() {
        let e = |kind| SpoolError {
            xid: 1,
            path: "/x".into(),
            action: "writing",
            source: std::io::Error::from(kind),
        };
        assert_eq!(e(std::io::ErrorKind::StorageFull).kind(), ErrorKind::Spool);
        assert_eq!(
            e(std::io::ErrorKind::PermissionDenied).kind(),
            ErrorKind::Config
        );
        assert!(e(std::io::ErrorKind::StorageFull)
            .to_string()
            .starts_with("source.spool_dir: "));
    }

    #[test]
    fn a_spool_dir_that_cannot_be_a_directory_is_a_config_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        // Found when a session starts (emptying the directory), before anything streams.
        let Err(err) = Spools::new(file.join("spool"), 0, 0) else {
            panic!("expected an error");
        };
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("source.spool_dir"), "{err}");
        assert_eq!(err.kind().class(), walrus_core::error::ErrorClass::Fatal);
    }
}
