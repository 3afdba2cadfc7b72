//! Writing a model to disk: checked, atomically (temp file + rename), and with the weights in
//! a `<file name>.data` file beside it when the model would pass protobuf's 2 GB limit.

use super::proto::{DataLocation, DataType, ModelProto, StringStringEntryProto, TensorProto};
use super::{check, OnnxError};
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Weights above this many bytes go to external data (protobuf refuses messages over 2 GB).
pub const EXTERNAL_DATA_THRESHOLD: u64 = 1_800_000_000;

/// Offsets in the external data file are multiples of this (lets ONNX Runtime mmap them).
const ALIGNMENT: u64 = 64;

/// When and which initializers go to external data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Move weights out when their total size exceeds this many bytes.
    pub external_above: u64,
    /// Only float tensors of at least this many bytes move (integer constants never do).
    pub min_tensor_bytes: usize,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            external_above: EXTERNAL_DATA_THRESHOLD,
            min_tensor_bytes: 1024,
        }
    }
}

/// Write `model` to `path` via a temp file + rename. When the initializers exceed ~1.8 GB,
/// move them to external data in `<file name>.data` beside it (64-byte aligned offsets,
/// `data_location` EXTERNAL).
pub fn save(model: ModelProto, path: &Path) -> Result<(), OnnxError> {
    save_with(model, path, Layout::default())
}

/// [`save`] with a chosen [`Layout`] (tests force external data on small models).
pub(crate) fn save_with(
    mut model: ModelProto,
    path: &Path,
    layout: Layout,
) -> Result<(), OnnxError> {
    check(&model)?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| OnnxError::BadPath(path.to_path_buf()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let data_name = format!("{file_name}.data");
    let data_path = dir.join(&data_name);
    let initializers = model
        .graph
        .as_mut()
        .map(|g| g.initializer.as_mut_slice())
        .unwrap_or_default();
    let total: u64 = initializers.iter().map(|t| raw_len(t) as u64).sum();
    if total > layout.external_above {
        write_external(
            initializers,
            &data_path,
            &data_name,
            layout.min_tensor_bytes,
        )?;
    } else {
        // A stale data file from an earlier, larger export would only mislead.
        match std::fs::remove_file(&data_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(OnnxError::io(&data_path, e))
            }
            _ => {}
        }
    }
    let bytes = model.encode_to_vec();
    drop(model);
    write_atomic(path, &dir, |file| file.write_all(&bytes))
}

fn raw_len(t: &TensorProto) -> usize {
    t.raw_data.as_ref().map_or(0, Vec::len)
}

/// Move the raw data of every float initializer of at least `min_bytes` into `data_path`.
fn write_external(
    initializers: &mut [TensorProto],
    data_path: &Path,
    data_name: &str,
    min_bytes: usize,
) -> Result<(), OnnxError> {
    let dir = data_path.parent().unwrap_or(Path::new("."));
    write_atomic(data_path, dir, |file| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut offset: u64 = 0;
        for tensor in initializers.iter_mut() {
            if raw_len(tensor) < min_bytes || tensor.raw_data.is_none() || !is_weight(tensor) {
                continue;
            }
            let raw = tensor.raw_data.take().unwrap_or_default();
            let padding = offset.next_multiple_of(ALIGNMENT) - offset;
            out.write_all(&vec![0u8; padding as usize])?;
            offset += padding;
            out.write_all(&raw)?;
            tensor.external_data = vec![
                entry("location", data_name),
                entry("offset", &offset.to_string()),
                entry("length", &raw.len().to_string()),
            ];
            tensor.data_location = Some(DataLocation::External as i32);
            offset += raw.len() as u64;
        }
        out.flush()
    })
}

/// Float tensors are weights; integer ones are shapes, axes and indices, which ONNX Runtime's
/// shape inference must read from the model itself (it cannot follow external data).
fn is_weight(t: &TensorProto) -> bool {
    matches!(
        t.data_type.and_then(|d| DataType::try_from(d).ok()),
        Some(DataType::Float | DataType::Float16 | DataType::Bfloat16 | DataType::Double)
    )
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: Some(key.to_string()),
        value: Some(value.to_string()),
    }
}

/// Write `path` through a temp file in `dir`, renamed over `path` only once complete, so a
/// crash never leaves half a model where a server would load it.
fn write_atomic(
    path: &Path,
    dir: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), OnnxError> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".clarity-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| OnnxError::io(path, e))?;
    write(tmp.as_file_mut()).map_err(|e| OnnxError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| OnnxError::io(path, e))?;
    #[cfg(unix)]
    {
        // Temp files are 0600; a model is read by whoever serves it.
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| OnnxError::io(path, e))?;
    }
    tmp.persist(path)
        .map_err(|e| OnnxError::io(path, e.error))?;
    Ok(())
}
