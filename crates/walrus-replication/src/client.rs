//! The replication connection's two phases: commands (`IDENTIFY_SYSTEM`,
//! `CREATE_REPLICATION_SLOT`, plain SQL) on a [`ReplicationClient`], then the copy-both
//! stream of `START_REPLICATION` on a [`ReplicationStream`].
//!
//! # Feedback
//!
//! PostgreSQL advances a slot's `confirmed_flush_lsn` only from the flush position in the
//! client's standby status updates, and ends a walsender that has not heard from its client
//! for `wal_sender_timeout`. The stream therefore:
//!
//! - sends a status update at least every [`MAX_STATUS_INTERVAL`] (1 s) whether or not the
//!   position moved (proactively, as Materialize does: the timeout and the lag views depend
//!   on it), and at once when a keepalive asks for a reply;
//! - reports one position, [`ReplicationStream::set_flushed`], as write, flush and apply; it
//!   only ever moves forward, and starts at the position the caller says is already durable
//!   (never at the start position by itself, so connecting confirms nothing);
//! - on [`ReplicationStream::finish`] sends the final position, then `CopyDone`, and waits
//!   for the server to end the copy, so the last acknowledgement is never lost in a close.
//!
//! # Reading
//!
//! [`ReplicationStream::next_batch`] reads whatever the socket holds (up to 256 KiB) into
//! one buffer, in the calling task, and returns the whole messages as a [`Frames`] iterator
//! over one shared allocation: no per-message channel, task hop or copy. It is cancel-safe,
//! so it can sit in a `select!` beside timers.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Buf;

use crate::error::{ReplicationError, Result};
use crate::frame::{self, parse_error_fields, split_complete, Frames};
use crate::lsn::Lsn;
use crate::transport::{self, unexpected, Conn, ConnectConfig};
use crate::version::{CreateSlot, PluginOptions, PluginRequest, ServerVersion};

/// The longest time between two standby status updates.
pub const MAX_STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Default read coalescing ([`ReplicationStream::set_read_coalescing`]): after a read that
/// emptied the socket, the next one waits until this long after it.
pub const DEFAULT_READ_COALESCING: Duration = Duration::from_millis(1);

/// A read of fewer bytes than this emptied the socket (the server sends faster than that
/// only when it has a backlog, and then reads come back full).
const DRAINED_READ: usize = transport::READ_CHUNK / 4;

/// The receive low-water mark during a coalescing window: a read's worth of messages
/// (a few hundred rows) wakes the task before the window ends. Kept well under the kernel's
/// default receive buffer (128 KiB): Linux grows the buffer and clamps the TCP window to a
/// low-water mark that needs more room, which would cap throughput on distant servers.
const COALESCING_LOW_WATER: usize = 32 * 1024;

/// How long [`ReplicationStream::finish`] waits for the server to end the copy.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// The answer to `IDENTIFY_SYSTEM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifySystem {
    /// The cluster's system identifier.
    pub system_id: String,
    /// Current timeline.
    pub timeline: u32,
    /// Current WAL flush position.
    pub xlogpos: Lsn,
    /// The database connected to.
    pub dbname: Option<String>,
}

/// The answer to `CREATE_REPLICATION_SLOT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedSlot {
    /// The slot's name.
    pub name: String,
    /// The position from which the slot decodes: changes committed after it stream; the
    /// exported snapshot sees everything before it.
    pub consistent_point: Lsn,
    /// The exported snapshot (`SET TRANSACTION SNAPSHOT '<name>'`), valid until this
    /// connection runs another command.
    pub snapshot_name: Option<String>,
    /// The output plugin.
    pub plugin: String,
}

/// A replication connection in command mode.
pub struct ReplicationClient {
    conn: Conn,
}

impl std::fmt::Debug for ReplicationClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationClient")
            .field("server_version", &self.conn.server_version.text)
            .finish_non_exhaustive()
    }
}

/// Rows of a simple query's result, as text (`None` for NULL).
pub type Rows = Vec<Vec<Option<String>>>;

impl ReplicationClient {
    /// Connects and authenticates (see `transport`).
    pub async fn connect(cfg: &ConnectConfig) -> Result<Self> {
        Ok(ReplicationClient {
            conn: Conn::connect(cfg).await?,
        })
    }

    /// The server's version, as reported at startup.
    pub fn server_version(&self) -> &ServerVersion {
        &self.conn.server_version
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.conn.tls
    }

