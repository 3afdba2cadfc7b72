//! GGUF model files (llama.cpp's format): the config, the tokenizer and every tensor under
//! Hugging Face `transformers` names, so a GGUF base model loads like a `config.json` +
//! `model.safetensors` + `tokenizer.json` folder. Float tensors are read as f32; quantized
//! ones (Q8_0, Q4_K, ...) stay as they are in the file, and the model decides whether to
//! keep them so (`use_8bit`) or dequantize them one at a time as it is built.
//!
//! Reading uses candle's [`candle_core::quantized::gguf_file`]; q/k projections are
//! un-permuted ([`unpermute`], [`unpermute_rows`]) so the HF-style (`rotate_half`) rotary
//! applies, not llama.cpp's interleaved one.

pub mod tokenizer;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use serde_json::json;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// `general.architecture` values this reader maps to HF names.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

/// The GGML types candle 0.11 reads and dequantizes (its `GgmlDType`).
pub const DEQUANTIZABLE: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K";

/// A GGUF model in the shape of a Hugging Face model folder.
pub struct GgufModel {
    /// HF-style `config.json` equivalent: `model_type` ("llama"), `vocab_size`, `hidden_size`,
    /// `intermediate_size`, `num_hidden_layers`, `num_attention_heads`, `num_key_value_heads`,
    /// `head_dim`, `rms_norm_eps`, `rope_theta`, `max_position_embeddings`,
    /// `tie_word_embeddings` (true when there is no `output.weight`), `attention_bias`,
    /// `bos_token_id`, `eos_token_id`, `pad_token_id` (`tokenizer.ggml.padding_token_id`, else eos).
    pub config: serde_json::Value,
    /// The float tensors as f32 under HF names (`model.embed_tokens.weight`,
    /// `model.layers.{i}.self_attn.{q,k,v,o}_proj.weight`, `model.layers.{i}.mlp.{gate,up,down}_proj.weight`,
    /// `model.layers.{i}.{input,post_attention}_layernorm.weight`, `model.norm.weight`, and
    /// `lm_head.weight` when the file has `output.weight`); q/k in the HF (un-permuted) layout.
    pub tensors: HashMap<String, Tensor>,
    /// The quantized tensors as stored (on the CPU), under the same names and layout.
    pub quantized: HashMap<String, QTensor>,
    /// The tokenizer built from the metadata (see [`tokenizer::from_metadata`]).
    pub tokenizer: tokenizers::Tokenizer,
    /// The GGUF type each tensor was stored as (HF name -> e.g. `Q4_1`), for reporting.
    pub dtypes: HashMap<String, String>,
}

impl GgufModel {
    /// Every tensor in f32 on `device`, the quantized ones dequantized (for writing the
    /// model out as a transformers folder).
    pub fn into_f32_tensors(self, device: &Device) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut tensors = self.tensors;
        for (name, q) in self.quantized {
            tensors.insert(name, q.dequantize(device)?);
        }
        Ok(tensors)
    }
}

