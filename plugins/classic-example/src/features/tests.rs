//! Unit tests of the vectorizer, the tokeniser, the blocks and the thread helpers.

use super::tokenize::Tokens;
use super::*;

fn tokens(text: &str) -> Vec<String> {
    let mut t = Tokens::default();
    t.fill(text);
    (0..t.spans.len()).map(|i| t.token(i).to_string()).collect()
}

fn keys_of(cfg: &VectorizerConfig, question: &str, context: &str) -> Vec<u64> {
    let mut scratch = Scratch::default();
    scratch.pair_keys(cfg, question, context);
    scratch.keys.clone()
}

const ALL_BLOCKS: BlockWeights = BlockWeights {
    question: 1.0,
    prompt: 1.0,
    answer: 1.0,
};

fn words_only(range: [usize; 2]) -> VectorizerConfig {
    VectorizerConfig {
        word_ngrams: range,
        char_ngrams: [0, 0],
        min_df: 1,
        block_weights: ALL_BLOCKS,
        ..Default::default()
    }
}

fn chars_only(range: [usize; 2]) -> VectorizerConfig {
    VectorizerConfig {
        word_ngrams: [0, 0],
        char_ngrams: range,
        min_df: 1,
        block_weights: ALL_BLOCKS,
        ..Default::default()
    }
}

#[test]
fn tokenizer_lowercases_and_keeps_inner_apostrophes() {
    assert_eq!(
        tokens("Don't STOP—now, 'quoted' Ünïcode 42x"),
        ["don't", "stop", "now", "quoted", "ünïcode", "42x"]
    );
    assert_eq!(tokens("It’s fine"), ["it's", "fine"]);
    assert!(tokens("  ... !!! ").is_empty());
}

#[test]
fn word_ngram_counts() {
    // 4 tokens: 4 unigrams + 3 bigrams + 2 trigrams.
    assert_eq!(keys_of(&words_only([1, 3]), "a b c d", "").len(), 9);
    assert_eq!(keys_of(&words_only([2, 2]), "a b c d", "").len(), 3);
    assert_eq!(keys_of(&words_only([1, 2]), "", "").len(), 0);
}

#[test]
fn char_wb_ngrams_match_scikit_learn() {
    // " ab " has 4 chars: 3 bigrams, 2 trigrams, 1 four-gram; n=5 is skipped as too long.
    assert_eq!(keys_of(&chars_only([2, 5]), "ab", "").len(), 6);
    // " a " (3 chars) yields itself once for n >= 3.
    assert_eq!(keys_of(&chars_only([3, 5]), "a", "").len(), 1);
    // Multi-byte characters count as one.
    assert_eq!(keys_of(&chars_only([2, 2]), "éé", "").len(), 3);
}

#[test]
fn question_and_context_use_separate_namespaces() {
    let cfg = words_only([1, 1]);
    let q = keys_of(&cfg, "hello", "");
    let c = keys_of(&cfg, "", "hello");
    assert_eq!(q.len(), 1);
    assert_ne!(q, c);
    assert_eq!(block_of(q[0]), 0);
    assert_eq!(block_of(c[0]), 4); // no marker: the whole context is the answer
}

#[test]
fn context_splits_at_the_first_answer_marker() {
    let marker = "\nA:";
    assert_eq!(
        split_context("Q: why?\nA: because", marker),
        ("Q: why?", " because")
    );
    assert_eq!(
        split_context("Q: a\nA: b\nA: c", marker),
        ("Q: a", " b\nA: c")
    );
    assert_eq!(
        split_context("no marker here", marker),
        ("", "no marker here")
    );
    assert_eq!(split_context("Q: x\nA: y", ""), ("", "Q: x\nA: y"));
}

#[test]
fn blocks_have_their_own_namespaces_and_weights() {
    let blocks = |cfg: &VectorizerConfig, q: &str, c: &str| {
        let mut b: Vec<usize> = keys_of(cfg, q, c).into_iter().map(block_of).collect();
        b.dedup();
        b
    };
    let cfg = words_only([1, 1]);
    // Question words, prompt words ("q", "hi"), answer words: blocks 0, 2 and 4.
    assert_eq!(blocks(&cfg, "hi", "Q: hi\nA: hi"), [0, 2, 4]);
    let same_word = keys_of(&cfg, "", "Q: hi\nA: hi");
    assert_eq!(same_word.len(), 3);
    assert_ne!(
        same_word[1], same_word[2],
        "prompt and answer `hi` must differ"
    );
    // A zero weight drops its block; an empty marker keeps the context whole.
    let answer_only = VectorizerConfig {
        block_weights: BlockWeights {
            question: 0.0,
            prompt: 0.0,
            answer: 1.0,
        },
        ..cfg.clone()
    };
    assert_eq!(blocks(&answer_only, "hi", "Q: hi\nA: hi"), [4]);
    let unsplit = VectorizerConfig {
        answer_marker: String::new(),
        ..answer_only.clone()
    };
    assert_eq!(keys_of(&unsplit, "", "Q: hi\nA: hi").len(), 4);
    let prompt_only = BlockWeights {
        prompt: 1.0,
        answer: 0.0,
        ..answer_only.block_weights
    };
    assert!(VectorizerConfig {
        block_weights: prompt_only,
        ..unsplit.clone()
    }
    .validate()
    .is_err());
    let v = TfidfVectorizer::fit(&answer_only, &[("x", "Q: a b\nA: c")], 1).expect("fit");
    assert_eq!(v.vocab_size(), 1);
    assert_eq!(v.transform("x", "Q: c d\nA: e").nnz(), 0);
    assert!(VectorizerConfig {
        block_weights: BlockWeights {
            question: 0.0,
            prompt: 0.0,
            answer: 0.0
        },
        ..cfg.clone()
    }
    .validate()
    .is_err());
}

