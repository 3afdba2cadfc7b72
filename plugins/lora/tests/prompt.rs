//! The prompt tokenizer on a real tokenizer file (MiniLM's, from the setup's .venv): prompts
//! never exceed max_length, truncation takes the context (then the question) and keeps the
//! template's tail, whose last token the head reads; rows are right-padded.

use clarity_lora::prompt::{PromptTokenizer, DEFAULT_TEMPLATE};
use clarity_runtime::tokenize::EncodePairs;
use common::minilm_tokenizer;

mod common;

fn tail_ids(p: &PromptTokenizer) -> Vec<u32> {
    // "classification", ":" and the end token: how every prompt ends.
    let ids = p.encode_one("q", "c").expect("encode");
    ids[ids.len() - 3..].to_vec()
}

#[test]
fn long_contexts_are_cut_and_the_template_tail_survives() {
    let p = PromptTokenizer::new(minilm_tokenizer(), DEFAULT_TEMPLATE, 48, 0).expect("prompt");
    let tail = tail_ids(&p);
    let long = "the answer goes on and on about other things ".repeat(40);
    let ids = p
        .encode_one("Will you raise taxes?", &long)
        .expect("encode");
    assert!(ids.len() <= 48, "{} tokens", ids.len());
    assert!(ids.len() >= 40, "cut too much: {} tokens", ids.len());
    assert_eq!(ids[ids.len() - 3..], tail[..], "template tail lost");
    let text = p.tokenizer().decode(&ids, true).expect("decode");
    assert!(text.contains("will you raise taxes"), "{text}");

    // A question too long by itself is cut too.
    let ids = p.encode_one(&long, "short").expect("encode");
    assert!(ids.len() <= 48);
    assert_eq!(ids[ids.len() - 3..], tail[..]);
}

#[test]
fn rows_are_right_padded_and_slots_are_literal() {
    let p = PromptTokenizer::new(minilm_tokenizer(), DEFAULT_TEMPLATE, 64, 0).expect("prompt");
    assert_eq!(
        p.render("why {context}?", "because"),
        "Question: why {context}?\n\nContext: because\n\nClassification:"
    );
    let e = p
        .encode(&[
            ("a", "b"),
            ("a longer question here", "and a longer context too"),
        ])
        .expect("encode");
    assert_eq!(e.batch, 2);
    let short = e.length(0);
    assert!(short < e.seq);
    assert!(e.attention_mask[..short].iter().all(|&m| m == 1));
    assert!(e.attention_mask[short..e.seq].iter().all(|&m| m == 0));
    assert!(e.input_ids[short..e.seq].iter().all(|&id| id == 0));
    assert_eq!(e.length(1), e.seq);
}

#[test]
fn bad_templates_are_refused() {
    let err = PromptTokenizer::new(minilm_tokenizer(), "no slots", 64, 0).unwrap_err();
    assert!(err.contains("{question}"), "{err}");
    let err = PromptTokenizer::new(minilm_tokenizer(), DEFAULT_TEMPLATE, 9, 0).unwrap_err();
    assert!(err.contains("max_length"), "{err}");
}

#[test]
fn input_parts_fill_the_slots_with_their_own_cuts() {
    use clarity_lora::slots::default_template;
    use clarity_sdk::input::{InputConfig, InputPart, PartText, Truncation};
    let input = InputConfig {
        answer_marker: Some("\nA:".into()),
        parts: vec![
            InputPart::head(PartText::Question),
            InputPart {
                truncation: Truncation::HeadTail,
                head: Some(6),
                tail: Some(10),
                ..InputPart::head(PartText::Answer)
            },
        ],
    };
    let template = default_template(&input);
    let p = PromptTokenizer::with_input(minilm_tokenizer(), &template, 64, 0, Some(input))
        .expect("prompt");
    let tail = tail_ids(&p);
    let middle = "and then many other things ".repeat(30);
    let context =
        format!("Q: Good morning to all.\nA: Opening words first, {middle} closing words last.");
    let ids = p.encode_one("Will you vote?", &context).expect("encode");
    assert!(ids.len() <= 64, "{} tokens", ids.len());
    assert_eq!(ids[ids.len() - 3..], tail[..], "template tail lost");
    let text = p.tokenizer().decode(&ids, true).expect("decode");
    // The question whole, the prompt left out, the answer's first and last words kept.
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in {text}"))
    };
    assert!(at("will you vote") < at("opening words first"), "{text}");
    assert!(
        at("opening words first") < at("closing words last"),
        "{text}"
    );
    assert!(at("closing words last") < at("classification"), "{text}");
    assert!(!text.contains("good morning"), "{text}");
    // The answer's budget (6 + 10 tokens) decides, not max_length.
    assert!(ids.len() < 48, "{} tokens", ids.len());
    let counts = p
        .token_counts(&[("Will you vote?", &context)])
        .expect("counts");
    assert!(counts[0] > 64, "{counts:?}");
}