/// Why a GGUF file could not be read. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file cannot be opened.
    #[error("cannot open GGUF file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The header does not parse.
    #[error("{path} is not a readable GGUF file: {message}")]
    NotGguf {
        /// The file.
        path: PathBuf,
        /// What candle's reader said.
        message: String,
    },
    /// A tensor type candle does not know, so cannot dequantize.
    #[error("{path} holds a tensor of GGML type {dtype}, which candle cannot dequantize (it dequantizes {DEQUANTIZABLE}): re-quantize the model to one of those")]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The type's GGML name (or number).
        dtype: String,
    },
    /// `general.architecture` is not one we map.
    #[error("{path} is a `{found}` model (general.architecture); supported: {}", SUPPORTED_ARCHITECTURES.join(", "))]
    UnsupportedArchitecture {
        /// The file.
        path: PathBuf,
        /// Its architecture.
        found: String,
    },
    /// A required metadata key is absent.
    #[error("{path} has no metadata key `{key}`")]
    MissingMetadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A metadata value has the wrong type or an unusable value.
    #[error("{path}: metadata key `{key}` should be {expected}")]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The metadata and the tensors disagree.
    #[error("{path}: {message}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What disagrees.
        message: String,
    },
    /// A tensor every model of the architecture has is absent.
    #[error("{path} has no tensor `{tensor}` (needed for {hf_name})")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The GGUF tensor name.
        tensor: String,
        /// The HF name it maps to.
        hf_name: String,
    },
    /// A tensor this reader does not know how to map; ignoring it could change the model.
    #[error("{path} has tensor `{tensor}`, which has no Hugging Face llama counterpart here (known: token_embd, output_norm, output, blk.N.{{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down,attn_norm,ffn_norm}})")]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The GGUF tensor name.
        tensor: String,
    },
    /// A tensor's shape does not fit the config.
    #[error(
        "{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?} from the metadata"
    )]
    BadShape {
        /// The file.
        path: PathBuf,
        /// The GGUF tensor name.
        tensor: String,
        /// Shape from the config (rows first, as candle and HF order them).
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// Reading or converting one tensor failed.
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The GGUF tensor name.
        tensor: String,
        /// What candle said.
        message: String,
    },
    /// `tokenizer.ggml.model` is not byte-level BPE.
    #[error("{path} has a `{found}` tokenizer (tokenizer.ggml.model); only `gpt2` (byte-level BPE) is supported")]
    UnsupportedTokenizer {
        /// The file.
        path: PathBuf,
        /// Its tokenizer model.
        found: String,
    },
    /// `tokenizer.ggml.pre` names a split rule we do not reproduce.
    #[error("{path} has tokenizer.ggml.pre `{found}`; supported: {} (digits split) and {} (GPT-2 split)", tokenizer::DIGIT_SPLIT_PRE.join(", "), tokenizer::GPT2_SPLIT_PRE.join(", "))]
    UnsupportedPreTokenizer {
        /// The file.
        path: PathBuf,
        /// Its pre-tokenizer name.
        found: String,
    },
    /// The tokenizer metadata is unusable.
    #[error("{path}: cannot build the tokenizer: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Read the GGUF model at `path`: config, tokenizer, and every tensor dequantized to f32 on
/// `device` under HF names.
pub fn read_gguf(path: &Path, device: &Device) -> Result<GgufModel, GgufError> {
    let (mut reader, content) = open(path)?;
    let shape = ModelShape::from_content(&content, path)?;
    let tokenizer = tokenizer::from_metadata(&content.metadata, path)?;
    if tokenizer.get_vocab_size(true) > shape.vocab {
        return Err(GgufError::Inconsistent {
            path: path.to_path_buf(),
            message: format!(
                "the tokenizer has {} tokens but token_embd.weight only {} rows",
                tokenizer.get_vocab_size(true),
                shape.vocab
            ),
        });
    }

    let mapped = map_tensors(&content, &shape, path)?;
    let mut tensors = HashMap::with_capacity(mapped.len());
    let mut quantized = HashMap::with_capacity(mapped.len());
    let mut dtypes = HashMap::with_capacity(mapped.len());
    for (gguf_name, m) in mapped {
        let failed = |e: candle_core::Error| GgufError::Tensor {
            path: path.to_path_buf(),
            tensor: gguf_name.clone(),
            message: e.to_string(),
        };
        let q = content
            .tensor(&mut reader, &gguf_name, &Device::Cpu)
            .map_err(failed)?;
        dtypes.insert(m.hf_name.clone(), ggml_name(q.dtype()).to_string());
        if is_float(q.dtype()) {
            let mut w = q.dequantize(device).map_err(failed)?;
            if let Some(heads) = m.unpermute_heads {
                w = unpermute(&w, heads).map_err(failed)?;
            }
            tensors.insert(m.hf_name, w);
        } else {
            let q = match m.unpermute_heads {
                Some(heads) => unpermute_rows(&q, heads).map_err(failed)?,
                None => q,
            };
            quantized.insert(m.hf_name, q);
        }
    }
    Ok(GgufModel {
        config: shape.config(&content, path)?,
        tensors,
        quantized,
        tokenizer,
        dtypes,
    })
}

