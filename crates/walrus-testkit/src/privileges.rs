//! Running the server binaries as an unprivileged user when the tests run as root.
//!
//! `initdb`, `pg_ctl` and `postgres` refuse to run with effective uid 0 ("cannot be run as
//! root"), yet CI and development sessions run as root. When the euid is 0 the harness picks a
//! server user, in this order:
//!
//! 1. `$WALRUS_PG_USER`, when set;
//! 2. `postgres`, which Debian's `postgresql-common` package creates;
//! 3. `walrus-pg`, created on the spot with `useradd --system --no-create-home`;
//! 4. `nobody`, when `useradd` is missing or fails.
//!
//! The chosen user owns each cluster's directory, and every server binary is started with
//! [`CommandExt::uid`]/[`CommandExt::gid`], which make the child call `setgroups(0)`, `setgid`
//! and `setuid` between fork and exec: the same effect as `runuser -u <user> --`, without
//! depending on that binary. Clients (`psql`, `pg_recvlogical`) need no switch and run as
//! the caller. As root the harness can still read the server's log and remove its files.

use std::ffi::{CStr, CString};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};

/// Name of the user created when neither `$WALRUS_PG_USER` nor `postgres` exists.
const CREATED_USER: &str = "walrus-pg";

/// An unprivileged account to run the server as.
#[derive(Debug, Clone)]
pub(crate) struct ServerUser {
    /// Login name, for messages.
    pub(crate) name: String,
    /// Numeric user id.
    pub(crate) uid: u32,
    /// Primary group id.
    pub(crate) gid: u32,
}

/// The user the server binaries must run as: `None` when the process is not root and runs them
/// itself. Computed once per process.
pub(crate) fn server_user() -> Result<Option<&'static ServerUser>> {
    static USER: OnceLock<std::result::Result<Option<ServerUser>, String>> = OnceLock::new();
    USER.get_or_init(|| choose().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map(Option::as_ref)
        .map_err(|e| anyhow!("{e}"))
}

/// The effective uid of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The uid that will own the server's files: the server user's, or ours.
pub(crate) fn owner_uid(user: Option<&ServerUser>) -> u32 {
    user.map_or_else(euid, |u| u.uid)
}

fn choose() -> Result<Option<ServerUser>> {
    if euid() != 0 {
        return Ok(None);
    }
    if let Ok(name) = std::env::var("WALRUS_PG_USER") {
        return lookup(&name)?
            .map(Some)
            .ok_or_else(|| anyhow!("WALRUS_PG_USER={name} names no user on this machine"));
    }
    if let Some(user) = lookup("postgres")? {
        return Ok(Some(user));
    }
    if lookup(CREATED_USER)?.is_none() {
        // Parallel test processes may race here; useradd locks /etc/passwd, so the loser fails
        // with "already exists" and the lookup below finds the winner's user.
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(CREATED_USER)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if let Some(user) = lookup(CREATED_USER)? {
        return Ok(Some(user));
    }
    lookup("nobody")?.map(Some).ok_or_else(|| {
        anyhow!(
            "running as root, but found no unprivileged user to run PostgreSQL as \
             (tried postgres, {CREATED_USER}, nobody); create one or set WALRUS_PG_USER"
        )
    })
}

/// Looks a user up through NSS (so not only /etc/passwd).
fn lookup(name: &str) -> Result<Option<ServerUser>> {
    let cname = CString::new(name).context("user name contains a NUL byte")?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: passwd is plain old data; getpwnam_r fills it and points its strings into buf,
        // which outlives every read below.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and buf.len() is its true length.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc))
                .with_context(|| format!("looking up user {name}"));
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: on success pw_name points at a NUL-terminated string inside buf.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        return Ok(Some(ServerUser {
            name,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        }));
    }
}

/// A command for a server binary: run as `user` when given, in `cwd`, with messages in English
/// (the harness reads the log for "Address already in use") and no stdin.
pub(crate) fn server_command(bin: &Path, user: Option<&ServerUser>, cwd: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(cwd)
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .env_remove("PGPORT")
        .env_remove("PGHOST")
        .stdin(Stdio::null());
    if let Some(user) = user {
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}

/// Hands `path` to the server user (no-op when not root).
pub(crate) fn give_to(path: &Path, user: Option<&ServerUser>) -> Result<()> {
    if let Some(user) = user {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .with_context(|| format!("chown {} to {}", path.display(), user.name))?;
    }
    Ok(())
}

/// Whether a process with this pid exists and has not exited. Signal 0 checks existence
/// without delivering anything; a zombie (killed, not yet reaped by its parent) also answers
/// it, so /proc is asked for the state too.
pub(crate) fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

/// `/proc/<pid>/stat` is `pid (comm) state ...`; comm may hold spaces and parentheses, so the
/// state is the first field after the last `)`.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Sends SIGKILL to `pid`; the last resort when `pg_ctl stop -m immediate` did not work.
pub(crate) fn kill_hard(pid: i32) {
    if pid > 0 {
        // SAFETY: plain syscall; a stale pid at worst yields ESRCH, which is ignored.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_root_and_not_a_missing_user() {
        let root = lookup("root").unwrap().expect("every Unix has root");
        assert_eq!(root.uid, 0);
        assert!(lookup("walrus-no-such-user-xyz").unwrap().is_none());
    }

    #[test]
    fn server_user_is_unprivileged_when_root() {
        match server_user().unwrap() {
            Some(user) => {
                assert_eq!(euid(), 0);
                assert_ne!(user.uid, 0, "server user {} is root", user.name);
            }
            None => assert_ne!(euid(), 0),
        }
    }

    #[test]
    fn this_process_is_alive() {
        assert!(process_alive(std::process::id() as i32));
    }
}
