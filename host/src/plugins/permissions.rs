//! Who could swap a plugin library before it is loaded: a library runs in the server's process
//! with all its rights, so a file or folder that other users can write is a way in. Found
//! problems are warnings (the plugin still loads), each naming the path and the fix.

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Group- and other-write bits.
const WRITABLE_BY_OTHERS: u32 = 0o022;
/// The sticky bit: in such a folder (like /tmp) only a file's owner may rename or remove it.
const STICKY: u32 = 0o1000;

/// One reason the plugin at a path could be replaced by someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// The file or folder at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What lets another user change a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The plugin file is writable by its group or by everyone (`mode`).
    WritableFile { mode: u32 },
    /// The folder holding it is writable by its group or by everyone, without the sticky bit,
    /// so the file can be replaced (`mode`).
    WritableFolder { mode: u32 },
    /// Owned by a user (`uid`) that is neither root nor the user running the server.
    ForeignOwner { uid: u32 },
}

impl std::fmt::Display for Exposure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match self.problem {
            Problem::WritableFile { mode } => write!(
                f,
                "plugin library {path} is writable by other users (mode {:o}): anyone who can \
                 write it can run code inside the server; fix: chmod go-w {path}",
                mode & 0o7777
            ),
            Problem::WritableFolder { mode } => write!(
                f,
                "the folder {path} holding a plugin library is writable by other users (mode \
                 {:o}): anyone who can write it can replace the plugin; fix: chmod go-w {path}",
                mode & 0o7777
            ),
            Problem::ForeignOwner { uid } => write!(
                f,
                "{path} is owned by uid {uid}, neither root nor the user running the server: \
                 that user can change the plugin; fix: chown root {path} (or the server's user)"
            ),
        }
    }
}

/// What could let another user replace the library at `path` (its real file and the folder it
/// is in, after following symbolic links). Empty when the file cannot be read: opening it
/// reports that.
pub fn exposures(path: &Path) -> Vec<Exposure> {
    let Ok(file) = path.canonicalize() else {
        return Vec::new();
    };
    let me = nix::unistd::geteuid().as_raw();
    let mut found = Vec::new();
    if let Ok(meta) = std::fs::metadata(&file) {
        found.extend(file_problems(&meta, me).map(|problem| Exposure {
            path: file.clone(),
            problem,
        }));
    }
    if let Some(folder) = file.parent() {
        if let Ok(meta) = std::fs::metadata(folder) {
            found.extend(folder_problems(&meta, me).map(|problem| Exposure {
                path: folder.to_path_buf(),
                problem,
            }));
        }
    }
    found
}

/// Log one warning per exposure of the library at `path`.
pub fn warn_if_exposed(path: &Path) {
    for exposure in exposures(path) {
        tracing::warn!("{exposure}");
    }
}

fn file_problems(meta: &Metadata, me: u32) -> impl Iterator<Item = Problem> {
    let mode = meta.permissions().mode();
    let writable = (mode & WRITABLE_BY_OTHERS != 0).then_some(Problem::WritableFile { mode });
    writable.into_iter().chain(foreign_owner(meta.uid(), me))
}

fn folder_problems(meta: &Metadata, me: u32) -> impl Iterator<Item = Problem> {
    let mode = meta.permissions().mode();
    let writable = (mode & WRITABLE_BY_OTHERS != 0 && mode & STICKY == 0)
        .then_some(Problem::WritableFolder { mode });
    writable.into_iter().chain(foreign_owner(meta.uid(), me))
}

fn foreign_owner(owner: u32, me: u32) -> Option<Problem> {
    (owner != 0 && owner != me).then_some(Problem::ForeignOwner { uid: owner })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A private folder holding a plugin-like file with `file_mode`, the folder with
    /// `dir_mode`.
    fn layout(file_mode: u32, dir_mode: u32) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("plugins");
        fs::create_dir(&dir).expect("mkdir");
        let file = dir.join("libclarity_x.so");
        fs::write(&file, b"not really a library").expect("write");
        chmod(&file, file_mode);
        chmod(&dir, dir_mode);
        (root, file)
    }

    fn problems(path: &Path) -> Vec<Problem> {
        exposures(path).into_iter().map(|e| e.problem).collect()
    }

    #[test]
    fn private_file_and_folder_pass() {
        let (_root, file) = layout(0o755, 0o755);
        assert_eq!(problems(&file), vec![]);
    }

    #[test]
    fn world_writable_file_and_folder_are_both_named_with_the_fix() {
        let (_root, file) = layout(0o777, 0o777);
        let found = exposures(&file);
        let file = file.canonicalize().expect("canonical");
        let dir = file.parent().expect("parent").to_path_buf();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].path, file);
        assert_eq!(found[0].problem, Problem::WritableFile { mode: 0o100777 });
        assert_eq!(found[1].path, dir);
        assert_eq!(found[1].problem, Problem::WritableFolder { mode: 0o40777 });
        let text = found[0].to_string();
        assert!(
            text.contains(&format!("chmod go-w {}", file.display())),
            "{text}"
        );
        assert!(text.contains("mode 777"), "{text}");
        let text = found[1].to_string();
        assert!(
            text.contains(&format!("chmod go-w {}", dir.display())),
            "{text}"
        );
    }

    #[test]
    fn group_write_counts_and_a_sticky_folder_does_not() {
        let (_root, file) = layout(0o664, 0o1777);
        assert_eq!(
            problems(&file),
            vec![Problem::WritableFile { mode: 0o100664 }]
        );
    }

    #[test]
    fn a_symlink_is_judged_by_the_file_it_points_to() {
        let (root, file) = layout(0o666, 0o755);
        let link = root.path().join("link.so");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let found = exposures(&link);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, file.canonicalize().expect("canonical"));
    }

    #[test]
    fn owners_other_than_root_and_me_are_foreign() {
        assert_eq!(foreign_owner(0, 1000), None);
        assert_eq!(foreign_owner(1000, 1000), None);
        assert_eq!(
            foreign_owner(1001, 1000),
            Some(Problem::ForeignOwner { uid: 1001 })
        );
    }

    #[test]
    fn a_file_owned_by_another_user_is_named() {
        let (_root, file) = layout(0o755, 0o755);
        // Only root may give a file away; elsewhere the owner logic is covered above.
        match std::os::unix::fs::chown(&file, Some(54_321), None) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return,
            Err(e) => panic!("chown: {e}"),
        }
        assert_eq!(problems(&file), vec![Problem::ForeignOwner { uid: 54_321 }]);
    }

    #[test]
    fn a_missing_file_has_no_exposures() {
        assert_eq!(problems(Path::new("/nonexistent/libclarity_x.so")), vec![]);
    }
}
