//! What a Kafka error means for walrus: librdkafka's error codes by name, each classified once
//! (back-pressure, retryable, a record the broker rejects, a producer that cannot go on),
//! with the fix an operator needs. The sink (`crate`) and the exactly-once path
//! (`crate::transactions`) turn these classes into [`SinkError`]s and so into walrus's
//! [`ErrorKind`]s.

use walrus_core::error::ErrorKind;
#[cfg(doc)]
use walrus_core::error::SinkError;

/// What a Kafka error means for the record it hit: the one table the Kafka sink consults.
///
/// Codes are librdkafka's `rd_kafka_resp_err_t`: negative for the client's own errors
/// (`RD_KAFKA_RESP_ERR__*`), positive for the broker's protocol error codes. Kept by number,
/// so the table reads as librdkafka's documentation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerErrorClass {
    /// The producer's queue is full: wait for deliveries and offer the same record again.
    /// Never an error, never a drop.
    BackPressure,
    /// Transient (broker down, leader moving, timeouts): librdkafka retries by itself;
    /// once it gives up, the session restarts after a backoff and resumes from the slot.
    Retryable,
    /// This record cannot be delivered as it is (too large, invalid, its topic missing
    /// with creation off): it goes to the dead-letter topic when one is configured, else
    /// the pipeline stops.
    Rejected,
    /// The producer itself cannot go on (authentication, authorisation, a fatal
    /// idempotence error): stop; a dead-letter topic would not help.
    Fatal,
}

/// librdkafka codes the classification refers to, by name.
pub mod kafka_codes {
    #![allow(missing_docs)]
    pub const BAD_MSG: i32 = -199;
    pub const DESTROY: i32 = -197;
    pub const FAIL: i32 = -196;
    pub const TRANSPORT: i32 = -195;
    pub const RESOLVE: i32 = -193;
    pub const MSG_TIMED_OUT: i32 = -192;
    pub const UNKNOWN_PARTITION: i32 = -190;
    pub const UNKNOWN_TOPIC_LOCAL: i32 = -188;
    pub const ALL_BROKERS_DOWN: i32 = -187;
    pub const INVALID_ARG: i32 = -186;
    pub const TIMED_OUT: i32 = -185;
    pub const QUEUE_FULL: i32 = -184;
    pub const ISR_INSUFF: i32 = -183;
    pub const NODE_UPDATE: i32 = -182;
    pub const SSL: i32 = -181;
    pub const UNSUPPORTED_FEATURE: i32 = -165;
    pub const AUTHENTICATION: i32 = -169;
    pub const FENCED: i32 = -144;
    pub const TIMED_OUT_QUEUE: i32 = -166;
    pub const RETRY: i32 = -153;
    pub const PURGE_QUEUE: i32 = -152;
    pub const PURGE_INFLIGHT: i32 = -151;
    pub const FATAL: i32 = -150;
    pub const INVALID_MSG: i32 = 2;
    pub const UNKNOWN_TOPIC_OR_PART: i32 = 3;
    pub const INVALID_MSG_SIZE: i32 = 4;
    pub const LEADER_NOT_AVAILABLE: i32 = 5;
    pub const NOT_LEADER_FOR_PARTITION: i32 = 6;
    pub const REQUEST_TIMED_OUT: i32 = 7;
    pub const BROKER_NOT_AVAILABLE: i32 = 8;
    pub const REPLICA_NOT_AVAILABLE: i32 = 9;
    pub const MSG_SIZE_TOO_LARGE: i32 = 10;
    pub const NETWORK_EXCEPTION: i32 = 13;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i32 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i32 = 15;
    pub const NOT_COORDINATOR: i32 = 16;
    pub const TOPIC_EXCEPTION: i32 = 17;
    pub const RECORD_LIST_TOO_LARGE: i32 = 18;
    pub const NOT_ENOUGH_REPLICAS: i32 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i32 = 20;
    pub const TOPIC_AUTHORIZATION_FAILED: i32 = 29;
    pub const CLUSTER_AUTHORIZATION_FAILED: i32 = 31;
    pub const INVALID_TIMESTAMP: i32 = 32;
    pub const UNSUPPORTED_SASL_MECHANISM: i32 = 33;
    pub const ILLEGAL_SASL_STATE: i32 = 34;
    pub const TOPIC_ALREADY_EXISTS: i32 = 36;
    pub const POLICY_VIOLATION: i32 = 44;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i32 = 45;
    pub const INVALID_PRODUCER_EPOCH: i32 = 47;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i32 = 53;
    pub const KAFKA_STORAGE_ERROR: i32 = 56;
    pub const SASL_AUTHENTICATION_FAILED: i32 = 58;
    pub const UNKNOWN_PRODUCER_ID: i32 = 59;
    pub const FENCED_LEADER_EPOCH: i32 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i32 = 75;
    pub const UNSUPPORTED_COMPRESSION_TYPE: i32 = 76;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i32 = 80;
    pub const INVALID_RECORD: i32 = 87;
    pub const THROTTLING_QUOTA_EXCEEDED: i32 = 89;
    pub const PRODUCER_FENCED: i32 = 90;
    pub const REBOOTSTRAP_REQUIRED: i32 = 129;
}

