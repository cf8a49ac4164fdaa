//! Operations: what keeps walrus's footprint on the server correct and visible, on ordinary
//! (non-replication) SQL connections.
//!
//! - [`setup`]: publication and slot creation and validation when a session starts.
//! - [`check`]: the preflight behind `walrus check`.
//! - [`watchdog`]: the slot watchdog, its own task polling `pg_replication_slots`.
//! - [`slots`]: the one query and model of `pg_replication_slots` rows they all read.

pub mod check;
pub mod setup;
pub mod slots;
pub mod watchdog;
