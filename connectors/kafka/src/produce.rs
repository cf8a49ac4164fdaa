//! Handing one record to librdkafka, through its C API.
//!
//! rdkafka's `BaseProducer::send` names the topic per record: it copies the name into a new C
//! string and librdkafka looks the topic up under a lock, for every record. Profiles of W1
//! into the broker put that at a few percent of walrus's CPU. Here the sink keeps one
//! [`TopicHandle`] per topic and passes it with the record (`RD_KAFKA_VTYPE_RKT`); the
//! record is otherwise what `send` would build: librdkafka copies key and value
//! (`RD_KAFKA_MSG_F_COPY`), takes ownership of the headers, and hands the opaque (the
//! record's sequence number, as `usize`, which is how rdkafka's `ThreadedProducer` with
//! `DeliveryOpaque = usize` reads it back) to the delivery callback.
//!
//! ```text
//!  Record ─▶ NativeHeaders (rd_kafka_headers_t) ─┐
//!  topic ─▶ TopicHandle (rd_kafka_topic_t, kept) ─┼─▶ rd_kafka_producev ─▶ librdkafka's queue
//!  key, value, timestamp, sequence number ────────┘
//! ```

use std::ffi::{c_void, CString};
use std::ptr::NonNull;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka_sys as rdsys;
use rdkafka_sys::rd_kafka_vtype_t::{
    RD_KAFKA_VTYPE_END, RD_KAFKA_VTYPE_HEADERS, RD_KAFKA_VTYPE_KEY, RD_KAFKA_VTYPE_MSGFLAGS,
    RD_KAFKA_VTYPE_OPAQUE, RD_KAFKA_VTYPE_PARTITION, RD_KAFKA_VTYPE_RKT, RD_KAFKA_VTYPE_TIMESTAMP,
    RD_KAFKA_VTYPE_VALUE,
};

/// `RD_KAFKA_PARTITION_UA`: the partitioner picks the partition.
const PARTITION_UNASSIGNED: i32 = -1;

/// librdkafka's object for one topic, created once per topic and destroyed with the sink
/// (before the producer: the sink declares its handles first).
#[derive(Debug)]
pub(crate) struct TopicHandle(NonNull<rdsys::rd_kafka_topic_t>);

// SAFETY: librdkafka's topic objects are reference-counted and safe to use from any thread;
// through `&TopicHandle` only `rd_kafka_producev`, which is thread-safe, uses one.
unsafe impl Send for TopicHandle {}
unsafe impl Sync for TopicHandle {}

impl TopicHandle {
    /// The handle of `topic` in producer `rk`, with the producer's default topic
    /// configuration (what librdkafka uses when a record names its topic). `None` when the
    /// name holds a NUL byte or librdkafka refuses it.
    pub(crate) fn new(rk: *mut rdsys::rd_kafka_t, topic: &str) -> Option<TopicHandle> {
        let name = CString::new(topic).ok()?;
        // SAFETY: `rk` is a live producer; librdkafka copies the name.
        let rkt = unsafe { rdsys::rd_kafka_topic_new(rk, name.as_ptr(), std::ptr::null_mut()) };
        NonNull::new(rkt).map(TopicHandle)
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: created by `rd_kafka_topic_new` and destroyed once; queued records hold
        // their own references.
        unsafe { rdsys::rd_kafka_topic_destroy(self.0.as_ptr()) }
    }
}

/// A record's headers as librdkafka's list, owned until [`produce`] hands them over.
#[derive(Debug)]
pub(crate) struct NativeHeaders(Option<NonNull<rdsys::rd_kafka_headers_t>>);

// SAFETY: the list is owned exclusively by this value until handed to librdkafka, and
// changed only through `&mut`.
unsafe impl Send for NativeHeaders {}
unsafe impl Sync for NativeHeaders {}

impl NativeHeaders {
    /// An empty list with room for `n` headers; `n == 0` allocates nothing.
    pub(crate) fn with_capacity(n: usize) -> NativeHeaders {
        if n == 0 {
            return NativeHeaders(None);
        }
        // SAFETY: plain allocation; never null per librdkafka.
        NativeHeaders(NonNull::new(unsafe { rdsys::rd_kafka_headers_new(n) }))
    }

    /// Appends a header (librdkafka copies name and value).
    pub(crate) fn add(&mut self, name: &str, value: &[u8]) {
        if self.0.is_none() {
            *self = NativeHeaders::with_capacity(4);
        }
        let Some(h) = self.0 else { return };
        // SAFETY: `h` is a live list; lengths are given, so neither needs a terminator.
        // Lengths fit in isize: they are lengths of Rust slices.
        unsafe {
            rdsys::rd_kafka_header_add(
                h.as_ptr(),
                name.as_ptr().cast(),
                name.len() as isize,
                value.as_ptr().cast(),
                value.len() as isize,
            );
        }
    }

    /// Gives the list up (to librdkafka, which then frees it).
    fn into_raw(mut self) -> *mut rdsys::rd_kafka_headers_t {
        self.0.take().map_or(std::ptr::null_mut(), NonNull::as_ptr)
    }
}

impl Drop for NativeHeaders {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            // SAFETY: still owned here: never handed over.
            unsafe { rdsys::rd_kafka_headers_destroy(h.as_ptr()) }
        }
    }
}

/// Enqueues one record (partitioned by librdkafka's configured partitioner). On an error
/// the headers come back, so that the caller can offer the record again (queue full); the
/// error is librdkafka's code and text.
pub(crate) fn produce(
    rk: *mut rdsys::rd_kafka_t,
    topic: &TopicHandle,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: NativeHeaders,
    timestamp_ms: i64,
    seq: u64,
) -> Result<(), (RDKafkaErrorCode, NativeHeaders)> {
    let parts = |b: Option<&[u8]>| match b {
        Some(b) => (b.as_ptr() as *mut c_void, b.len()),
        None => (std::ptr::null_mut(), 0),
    };
    let (value_ptr, value_len) = parts(value);
    let (key_ptr, key_len) = parts(key);
    let raw_headers = headers.into_raw();
    // SAFETY: the argument list is librdkafka's (type tag, then that type's values), ended
    // by RD_KAFKA_VTYPE_END, with the C types each tag expects: the topic handle is live,
    // key and value are copied before the call returns (F_COPY), and the headers list is
    // handed over (owned by librdkafka on success only).
    let err = unsafe {
        rdsys::rd_kafka_producev(
            rk,
            RD_KAFKA_VTYPE_RKT,
            topic.0.as_ptr(),
            RD_KAFKA_VTYPE_PARTITION,
            PARTITION_UNASSIGNED,
            RD_KAFKA_VTYPE_MSGFLAGS,
            rdsys::RD_KAFKA_MSG_F_COPY,
            RD_KAFKA_VTYPE_VALUE,
            value_ptr,
            value_len,
            RD_KAFKA_VTYPE_KEY,
            key_ptr,
            key_len,
            RD_KAFKA_VTYPE_OPAQUE,
            seq as usize as *mut c_void,
            RD_KAFKA_VTYPE_TIMESTAMP,
            timestamp_ms,
            RD_KAFKA_VTYPE_HEADERS,
            raw_headers,
            RD_KAFKA_VTYPE_END,
        )
    };
    if err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err((
            RDKafkaErrorCode::from(err),
            NativeHeaders(NonNull::new(raw_headers)),
        ))
    }
}