impl BrokerErrorClass {
    /// Classifies a librdkafka error code. Unknown codes count as retryable: the session
    /// restarts and the slot keeps the WAL, which is safe, and a persistent error shows in
    /// the retry log.
    pub fn of(code: i32) -> BrokerErrorClass {
        use kafka_codes::*;
        match code {
            QUEUE_FULL => BrokerErrorClass::BackPressure,
            MSG_SIZE_TOO_LARGE
            | INVALID_MSG_SIZE
            | RECORD_LIST_TOO_LARGE
            | INVALID_MSG
            | BAD_MSG
            | INVALID_RECORD
            | INVALID_TIMESTAMP
            | POLICY_VIOLATION
            | TOPIC_EXCEPTION
            | UNKNOWN_TOPIC_OR_PART
            | UNKNOWN_TOPIC_LOCAL
            | UNKNOWN_PARTITION
            | UNSUPPORTED_COMPRESSION_TYPE
            | INVALID_ARG => BrokerErrorClass::Rejected,
            TOPIC_AUTHORIZATION_FAILED
            | CLUSTER_AUTHORIZATION_FAILED
            | TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            | AUTHENTICATION
            | SASL_AUTHENTICATION_FAILED
            | UNSUPPORTED_SASL_MECHANISM
            | ILLEGAL_SASL_STATE
            | SSL
            | FATAL
            | PRODUCER_FENCED
            | FENCED
            | INVALID_PRODUCER_EPOCH
            // librdkafka calls a broker without transactions "retriable"; it never
            // gains them by retrying.
            | UNSUPPORTED_FEATURE => BrokerErrorClass::Fatal,
            _ => BrokerErrorClass::Retryable,
        }
    }

    /// The [`ErrorKind`] a sink error of this class maps to.
    pub fn kind(self) -> ErrorKind {
        match self {
            BrokerErrorClass::BackPressure | BrokerErrorClass::Retryable => {
                ErrorKind::SinkTransient
            }
            BrokerErrorClass::Rejected | BrokerErrorClass::Fatal => ErrorKind::SinkRejected,
        }
    }

