//! Filling the model's variables: from a pretrained checkpoint, or at random.
//!
//! A body tensor that is missing or has the wrong shape is an error naming the file: a
//! silently random layer would train into a useless model. Only the classification head
//! (and BERT's pooler) may be new; each new tensor is reported so the caller can log it.

use crate::arch::Arch;
use crate::names;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use clarity_sdk::durable;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Standard deviation of newly initialised weights (BERT's `initializer_range`).
const INIT_STD: f32 = 0.02;

/// Why weights could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// No weight file in the folder.
    #[error("no weights in {dir}: expected model.safetensors (or model-*.safetensors shards, or pytorch_model.bin)")]
    NoFile {
        /// The folder searched.
        dir: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read weights {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write weights {path}: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong, and the fix when it is the disk's or the limits'.
        message: String,
    },
    /// A tensor the architecture needs is not in the file.
    #[error("{path}: missing weight tensor `{name}` (shape {shape:?}) that a {model_type} model needs; is config.json from the same model?")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Its expected shape.
        shape: Vec<usize>,
        /// `model_type`.
        model_type: String,
    },
    /// A tensor has another shape than config.json implies.
    #[error(
        "{path}: weight tensor `{name}` has shape {found:?}, config.json implies {expected:?}"
    )]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// In the file.
        found: Vec<usize>,
        /// From the config.
        expected: Vec<usize>,
    },
    /// A tensor operation failed.
    #[error("weights: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Variables ready for [`crate::model::EncoderModel::from_varmap`].
pub struct Filled {
    /// All parameters.
    pub varmap: VarMap,
    /// Names of the tensors that were initialised here rather than loaded.
    pub initialised: Vec<String>,
    /// The file(s) read.
    pub files: Vec<PathBuf>,
}

/// The weight files of a model folder.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, WeightsError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| WeightsError::Read {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("model-") && n.ends_with(".safetensors"))
        })
        .collect();
    shards.sort();
    if !shards.is_empty() {
        return Ok(shards);
    }
    let pickle = dir.join("pytorch_model.bin");
    if pickle.is_file() {
        return Ok(vec![pickle]);
    }
    Err(WeightsError::NoFile {
        dir: dir.to_path_buf(),
    })
}

fn read_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>, WeightsError> {
    let read_err = |e: candle_core::Error| WeightsError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if path.extension().is_some_and(|e| e == "bin") {
        let tensors = candle_core::pickle::read_all(path).map_err(read_err)?;
        return tensors
            .into_iter()
            .map(|(name, t)| Ok((name, t.to_device(device)?)))
            .collect();
    }
    candle_core::safetensors::load(path, device).map_err(read_err)
}

/// Old BERT checkpoints call LayerNorm's parameters gamma and beta.
fn legacy_name(name: &str) -> Option<String> {
    if let Some(base) = name.strip_suffix("LayerNorm.weight") {
        return Some(format!("{base}LayerNorm.gamma"));
    }
    name.strip_suffix("LayerNorm.bias")
        .map(|base| format!("{base}LayerNorm.beta"))
}

/// Load the body (and the head, when the file has one of the right shape) from `dir`.
pub fn load_pretrained(
    arch: &Arch,
    num_labels: usize,
    dir: &Path,
    device: &Device,
    seed: u64,
) -> Result<Filled, WeightsError> {
    load_pretrained_with(arch, num_labels, dir, device, seed, true)
}

/// [`load_pretrained`], with the file's head ignored (started fresh) unless `keep_head`:
/// a head trained for other labels, or the same labels in another order, must not be reused.
pub fn load_pretrained_with(
    arch: &Arch,
    num_labels: usize,
    dir: &Path,
    device: &Device,
    seed: u64,
    keep_head: bool,
) -> Result<Filled, WeightsError> {
    let files = weight_files(dir)?;
    let mut tensors = HashMap::new();
    for file in &files {
        tensors.extend(read_tensors(file, device)?);
    }
    let origin = files.first().cloned().unwrap_or_else(|| dir.to_path_buf());
    let prefix = names::base_prefix(arch.family);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let varmap = VarMap::new();
    let mut initialised = Vec::new();
    for (name, shape, is_head) in names::parameters(arch, num_labels) {
        // A base model's file has no `bert.`-style prefix; a fine-tuned one has it.
        let candidates = [
            Some(name.clone()),
            name.strip_prefix(prefix).map(str::to_string),
            legacy_name(&name),
            name.strip_prefix(prefix).and_then(legacy_name),
        ];
        let found = candidates
            .iter()
            .flatten()
            .find_map(|c| tensors.get(c))
            .filter(|_| keep_head || !is_head);
        let tensor = match found {
            Some(t) if t.dims() == shape.as_slice() => t.to_dtype(DType::F32)?,
            Some(t) if !is_head => {
                return Err(WeightsError::Shape {
                    path: origin,
                    name,
                    found: t.dims().to_vec(),
                    expected: shape,
                })
            }
            None if !is_head => {
                return Err(WeightsError::Missing {
                    path: origin,
                    name,
                    shape,
                    model_type: arch.model_type.clone(),
                })
            }
            // A head that is absent, or sized for other labels, starts fresh.
            _ => {
                initialised.push(name.clone());
                init_tensor(&name, &shape, &mut rng, device)?
            }
        };
        insert(&varmap, &name, tensor)?;
    }
    Ok(Filled {
        varmap,
        initialised,
        files,
    })
}

