//! Progress files of the snapshots (the initial snapshot's state file and the incremental
//! snapshot's progress), written atomically so that a crash leaves the old progress or the
//! new one, never half of it.

use std::path::Path;

use serde::Serialize;

use crate::error::PgError;

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
