//! The tokenizer of a Hugging Face model folder: its `tokenizer.json`, or, for folders saved
//! by slow tokenizers (only `vocab.txt`, or `vocab.json` + `merges.txt`), the same pipeline
//! transformers' fast-tokenizer converter builds from them:
//!
//! - `vocab.txt`: BERT WordPiece (BertNormalizer with `do_lower_case`, `strip_accents`,
//!   `tokenize_chinese_chars` from `tokenizer_config.json`; `[CLS] A [SEP] B [SEP]`).
//! - `vocab.json` + `merges.txt`: RoBERTa byte-level BPE (`add_prefix_space`, `trim_offsets`
//!   from `tokenizer_config.json`; `<s> A </s></s> B </s>`).
//!
//! The caller saves the result as `tokenizer.json` so serving reads one file.

use crate::meta::TOKENIZER_FILE;
use crate::tokenize::{read_tokenizer, TokenizeError};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

/// BERT's vocabulary file.
pub const VOCAB_TXT: &str = "vocab.txt";
/// Byte-level BPE vocabulary.
pub const VOCAB_JSON: &str = "vocab.json";
/// Byte-level BPE merges.
pub const MERGES_TXT: &str = "merges.txt";
/// The slow tokenizer's settings.
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
/// Special tokens of the slow tokenizer.
pub const SPECIAL_TOKENS_MAP: &str = "special_tokens_map.json";

/// Whether `dir` holds tokenizer files [`folder_tokenizer`] can read.
pub fn has_tokenizer(dir: &Path) -> bool {
    dir.join(TOKENIZER_FILE).is_file()
        || dir.join(VOCAB_TXT).is_file()
        || (dir.join(VOCAB_JSON).is_file() && dir.join(MERGES_TXT).is_file())
}

/// The tokenizer of model folder `dir`: `tokenizer.json` if present, else one built from
/// `vocab.txt` or `vocab.json` + `merges.txt`.
pub fn folder_tokenizer(dir: &Path) -> Result<Tokenizer, TokenizeError> {
    let json = dir.join(TOKENIZER_FILE);
    if json.is_file() {
        return read_tokenizer(&json);
    }
    let settings = Settings::read(dir)?;
    let vocab_txt = dir.join(VOCAB_TXT);
    if vocab_txt.is_file() {
        return wordpiece(&vocab_txt, &settings);
    }
    let (vocab, merges) = (dir.join(VOCAB_JSON), dir.join(MERGES_TXT));
    if vocab.is_file() && merges.is_file() {
        return byte_level_bpe(&vocab, &merges, &settings);
    }
    Err(TokenizeError::Load {
        path: dir.to_path_buf(),
        message: format!(
            "no tokenizer: expected {TOKENIZER_FILE}, or {VOCAB_TXT} (BERT), or {VOCAB_JSON} + \
             {MERGES_TXT} (RoBERTa) in the folder"
        ),
    })
}

/// `tokenizer_config.json` merged over `special_tokens_map.json` (either may be absent).
struct Settings {
    values: serde_json::Map<String, Value>,
    origin: PathBuf,
}

impl Settings {
    fn read(dir: &Path) -> Result<Self, TokenizeError> {
        let mut values = serde_json::Map::new();
        for name in [SPECIAL_TOKENS_MAP, TOKENIZER_CONFIG] {
            let path = dir.join(name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let parsed: Value = serde_json::from_str(&text).map_err(|e| TokenizeError::Load {
                path: path.clone(),
                message: format!("not JSON: {e}"),
            })?;
            if let Value::Object(map) = parsed {
                values.extend(map);
            }
        }
        Ok(Self {
            values,
            origin: dir.join(TOKENIZER_CONFIG),
        })
    }

    fn flag(&self, key: &str, default: bool) -> bool {
        self.values
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// A special token: a string, or transformers' `{"content": ...}` form.
    fn token(&self, key: &str, default: &str) -> String {
        match self.values.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(o)) => o
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_string(),
            _ => default.to_string(),
        }
    }

    /// The id of special token `token`, which the vocabulary must have.
    fn id(&self, tokenizer: &Tokenizer, token: &str, vocab: &Path) -> Result<u32, TokenizeError> {
        tokenizer
            .token_to_id(token)
            .ok_or_else(|| TokenizeError::Load {
                path: vocab.to_path_buf(),
                message: format!(
                    "the vocabulary has no special token `{token}` (named in {} or its default)",
                    self.origin.display()
                ),
            })
    }
}

fn load_error(path: &Path) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> TokenizeError {
    let path = path.to_path_buf();
    move |e| TokenizeError::Load {
        path: path.clone(),
        message: e.to_string(),
    }
}

