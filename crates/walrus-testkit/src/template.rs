//! The per-machine template data directory that every cluster is copied from.
//!
//! `initdb` takes one to two seconds of a two-core machine; copying its result takes a few
//! tens of milliseconds. So the first test process on a machine runs `initdb` once into
//! `<tmp>/walrus-testkit-template-<key>/data` and every cluster after that is a `cp -a` of it.
//! The template holds only what `initdb` wrote: every per-cluster setting (port, `wal_level`,
//! ...) is written after the copy, so one template serves all of them.
//!
//! cargo-nextest runs each test in its own process, so several processes may want the template
//! at once. They serialise on an `flock` of `<key>.lock` (released by the kernel if a holder
//! dies), and the template is built in a staging directory and renamed into place, so a
//! directory under the final name is always complete; a `COMPLETE` marker written before the
//! rename double-checks that. The key holds the server version, a hash of the bindir, the
//! owner's uid and a format number, so an upgrade or a change here never reuses a stale one.

use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::binaries::Binaries;
use crate::privileges::{euid, give_to, owner_uid, server_command, ServerUser};

/// Bumped whenever the initdb options change, so old templates are not reused.
const FORMAT: u32 = 1;

/// Marker written into a template after initdb succeeded.
const COMPLETE: &str = "COMPLETE";

/// Returns the data directory of this machine's template, creating it when needed.
pub(crate) fn ensure(bins: &Binaries, user: Option<&ServerUser>, base: &Path) -> Result<PathBuf> {
    let key = key(bins, user);
    let dir = base.join(format!("walrus-testkit-template-{key}"));
    if is_complete(&dir) {
        return Ok(dir.join("data"));
    }

    let lock_path = base.join(format!("walrus-testkit-template-{key}.lock"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let _guard =
        Flock::exclusive(&lock).with_context(|| format!("locking {}", lock_path.display()))?;

    // Another process may have built it while this one waited for the lock.
    if is_complete(&dir) {
        return Ok(dir.join("data"));
    }
    if dir.exists() {
        // Only reachable if someone removed the marker or damaged the directory by hand.
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing incomplete template {}", dir.display()))?;
    }

    let staging = tempfile::Builder::new()
        .prefix(&format!("walrus-testkit-template-{key}.staging-"))
        .tempdir_in(base)
        .with_context(|| format!("creating a staging directory in {}", base.display()))?;
    give_to(staging.path(), user)?;
    let data = staging.path().join("data");
    let out = server_command(&bins.bin("initdb"), user, staging.path())
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            // C is compatible with every encoding and always present, unlike *.UTF-8 locales.
            "--locale=C",
            "--no-sync",
        ])
        .output()
        .context("running initdb")?;
    if !out.status.success() {
        bail!(
            "initdb failed ({}) in {}:\n{}{}",
            out.status,
            data.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(staging.path().join(COMPLETE), &bins.version)
        .context("writing the template marker")?;
    std::fs::rename(staging.path(), &dir)
        .with_context(|| format!("moving the template into {}", dir.display()))?;
    // The directory now lives under its final name; nothing is left for the guard to delete.
    let _ = staging.keep();
    Ok(dir.join("data"))
}

fn is_complete(dir: &Path) -> bool {
    dir.join(COMPLETE).is_file() && dir.join("data/PG_VERSION").is_file()
}

fn key(bins: &Binaries, user: Option<&ServerUser>) -> String {
    let mut h = DefaultHasher::new();
    bins.bindir.hash(&mut h);
    format!(
        "v{FORMAT}-pg{}-{:08x}-{}-{}",
        bins.version,
        h.finish() as u32,
        euid(),
        owner_uid(user)
    )
}

/// An exclusive `flock`, released when dropped (or by the kernel when the process dies).
pub(crate) struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    pub(crate) fn exclusive(file: &'a File) -> std::io::Result<Self> {
        loop {
            // SAFETY: the fd is owned by `file`, which outlives the guard.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Flock(file));
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        // SAFETY: as above; unlocking an fd we locked.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}