    /// The authentication that took place: `trust`, `password`, `md5`, `SCRAM-SHA-256`, or
    /// `SCRAM-SHA-256-PLUS` when it was bound to the TLS channel.
    pub fn auth_method(&self) -> &'static str {
        self.conn.auth
    }

    /// Runs one command with the simple query protocol and returns its rows as text.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Rows> {
        transport::query(sql, &mut self.conn.wbuf)?;
        self.conn.flush().await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let msg = self.conn.read_message().await?;
            match msg.tag {
                b'T' | b'C' | b'I' | b'N' | b'S' => {}
                b'D' => rows.push(data_row(msg.body)?),
                b'E' => error = Some(parse_error_fields(&msg.body)),
                b'Z' => break,
                other => return Err(unexpected(other, "a command")),
            }
        }
        match error {
            Some(e) => Err(ReplicationError::Server(e)),
            None => Ok(rows),
        }
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<IdentifySystem> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = rows
            .first()
            .filter(|r| r.len() >= 3)
            .ok_or_else(|| ReplicationError::Protocol("IDENTIFY_SYSTEM returned no row".into()))?;
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        Ok(IdentifySystem {
            system_id: text(0),
            timeline: text(1)
                .parse()
                .map_err(|_| ReplicationError::Protocol(format!("timeline {:?}", text(1))))?,
            xlogpos: text(2).parse().map_err(ReplicationError::Protocol)?,
            dbname: row.get(3).cloned().flatten(),
        })
    }

    /// `CREATE_REPLICATION_SLOT ... LOGICAL pgoutput` in the syntax of this server.
    pub async fn create_slot(&mut self, request: &CreateSlot) -> Result<CreatedSlot> {
        let sql = request.command(&self.conn.server_version)?;
        let rows = self.simple_query(&sql).await?;
        let row = rows.first().filter(|r| r.len() >= 4).ok_or_else(|| {
            ReplicationError::Protocol("CREATE_REPLICATION_SLOT returned no row".into())
        })?;
        Ok(CreatedSlot {
            name: row[0].clone().unwrap_or_default(),
            consistent_point: row[1]
                .as_deref()
                .unwrap_or_default()
                .parse()
                .map_err(ReplicationError::Protocol)?,
            snapshot_name: row[2].clone(),
            plugin: row[3].clone().unwrap_or_default(),
        })
    }

    /// `START_REPLICATION SLOT <slot> LOGICAL <start> (<options for this server>)`.
    ///
    /// `acked` is the position already durable downstream (the slot's confirmed position
    /// when resuming): the first status update reports it, never `start`.
    pub async fn start(
        mut self,
        slot: &str,
        start: Lsn,
        acked: Lsn,
        request: &PluginRequest,
    ) -> Result<ReplicationStream> {
        let options = PluginOptions::for_server(&self.conn.server_version, request)?;
        let sql = options.start_command(slot, start)?;
        tracing::debug!(command = %sql, "starting replication");
        transport::query(&sql, &mut self.conn.wbuf)?;
        self.conn.flush().await?;
        loop {
            let msg = self.conn.read_message().await?;
            match msg.tag {
                // CopyBothResponse: streaming begins.
                b'W' => break,
                b'N' | b'S' => {}
                b'E' => {
                    let e = parse_error_fields(&msg.body);
                    // ReadyForQuery follows; the connection is usable but we are done.
                    return Err(ReplicationError::Server(e));
                }
                other => return Err(unexpected(other, "START_REPLICATION")),
            }
        }
        Ok(ReplicationStream {
            conn: self.conn,
            options,
            flushed: acked,
            reported: None,
            received: start.max(acked),
            reply_pending: false,
            last_status: Instant::now(),
            status_interval: MAX_STATUS_INTERVAL,
            status_sent: 0,
            ended: false,
            drained_at: None,
            coalescing: DEFAULT_READ_COALESCING,
            low_water_raised: false,
        })
    }

    /// Closes the connection (`Terminate`).
    pub async fn close(self) {
        self.conn.terminate().await;
    }
}

/// A `DataRow` body as text columns.
fn data_row(mut body: bytes::Bytes) -> Result<Vec<Option<String>>> {
    let short = || ReplicationError::Protocol("DataRow cut short".into());
    if body.len() < 2 {
        return Err(short());
    }
    let n = body.get_i16().max(0) as usize;
    let mut row = Vec::with_capacity(n);
    for _ in 0..n {
        if body.len() < 4 {
            return Err(short());
        }
        let len = body.get_i32();
        if len < 0 {
            row.push(None);
            continue;
        }
        let len = len as usize;
        if body.len() < len {
            return Err(short());
        }
        row.push(Some(
            String::from_utf8_lossy(&body.split_to(len)).into_owned(),
        ));
    }
    Ok(row)
}

