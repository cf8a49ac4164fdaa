//! The null sink: takes encoded records and drops them, reporting each one delivered as it
//! arrives.
//!
//! It measures walrus without a destination: decoding, conversion, encoding, batching and
//! LSN confirmation all run as with a real sink (the [`Delivered`] counter advances and
//! confirmed LSNs reach PostgreSQL), only the write is skipped. Benchmarks use it to separate
//! walrus's own cost from the destination's; in production it would lose every change.

use walrus_core::error::SinkError;
use walrus_core::sink::{Delivered, FlushReason, Record, Sink};

/// A sink that discards records and counts them delivered.
pub struct NullSink {
    sent: u64,
    delivered: Delivered,
}

impl NullSink {
    /// A null sink reporting on `delivered`.
    pub fn new(delivered: Delivered) -> Self {
        NullSink { sent: 0, delivered }
    }
}

impl Sink for NullSink {
    fn name(&self) -> &'static str {
        "null"
    }

    async fn send(&mut self, records: Vec<Record>) -> Result<(), SinkError> {
        self.sent += records.len() as u64;
        // Dropped is as delivered as it gets: nothing waits for a flush.
        self.delivered.advance_to(self.sent);
        Ok(())
    }

    async fn flush(&mut self, _reason: FlushReason) -> Result<(), SinkError> {
        self.delivered.advance_to(self.sent);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn counts_every_record_delivered_on_send() {
        let delivered = Delivered::new();
        let mut sink = NullSink::new(delivered.clone());
        let record = Record {
            topic: Arc::from("t"),
            key: None,
            value: None,
            event_headers: None,
            headers: vec![],
            timestamp_ms: 0,
        };
        sink.send(vec![record.clone(), record.clone()])
            .await
            .unwrap();
        assert_eq!(delivered.get(), 2);
        sink.send(vec![record]).await.unwrap();
        sink.flush(FlushReason::Shutdown).await.unwrap();
        assert_eq!(delivered.get(), 3);
    }
}
