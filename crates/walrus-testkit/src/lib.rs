//! walrus-testkit: throwaway PostgreSQL servers for walrus's tests.
//!
//! Integration tests need a real PostgreSQL with `wal_level=logical`, replication slots and
//! the freedom to restart or crash it mid-stream, without touching any server the machine
//! already runs. [`PgCluster`] gives each test its own:
//!
//! ```text
//! find bindir ──▶ template (initdb once per machine) ──cp -a──▶ cluster dir ──pg_ctl start──▶ server
//!  binaries        template                                   PgCluster        on 127.0.0.1:<free port>
//! ```
//!
//! - `binaries`: where the server binaries are (`$WALRUS_PG_BINDIR`, `pg_config --bindir`,
//!   the highest `/usr/lib/postgresql/*/bin`), with an error saying how to install them.
//! - `privileges`: running the server as an unprivileged user when the tests run as root.
//! - `template`: the per-machine `initdb` result every cluster is copied from.
//! - `cluster`: [`PgCluster`] itself: settings, port choice, start/stop/kill/restart,
//!   connections, `psql`.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use walrus_testkit::{unique_name, PgCluster, WalLevel};
//!
//! let pg = PgCluster::new()?; // wal_level=logical
//! let db = unique_name("orders");
//! pg.create_database(&db).await?;
//! let client = pg.connect(&db).await?;
//! client.batch_execute("CREATE TABLE t (id int primary key)").await?;
//! pg.restart()?; // same port, same data
//!
//! let _replica = PgCluster::builder()
//!     .wal_level(WalLevel::Replica)
//!     .setting("wal_sender_timeout", "5s")
//!     .start()?;
//! # Ok(()) }
//! ```
//!
//! [`kafka`] is the Kafka counterpart: Apache Kafka 4.4 (KRaft, one node) from the jars
//! `scripts/install-deps.sh` caches, as [`KafkaBroker::shared`] (one broker for a whole test
//! run, for tests that only produce and consume) or [`KafkaBroker::start`] (a test's own, with
//! `pause`/`resume`, `stop`/`start_again`/`restart` and `kill`), and the `java` command line
//! Kafka Connect runs from the same jars ([`kafka::java_command`]).
//!
//! # Root, CI and machines without PostgreSQL
//!
//! CI runs `.ci/run` as root on a fresh clone, and sessions run as root too, but `initdb`,
//! `pg_ctl` and `postgres` refuse to run as root. When the effective uid is 0 the harness runs
//! those three as an unprivileged user (`$WALRUS_PG_USER`, else `postgres`, else a `walrus-pg`
//! system user it creates with `useradd`, else `nobody`), owns each cluster directory by that
//! user with mode 0700, and keeps it under a temp dir every user can traverse (`/tmp` when
//! `$TMPDIR` is not). Clients (`psql`, tokio-postgres) connect over TCP as the `postgres`
//! role with trust authentication, whoever runs them. Outside root nothing is switched.
//!
//! The harness never installs anything: on a machine without the server it fails with a
//! message naming `apt-get install postgresql`. `scripts/install-deps.sh`, which `.ci/run`
//! runs through `scripts/test.sh`, installs it when missing.
//!
//! # Environment
//!
//! - `WALRUS_PG_BINDIR`: use the server binaries in this directory.
//! - `WALRUS_PG_MAJOR`: run every cluster on this major (10 to 18) unless the test asks for
//!   one with [`PgClusterBuilder::major`]; the version matrix (see `binaries`).
//! - `WALRUS_CACHE`: where `scripts/install-deps.sh` put the matrix's servers
//!   (default `~/.cache/walrus`).
//! - `WALRUS_PG_USER`: when root, run the server as this user.
//! - `TMPDIR`: where clusters and the template go (see [`std::env::temp_dir`]).

mod binaries;
mod cluster;
pub mod debezium;
pub mod kafka;
mod privileges;
pub mod process;
pub mod registry;
mod template;

pub use binaries::{find_bindir, matrix_cache, MAJOR_ENV, MATRIX_MAJORS};
pub use cluster::{unique_name, PgCluster, PgClusterBuilder, WalLevel};
pub use debezium::KafkaConnect;
pub use kafka::{KafkaBroker, KafkaBrokerBuilder, SharedKafkaBroker};
pub use registry::RegistryServer;
