//! Progress files of the snapshots (the initial snapshot's state file and the incremental
//! snapshot's progress), written atomically so that a crash leaves the old progress or the
//! new one, never half of it.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::PgError;

/// Reads a progress file: `None` when there is none, or when `belongs` says it is another
/// slot's or database's (logged and ignored, so a copied config does not resume someone
/// else's progress). `what` names the file in errors ("walrus snapshot state"), `fix` says
/// what to do with a file that is not one.
pub(crate) fn load_json<T: DeserializeOwned>(
    path: &Path,
    what: &str,
    fix: &str,
    belongs: impl FnOnce(&T) -> bool,
) -> Result<Option<T>, PgError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(PgError::SnapshotState {
                path: path.to_path_buf(),
                message: format!("cannot read it: {e}"),
            })
        }
    };
    let state: T = serde_json::from_str(&text).map_err(|e| PgError::SnapshotState {
        path: path.to_path_buf(),
        message: format!("not a {what} ({e}); {fix}"),
    })?;
    if !belongs(&state) {
        tracing::warn!(path = %path.display(), "{what} belongs to another slot or database; ignoring it");
        return Ok(None);
    }
    Ok(Some(state))
}

/// Writes `value` as JSON to `path` atomically: a temporary file, fsync, rename, fsync of the
/// directory, so a crash leaves either the old progress or the new, never half of it.
pub(crate) fn save_json_atomically<T: Serialize>(value: &T, path: &Path) -> Result<(), PgError> {
    let err = |e: std::io::Error| PgError::SnapshotState {
        path: path.to_path_buf(),
        message: format!("cannot write it: {e}"),
    };
    let text = serde_json::to_vec_pretty(value).map_err(|e| PgError::SnapshotState {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&text).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
