//! Snapshots: reading tables' current contents through the same pipeline as streaming.
//!
//! - [`initial`]: the consistent, parallel, resumable initial snapshot (exported snapshot,
//!   `COPY` chunks read by a worker pool, a coordinator that tracks delivery).
//! - [`incremental`]: incremental snapshots on demand while streaming goes on (signal table,
//!   watermark windows, a chunk-reading driver).
//! - [`progress`]: progress bars, log lines and gauges for the people watching.
//! - `copy` (rows and fields of `COPY` output) and `state_file` (atomic progress files):
//!   shared by both snapshots.

pub(crate) mod copy;
pub mod incremental;
pub mod initial;
pub mod progress;
pub(crate) mod state_file;
