//! The configured sink as one value: `[sink] type` picks the variant, and the replication
//! loop is started once, whatever the destination. The enum forwards each [`Sink`] call to
//! its variant (the trait's async methods keep it from being a trait object).

use walrus_core::config::{Config, SinkConfig};
use walrus_core::error::SinkError;
use walrus_core::lsn::Lsn;
use walrus_core::sink::{Delivered, FlushReason, Record, Sink, UnitEnd};
use walrus_kafka::KafkaSink;
use walrus_stdout::{LinesSink, NullSink};

/// One of walrus's sinks.
pub enum AnySink {
    /// stdout or a JSON Lines file.
    Lines(LinesSink),
    /// Discards records (benchmarks, dry runs).
    Null(NullSink),
    /// Apache Kafka.
    Kafka(Box<KafkaSink>),
}

impl AnySink {
    /// Opens the sink `[sink]` configures, reporting deliveries on `delivered`.
    pub fn open(config: &Config, delivered: Delivered) -> Result<AnySink, SinkError> {
        Ok(match &config.sink {
            SinkConfig::Stdout(_) => AnySink::Lines(LinesSink::stdout(delivered)),
            SinkConfig::File(f) => AnySink::Lines(LinesSink::file(&f.path, f.fsync, delivered)?),
            SinkConfig::Null(_) => AnySink::Null(NullSink::new(delivered)),
            SinkConfig::Kafka(k) => AnySink::Kafka(Box::new(KafkaSink::new(
                &k.for_slot(&config.source.slot),
                delivered,
            )?)),
        })
    }
}

impl Sink for AnySink {
    fn name(&self) -> &'static str {
        match self {
            AnySink::Lines(s) => s.name(),
            AnySink::Null(s) => s.name(),
            AnySink::Kafka(s) => s.name(),
        }
    }

    async fn send(&mut self, records: Vec<Record>) -> Result<(), SinkError> {
        match self {
            AnySink::Lines(s) => s.send(records).await,
            AnySink::Null(s) => s.send(records).await,
            AnySink::Kafka(s) => s.send(records).await,
        }
    }

    async fn flush(&mut self, reason: FlushReason) -> Result<(), SinkError> {
        match self {
            AnySink::Lines(s) => s.flush(reason).await,
            AnySink::Null(s) => s.flush(reason).await,
            AnySink::Kafka(s) => s.flush(reason).await,
        }
    }

    async fn send_units(
        &mut self,
        records: Vec<Record>,
        ends: Vec<UnitEnd>,
    ) -> Result<(), SinkError> {
        match self {
            AnySink::Lines(s) => s.send_units(records, ends).await,
            AnySink::Null(s) => s.send_units(records, ends).await,
            AnySink::Kafka(s) => s.send_units(records, ends).await,
        }
    }

    async fn resume_position(&mut self) -> Result<Option<Lsn>, SinkError> {
        match self {
            AnySink::Lines(s) => s.resume_position().await,
            AnySink::Null(s) => s.resume_position().await,
            AnySink::Kafka(s) => s.resume_position().await,
        }
    }

    fn settled(&self) -> Option<u64> {
        match self {
            AnySink::Lines(s) => s.settled(),
            AnySink::Null(s) => s.settled(),
            AnySink::Kafka(s) => s.settled(),
        }
    }
}