/// Only the tokenizer of the GGUF file at `path` (reads the header, no tensor data).
pub fn read_gguf_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer, GgufError> {
    let (_, content) = open(path)?;
    tokenizer::from_metadata(&content.metadata, path)
}

/// Undo llama.cpp's q/k permutation: GGUF stores each head's rows as interleaved pairs
/// (for `rope_i`); HF stores the two halves one after the other (for `rotate_half` rope).
/// `w` has `heads * head_dim` rows (a weight `[rows, in]` or a bias `[rows]`).
///
/// Inverse of convert_hf_to_gguf's `w.reshape(nh, 2, hd/2, in).swapaxes(1, 2)`.
pub fn unpermute(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (half, cols) = head_halves(w, heads)?;
    w.reshape((heads, half, 2, cols))?
        .transpose(1, 2)?
        .reshape(w.shape())
}

/// [`unpermute`] for a quantized weight: the permutation moves whole rows, and a row's
/// quantized blocks run along it, so the rows' bytes are moved as they are.
pub fn unpermute_rows(w: &QTensor, heads: usize) -> candle_core::Result<QTensor> {
    let dims = w.shape().dims().to_vec();
    let rows = dims.first().copied().unwrap_or(0);
    // Where each HF row comes from: the permutation applied to the row numbers themselves.
    let numbers =
        Tensor::arange(0u32, rows as u32, &Device::Cpu)?.to_dtype(candle_core::DType::F32)?;
    let sources = unpermute(&numbers, heads)?.to_vec1::<f32>()?;
    let data = w.data()?;
    let row_bytes = data.len() / rows.max(1);
    let mut moved = Vec::with_capacity(data.len());
    for source in sources {
        let start = source as usize * row_bytes;
        moved.extend_from_slice(&data[start..start + row_bytes]);
    }
    qtensor_from_ggml(w.dtype(), &moved, dims, &Device::Cpu)
}