/// A replication connection streaming (copy-both mode).
pub struct ReplicationStream {
    conn: Conn,
    options: PluginOptions,
    /// The position reported as flushed; only moves forward.
    flushed: Lsn,
    /// The flushed position of the last status update sent.
    reported: Option<Lsn>,
    /// Newest server position seen (XLogData or keepalive `wal_end`).
    received: Lsn,
    /// A keepalive asked for a reply that has not been sent yet.
    reply_pending: bool,
    last_status: Instant,
    status_interval: Duration,
    /// Status updates sent, for tests and metrics.
    status_sent: u64,
    /// The server ended the copy.
    ended: bool,
    /// When the last read emptied the socket, if it did.
    drained_at: Option<Instant>,
    /// See [`ReplicationStream::set_read_coalescing`].
    coalescing: Duration,
    /// Whether the socket's receive low-water mark is raised for a coalescing window.
    low_water_raised: bool,
}

impl std::fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("flushed", &self.flushed)
            .field("reported", &self.reported)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl ReplicationStream {
    /// The pgoutput options the server accepted.
    pub fn options(&self) -> &PluginOptions {
        &self.options
    }

    /// The server's version.
    pub fn server_version(&self) -> &ServerVersion {
        &self.conn.server_version
    }

    /// Sets the interval between proactive status updates (at most [`MAX_STATUS_INTERVAL`]).
    pub fn set_status_interval(&mut self, interval: Duration) {
        self.status_interval = interval.clamp(Duration::from_millis(10), MAX_STATUS_INTERVAL);
    }

    /// Declares everything up to `lsn` durable downstream; the next status update reports
    /// it. A position behind the current one is ignored (feedback never goes backwards).
    pub fn set_flushed(&mut self, lsn: Lsn) {
        if lsn > self.flushed {
            self.flushed = lsn;
        }
    }

    /// The position that is (or will next be) reported as flushed.
    pub fn flushed(&self) -> Lsn {
        self.flushed
    }

    /// The flushed position of the last status update written to the socket.
    pub fn reported(&self) -> Option<Lsn> {
        self.reported
    }

    /// The newest server WAL position seen.
    pub fn received(&self) -> Lsn {
        self.received
    }

    /// How many status updates were sent.
    pub fn status_updates_sent(&self) -> u64 {
        self.status_sent
    }

    /// How long after a read that emptied the socket the next read waits (default
    /// [`DEFAULT_READ_COALESCING`]; zero reads as soon as data arrives). It bounds the delay
    /// it adds to a change to this; a stream that pauses for longer is not delayed at all.
    pub fn set_read_coalescing(&mut self, window: Duration) {
        self.coalescing = window;
    }

    /// Waits for data and returns every whole message the socket held, as one batch.
    ///
    /// Sends a status update first when one is due or was asked for. Returns an empty
    /// batch when the status interval passes with nothing to read, so a caller that only
    /// loops on this still sends feedback on time. Cancel-safe.
    pub async fn next_batch(&mut self) -> Result<Frames> {
        if self.ended {
            return Err(ReplicationError::Closed(" (the copy ended)"));
        }
        loop {
            self.send_status_if_due().await?;
            let (batch, scan) = split_complete(&mut self.conn.rbuf)?;
            if scan.messages > 0 {
                self.reply_pending |= scan.reply_requested;
                return Ok(self.track(batch));
            }
            let due = self.last_status + self.status_interval;
            // A busy server writes each message as it decodes it: without coalescing the
            // task woke for every few messages (23k context switches a second at 220k
            // rows/s, a quarter of walrus's CPU). After a read that emptied the socket, the
            // next read waits until the window has passed or a good read's worth has come,
            // whichever is first; a stream with pauses longer than the window is never
            // delayed. The waiting is the kernel's (a receive low-water mark), not a timer
            // alone: the runtime's epoll is edge-triggered, so while a task slept on a
            // timer every segment the walsender sent still woke the thread (strace: ~30k
            // empty wake-ups a second while walrus outpaced the server).
            let window_end = self
                .drained_at
                .map(|t| t + self.coalescing)
                .filter(|w| *w > Instant::now());
            let kernel_waits = self.coalesce(window_end.is_some());
            if let Some(w) = window_end.filter(|_| !kernel_waits) {
                // No low-water mark here (a Unix socket, a kernel before 4.18): the window
                // is slept out on the timer.
                tokio::time::sleep_until(w.min(due).into()).await;
            }
            let wake = window_end
                .filter(|_| kernel_waits)
                .map_or(due, |w| w.min(due));
            tokio::select! {
                read = self.conn.fill() => {
                    let n = read?;
                    self.drained_at = (n < DRAINED_READ).then(Instant::now);
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    if Instant::now() >= due {
                        self.send_status_if_due().await?;
                        return Ok(Frames::default());
                    }
                    // The window is over: read whatever came, however little.
                    self.drained_at = None;
                }
            }
        }
    }

    /// Raises the socket's receive low-water mark for a coalescing window, or lowers it
    /// back (which wakes a reader at once if anything is waiting). A system call only when
    /// that changes. Returns whether the mark is raised, i.e. whether the kernel waits out
    /// the window.
    fn coalesce(&mut self, on: bool) -> bool {
        if self.low_water_raised != on {
            let set = self
                .conn
                .set_read_low_water(if on { COALESCING_LOW_WATER } else { 1 });
            self.low_water_raised = on && set;
        }
        self.low_water_raised
    }

    /// Notes the server positions of a batch (a header-level walk; the frames themselves are
    /// parsed by the caller's iteration).
    fn track(&mut self, batch: bytes::Bytes) -> Frames {
        // The newest wal_end is in the last XLogData or keepalive of the batch; scanning
        // backwards would need the message starts, so take it from a cheap forward walk.
        let mut at = 0;
        while at + 5 <= batch.len() {
            let len =
                i32::from_be_bytes([batch[at + 1], batch[at + 2], batch[at + 3], batch[at + 4]])
                    as usize;
            let body = &batch[at + 5..at + 1 + len];
            if batch[at] == b'd' && body.len() >= 9 && (body[0] == b'w' || body[0] == b'k') {
                let off = if body[0] == b'w' { 9 } else { 1 };
                if body.len() >= off + 8 {
                    let end = u64::from_be_bytes(body[off..off + 8].try_into().expect("8 bytes"));
                    self.received = self.received.max(Lsn(end));
                }
            }
            // CopyDone, or CommandComplete without one (a walsender at server shutdown).
            if batch[at] == b'c' || batch[at] == b'C' {
                self.ended = true;
            }
            at += 1 + len;
        }
        Frames::new(batch)
    }

    /// Sends a status update if the interval passed or a keepalive asked for one.
    /// Cancel-safe.
    pub async fn send_status_if_due(&mut self) -> Result<()> {
        if self.reply_pending || self.last_status.elapsed() >= self.status_interval {
            self.queue_status(false);
        }
        self.conn.flush().await
    }

    /// Sends a status update now (with the reply-requested flag when `ask_reply`).
    pub async fn send_status(&mut self, ask_reply: bool) -> Result<()> {
        self.queue_status(ask_reply);
        self.conn.flush().await
    }

    fn queue_status(&mut self, ask_reply: bool) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
            - PG_EPOCH_OFFSET_MICROS;
        // One position for write, flush and apply: walrus has nothing received-but-unwritten
        // that the server should count as written.
        let lsn = self.flushed;
        frame::standby_status_update(lsn, lsn, lsn, now, ask_reply, &mut self.conn.wbuf);
        self.reported = Some(lsn);
        self.reply_pending = false;
        self.last_status = Instant::now();
        self.status_sent += 1;
    }

    /// Ends streaming cleanly: reports the final flushed position, sends `CopyDone`, reads
    /// (and drops) what the server still sends until it ends the copy and the command, then
    /// closes the connection. Returns the position reported last.
    pub async fn finish(mut self) -> Result<Lsn> {
        let _ = self.coalesce(false);
        self.queue_status(false);
        transport::copy_done(&mut self.conn.wbuf);
        let reported = self.flushed;
        let result = tokio::time::timeout(FINISH_TIMEOUT, async {
            self.conn.flush().await?;
            loop {
                let msg = self.conn.read_message().await?;
                match msg.tag {
                    // Data still in flight, the server's CopyDone, CommandComplete.
                    b'd' | b'c' | b'C' | b'N' | b'S' => {}
                    b'Z' => return Ok(()),
                    b'E' => return Err(ReplicationError::Server(parse_error_fields(&msg.body))),
                    other => return Err(unexpected(other, "the end of replication")),
                }
            }
        })
        .await;
        self.conn.terminate().await;
        match result {
            Ok(Ok(())) => Ok(reported),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ReplicationError::Timeout(
                "waiting for the server to end the copy",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_data_rows() {
        let mut body = bytes::BytesMut::new();
        use bytes::BufMut;
        body.put_i16(3);
        body.put_i32(2);
        body.put_slice(b"ab");
        body.put_i32(-1);
        body.put_i32(0);
        let row = data_row(body.freeze()).unwrap();
        assert_eq!(row, vec![Some("ab".into()), None, Some(String::new())]);
        assert!(data_row(bytes::Bytes::from_static(&[0, 1, 0, 0, 0, 9, b'x'])).is_err());
    }
}
