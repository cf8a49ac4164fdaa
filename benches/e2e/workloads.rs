//! The workloads W1–W5 of issue 7, as SQL run on the throwaway server.
//!
//! W1–W4 are backlogs: written once before any pipeline runs, into every slot at the same
//! time, then drained by each pipeline in turn. W5 is live: a paced stream of small
//! transactions written while one pipeline runs, once per pipeline.

use std::time::Duration;

/// The table every workload writes; the publication covers only it.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE bench (id int PRIMARY KEY, a text, b int, c timestamptz)",
    "CREATE PUBLICATION bench_pub FOR TABLE bench",
];

/// How a workload produces its changes.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// `rows` rows in transactions of `per_txn` rows, text values of `value_bytes` (a 32-byte
    /// md5 when 32, else pseudo-random hex that neither pglz nor lz4 shrinks much).
    Backlog {
        rows: u64,
        per_txn: u64,
        value_bytes: usize,
    },
    /// `rate` single-row transactions per second for `duration`: half inserts, a quarter
    /// updates, a quarter deletes, paced inside the server.
    Live { rate: u64, duration: Duration },
}

/// One workload.
#[derive(Clone, Debug)]
pub struct Workload {
    /// `w1` … `w5`, as given on the command line.
    pub name: &'static str,
    /// What it is, for the table.
    pub description: String,
    /// How its changes are made.
    pub shape: Shape,
}

impl Workload {
    /// Change events the workload produces (one per row change).
    pub fn rows(&self) -> u64 {
        match self.shape {
            Shape::Backlog { rows, .. } => rows,
            // The first update and delete (transactions 2 and 3) find no row 0.
            Shape::Live { .. } => self.transactions() - 2,
        }
    }

    /// Transactions the workload commits (W5), or rows (the others).
    pub fn transactions(&self) -> u64 {
        match self.shape {
            Shape::Backlog { rows, .. } => rows,
            Shape::Live { rate, duration } => (rate as f64 * duration.as_secs_f64()) as u64,
        }
    }

    /// Deletes among the changes (walrus follows each with a tombstone record).
    pub fn deletes(&self) -> u64 {
        match self.shape {
            Shape::Backlog { .. } => 0,
            // Transactions i with i % 4 == 3, but for the first.
            Shape::Live { .. } => (self.transactions() + 1) / 4 - 1,
        }
    }

    /// The SQL that writes the workload (one `DO` block committing as it goes).
    pub fn sql(&self) -> String {
        match self.shape {
            Shape::Backlog {
                rows,
                per_txn,
                value_bytes,
            } => backlog_sql(rows, per_txn, value_bytes),
            Shape::Live { rate, .. } => live_sql(self.transactions(), rate),
        }
    }
}

/// The workloads, with row counts (and W5's duration) multiplied by `scale`.
pub fn all(scale: f64) -> Vec<Workload> {
    let n =
        |rows: u64, unit: u64| ((rows as f64 * scale / unit as f64).round() as u64).max(1) * unit;
    let w5_secs = (60.0 * scale).max(5.0);
    vec![
        Workload {
            name: "w1",
            description: format!("{} rows in 1,000-row transactions", n(1_000_000, 1000)),
            shape: Shape::Backlog {
                rows: n(1_000_000, 1000),
                per_txn: 1000,
                value_bytes: 32,
            },
        },
        Workload {
            name: "w2",
            description: format!("{} single-row transactions", n(200_000, 1)),
            shape: Shape::Backlog {
                rows: n(200_000, 1),
                per_txn: 1,
                value_bytes: 32,
            },
        },
        Workload {
            name: "w3",
            description: format!("one {}-row transaction", n(10_000_000, 1)),
            shape: Shape::Backlog {
                rows: n(10_000_000, 1),
                per_txn: u64::MAX,
                value_bytes: 32,
            },
        },
        Workload {
            name: "w4",
            description: format!("{} rows with 2 kB text values", n(300_000, 1000)),
            shape: Shape::Backlog {
                rows: n(300_000, 1000),
                per_txn: 1000,
                value_bytes: 2048,
            },
        },
        Workload {
            name: "w5",
            description: format!("5k transactions/s of insert/update/delete for {w5_secs:.0} s"),
            shape: Shape::Live {
                rate: 5000,
                duration: Duration::from_secs_f64(w5_secs),
            },
        },
    ]
}

/// The text value of row `g`, as SQL.
fn value_sql(value_bytes: usize) -> String {
    if value_bytes <= 32 {
        "md5(g::text)".into()
    } else {
        // Concatenated md5s of distinct inputs: hex that compression barely shrinks, so
        // the WAL (and every pipeline) carries the full value. Rows this wide go to TOAST.
        format!(
            "(SELECT string_agg(md5(g::text || '.' || k::text), '') FROM generate_series(1, {}) k)",
            value_bytes.div_ceil(32)
        )
    }
}

fn backlog_sql(rows: u64, per_txn: u64, value_bytes: usize) -> String {
    let value = value_sql(value_bytes);
    if per_txn >= rows {
        return format!(
            "INSERT INTO bench SELECT g, {value}, g % 1000, now() FROM generate_series(1, {rows}) g"
        );
    }
    if per_txn == 1 {
        let value = value.replace("g::text", "i::text");
        return format!(
            "DO $$ BEGIN FOR i IN 1..{rows} LOOP
               INSERT INTO bench VALUES (i, {value}, i % 1000, now());
               COMMIT;
             END LOOP; END $$"
        );
    }
    format!(
        "DO $$ BEGIN FOR i IN 0..{} LOOP
           INSERT INTO bench SELECT g, {value}, g % 1000, now()
             FROM generate_series(i * {per_txn} + 1, i * {per_txn} + {per_txn}) g;
           COMMIT;
         END LOOP; END $$",
        rows.div_ceil(per_txn) - 1
    )
}

/// `total` single-row transactions at `rate` per second. Transaction `i` inserts row `i`
/// when `i % 4` is 0 or 1, updates row `i - 2` (inserted two before) when 2, and deletes
/// row `i - 3` (inserted, then updated) when 3, so every statement but the first update and
/// delete (no row 0) changes exactly one row.
/// The pacing sleeps inside the server every 25 transactions to stay on schedule; if the
/// server cannot keep up it runs flat out and the achieved rate is what the table shows.
fn live_sql(total: u64, rate: u64) -> String {
    format!(
        "DO $$
         DECLARE t0 timestamptz := clock_timestamp(); ahead float8;
         BEGIN
           FOR i IN 1..{total} LOOP
             CASE i % 4
               WHEN 0, 1 THEN INSERT INTO bench VALUES (i, md5(i::text), i % 1000, now());
               WHEN 2 THEN UPDATE bench SET b = b + 1, c = now() WHERE id = i - 2;
               ELSE DELETE FROM bench WHERE id = i - 3;
             END CASE;
             COMMIT;
             IF i % 25 = 0 THEN
               ahead := extract(epoch FROM t0 + make_interval(secs => i::float8 / {rate}) - clock_timestamp());
               IF ahead > 0 THEN PERFORM pg_sleep(ahead); END IF;
             END IF;
           END LOOP;
         END $$"
    )
}
