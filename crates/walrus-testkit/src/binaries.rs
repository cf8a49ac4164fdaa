//! Finding PostgreSQL's server binaries.
//!
//! Tests need `initdb`, `pg_ctl` and `postgres` (and `psql`, `pg_recvlogical` for some), which
//! are not on `PATH` on Debian: the packages put them in `/usr/lib/postgresql/<major>/bin`.
//! The search order is:
//!
//! 1. `$WALRUS_PG_BINDIR`, when set. It is taken as the user's explicit choice, so a directory
//!    without the binaries is an error rather than a reason to look elsewhere.
//! 2. `pg_config --bindir`, when that directory holds `initdb` and `postgres`. (`libpq-dev`
//!    ships a `pg_config` without any server, hence the check.)
//! 3. The highest major version in `/usr/lib/postgresql/*/bin`.
//!
//! The answer is computed once per process: it cannot change while tests run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};

/// Where Debian and Ubuntu install each major version's server binaries.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The two binaries whose presence makes a directory a server bindir.
const REQUIRED: [&str; 2] = ["initdb", "postgres"];

/// A server bindir together with the version its `postgres` reports.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// Directory holding `initdb`, `pg_ctl`, `postgres`, `psql`, ...
    pub(crate) bindir: PathBuf,
    /// The full version, e.g. `15.18`, used to key the template cache.
    pub(crate) version: String,
}

impl Binaries {
    /// The path of one binary in the bindir.
    pub(crate) fn bin(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

/// The process-wide answer; errors are kept as strings so every caller sees the same message.
pub(crate) fn binaries() -> Result<&'static Binaries> {
    static FOUND: OnceLock<std::result::Result<Binaries, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| discover().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// Returns the directory holding PostgreSQL's server binaries, searched as the module doc says.
///
/// The error names every place that was searched and how to install the server.
pub fn find_bindir() -> Result<PathBuf> {
    Ok(binaries()?.bindir.clone())
}

fn discover() -> Result<Binaries> {
    let bindir = locate()?;
    let version = server_version(&bindir)?;
    Ok(Binaries { bindir, version })
}

fn has_server(dir: &Path) -> bool {
    REQUIRED.iter().all(|b| dir.join(b).is_file())
}

fn locate() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WALRUS_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if has_server(&dir) {
            return Ok(dir);
        }
        bail!(
            "WALRUS_PG_BINDIR={} does not contain {}; point it at a PostgreSQL server bindir \
             (such as /usr/lib/postgresql/15/bin) or unset it",
            dir.display(),
            REQUIRED.join(" and ")
        );
    }

    let pg_config_note = match Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server(&dir) {
                return Ok(dir);
            }
            format!(
                "`pg_config --bindir` gave {} without a server",
                dir.display()
            )
        }
        Ok(out) => format!("`pg_config --bindir` failed ({})", out.status),
        Err(_) => "no pg_config on PATH".to_owned(),
    };

    if let Some(dir) = highest_debian_bindir(Path::new(DEBIAN_ROOT)) {
        return Ok(dir);
    }

    bail!(
        "no PostgreSQL server binaries (initdb, postgres) found: WALRUS_PG_BINDIR is unset, \
         {pg_config_note}, and {DEBIAN_ROOT}/*/bin has none. Install the server with \
         `apt-get install postgresql` (or run scripts/install-deps.sh), or set WALRUS_PG_BINDIR"
    )
}

/// The `bin` directory of the highest numeric version under `root` that has a server.
fn highest_debian_bindir(root: &Path) -> Option<PathBuf> {
    let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            // "15" or "9.6": compare numerically so that 10 sorts above 9.6.
            let key = name
                .split('.')
                .map(|p| p.parse::<u64>().ok())
                .collect::<Option<Vec<_>>>()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((key, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Parses `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into `15.18`.
fn server_version(bindir: &Path) -> Result<String> {
    let postgres = bindir.join("postgres");
    // `--version` is answered before postgres's refusal to run as root, so no user switch here.
    let out = Command::new(&postgres)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --version", postgres.display()))?;
    if !out.status.success() {
        bail!(
            "{} --version failed ({}): {}",
            postgres.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_version(&String::from_utf8_lossy(&out.stdout)).with_context(|| {
        format!(
            "unexpected output from {} --version: {}",
            postgres.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        )
    })
}

fn parse_version(text: &str) -> Result<String> {
    text.split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        })
        .ok_or_else(|| anyhow!("no version number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_and_plain_versions() {
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n").unwrap(),
            "15.18"
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 17beta1").unwrap(),
            "17beta1"
        );
        assert!(parse_version("postgres").is_err());
    }

    #[test]
    fn picks_the_highest_numeric_version() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9.6", "10", "16"] {
            let bin = root.path().join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            if v != "16" {
                // 16 lacks a server: only its client tools are installed.
                for b in REQUIRED {
                    std::fs::write(bin.join(b), "").unwrap();
                }
            }
        }
        std::fs::create_dir_all(root.path().join("not-a-version/bin")).unwrap();
        assert_eq!(
            highest_debian_bindir(root.path()).unwrap(),
            root.path().join("10/bin")
        );
    }
}
