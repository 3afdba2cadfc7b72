//! Files that survive a crash whole or not at all, and write failures said plainly.
//!
//! Shared by the host (model folders) and the plugins (checkpoints, exported models): a file
//! is written under a temporary name in its final folder, flushed to disk, renamed, and the
//! folder flushed, so a `kill -9` or a power cut leaves either the old file or the new one.

use std::error::Error as StdError;
use std::io;
use std::path::Path;

/// Flush `path`'s contents to disk.
pub fn sync_file(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Flush `dir`'s entries (a rename or a new file in it) to disk. Platforms that cannot open
/// a folder for syncing (Windows) skip it.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Flush every file and folder under `dir`, then `dir` itself.
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            sync_tree(&path)?;
        } else {
            sync_file(&path)?;
        }
    }
    sync_dir(dir)
}

/// `error` and what usually fixes it, for the failures a user can do something about: a full
/// disk, a file-size limit, a read-only file system, missing permission.
pub fn explain(error: &io::Error) -> String {
    let hint = match error.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            "the disk is full (or the quota is used up): free space or point output_dir at another disk"
        }
        io::ErrorKind::FileTooLarge => {
            "the file is larger than this process may write (a file-size limit, `ulimit -f`, or the file system's maximum): raise the limit or point output_dir elsewhere"
        }
        io::ErrorKind::ReadOnlyFilesystem => {
            "the file system is read-only: point output_dir at a writable folder"
        }
        io::ErrorKind::PermissionDenied => {
            "this user lacks the permission: fix the permissions, or point output_dir at a folder this user can write"
        }
        _ => return error.to_string(),
    };
    format!("{error}; {hint}")
}

/// [`explain`] for the first I/O error in `error`'s chain of causes, or its plain text when
/// none is an I/O error (e.g. a tensor library's error wrapping the failed write).
pub fn explain_chain(error: &(dyn StdError + 'static)) -> String {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return explain(io);
        }
        cause = e.source();
    }
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_cause_and_the_fix() {
        let full = explain(&io::Error::from_raw_os_error(28));
        assert!(full.contains("No space left on device"), "{full}");
        assert!(full.contains("disk is full"), "{full}");
        let big = explain(&io::Error::from_raw_os_error(27));
        assert!(
            big.contains("File too large") && big.contains("ulimit -f"),
            "{big}"
        );
        let other = explain(&io::Error::other("boom"));
        assert_eq!(other, "boom");
    }

    #[test]
    fn finds_the_io_error_inside_a_wrapper() {
        #[derive(Debug, thiserror::Error)]
        #[error("save failed: {0}")]
        struct Wrapper(#[source] io::Error);
        let wrapped = Wrapper(io::Error::from_raw_os_error(30));
        let text = explain_chain(&wrapped);
        assert!(text.contains("read-only"), "{text}");
    }

    #[test]
    fn syncs_a_tree() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("clarity-durable-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub"))?;
        std::fs::write(dir.join("sub/a"), "a")?;
        let synced = sync_tree(&dir);
        std::fs::remove_dir_all(&dir)?;
        synced
    }
}
