//! `clarity-host test`: classify one pair, score a labelled file, or (on a terminal, given
//! neither) ask for pairs interactively.

use super::{load_model, report};
use crate::cli::TestArgs;
use crate::config::Config;
use crate::data;
use crate::http::types::Prediction;
use crate::plugins::Registry;
use crate::training::classify_examples;
use anyhow::{anyhow, Context};
use clarity_sdk::metrics::{majority_label, Evaluation};
use clarity_sdk::TextPair;
use serde_json::json;
use std::io::IsTerminal;
use std::process::ExitCode;

pub fn run(config: &Config, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let spec = super::chosen_model(config, args.model.as_deref())?;
    let registry = Registry::default();
    let model = load_model(&registry, config, spec)?;
    let labels = model.labels();

    if let (Some(question), Some(context)) = (&args.question, &args.context) {
        let scores = model
            .classify(&[TextPair::new(question.clone(), context.clone())])
            .with_context(|| format!("model `{}` failed to classify", spec.name))?;
        let first = scores
            .first()
            .ok_or_else(|| anyhow!("model returned no scores"))?;
        let prediction = Prediction::from_scores(labels, first);
        println!("{}", serde_json::to_string_pretty(&prediction)?);
        return Ok(ExitCode::SUCCESS);
    }

    // A person at a terminal asked for nothing in particular: ask them. Scripts (no
    // terminal) keep scoring data_config.test_file.
    if args.file.is_none() && std::io::stdin().is_terminal() {
        let stdin = std::io::stdin();
        super::interactive::run(
            &model,
            &spec.name,
            args.json,
            &mut stdin.lock(),
            &mut std::io::stdout(),
        )?;
        return Ok(ExitCode::SUCCESS);
    }

    let file = match (&args.file, &spec.data_config.test_file) {
        (Some(f), _) => f.clone(),
        (None, Some(f)) => config.resolve(f),
        (None, None) => {
            return Err(anyhow!(
                "give --question and --context, or --file, or set data_config.test_file for `{}`",
                spec.name
            ))
        }
    };
    let examples = data::load_labelled(&file, spec, labels)?;
    let scores = classify_examples(&model, &examples, spec.serving_config.max_batch_size)
        .with_context(|| {
            format!(
                "model `{}` failed to classify {}",
                spec.name,
                file.display()
            )
        })?;
    let gold: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let eval = Evaluation::from_scores(labels, &gold, &scores);
    let majority = majority_label(&gold, labels.len());
    let baseline = Evaluation::compute(labels, &gold, &vec![majority; gold.len()]);
    if args.json {
        let out = json!({ "model": spec.name, "file": file, "metrics": eval, "majority_baseline": baseline });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        report::print_evaluation(
            &format!("`{}` on {}", spec.name, file.display()),
            &eval,
            Some(&baseline),
        );
    }
    Ok(ExitCode::SUCCESS)
}