#[test]
fn block_weights_set_each_block_share_of_the_row() {
    let cfg = VectorizerConfig {
        block_weights: BlockWeights {
            question: 0.0,
            prompt: 0.5,
            answer: 1.0,
        },
        ..words_only([1, 1])
    };
    let v = TfidfVectorizer::fit(&cfg, &[("", "Q: x\nA: y z")], 1).expect("fit");
    let row = v.transform("", "Q: x\nA: y z");
    // Prompt words "q x", then answer words "y z" (blocks are in column order).
    assert_eq!(row.nnz(), 4);
    let norm = |values: &[f32]| values.iter().map(|v| v * v).sum::<f32>().sqrt();
    let (prompt, answer) = (norm(&row.values[..2]), norm(&row.values[2..]));
    assert!((answer / prompt - 2.0).abs() < 1e-5, "{row:?}");
    assert!((row.l2_norm() - 1.0).abs() < 1e-5);
}

#[test]
fn min_df_and_max_features_limit_the_vocabulary() {
    let pairs = [
        ("", "apple banana"),
        ("", "apple cherry"),
        ("", "apple banana"),
    ];
    let cfg = VectorizerConfig {
        min_df: 2,
        ..words_only([1, 1])
    };
    let v = TfidfVectorizer::fit(&cfg, &pairs, 1).expect("fit");
    assert_eq!(v.vocab_size(), 2); // apple, banana
    let capped = VectorizerConfig {
        max_features: 1,
        ..cfg
    };
    let v = TfidfVectorizer::fit(&capped, &pairs, 1).expect("fit");
    assert_eq!(v.vocab_size(), 1); // apple (df 3)
    assert_eq!(v.transform("", "apple").nnz(), 1);
    assert_eq!(v.transform("", "banana").nnz(), 0);
}

#[test]
fn rows_are_sorted_and_unit_norm() {
    let pairs = [
        ("why now", "because it is late"),
        ("why not", "it is late, it is"),
    ];
    let cfg = VectorizerConfig {
        min_df: 1,
        ..Default::default()
    };
    let v = TfidfVectorizer::fit(&cfg, &pairs, 2).expect("fit");
    for (q, c) in pairs {
        let row = v.transform(q, c);
        assert!(row.indices.windows(2).all(|w| w[0] < w[1]));
        assert!((row.l2_norm() - 1.0).abs() < 1e-5);
    }
    assert_eq!(v.transform("zzz", "qqq").nnz(), 0);
}

#[test]
fn rarer_terms_get_larger_weights() {
    let pairs = [("", "common rare"), ("", "common"), ("", "common")];
    let v = TfidfVectorizer::fit(&words_only([1, 1]), &pairs, 1).expect("fit");
    let row = v.transform("", "common rare");
    let value_of = |word: &str| {
        let column = v.transform("", word).indices[0];
        row.iter()
            .find(|&(c, _)| c == column)
            .map(|(_, value)| value)
    };
    let (common, rare) = (value_of("common"), value_of("rare"));
    assert!(rare > common, "{rare:?} <= {common:?}");
}

#[test]
fn sublinear_tf_dampens_repeats() {
    let pairs = [("", "x y"), ("", "x y")];
    let ratio = |sublinear_tf: bool| {
        let cfg = VectorizerConfig {
            sublinear_tf,
            ..words_only([1, 1])
        };
        let row = TfidfVectorizer::fit(&cfg, &pairs, 1)
            .expect("fit")
            .transform("", "x x x x y");
        assert_eq!(row.nnz(), 2);
        row.values[0].max(row.values[1]) / row.values[0].min(row.values[1])
    };
    assert!((ratio(false) - 4.0).abs() < 1e-4);
    assert!((ratio(true) - (1.0 + 4f32.ln())).abs() < 1e-4);
}

#[test]
fn batch_transform_matches_single_and_is_thread_independent() {
    let pairs: Vec<(String, String)> = (0..50)
        .map(|i| {
            (
                format!("q{} w{}", i % 7, i % 3),
                format!("ctx {} and {}", i % 5, i % 11),
            )
        })
        .collect();
    let v1 = TfidfVectorizer::fit(&VectorizerConfig::default(), &pairs, 1).expect("fit");
    let v3 = TfidfVectorizer::fit(&VectorizerConfig::default(), &pairs, 3).expect("fit");
    assert_eq!(v1.keys, v3.keys);
    let batch = v3.transform_batch(&pairs, 3);
    for ((q, c), row) in pairs.iter().zip(&batch) {
        assert_eq!(&v1.transform(q, c), row);
    }
}

#[test]
fn invalid_ranges_are_rejected() {
    assert!(VectorizerConfig {
        word_ngrams: [2, 1],
        ..Default::default()
    }
    .validate()
    .is_err());
    assert!(VectorizerConfig {
        char_ngrams: [0, 3],
        ..Default::default()
    }
    .validate()
    .is_err());
    assert!(VectorizerConfig {
        word_ngrams: [0, 0],
        char_ngrams: [0, 0],
        ..Default::default()
    }
    .validate()
    .is_err());
}

#[test]
fn split_range_covers_everything() {
    let ranges = split_range(10, 3);
    assert_eq!(ranges, [0..3, 3..6, 6..10]);
    assert!(split_range(0, 4).iter().all(|r| r.is_empty()));
    assert_eq!(split_range(2, 8).len(), 2);
}