/// Float types, read as f32 tensors; the rest are quantized blocks.
fn is_float(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

/// `(head_dim / 2, elements per row)` of a q/k weight or bias with `heads` heads.
fn head_halves(w: &Tensor, heads: usize) -> candle_core::Result<(usize, usize)> {
    let rows = w.dims().first().copied().unwrap_or(0);
    if heads == 0 || rows == 0 || rows % (2 * heads) != 0 {
        candle_core::bail!(
            "cannot split {rows} rows into {heads} heads of an even size (shape {:?})",
            w.dims()
        )
    }
    Ok((rows / heads / 2, w.elem_count() / rows))
}

/// Open `path` and parse its GGUF header.
fn open(path: &Path) -> Result<(BufReader<File>, Content), GgufError> {
    let file = File::open(path).map_err(|source| GgufError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|e| {
        let message = e.to_string();
        // candle rejects types it does not know while parsing the header, naming only the
        // number; say which type it is and that it cannot be dequantized.
        match unknown_dtype(&message) {
            Some(dtype) => GgufError::UnsupportedDtype {
                path: path.to_path_buf(),
                dtype,
            },
            None => GgufError::NotGguf {
                path: path.to_path_buf(),
                message,
            },
        }
    })?;
    Ok((reader, content))
}

/// The GGML name of the type in candle's "unknown dtype for tensor N" error, if it is one.
fn unknown_dtype(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("unknown dtype for tensor ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let number: u32 = digits.parse().ok()?;
    // ggml.h `enum ggml_type` values candle 0.11 does not read.
    let name = match number {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return Some(format!("#{number}")),
    };
    Some(format!("{name} (#{number})"))
}

/// The name llama.cpp gives a type (`Q4_K`, where candle's Debug says `Q4K`).
pub fn ggml_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

/// The sizes the metadata gives, checked against each other.
struct ModelShape {
    arch: String,
    layers: usize,
    hidden: usize,
    ffn: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
}

impl ModelShape {
    fn from_content(content: &Content, path: &Path) -> Result<Self, GgufError> {
        let md = &content.metadata;
        let arch = meta_string(md, path, "general.architecture")?.to_string();
        if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
            return Err(GgufError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                found: arch,
            });
        }
        let key = |k: &str| format!("{arch}.{k}");
        let size = |k: &str| meta_u32(md, path, &key(k)).map(|v| v as usize);
        let optional = |k: &str| md.contains_key(&key(k)).then(|| size(k)).transpose();
        let hidden = size("embedding_length")?;
        let heads = size("attention.head_count")?;
        let kv_heads = optional("attention.head_count_kv")?.unwrap_or(heads);
        let inconsistent = |message: String| GgufError::Inconsistent {
            path: path.to_path_buf(),
            message,
        };
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(inconsistent(format!(
                "{heads} attention heads cannot share {kv_heads} key/value heads"
            )));
        }
        let head_dim = match optional("attention.key_length")? {
            Some(d) => d,
            None if hidden % heads == 0 => hidden / heads,
            None => {
                return Err(inconsistent(format!(
                    "embedding_length {hidden} is not a multiple of {heads} heads"
                )))
            }
        };
        // Partial rotary (fewer rotated dims than the head) is not what HF llama does.
        if let Some(rot) = optional("rope.dimension_count")? {
            if rot != head_dim {
                return Err(inconsistent(format!(
                    "rope.dimension_count {rot} differs from the head size {head_dim} (partial rotary is not supported)"
                )));
            }
        }
        if head_dim % 2 != 0 {
            return Err(inconsistent(format!("head size {head_dim} is odd")));
        }
        // The embedding's rows are the vocabulary size HF's config means (it may exceed
        // the token list when padded).
        let vocab = content
            .tensor_infos
            .get("token_embd.weight")
            .map(|info| info.shape.dims().first().copied().unwrap_or(0))
            .ok_or_else(|| GgufError::MissingTensor {
                path: path.to_path_buf(),
                tensor: "token_embd.weight".into(),
                hf_name: "model.embed_tokens.weight".into(),
            })?;
        Ok(Self {
            layers: size("block_count")?,
            ffn: size("feed_forward_length")?,
            hidden,
            heads,
            kv_heads,
            head_dim,
            vocab,
            arch,
        })
    }

    /// The HF `config.json` equivalent.
    fn config(&self, content: &Content, path: &Path) -> Result<serde_json::Value, GgufError> {
        let md = &content.metadata;
        let has = |tensor: &str| content.tensor_infos.contains_key(tensor);
        let key = |k: &str| format!("{}.{k}", self.arch);
        let token = |k: &str| -> Result<Option<u32>, GgufError> {
            md.contains_key(k)
                .then(|| meta_u32(md, path, k))
                .transpose()
        };
        let eos = token("tokenizer.ggml.eos_token_id")?;
        let rope_theta = match md.contains_key(&key("rope.freq_base")) {
            true => meta_f64(md, path, &key("rope.freq_base"))?,
            false => 10000.0, // llama.cpp's and HF's default
        };
        let max_positions = match md.contains_key(&key("context_length")) {
            true => meta_u32(md, path, &key("context_length"))?,
            false => 2048,
        };
        Ok(json!({
            "model_type": self.arch,
            "architectures": ["LlamaForCausalLM"],
            "hidden_act": "silu",
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "intermediate_size": self.ffn,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": meta_f64(md, path, &key("attention.layer_norm_rms_epsilon"))?,
            "rope_theta": rope_theta,
            "max_position_embeddings": max_positions,
            "tie_word_embeddings": !has("output.weight"),
            "attention_bias": has("blk.0.attn_q.bias"),
            "bos_token_id": token("tokenizer.ggml.bos_token_id")?,
            "eos_token_id": eos,
            "pad_token_id": token("tokenizer.ggml.padding_token_id")?.or(eos),
        }))
    }
}

/// Where one GGUF tensor goes.
struct Mapped {
    hf_name: String,
    /// Heads to un-permute by (q: attention heads, k: key/value heads).
    unpermute_heads: Option<usize>,
}