/// Names and shapes of the tensors in `files`, read from their headers (no tensor data).
pub fn tensor_shapes(files: &[PathBuf]) -> Result<HashMap<String, Vec<usize>>, WeightsError> {
    let mut shapes = HashMap::new();
    for path in files {
        let read_err = |message: String| WeightsError::Read {
            path: path.clone(),
            message,
        };
        if path.extension().is_some_and(|e| e == "bin") {
            let infos = candle_core::pickle::read_pth_tensor_info(path, false, None)
                .map_err(|e| read_err(e.to_string()))?;
            for info in infos {
                shapes.insert(info.name, info.layout.shape().dims().to_vec());
            }
        } else {
            shapes.extend(safetensors_shapes(path).map_err(read_err)?);
        }
    }
    Ok(shapes)
}

/// The JSON header of a safetensors file: 8 bytes of little-endian length, then the JSON.
fn safetensors_shapes(path: &Path) -> Result<HashMap<String, Vec<usize>>, String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| e.to_string())?;
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    if len as u64 > size {
        return Err(format!("header length {len} exceeds the file size {size}"));
    }
    let mut header = vec![0u8; len];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| format!("bad header: {e}"))?;
    Ok(header
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .filter_map(|(name, entry)| {
            let shape = entry.get("shape")?.as_array()?;
            let dims = shape
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<Vec<_>>>()?;
            Some((name, dims))
        })
        .collect())
}

/// Every parameter at random (BERT's init): for tests and for training from scratch.
pub fn random(
    arch: &Arch,
    num_labels: usize,
    device: &Device,
    seed: u64,
) -> Result<Filled, WeightsError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let varmap = VarMap::new();
    let mut initialised = Vec::new();
    for (name, shape, _) in names::parameters(arch, num_labels) {
        insert(
            &varmap,
            &name,
            init_tensor(&name, &shape, &mut rng, device)?,
        )?;
        initialised.push(name);
    }
    Ok(Filled {
        varmap,
        initialised,
        files: Vec::new(),
    })
}

fn insert(varmap: &VarMap, name: &str, tensor: Tensor) -> Result<(), WeightsError> {
    let var = Var::from_tensor(&tensor)?;
    varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?
        .insert(name.to_string(), var);
    Ok(())
}

/// Biases 0, norm scales 1, everything else N(0, 0.02), from a seeded generator.
fn init_tensor(
    name: &str,
    shape: &[usize],
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Tensor, WeightsError> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = if name.ends_with(".bias") {
        vec![0.0; n]
    } else if names::is_norm(name) {
        vec![1.0; n]
    } else {
        (0..n).map(|_| normal(rng) * INIT_STD).collect()
    };
    Ok(Tensor::from_vec(values, shape, device)?)
}

/// A standard normal sample (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Save every variable to `path` (names as transformers spells them), via a temp file that
/// is flushed to disk before it is renamed into place.
pub fn save(varmap: &VarMap, path: &Path) -> Result<(), WeightsError> {
    let tmp = path.with_extension("safetensors.tmp");
    let write_err = |e: &(dyn std::error::Error + 'static)| WeightsError::Write {
        path: path.to_path_buf(),
        message: durable::explain_chain(e),
    };
    let written = varmap
        .save(&tmp)
        .map_err(|e| write_err(&e))
        .and_then(|()| durable::sync_file(&tmp).map_err(|e| write_err(&e)));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| write_err(&e))
}
