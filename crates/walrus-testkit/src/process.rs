//! What tests and benchmarks measure about a process they started (walrus): peak memory,
//! CPU time, and an optional `perf` profile, plus counting the lines it wrote.
//!
//! Everything reads Linux's `/proc`; a process that already exited reads as `None`, so
//! callers sample while it runs and keep the last value.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Peak resident set size so far (`VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// User plus system CPU time of the whole process (all threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks: 100 per second on every Linux this runs on (`getconf CLK_TCK`).
    Some((utime + stime) / 100.0)
}

/// Newline count of a file (0 if it does not exist), read in 1 MiB blocks: output files
/// of benchmarks run to gigabytes.
pub fn count_lines(path: &Path) -> u64 {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return 0;
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += buf[..k].iter().filter(|b| **b == b'\n').count() as u64,
        }
    }
}

/// `perf record` attached to a running process, sampling stacks on the software CPU clock
/// (which works on virtual machines without hardware counters).
pub struct Profiler {
    child: Child,
    /// Where the profile is written.
    pub output: PathBuf,
}

impl Profiler {
    /// Starts profiling `pid` into `<WALRUS_BENCH_PERF_DIR>/<name>.perf.data` when that
    /// variable is set; `None` otherwise (or when `perf` cannot start).
    pub fn from_env(pid: u32, name: &str, frequency: u32) -> Option<Profiler> {
        let dir = std::env::var_os("WALRUS_BENCH_PERF_DIR")?;
        let output = Path::new(&dir).join(format!("{name}.perf.data"));
        let child = Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                &frequency.to_string(),
                "-g",
            ])
            .args(["-p", &pid.to_string(), "-o"])
            .arg(&output)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Profiler { child, output })
    }

    /// Stops recording (SIGINT, so perf writes its file) and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let pid = std::process::id();
        assert!(peak_rss_kib(pid).unwrap() > 0);
        assert!(cpu_seconds(pid).is_some());
        assert_eq!(peak_rss_kib(u32::MAX), None);
    }

    #[test]
    fn counts_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, "a\nb\nc").unwrap();
        assert_eq!(count_lines(&p), 2);
        assert_eq!(count_lines(&dir.path().join("missing")), 0);
    }
}
