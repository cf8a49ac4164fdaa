//! End-to-end tests: the real `walrus` binary against a throwaway PostgreSQL cluster per
//! test, with the file sink. One test binary with modules, so the heavy link happens once.

mod common;

mod avro;
mod check;
mod compat;
mod compat_outbox;
mod compat_transforms;
mod compat_types;
mod crash;
mod dual_write;
mod events;
mod identity;
mod idle;
mod incremental;
mod kafka;
mod large_transaction;
mod restart;
mod schema_evolution;
mod slot_lost;
mod snapshot;
mod takeover;
mod tls;
mod types;
mod versions;
mod watchdog;
