//! Snapshot progress for the people watching it: one bar per table on a terminal
//! (rows, rows/s, ETA), periodic log lines otherwise, and per-table gauges for Prometheus.
//!
//! ```text
//!  snapshot coordinator ── start / advance / finish (per table) ──▶ Progress
//!        │ ticker (100 ms) ── tick ──▶ log mode: a line per active table every interval
//!        ▼                             bar mode: indicatif redraws on its own (steady tick)
//!  binary's log writer ── write_log ──▶ bars hidden while the line is written, then redrawn
//! ```
//!
//! The estimate comes from the planner's statistics (`pg_class.reltuples`), so it can be
//! off; a bar grows its length when the rows read pass it rather than showing more than
//! 100 %. Log lines written while bars are on screen would tear them, so the binary routes
//! its log output through [`write_log`], which suspends the bars for the duration of the
//! line.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use walrus_core::config::ProgressMode;
use walrus_core::telemetry;

/// How often the bars redraw by themselves.
const BAR_REFRESH: Duration = Duration::from_millis(200);

/// The bars on screen, if any, shared with the log writer.
static ACTIVE_BARS: OnceLock<Mutex<Option<MultiProgress>>> = OnceLock::new();

fn active_bars() -> &'static Mutex<Option<MultiProgress>> {
    ACTIVE_BARS.get_or_init(|| Mutex::new(None))
}

/// Writes one log line to stderr, hiding the progress bars while it is written so that
/// the line does not tear them. The binary's tracing writer calls this.
pub fn write_log(buf: &[u8]) -> std::io::Result<()> {
    let bars = active_bars()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match bars {
        Some(mp) => mp.suspend(|| std::io::stderr().write_all(buf)),
        None => std::io::stderr().write_all(buf),
    }
}

/// Whether `mode` means bars here: `bar` always, `auto` when stderr is a terminal.
pub fn wants_bars(mode: ProgressMode) -> bool {
    match mode {
        ProgressMode::Bar => true,
        ProgressMode::Log => false,
        ProgressMode::Auto => std::io::stderr().is_terminal(),
    }
}

struct TableProgress {
    name: String,
    estimated: u64,
    /// Rows delivered in earlier runs (a resumed snapshot).
    before: u64,
    /// Rows read this run.
    read: u64,
    started: Option<Instant>,
    finished: bool,
    bar: Option<ProgressBar>,
}

impl TableProgress {
    fn done(&self) -> u64 {
        self.before + self.read
    }

    /// Rows per second this run, and seconds left at that rate.
    fn rate_and_eta(&self) -> (f64, Option<f64>) {
        let Some(started) = self.started else {
            return (0.0, None);
        };
        let rate = self.read as f64 / started.elapsed().as_secs_f64().max(0.001);
        let left = self.estimated.saturating_sub(self.done()) as f64;
        (rate, (rate > 0.0).then(|| left / rate))
    }
}

/// Progress of one snapshot run over its tables.
pub struct Progress {
    tables: Vec<TableProgress>,
    bars: Option<MultiProgress>,
    interval: Duration,
    last_log: Instant,
}