/// Every tensor of the file with its HF name, after checking that none is missing, unknown
/// or misshapen. Sorted by GGUF name so errors and reading order are deterministic.
fn map_tensors(
    content: &Content,
    shape: &ModelShape,
    path: &Path,
) -> Result<Vec<(String, Mapped)>, GgufError> {
    let infos = &content.tensor_infos;
    let mut required = vec!["token_embd.weight".to_string(), "output_norm.weight".into()];
    for i in 0..shape.layers {
        for part in [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
            "attn_norm",
            "ffn_norm",
        ] {
            required.push(format!("blk.{i}.{part}.weight"));
        }
    }
    for name in &required {
        if !infos.contains_key(name) {
            return Err(GgufError::MissingTensor {
                path: path.to_path_buf(),
                tensor: name.clone(),
                hf_name: hf_layout(name, shape)
                    .map(|(m, _)| m.hf_name)
                    .unwrap_or_default(),
            });
        }
    }
    let mut names: Vec<&String> = infos.keys().collect();
    names.sort();
    let mut mapped = Vec::with_capacity(names.len());
    for name in names {
        let (m, expected) = hf_layout(name, shape).ok_or_else(|| GgufError::UnexpectedTensor {
            path: path.to_path_buf(),
            tensor: name.clone(),
        })?;
        let found = infos
            .get(name)
            .map(|info| info.shape.dims().to_vec())
            .unwrap_or_default();
        if found != expected {
            return Err(GgufError::BadShape {
                path: path.to_path_buf(),
                tensor: name.clone(),
                expected,
                found,
            });
        }
        mapped.push((name.clone(), m));
    }
    Ok(mapped)
}

/// The HF name and expected shape of GGUF tensor `name`, or None if it is not a llama one.
fn hf_layout(name: &str, s: &ModelShape) -> Option<(Mapped, Vec<usize>)> {
    let plain = |hf: &str, dims: Vec<usize>| {
        Some((
            Mapped {
                hf_name: hf.to_string(),
                unpermute_heads: None,
            },
            dims,
        ))
    };
    match name {
        "token_embd.weight" => return plain("model.embed_tokens.weight", vec![s.vocab, s.hidden]),
        "output_norm.weight" => return plain("model.norm.weight", vec![s.hidden]),
        "output.weight" => return plain("lm_head.weight", vec![s.vocab, s.hidden]),
        _ => {}
    }
    let (layer, part) = name.strip_prefix("blk.")?.split_once('.')?;
    let i: usize = layer.parse().ok()?;
    if i >= s.layers {
        return None;
    }
    let (q, kv) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let (hf, permute, dims) = match part {
        "attn_q.weight" => ("self_attn.q_proj.weight", Some(s.heads), vec![q, s.hidden]),
        "attn_k.weight" => (
            "self_attn.k_proj.weight",
            Some(s.kv_heads),
            vec![kv, s.hidden],
        ),
        "attn_v.weight" => ("self_attn.v_proj.weight", None, vec![kv, s.hidden]),
        "attn_output.weight" => ("self_attn.o_proj.weight", None, vec![s.hidden, q]),
        // Biases (attention_bias models): convert_hf_to_gguf permutes q/k biases too.
        "attn_q.bias" => ("self_attn.q_proj.bias", Some(s.heads), vec![q]),
        "attn_k.bias" => ("self_attn.k_proj.bias", Some(s.kv_heads), vec![kv]),
        "attn_v.bias" => ("self_attn.v_proj.bias", None, vec![kv]),
        "attn_output.bias" => ("self_attn.o_proj.bias", None, vec![s.hidden]),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", None, vec![s.ffn, s.hidden]),
        "ffn_up.weight" => ("mlp.up_proj.weight", None, vec![s.ffn, s.hidden]),
        "ffn_down.weight" => ("mlp.down_proj.weight", None, vec![s.hidden, s.ffn]),
        "attn_norm.weight" => ("input_layernorm.weight", None, vec![s.hidden]),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", None, vec![s.hidden]),
        _ => return None,
    };
    Some((
        Mapped {
            hf_name: format!("model.layers.{i}.{hf}"),
            unpermute_heads: permute,
        },
        dims,
    ))
}

/// Metadata value `key`, or [`GgufError::MissingMetadata`].
fn meta<'a>(
    md: &'a HashMap<String, Value>,
    path: &Path,
    key: &str,
) -> Result<&'a Value, GgufError> {
    md.get(key).ok_or_else(|| GgufError::MissingMetadata {
        path: path.to_path_buf(),
        key: key.to_string(),
    })
}

