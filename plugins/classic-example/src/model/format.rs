//! The model file format (magic, version, checksum, `postcard` payload; see the module docs
//! of [`crate::model`]) and crash-safe saving and loading.

use std::io::Write;
use std::path::Path;

use super::{ClassicModel, ModelError, ModelStateV2};

pub(super) const MAGIC: &[u8; 8] = b"CLRTYCLS";
const FORMAT_VERSION: u32 = 3;
/// Version 2 (no relevance features) is still read.
const FORMAT_VERSION_V2: u32 = 2;
const HEADER_LEN: usize = MAGIC.len() + 4 + 8;

impl ClassicModel {
    /// Encodes the model in the file format described in the [`crate::model`] docs.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let payload = postcard::to_stdvec(self).map_err(|e| ModelError::Encode(e.to_string()))?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&fnv1a(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        Ok(bytes)
    }

    /// Decodes a model written by [`Self::to_bytes`], checking its integrity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let corrupt = |msg: &str| ModelError::Corrupt(msg.to_string());
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not a Clarity classic model (bad magic)"));
        }
        let (version, rest) = split_u32(&bytes[MAGIC.len()..]);
        if version != FORMAT_VERSION && version != FORMAT_VERSION_V2 {
            return Err(ModelError::Corrupt(format!(
                "unsupported format version {version} (this build reads versions \
                 {FORMAT_VERSION_V2} and {FORMAT_VERSION}): retrain the model"
            )));
        }
        let (checksum, payload) = split_u64(rest);
        if checksum != fnv1a(payload) {
            return Err(corrupt("checksum mismatch (truncated or damaged file)"));
        }
        if version == FORMAT_VERSION_V2 {
            let state: ModelStateV2 = decode_all(payload)?;
            return ClassicModel::try_from(state).map_err(ModelError::Corrupt);
        }
        decode_all(payload)
    }

    /// Writes the model to `path` atomically: a temporary file in the same directory is
    /// written, synced and renamed over `path`, so a crash never leaves a partial file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        write_atomically(path, &bytes).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a model written by [`Self::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }
}

/// Decodes a whole payload, rejecting trailing bytes.
fn decode_all<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, ModelError> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Ok(value),
        Ok(_) => Err(ModelError::Corrupt("trailing bytes after the model".into())),
        Err(e) => Err(ModelError::Corrupt(e.to_string())),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".clarity-model-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Splits a little-endian u32 off the front (the caller has checked the length).
fn split_u32(bytes: &[u8]) -> (u32, &[u8]) {
    let (head, rest) = bytes.split_at(4);
    let mut word = [0u8; 4];
    word.copy_from_slice(head);
    (u32::from_le_bytes(word), rest)
}

/// Splits a little-endian u64 off the front (the caller has checked the length).
fn split_u64(bytes: &[u8]) -> (u64, &[u8]) {
    let (head, rest) = bytes.split_at(8);
    let mut word = [0u8; 8];
    word.copy_from_slice(head);
    (u64::from_le_bytes(word), rest)
}

/// 64-bit FNV-1a: enough to catch truncation and bit rot, not an integrity signature.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}