impl Progress {
    /// Starts reporting on `tables`: (`schema.table`, estimated rows, rows delivered
    /// before this run, already finished). Draws bars when `bars` is true.
    pub fn new(tables: &[(String, u64, u64, bool)], bars: bool, interval: Duration) -> Progress {
        let mp = bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let style = ProgressStyle::with_template(
            "{prefix:<32!} [{bar:30}] {human_pos:>11}/{human_len:<11} {rate:>14} ETA {eta:>4}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} rows/s", s.per_sec());
            },
        )
        .progress_chars("=> ");
        let tables = tables
            .iter()
            .map(|(name, estimated, before, finished)| {
                metrics::gauge!(telemetry::SNAPSHOT_ESTIMATED_ROWS, "table" => name.clone())
                    .set(*estimated as f64);
                let bar = mp.as_ref().filter(|_| !finished).map(|mp| {
                    let bar = mp.add(ProgressBar::new((*estimated).max(*before)));
                    bar.set_style(style.clone());
                    bar.set_prefix(name.clone());
                    bar.set_position(*before);
                    bar.enable_steady_tick(BAR_REFRESH);
                    bar
                });
                TableProgress {
                    name: name.clone(),
                    estimated: *estimated,
                    before: *before,
                    read: 0,
                    started: None,
                    finished: *finished,
                    bar,
                }
            })
            .collect();
        if let Some(mp) = &mp {
            *active_bars().lock().unwrap_or_else(|e| e.into_inner()) = Some(mp.clone());
        }
        Progress {
            tables,
            bars: mp,
            interval,
            last_log: Instant::now(),
        }
    }

    /// `rows` more rows of table `i` were read.
    pub fn advance(&mut self, i: usize, rows: u64) {
        let Some(t) = self.tables.get_mut(i) else {
            return;
        };
        t.started.get_or_insert_with(Instant::now);
        t.read += rows;
        if let Some(bar) = &t.bar {
            let done = t.done();
            if done > bar.length().unwrap_or(0) {
                bar.set_length(done);
            }
            bar.set_position(done);
        }
    }

    /// Table `i` has been read completely.
    pub fn finish(&mut self, i: usize) {
        let Some(t) = self.tables.get_mut(i) else {
            return;
        };
        t.finished = true;
        if let Some(bar) = &t.bar {
            bar.set_length(t.done());
            bar.finish();
        }
    }

    /// Periodic work: in log mode, a line per table being read every interval.
    pub fn tick(&mut self) {
        if self.bars.is_some() || self.last_log.elapsed() < self.interval {
            return;
        }
        self.last_log = Instant::now();
        for t in self
            .tables
            .iter()
            .filter(|t| t.started.is_some() && !t.finished)
        {
            let (rate, eta) = t.rate_and_eta();
            tracing::info!(
                table = %t.name,
                rows = t.done(),
                estimated_rows = t.estimated,
                rows_per_sec = rate as u64,
                eta_s = eta.map_or(0, |s| s as u64),
                "snapshot progress"
            );
        }
    }

    /// Takes the bars off the screen (the log lines that follow stay readable).
    pub fn close(&mut self) {
        if let Some(mp) = self.bars.take() {
            for t in &self.tables {
                if let Some(bar) = &t.bar {
                    bar.disable_steady_tick();
                }
            }
            let _ = mp.clear();
            *active_bars().lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Vec<(String, u64, u64, bool)> {
        vec![
            ("public.a".into(), 1000, 0, false),
            ("public.b".into(), 10, 5, false),
            ("public.c".into(), 7, 7, true),
        ]
    }

    #[test]
    fn bars_follow_rows_and_grow_past_a_low_estimate() {
        // Hidden draw target: the bars' state is observable without a terminal.
        let mut p = Progress::new(&tables(), true, Duration::from_secs(1));
        for t in &p.tables {
            if let Some(bar) = &t.bar {
                bar.set_draw_target(ProgressDrawTarget::hidden());
            }
        }
        assert!(p.tables[2].bar.is_none(), "a finished table gets no bar");
        p.advance(0, 250);
        let bar = p.tables[0].bar.clone().unwrap();
        assert_eq!((bar.position(), bar.length()), (250, Some(1000)));
        // The estimate said 10 rows, 5 were done before: 20 more pass it.
        p.advance(1, 20);
        let bar = p.tables[1].bar.clone().unwrap();
        assert_eq!((bar.position(), bar.length()), (25, Some(25)));
        p.finish(1);
        assert!(bar.is_finished());
        p.close();
        assert!(active_bars().lock().unwrap().is_none());
    }

    #[test]
    fn eta_comes_from_this_runs_rate_and_what_is_left() {
        let mut p = Progress::new(&tables(), false, Duration::from_secs(1));
        assert_eq!(p.tables[0].rate_and_eta(), (0.0, None), "not started yet");
        p.advance(0, 100);
        std::thread::sleep(Duration::from_millis(50));
        let (rate, eta) = p.tables[0].rate_and_eta();
        assert!(rate > 0.0 && rate <= 100.0 / 0.05, "rate {rate}");
        let eta = eta.unwrap();
        // 900 rows left at `rate`.
        assert!((eta - 900.0 / rate).abs() < 1.0, "eta {eta} rate {rate}");
    }

    #[test]
    fn log_mode_draws_no_bars() {
        let p = Progress::new(&tables(), false, Duration::from_secs(1));
        assert!(p.bars.is_none() && p.tables.iter().all(|t| t.bar.is_none()));
        assert!(!wants_bars(ProgressMode::Log));
        assert!(wants_bars(ProgressMode::Bar));
    }
}