fn bad(path: &Path, key: &str, expected: &'static str) -> GgufError {
    GgufError::BadMetadata {
        path: path.to_path_buf(),
        key: key.to_string(),
        expected,
    }
}

/// Any integer value, widened (GGUF writers differ in the integer type they use).
fn as_i64(v: &Value) -> Option<i64> {
    match *v {
        Value::U8(x) => Some(x.into()),
        Value::I8(x) => Some(x.into()),
        Value::U16(x) => Some(x.into()),
        Value::I16(x) => Some(x.into()),
        Value::U32(x) => Some(x.into()),
        Value::I32(x) => Some(x.into()),
        Value::U64(x) => i64::try_from(x).ok(),
        Value::I64(x) => Some(x),
        _ => None,
    }
}

fn meta_u32(md: &HashMap<String, Value>, path: &Path, key: &str) -> Result<u32, GgufError> {
    as_i64(meta(md, path, key)?)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| bad(path, key, "a non-negative integer below 2^32"))
}

/// A float value; f32 is read back through its shortest decimal form so `1e-5` stays `1e-5`
/// (not 9.99999974e-6) in the config.
fn meta_f64(md: &HashMap<String, Value>, path: &Path, key: &str) -> Result<f64, GgufError> {
    match *meta(md, path, key)? {
        Value::F32(v) => v
            .to_string()
            .parse()
            .map_err(|_| bad(path, key, "a finite number")),
        Value::F64(v) => Ok(v),
        _ => Err(bad(path, key, "a float")),
    }
}

fn meta_string<'a>(
    md: &'a HashMap<String, Value>,
    path: &Path,
    key: &str,
) -> Result<&'a str, GgufError> {
    match meta(md, path, key)? {
        Value::String(s) => Ok(s),
        _ => Err(bad(path, key, "a string")),
    }
}

