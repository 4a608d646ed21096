//! Files that hold secrets (the SQLite store of sessions, the key file) are
//! private to the user: directories h3fleet creates are 0700, files 0600,
//! and an existing file that others can read is logged.

#[cfg(feature = "sqlite")]
use std::io;
use std::path::Path;

#[cfg(feature = "sqlite")]
/// Creates `dir` and any missing parents, each private to the user. An
/// existing directory is left as it is.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(feature = "sqlite")]
/// Creates `path` empty with mode 0600 unless it exists, so nothing else
/// (SQLite, the umask) picks a wider mode for it.
pub(crate) fn create_file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(feature = "sqlite")]
/// Narrows an existing file of ours to 0600 (used for SQLite's `-wal` and
/// `-shm` files, which older builds left 0644). A missing file, or one
/// another user owns, is left alone.
pub(crate) fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let Ok(meta) = std::fs::metadata(path) else { return };
        if meta.mode() & 0o077 != 0 && meta.uid() == current_uid() {
            if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
                tracing::warn!(path = %path.display(), error = %e, "cannot make the file private");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(feature = "sqlite")]
/// The effective uid: `/proc/self` is owned by it (Linux). Elsewhere
/// `u32::MAX`, which owns nothing, so nothing is changed.
#[cfg(unix)]
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// Logs a warning if others than the owner can read or write `path`.
pub(crate) fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "this file holds secrets and other users can access it; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
