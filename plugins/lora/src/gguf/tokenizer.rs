//! The tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata, rebuilt as the
//! Hugging Face `tokenizer.json` of the original model would be.

use super::{meta_array, meta_string, meta_u32, GgufError};
use candle_core::quantized::gguf_file::Value;
use std::collections::HashMap;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

/// `tokenizer.ggml.pre` values whose split is llama.cpp's `\p{N}` + GPT-2 regex, i.e.
/// `Digits(individual_digits)` then `ByteLevel` (llama.cpp `llama-vocab.cpp` groups them).
pub const DIGIT_SPLIT_PRE: &[&str] = &[
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
    "minerva-7b",
];

/// `tokenizer.ggml.pre` values split by the plain GPT-2 regex (`ByteLevel` alone).
pub const GPT2_SPLIT_PRE: &[&str] = &["gpt-2", "mpt", "olmo", "jais"];

/// llama.cpp token types (`llama_token_attr`/`LLAMA_TOKEN_TYPE_*`).
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// Build the byte-level BPE tokenizer of a GGUF file's metadata. No BOS is added (SmolLM2's
/// `add_bos_token` is false; the other engineers' prompt code adds what the model wants).
pub fn from_metadata(
    metadata: &HashMap<String, Value>,
    path: &Path,
) -> Result<Tokenizer, GgufError> {
    let model = meta_string(metadata, path, "tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(GgufError::UnsupportedTokenizer {
            path: path.to_path_buf(),
            found: model.to_string(),
        });
    }
    // The split rule is not in the vocabulary: guessing it would give wrong ids silently.
    let pre = match metadata.get("tokenizer.ggml.pre") {
        Some(Value::String(pre)) => pre.as_str(),
        _ => "(missing)",
    };
    let byte_level = ByteLevel::new(false, true, true);
    let pre_tokenizer: PreTokenizerWrapper = if DIGIT_SPLIT_PRE.contains(&pre) {
        Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
    } else if GPT2_SPLIT_PRE.contains(&pre) {
        byte_level.into()
    } else {
        return Err(GgufError::UnsupportedPreTokenizer {
            path: path.to_path_buf(),
            found: pre.to_string(),
        });
    };

    let tokens = strings(metadata, path, "tokenizer.ggml.tokens")?;
    let merges = strings(metadata, path, "tokenizer.ggml.merges")?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.to_string(), id as u32))
        .collect();
    let merges = merges
        .iter()
        .map(|merge| {
            // Tokens never hold a space (it is spelled `Ġ`), so the first one separates the pair.
            merge
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| GgufError::Tokenizer {
                    path: path.to_path_buf(),
                    message: format!("merge `{merge}` is not two tokens separated by a space"),
                })
        })
        .collect::<Result<Merges, _>>()?;
    // No unk token, as in the model's tokenizer.json: bytes missing from the vocabulary are
    // dropped, not mapped to `<|endoftext|>`.
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| GgufError::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_post_processor(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let (special, user) = added_tokens(metadata, path, &tokens)?;
    let added = |e: tokenizers::Error| GgufError::Tokenizer {
        path: path.to_path_buf(),
        message: format!("cannot add the special tokens: {e}"),
    };
    tokenizer
        .add_special_tokens(special.into_iter().map(|t| AddedToken::from(t, true)))
        .map_err(added)?;
    // Matched whole in the text, like llama.cpp does, but kept on decode.
    tokenizer
        .add_tokens(
            user.into_iter()
                .map(|t| AddedToken::from(t, false).normalized(false)),
        )
        .map_err(added)?;
    Ok(tokenizer)
}

/// The tokens to add as special (CONTROL) and as plain added tokens (USER_DEFINED). Without
/// `token_type`, the bos/eos/unk/padding tokens are the special ones.
fn added_tokens(
    metadata: &HashMap<String, Value>,
    path: &Path,
    tokens: &[&str],
) -> Result<(Vec<String>, Vec<String>), GgufError> {
    let mut special = Vec::new();
    let mut user = Vec::new();
    if metadata.contains_key("tokenizer.ggml.token_type") {
        let types = meta_array(metadata, path, "tokenizer.ggml.token_type")?;
        if types.len() != tokens.len() {
            return Err(GgufError::Tokenizer {
                path: path.to_path_buf(),
                message: format!(
                    "tokenizer.ggml.token_type has {} entries for {} tokens",
                    types.len(),
                    tokens.len()
                ),
            });
        }
        for (token, kind) in tokens.iter().zip(types) {
            match super::as_i64(kind) {
                Some(CONTROL) => special.push(token.to_string()),
                Some(USER_DEFINED) => user.push(token.to_string()),
                Some(_) => {}
                None => {
                    return Err(GgufError::BadMetadata {
                        path: path.to_path_buf(),
                        key: "tokenizer.ggml.token_type".into(),
                        expected: "an array of integers",
                    })
                }
            }
        }
    } else {
        for key in [
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.unknown_token_id",
            "tokenizer.ggml.padding_token_id",
        ] {
            if !metadata.contains_key(key) {
                continue;
            }
            let id = meta_u32(metadata, path, key)? as usize;
            let token = tokens.get(id).ok_or_else(|| GgufError::Tokenizer {
                path: path.to_path_buf(),
                message: format!("{key} = {id} is past the {} tokens", tokens.len()),
            })?;
            if !special.iter().any(|s| s == token) {
                special.push(token.to_string());
            }
        }
    }
    Ok((special, user))
}

/// A string-array metadata value.
fn strings<'a>(
    metadata: &'a HashMap<String, Value>,
    path: &Path,
    key: &str,
) -> Result<Vec<&'a str>, GgufError> {
    meta_array(metadata, path, key)?
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.as_str()),
            _ => Err(GgufError::BadMetadata {
                path: path.to_path_buf(),
                key: key.to_string(),
                expected: "an array of strings",
            }),
        })
        .collect()
}