fn meta_array<'a>(
    md: &'a HashMap<String, Value>,
    path: &Path,
    key: &str,
) -> Result<&'a [Value], GgufError> {
    match meta(md, path, key)? {
        Value::Array(values) => Ok(values),
        _ => Err(bad(path, key, "an array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// convert_hf_to_gguf's `permute`: `w.reshape(nh, 2, hd/2, in).swapaxes(1, 2)`.
    fn permute(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
        let (half, cols) = head_halves(w, heads)?;
        w.reshape((heads, 2, half, cols))?
            .transpose(1, 2)?
            .reshape(w.shape())
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn unpermute_inverts_the_llama_cpp_permutation() {
        let (heads, head_dim, cols) = (3, 8, 5);
        let w = Tensor::arange(0f32, (heads * head_dim * cols) as f32, &Device::Cpu)
            .unwrap()
            .reshape((heads * head_dim, cols))
            .unwrap();
        let permuted = permute(&w, heads).unwrap();
        assert!(
            max_diff(&permuted, &w) > 0.0,
            "the permutation moved nothing"
        );
        assert_eq!(max_diff(&unpermute(&permuted, heads).unwrap(), &w), 0.0);
        assert_eq!(
            max_diff(&permute(&unpermute(&w, heads).unwrap(), heads).unwrap(), &w),
            0.0
        );

        // One head of 4 rows: GGUF pairs (x0, x2), (x1, x3); HF has halves (x0, x1), (x2, x3).
        let rows = Tensor::new(&[0f32, 1., 2., 3.], &Device::Cpu).unwrap();
        let hf = unpermute(&rows, 1).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(hf, vec![0., 2., 1., 3.]);
        // Biases (1-D) keep their shape.
        let bias = Tensor::arange(0f32, 24., &Device::Cpu).unwrap();
        assert_eq!(unpermute(&bias, 3).unwrap().dims(), &[24]);
        assert!(unpermute(&bias, 5).is_err(), "24 rows are not 5 even heads");
    }

    /// Quantized q/k rows move as bytes: the same rows as un-permuting the dequantized
    /// weight, bit for bit (Q8_0 blocks run along rows, 32 wide).
    #[test]
    fn quantized_rows_unpermute_like_the_dequantized_weight() {
        let (heads, head_dim, cols) = (3, 8, 64);
        let w = crate::tiny::uniform((heads * head_dim, cols), -1., 1., 4).unwrap();
        let stored = QTensor::quantize(&permute(&w, heads).unwrap(), GgmlDType::Q8_0).unwrap();
        let moved = unpermute_rows(&stored, heads).unwrap();
        assert_eq!(moved.dtype(), GgmlDType::Q8_0);
        let got = moved.dequantize(&Device::Cpu).unwrap();
        let want = unpermute(&stored.dequantize(&Device::Cpu).unwrap(), heads).unwrap();
        assert_eq!(max_diff(&got, &want), 0.0);
        assert!(max_diff(&got, &w) < 0.02, "the Q8_0 rounding only");
        assert!(
            unpermute_rows(&stored, 5).is_err(),
            "24 rows are not 5 even heads"
        );
    }

    #[test]
    fn unpermuted_weights_with_hf_rope_give_the_scores_of_gguf_weights_with_rope_i() {
        use candle_nn::rotary_emb::{rope, rope_i};
        let dev = Device::Cpu;
        let (heads, head_dim, hidden, seq) = (2, 8, 6, 5);
        let x = crate::tiny::uniform((1, seq, hidden), 0., 1., 1).unwrap();
        let wq_gguf = crate::tiny::uniform((heads * head_dim, hidden), 0., 1., 2).unwrap();
        let wk_gguf = crate::tiny::uniform((heads * head_dim, hidden), 0., 1., 3).unwrap();
        let theta: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1. / 10000f32.powf(2. * i as f32 / head_dim as f32))
            .collect();
        let pos = Tensor::arange(0f32, seq as f32, &dev)
            .unwrap()
            .reshape((seq, 1))
            .unwrap();
        let freqs = pos
            .broadcast_mul(
                &Tensor::new(theta.as_slice(), &dev)
                    .unwrap()
                    .reshape((1, head_dim / 2))
                    .unwrap(),
            )
            .unwrap();
        let (cos, sin) = (freqs.cos().unwrap(), freqs.sin().unwrap());
        let heads_of = |w: &Tensor| {
            x.broadcast_matmul(&w.t().unwrap())
                .unwrap()
                .reshape((1, seq, heads, head_dim))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let scores = |q: Tensor, k: Tensor| q.matmul(&k.t().unwrap()).unwrap();
        let gguf = scores(
            rope_i(&heads_of(&wq_gguf), &cos, &sin).unwrap(),
            rope_i(&heads_of(&wk_gguf), &cos, &sin).unwrap(),
        );
        let hf = scores(
            rope(&heads_of(&unpermute(&wq_gguf, heads).unwrap()), &cos, &sin).unwrap(),
            rope(&heads_of(&unpermute(&wk_gguf, heads).unwrap()), &cos, &sin).unwrap(),
        );
        // Relative to the scores' scale: the same sums in another order round differently
        // (more so on larger scores), while a wrong layout is off by O(1) of it.
        let scale = max_diff(&gguf, &gguf.zeros_like().unwrap());
        let error = max_diff(&gguf, &hf) / scale;
        assert!(error < 1e-5, "{error} of the largest score");
        // Mixing the layouts is wrong, which is why the un-permute matters.
        let mixed = scores(
            rope(&heads_of(&wq_gguf), &cos, &sin).unwrap(),
            rope(&heads_of(&wk_gguf), &cos, &sin).unwrap(),
        );
        let error = max_diff(&gguf, &mixed) / scale;
        assert!(error > 1e-2, "mixed layouts only {error} off");
    }

    #[test]
    fn unknown_dtype_errors_are_named() {
        assert_eq!(
            unknown_dtype("unknown dtype for tensor 20").as_deref(),
            Some("IQ4_NL (#20)")
        );
        assert_eq!(
            unknown_dtype("unknown dtype for tensor 99").as_deref(),
            Some("#99")
        );
        assert_eq!(unknown_dtype("unknown magic 0x1234"), None);
    }
}
