//! `clarity-host test` on a terminal without a pair or a file: ask for a question and a
//! context, print the answer, and ask again, as the Python Clarity's interactive mode did
//! (but classifying what was typed).

use crate::backend::LoadedModel;
use crate::http::types::Prediction;
use anyhow::{anyhow, Context};
use clarity_sdk::TextPair;
use std::io::{BufRead, Write};

/// Words that end the session, as in the original.
const QUIT_WORDS: [&str; 3] = ["quit", "exit", "q"];

/// One line typed at `prompt`; `None` at end of input (Ctrl-D) or a quit word.
fn ask(
    input: &mut impl BufRead,
    out: &mut impl Write,
    prompt: &str,
) -> anyhow::Result<Option<String>> {
    write!(out, "{prompt}")?;
    out.flush()?;
    let mut line = String::new();
    if input
        .read_line(&mut line)
        .context("cannot read the terminal")?
        == 0
    {
        writeln!(out)?;
        return Ok(None);
    }
    let line = line.trim().to_owned();
    if QUIT_WORDS.iter().any(|w| line.eq_ignore_ascii_case(w)) {
        return Ok(None);
    }
    Ok(Some(line))
}

/// Asks until end of input, an empty question or a quit word. A failed prediction is
/// reported and the session goes on.
pub fn run(
    model: &LoadedModel,
    name: &str,
    json: bool,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "Interactive test of `{name}`: type a question, then its context (the interview \
         question and answer). An empty question, `quit` or Ctrl-D stops."
    )?;
    loop {
        let Some(question) = ask(input, out, "Question: ")?.filter(|q| !q.is_empty()) else {
            return Ok(());
        };
        let Some(context) = ask(input, out, "Context: ")? else {
            return Ok(());
        };
        if context.is_empty() {
            writeln!(
                out,
                "A context is required; the question was not classified."
            )?;
            continue;
        }
        let scores = model
            .classify(&[TextPair::new(question, context)])
            .map_err(|e| anyhow!("{e}"))
            .and_then(|s| s.into_iter().next().ok_or_else(|| anyhow!("no scores")));
        match scores {
            Ok(scores) => {
                print_prediction(out, &Prediction::from_scores(model.labels(), &scores), json)?
            }
            Err(e) => tracing::error!("Prediction failed: {e:#}"),
        }
    }
}

fn print_prediction(
    out: &mut impl Write,
    prediction: &Prediction,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(prediction)?)?;
        return Ok(());
    }
    writeln!(out, "Label: {}", prediction.clarity_label)?;
    writeln!(out, "Confidence: {:.2}%", prediction.confidence * 100.0)?;
    writeln!(out, "Scores:")?;
    for (label, p) in &prediction.scores.0 {
        writeln!(out, "  {label}: {:.2}%", p * 100.0)?;
    }
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Classify;
    use clarity_sdk::{Error as SdkError, ModelInfo};
    use std::sync::{Arc, Mutex};

    /// Records the pairs it is given; scores "yes" questions as the first label.
    struct Recorder(Arc<Mutex<Vec<(String, String)>>>);

    impl Classify for Recorder {
        fn classify(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, SdkError> {
            let mut seen = self.0.lock().unwrap();
            Ok(pairs
                .iter()
                .map(|p| {
                    seen.push((p.question().to_owned(), p.context().to_owned()));
                    if p.question().contains("yes") {
                        vec![0.75, 0.25]
                    } else {
                        vec![0.1, 0.9]
                    }
                })
                .collect())
        }
    }

    fn session(typed: &str, json: bool) -> (String, Vec<(String, String)>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let labels = vec!["Reply".to_owned(), "Non-Reply".to_owned()];
        let model = LoadedModel::new(
            Box::new(Recorder(Arc::clone(&seen))),
            ModelInfo::new("fake", labels),
        );
        let mut out = Vec::new();
        run(&model, "m", json, &mut typed.as_bytes(), &mut out).unwrap();
        let seen = seen.lock().unwrap().clone();
        (String::from_utf8(out).unwrap(), seen)
    }

    #[test]
    fn classifies_what_was_typed_until_end_of_input() {
        let (out, seen) = session("say yes?\nQ: a\nA: b\nno?\nctx two\n", false);
        // The original sent the command line's (empty) question instead of the typed one.
        assert_eq!(
            seen,
            [
                ("say yes?".to_owned(), "Q: a".to_owned()),
                ("A: b".to_owned(), "no?".to_owned())
            ]
        );
        assert!(
            out.contains(
                "Label: Reply\nConfidence: 75.00%\nScores:\n  Reply: 75.00%\n  Non-Reply: 25.00%\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("Label: Non-Reply\nConfidence: 90.00%"),
            "{out}"
        );
        assert_eq!(out.matches("Question: ").count(), 3, "{out}");
    }

    #[test]
    fn an_empty_question_or_a_quit_word_stops_and_an_empty_context_asks_again() {
        let (_, seen) = session("q1\n\nq2\nc2\n\nq3\nc3\n", false);
        assert_eq!(seen, [("q2".to_owned(), "c2".to_owned())]);
        let (out, seen) = session("yes\nc\nQUIT\nq\nc\n", true);
        assert_eq!(seen.len(), 1);
        let line = out.lines().find(|l| l.contains("clarity_label")).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&line[line.find('{').unwrap()..]).unwrap();
        assert_eq!(json["clarity_label"], "Reply");
    }
}
