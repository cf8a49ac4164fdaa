//! The session's side of streamed transactions (`[source] streaming`, pgoutput protocol 2+):
//! Stream Start / Stop / Abort move messages into and out of the spools
//! ([`crate::replication::spool`]); Stream Commit replays a spool through the session's
//! ordinary Begin → changes → Commit path.
//!
//! ```text
//!  Stream Start(xid) ── changes (xid stripped) ──▶ Spools ── Stream Abort ──▶ dropped
//!                                                    │
//!  Stream Commit(xid, commit LSN, end LSN, time) ────┘ replay: on_begin(commit LSN, xid,
//!      time) + BEGIN metadata → each message: prepare_relation, handle_xlog, after_message
//!      → END metadata + on_commit(end LSN)
//! ```
//!
//! Why replay rather than emit while streaming: the events' commit time, `source.sequence`
//! and the commit LSN the [`walrus_core::ack::AckTracker`] records only exist at Stream
//! Commit, and transactions streamed side by side commit in an order known only then. A
//! replayed transaction is indistinguishable, for the emitter, the sink and the
//! acknowledgement, from the same transaction sent after its commit: same events, same
//! records, confirmed once its records and all before them are delivered.
//!
//! Between Stream Start and Stream Stop, keepalives confirm nothing (`on_keepalive`): the
//! open transaction's changes lie before the keepalive's position and are not delivered.

use std::time::Instant;

use bytes::Bytes;
use tokio::sync::watch;
use walrus_core::Lsn;

use super::{Flow, Session};
use crate::decoding::pgoutput::{PgOutputMessage, StreamCommit};
use crate::error::PgError;
use crate::replication::spool::AppendError;

impl Session<'_> {
    /// A change of the transaction streaming now, received between Stream Start and Stream
    /// Stop: appended to its spool, not decoded yet.
    pub(super) fn spool_message(&mut self, lsn: Lsn, data: &Bytes) -> Result<(), PgError> {
        self.received = self.received.max(lsn);
        metrics::counter!(walrus_core::telemetry::SPOOL_BYTES_TOTAL).increment(data.len() as u64);
        self.spools.append(lsn, data).map_err(|e| match e {
            AppendError::Io(e) => PgError::Spool(e),
            AppendError::Limit(e) => PgError::SpoolLimit(e),
            AppendError::NoStream => PgError::Protocol {
                lsn,
                message: "a streamed change outside Stream Start … Stream Stop".into(),
            },
            AppendError::Malformed => PgError::Protocol {
                lsn,
                message: "a streamed change too short to hold its transaction id".into(),
            },
        })?;
        self.spool_open_bytes.set(self.spools.open_bytes() as f64);
        Ok(())
    }

    /// Stream Start, Stream Stop and Stream Abort (decoded by `handle_xlog`).
    pub(super) fn on_stream_control(
        &mut self,
        lsn: Lsn,
        msg: &PgOutputMessage,
    ) -> Result<(), PgError> {
        match msg {
            PgOutputMessage::StreamStart(s) => {
                self.spools
                    .start(s.xid, s.first_segment, lsn)
                    .map_err(|message| PgError::Protocol { lsn, message })?;
            }
            PgOutputMessage::StreamStop => self.spools.stop(),
            PgOutputMessage::StreamAbort(a) => {
                let dropped = self.spools.abort(a.xid, a.subxid);
                self.spool_open_bytes.set(self.spools.open_bytes() as f64);
                let dropped = dropped?;
                if a.xid == a.subxid {
                    metrics::counter!(
                        walrus_core::telemetry::STREAMED_TRANSACTIONS_TOTAL,
                        "outcome" => "aborted"
                    )
                    .increment(1);
                    tracing::debug!(
                        xid = a.xid,
                        dropped,
                        "streamed transaction aborted; its spool is dropped"
                    );
                } else {
                    tracing::debug!(
                        xid = a.xid,
                        subxid = a.subxid,
                        dropped,
                        "rolled-back subtransaction dropped from the spool"
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Stream Commit: replays the transaction's spool as Begin … Commit, handing records to
    /// the sink as batches fill. Returns `Stop` when shutdown was requested while waiting
    /// for the sink; the transaction is then not confirmed and PostgreSQL sends it again.
    pub(super) async fn on_stream_commit(
        &mut self,
        lsn: Lsn,
        data: &Bytes,
        ticker: &mut tokio::time::Interval,
        last_tick: &mut Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Flow, PgError> {
        let msg = self
            .decoder
            .decode(data)
            .map_err(|source| PgError::Decode { lsn, source })?;
        let PgOutputMessage::StreamCommit(StreamCommit {
            xid,
            commit_lsn,
            end_lsn,
            commit_time,
            ..
        }) = msg
        else {
            return Err(PgError::Protocol {
                lsn,
                message: format!("expected Stream Commit, got {}", msg.kind()),
            });
        };
        if self.decoder.in_stream() {
            return Err(PgError::Protocol {
                lsn,
                message: "Stream Commit inside Stream Start … Stream Stop".into(),
            });
        }
        let spool = self.spools.commit(xid);
        self.spool_open_bytes.set(self.spools.open_bytes() as f64);
        metrics::counter!(
            walrus_core::telemetry::STREAMED_TRANSACTIONS_TOTAL,
            "outcome" => "committed"
        )
        .increment(1);
        if let Some(s) = &spool {
            tracing::debug!(
                xid,
                messages = s.messages(),
                bytes = s.bytes(),
                on_disk = s.on_disk(),
                commit_lsn = %commit_lsn,
                "streamed transaction committed; replaying its spool"
            );
        }
        // A Begin would have been at the transaction's first LSN (the first Stream Start's
        // position); a Commit at the Stream Commit's (both at the commit's end LSN).
        let begin_lsn = spool.as_ref().map_or(lsn, |s| s.first_lsn());
        self.on_begin(commit_lsn, xid, commit_time.0);
        self.transaction_metadata(true, begin_lsn);
        if let Some(spool) = spool {
            // Deletes the spool file when dropped, whether replay finishes or not.
            let mut reader = spool.into_reader()?;
            while let Some((at, message)) = reader.next_frame()? {
                if message.first() == Some(&b'R') {
                    self.prepare_relation(at, &message).await?;
                }
                self.handle_xlog(at, &message)?;
                if let Flow::Stop = self.after_message(ticker, last_tick, shutdown).await? {
                    return Ok(Flow::Stop);
                }
            }
        }
        self.transaction_metadata(false, lsn);
        self.on_commit(end_lsn, commit_time.0);
        Ok(Flow::Continue)
    }
}