/// BertTokenizerFast as transformers converts it from `vocab.txt`.
fn wordpiece(vocab: &Path, settings: &Settings) -> Result<Tokenizer, TokenizeError> {
    let fail = load_error(vocab);
    let unk = settings.token("unk_token", "[UNK]");
    let model = WordPiece::from_file(&vocab.to_string_lossy())
        .unk_token(unk.clone())
        .continuing_subword_prefix("##".into())
        .max_input_chars_per_word(100)
        .build()
        .map_err(&fail)?;
    let mut tokenizer = Tokenizer::new(model);
    let lowercase = settings.flag("do_lower_case", true);
    // `strip_accents: null` (the default) follows lowercasing.
    let strip_accents = settings
        .values
        .get("strip_accents")
        .and_then(Value::as_bool);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(
            true,
            settings.flag("tokenize_chinese_chars", true),
            strip_accents,
            lowercase,
        )))
        .map_err(&fail)?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    let cls = settings.token("cls_token", "[CLS]");
    let sep = settings.token("sep_token", "[SEP]");
    let pad = settings.token("pad_token", "[PAD]");
    let mask = settings.token("mask_token", "[MASK]");
    let (cls_id, sep_id) = (
        settings.id(&tokenizer, &cls, vocab)?,
        settings.id(&tokenizer, &sep, vocab)?,
    );
    let template = TemplateProcessing::builder()
        .try_single(format!("{cls}:0 $A:0 {sep}:0"))
        .map_err(|e| fail(e.into()))?
        .try_pair(format!("{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1"))
        .map_err(|e| fail(e.into()))?
        .special_tokens(vec![(cls.clone(), cls_id), (sep.clone(), sep_id)])
        .build()
        .map_err(|e| fail(e.into()))?;
    tokenizer.with_post_processor(Some(template));
    let specials: Vec<AddedToken> = [pad, unk, cls, sep, mask]
        .into_iter()
        .filter(|t| tokenizer.token_to_id(t).is_some())
        .map(|t| AddedToken::from(t, true))
        .collect();
    tokenizer.add_special_tokens(specials).map_err(&fail)?;
    Ok(tokenizer)
}

