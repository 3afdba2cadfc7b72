//! Loading the ONNX Runtime library, once per process.
//!
//! `ort` panics when used before a library is loaded (it then tries `libonnxruntime.so` on
//! the default search path), so every session goes through [`environment`], which refuses
//! to hand out an environment until [`init_ort`] succeeded with a resolved path.

use super::ServeError;
use ort::environment::Environment;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The library ONNX Runtime was loaded from, and the environment every session shares.
static LOADED: OnceLock<(PathBuf, Environment)> = OnceLock::new();

/// Serialises loading; holds the path `ort` accepted, even if building the environment then
/// failed (the library stays loaded, so no other path may be tried).
static LOADING: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Load ONNX Runtime from `library` (from [`crate::resolve::ort_library`]) and set up its
/// environment. Later calls with the same file do nothing; another file is an error, as one
/// process can hold only one ONNX Runtime.
pub fn init_ort(library: &Path) -> Result<(), ServeError> {
    let library = std::path::absolute(library).unwrap_or_else(|_| library.to_path_buf());
    if !library.is_file() {
        return Err(ServeError::OrtLibrary {
            path: library,
            message: "no such file".into(),
        });
    }
    let mut accepted = LOADING.lock().unwrap_or_else(PoisonError::into_inner);
    let previous = LOADED.get().map(|(p, _)| p).or(accepted.as_ref());
    if let Some(previous) = previous {
        if !same_file(previous, &library) {
            return Err(ServeError::OrtAlreadyLoaded {
                loaded: previous.clone(),
                requested: library,
            });
        }
        if LOADED.get().is_some() {
            return Ok(());
        }
    }
    let fail = |message: String| ServeError::OrtLibrary {
        path: library.clone(),
        message,
    };
    let builder = catch_panic(|| ort::init_from(&library).map_err(|e| e.to_string()))
        .and_then(|r| r)
        .map_err(fail)?;
    *accepted = Some(library.clone());
    let env = catch_panic(|| {
        builder
            .with_name("clarity")
            .build()
            .map_err(|e| e.to_string())
    })
    .and_then(|r| r)
    .map_err(fail)?;
    // Only this function sets LOADED, under the LOADING lock: it is empty here.
    let _ = LOADED.set((library, env));
    Ok(())
}

/// The shared environment, or an error saying to call [`init_ort`] first.
pub(crate) fn environment() -> Result<&'static Environment, ServeError> {
    LOADED
        .get()
        .map(|(_, env)| env)
        .ok_or(ServeError::NotInitialized)
}

/// The library in use, if loaded.
pub fn ort_library_in_use() -> Option<&'static Path> {
    LOADED.get().map(|(p, _)| p.as_path())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Run `f`, turning a panic inside `ort` into an error message.
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("ONNX Runtime panicked: {text}")
    })
}