    /// What fixes an error with this code, in one sentence, for the error message.
    pub fn fix(code: i32) -> &'static str {
        use kafka_codes::*;
        match code {
            MSG_SIZE_TOO_LARGE | INVALID_MSG_SIZE | RECORD_LIST_TOO_LARGE => {
                "raise the topic's max.message.bytes (and the broker's message.max.bytes) and walrus's [sink.properties] \"message.max.bytes\", exclude large columns with [tables.\"<schema>.<table>\"] exclude_columns, or set [sink] dead_letter_topic"
            }
            UNKNOWN_TOPIC_OR_PART | UNKNOWN_TOPIC_LOCAL | UNKNOWN_PARTITION => {
                "create the topic, or enable [sink.topic_creation] (enabled = true) so walrus creates it"
            }
            TOPIC_AUTHORIZATION_FAILED | CLUSTER_AUTHORIZATION_FAILED => {
                "grant the walrus principal WRITE (and DESCRIBE, CREATE for topic creation) on the topic, and IDEMPOTENT_WRITE on the cluster"
            }
            AUTHENTICATION | SASL_AUTHENTICATION_FAILED | UNSUPPORTED_SASL_MECHANISM
            | ILLEGAL_SASL_STATE => {
                "check [sink] sasl_mechanism, sasl_username and sasl_password against the broker's listener"
            }
            SSL => "check [sink] security_protocol and the ssl_* certificate paths",
            PRODUCER_FENCED | FENCED | INVALID_PRODUCER_EPOCH => {
                "another producer with the same transactional id took over (fenced this one): run one walrus per [sink] transactional_id (it defaults to walrus-<slot>), and stop the other instance or give each its own slot"
            }
            UNSUPPORTED_FEATURE => {
                "the broker lacks a feature walrus needs; [sink] exactly_once = true needs Kafka transactions (Apache Kafka 0.11 or later, or a compatible broker that implements them): set exactly_once = false or use such a broker"
            }
            POLICY_VIOLATION | INVALID_RECORD | INVALID_TIMESTAMP | TOPIC_EXCEPTION => {
                "the broker refused the record (topic policy, name or timestamp rules); fix the topic's configuration or route the table elsewhere, or set [sink] dead_letter_topic"
            }
            _ => "walrus retries by itself; check that the brokers in [sink] brokers are up and reachable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walrus_core::error::ErrorClass;

    #[test]
    fn kafka_errors_classify_by_code() {
        use kafka_codes::*;
        assert_eq!(
            BrokerErrorClass::of(QUEUE_FULL),
            BrokerErrorClass::BackPressure
        );
        for code in [
            TRANSPORT,
            ALL_BROKERS_DOWN,
            MSG_TIMED_OUT,
            TIMED_OUT,
            LEADER_NOT_AVAILABLE,
            NOT_LEADER_FOR_PARTITION,
            REQUEST_TIMED_OUT,
            NOT_ENOUGH_REPLICAS,
            NETWORK_EXCEPTION,
            KAFKA_STORAGE_ERROR,
            -9999,
        ] {
            assert_eq!(
                BrokerErrorClass::of(code),
                BrokerErrorClass::Retryable,
                "{code}"
            );
            assert_eq!(
                BrokerErrorClass::of(code).kind().class(),
                ErrorClass::Retryable
            );
        }
        for code in [
            MSG_SIZE_TOO_LARGE,
            RECORD_LIST_TOO_LARGE,
            UNKNOWN_TOPIC_OR_PART,
            UNKNOWN_TOPIC_LOCAL,
            INVALID_RECORD,
        ] {
            assert_eq!(
                BrokerErrorClass::of(code),
                BrokerErrorClass::Rejected,
                "{code}"
            );
            assert_eq!(BrokerErrorClass::of(code).kind().class(), ErrorClass::Fatal);
        }
        for code in [
            TOPIC_AUTHORIZATION_FAILED,
            SASL_AUTHENTICATION_FAILED,
            FATAL,
            PRODUCER_FENCED,
            FENCED,
            UNSUPPORTED_FEATURE,
        ] {
            assert_eq!(
                BrokerErrorClass::of(code),
                BrokerErrorClass::Fatal,
                "{code}"
            );
        }
        assert!(BrokerErrorClass::fix(MSG_SIZE_TOO_LARGE).contains("max.message.bytes"));
        assert!(BrokerErrorClass::fix(UNKNOWN_TOPIC_OR_PART).contains("topic_creation"));
        assert!(BrokerErrorClass::fix(FENCED).contains("transactional_id"));
        assert!(BrokerErrorClass::fix(UNSUPPORTED_FEATURE).contains("exactly_once"));
    }
}