/// RobertaTokenizerFast as transformers converts it from `vocab.json` + `merges.txt`.
fn byte_level_bpe(
    vocab: &Path,
    merges: &Path,
    settings: &Settings,
) -> Result<Tokenizer, TokenizeError> {
    let fail = load_error(vocab);
    let model = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .build()
        .map_err(&fail)?;
    let mut tokenizer = Tokenizer::new(model);
    let add_prefix_space = settings.flag("add_prefix_space", false);
    let trim_offsets = settings.flag("trim_offsets", true);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(add_prefix_space, trim_offsets, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let cls = settings.token("cls_token", "<s>");
    let sep = settings.token("sep_token", "</s>");
    let (cls_id, sep_id) = (
        settings.id(&tokenizer, &cls, vocab)?,
        settings.id(&tokenizer, &sep, vocab)?,
    );
    tokenizer.with_post_processor(Some(
        RobertaProcessing::new((sep.clone(), sep_id), (cls.clone(), cls_id))
            .trim_offsets(trim_offsets)
            .add_prefix_space(add_prefix_space),
    ));
    let mask = settings.token("mask_token", "<mask>");
    let mut specials: Vec<AddedToken> = [
        settings.token("bos_token", "<s>"),
        settings.token("pad_token", "<pad>"),
        settings.token("eos_token", "</s>"),
        settings.token("unk_token", "<unk>"),
        cls,
        sep,
    ]
    .into_iter()
    .filter(|t| tokenizer.token_to_id(t).is_some())
    .map(|t| AddedToken::from(t, true))
    .collect();
    // RoBERTa's mask token swallows the space before it.
    if tokenizer.token_to_id(&mask).is_some() {
        specials.push(AddedToken::from(mask, true).lstrip(true));
    }
    tokenizer.add_special_tokens(specials).map_err(&fail)?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn pair(tokenizer: &Tokenizer, a: &str, b: &str) -> (Vec<u32>, Vec<u32>) {
        let e = tokenizer.encode((a, b), true).unwrap();
        (e.get_ids().to_vec(), e.get_type_ids().to_vec())
    }

    const BERT_VOCAB: &[&str] = &[
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cafe", "is", "open", "?", "was",
        "##n", "'", "t", "it", ".", "play", "##ing",
    ];

    #[test]
    fn bert_wordpiece_from_vocab_txt_lowercases_strips_accents_and_pairs() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), VOCAB_TXT, &BERT_VOCAB.join("\n"));
        write(dir.path(), TOKENIZER_CONFIG, r#"{"do_lower_case": true}"#);
        let t = folder_tokenizer(dir.path()).unwrap();
        // "Café" -> "cafe" (lowercased, accent stripped); "Playing" -> play ##ing.
        let (ids, types) = pair(&t, "The Café is open?", "Playing wasn't it.");
        assert_eq!(
            ids,
            [2, 5, 6, 7, 8, 9, 3, 16, 17, 10, 11, 12, 13, 14, 15, 3]
        );
        assert_eq!(types, [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        // A word outside the vocabulary is [UNK]; [MASK] in the text stays one token.
        let (ids, _) = pair(&t, "zebra [MASK]", "the");
        assert_eq!(ids, [2, 1, 4, 3, 5, 3]);
    }

    #[test]
    fn bert_without_lower_case_keeps_case_and_accents() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            VOCAB_TXT,
            &[BERT_VOCAB, &["The", "Café"]].concat().join("\n"),
        );
        write(dir.path(), TOKENIZER_CONFIG, r#"{"do_lower_case": false}"#);
        let t = folder_tokenizer(dir.path()).unwrap();
        let (ids, _) = pair(&t, "The Café", "the");
        assert_eq!(ids, [2, 18, 19, 3, 5, 3]);
    }

    /// A byte-level vocabulary: `Ġ` is the space byte.
    const ROBERTA_VOCAB: &str = r#"{"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4,
        "i": 5, "s": 6, "t": 7, "Ġ": 8, "is": 9, "Ġis": 10, "Ġit": 11, "it": 12, "?": 13,
        "Ġt": 14, "Ġi": 15}"#;
    const ROBERTA_MERGES: &str = "#version: 0.2\nĠ i\nĠi s\ni s\nĠi t\ni t\n";

    #[test]
    fn roberta_bpe_from_vocab_and_merges_uses_double_separator() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), VOCAB_JSON, ROBERTA_VOCAB);
        write(dir.path(), MERGES_TXT, ROBERTA_MERGES);
        let t = folder_tokenizer(dir.path()).unwrap();
        // No prefix space: "it" is `it`, " is" is `Ġis`; <s> A </s></s> B </s>.
        let (ids, types) = pair(&t, "it is?", "is it");
        assert_eq!(ids, [0, 12, 10, 13, 2, 2, 9, 11, 2]);
        assert_eq!(types, [0; 9]);
    }

    #[test]
    fn roberta_add_prefix_space_from_tokenizer_config() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), VOCAB_JSON, ROBERTA_VOCAB);
        write(dir.path(), MERGES_TXT, ROBERTA_MERGES);
        write(
            dir.path(),
            TOKENIZER_CONFIG,
            r#"{"add_prefix_space": true}"#,
        );
        let t = folder_tokenizer(dir.path()).unwrap();
        let (ids, _) = pair(&t, "it", "is");
        assert_eq!(ids, [0, 11, 2, 2, 10, 2]);
    }

    #[test]
    fn context_question_order_puts_the_context_first() {
        use crate::tokenize::{PairOrder, PairTokenizer};
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), VOCAB_TXT, &BERT_VOCAB.join("\n"));
        let t = folder_tokenizer(dir.path()).unwrap();
        let pairs = [("is it open?", "the cafe")];
        let ours = PairTokenizer::new(t.clone(), 32).unwrap();
        assert_eq!(ours.order(), PairOrder::QuestionContext);
        let encoded = ours.encode_pairs(&pairs).unwrap();
        assert_eq!(encoded.input_ids, [2, 7, 14, 8, 9, 3, 5, 6, 3]);
        let original = ours.with_order(PairOrder::ContextQuestion);
        let encoded = original.encode_pairs(&pairs).unwrap();
        assert_eq!(encoded.input_ids, [2, 5, 6, 3, 7, 14, 8, 9, 3]);
        assert_eq!(encoded.token_type_ids, [0, 0, 0, 0, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn token_counts_measure_pairs_before_truncation() {
        use crate::tokenize::{EncodePairs, PairTokenizer};
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), VOCAB_TXT, &BERT_VOCAB.join("\n"));
        let t = folder_tokenizer(dir.path()).unwrap();
        let short = ("is it open?", "the cafe");
        let long = (
            "is it open?",
            "the cafe the cafe the cafe the cafe the cafe",
        );
        let ours = PairTokenizer::new(t, 9).unwrap();
        let encoded = ours.encode(&[short, long]).unwrap();
        // [CLS] 4 question tokens [SEP] context [SEP]: the long pair is cut to 9.
        assert_eq!((encoded.length(0), encoded.length(1)), (9, 9));
        assert_eq!(ours.token_counts(&[short, long]).unwrap(), [9, 17]);
    }

    #[test]
    fn tokenizer_json_wins_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = folder_tokenizer(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("vocab.txt") && err.contains("merges.txt"),
            "{err}"
        );
        assert!(!has_tokenizer(dir.path()));
        write(dir.path(), VOCAB_TXT, &BERT_VOCAB.join("\n"));
        let built = folder_tokenizer(dir.path()).unwrap();
        built.save(dir.path().join(TOKENIZER_FILE), false).unwrap();
        std::fs::remove_file(dir.path().join(VOCAB_TXT)).unwrap();
        let saved = folder_tokenizer(dir.path()).unwrap();
        assert_eq!(
            pair(&saved, "the cafe", "is"),
            pair(&built, "the cafe", "is")
        );
        // A vocabulary without the separator cannot pair.
        let bad = tempfile::tempdir().unwrap();
        write(bad.path(), VOCAB_TXT, "[UNK]\n[CLS]\nthe");
        let err = folder_tokenizer(bad.path()).unwrap_err().to_string();
        assert!(err.contains("[SEP]") && err.contains("vocab.txt"), "{err}");
    }
}
