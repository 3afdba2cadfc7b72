//! `clarity-host train`: run [`training::run`] for one model, with Ctrl-C asking it to
//! checkpoint and stop, and print what it reached.

use super::report;
use crate::cli::TrainArgs;
use crate::config::Config;
use crate::plugins::Registry;
use crate::sweep;
use crate::tensorboard;
use crate::training::report::{PLOT_FILE, REPORT_FILE};
use crate::training::{self, ProgressMode, TrainOptions};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Set by Ctrl-C during `train`: the plugin is asked to stop at its next event.
static STOP: AtomicBool = AtomicBool::new(false);

pub fn run(config: &Config, args: &TrainArgs) -> anyhow::Result<ExitCode> {
    install_interrupt_handler();
    let spec = super::chosen_model(config, args.model.as_deref())?;
    // `--tensorboard` turns `auto_start` on for this run only.
    let mut board_spec = spec.clone();
    board_spec.tensorboard_config.auto_start |= args.tensorboard;
    // Dropped when `run` returns, whatever the outcome: TensorBoard goes with the command.
    let _tensorboard = tensorboard::start_for(config, &[&board_spec], &args.tensorboard_args);
    let options = TrainOptions {
        resume: args.resume,
        stop: &STOP,
        progress: ProgressMode::detect(),
        trial: None,
    };
    if !args.sweep.is_empty() {
        return sweep(config, spec, args, options);
    }
    if crate::config::is_ensemble(spec) {
        let outcome = crate::ensemble::train::run(&Registry::default(), config, spec, options)?;
        print_ensemble(spec, &outcome);
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = training::run(&Registry::default(), config, spec, options)?;
    println!();
    println!(
        "Trained `{}` in {:.1} s ({} steps, {} epochs{}); model in {}",
        spec.name,
        outcome.seconds,
        outcome.report.steps,
        outcome.report.epochs,
        match outcome.best_epoch {
            Some(epoch) => format!(", best epoch {epoch}"),
            None => String::new(),
        },
        outcome.artifact_dir.display()
    );
    if let Some(valid) = &outcome.valid {
        report::print_evaluation("Validation", valid, outcome.baseline.as_ref());
    }
    if let Some(dir) = &outcome.run_dir {
        println!();
        println!(
            "Report: {} (plot {}, TensorBoard events in the same folder)",
            dir.join(REPORT_FILE).display(),
            dir.join(PLOT_FILE).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `train --sweep`: the grid's trials, then the table.
fn sweep(
    config: &Config,
    spec: &clarity_sdk::ModelSpec,
    args: &TrainArgs,
    options: TrainOptions<'_>,
) -> anyhow::Result<ExitCode> {
    if crate::config::is_ensemble(spec) {
        anyhow::bail!(
            "`{}` is an ensemble: its weights are fitted, not swept; sweep one of its members",
            spec.name
        );
    }
    let entry = serde_json::to_value(spec)?;
    let axes = args
        .sweep
        .iter()
        .map(|arg| sweep::Axis::parse(arg, &entry))
        .collect::<Result<Vec<_>, _>>()?;
    let grid = sweep::trials(&axes, args.max_trials)?;
    let outcome = sweep::run(&Registry::default(), config, spec, &grid, options)?;
    print_sweep(&axes, &outcome);
    Ok(ExitCode::SUCCESS)
}

/// The trials side by side, the kept one marked.
fn print_sweep(axes: &[sweep::Axis], outcome: &sweep::SweepOutcome) {
    println!();
    println!(
        "Sweep of `{}`: {} trials in {:.1} s, chosen by validation {}",
        outcome.model,
        outcome.trials.len(),
        outcome.seconds,
        outcome.chosen_by
    );
    let widths: Vec<usize> = axes
        .iter()
        .map(|a| {
            a.values
                .iter()
                .map(|(text, _)| text.chars().count())
                .chain([a.name.chars().count()])
                .max()
                .unwrap_or(4)
        })
        .collect();
    let mut header = format!("  {:>5}", "trial");
    for (axis, width) in axes.iter().zip(&widths) {
        header.push_str(&format!("  {:<width$}", axis.name));
    }
    println!(
        "{header}  {:>8}  {:>8}  {:>8}",
        "macro-F1", "accuracy", "seconds"
    );
    for (i, trial) in outcome.trials.iter().enumerate() {
        let mut line = format!("  {:>5}", i + 1);
        for (width, text) in widths.iter().zip(trial_texts(axes, trial)) {
            line.push_str(&format!("  {text:<width$}"));
        }
        let score = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        line.push_str(&format!(
            "  {:>8}  {:>8}  {:>8.1}",
            score(trial.macro_f1),
            score(trial.accuracy),
            trial.seconds
        ));
        if i == outcome.best {
            line.push_str("  <- kept");
        }
        if let Some(error) = &trial.error {
            line.push_str(&format!("  failed: {}", error.lines().next().unwrap_or("")));
        }
        println!("{line}");
    }
    println!(
        "Kept trial {} in {}; TensorBoard (HParams tab): {}",
        outcome.best + 1,
        outcome.artifact_dir.display(),
        outcome.run_dir.display()
    );
    println!(
        "To train it again without a sweep, set in models.yaml: {}",
        outcome.best_keys.join(", ")
    );
}

/// Each axis's value in `trial`, as written on the command line.
fn trial_texts(axes: &[sweep::Axis], trial: &sweep::TrialResult) -> Vec<String> {
    axes.iter()
        .map(|axis| {
            let value = trial.settings.get(&axis.name);
            axis.values
                .iter()
                .find(|(_, v)| Some(v) == value)
                .map_or("?".to_string(), |(text, _)| text.clone())
        })
        .collect()
}

/// The members against the ensemble on the validation set.
fn print_ensemble(spec: &clarity_sdk::ModelSpec, outcome: &crate::ensemble::train::Outcome) {
    let fitted = &outcome.fitted;
    println!();
    println!(
        "Fitted ensemble `{}` in {:.1} s{}; {} in {}",
        spec.name,
        outcome.seconds,
        match outcome.trained.as_slice() {
            [] => String::new(),
            names => format!(" (trained first: {})", names.join(", ")),
        },
        crate::ensemble::artifact::FILE,
        outcome.artifact_dir.display()
    );
    let width = fitted
        .members
        .iter()
        .map(|m| m.name.chars().count())
        .chain([spec.name.chars().count() + 11])
        .max()
        .unwrap_or(8);
    match &fitted.validation {
        Some(v) => println!("Validation: {} pairs from {}", v.pairs, v.source),
        None => println!("No validation data: the weights are the ones given"),
    }
    println!(
        "  {:<width$}  {:>7}  {:>9}  {:>8}",
        "model", "weight", "macro-F1", "accuracy"
    );
    let score = |s: Option<crate::ensemble::artifact::Score>| match s {
        Some(s) => format!("{:>9.4}  {:>8.4}", s.macro_f1, s.accuracy),
        None => format!("{:>9}  {:>8}", "-", "-"),
    };
    for m in &fitted.members {
        println!(
            "  {:<width$}  {:>7.3}  {}",
            m.name,
            m.weight,
            score(m.valid)
        );
    }
    if let Some(v) = &fitted.validation {
        println!(
            "  {:<width$}  {:>7}  {}",
            "equal weights",
            "",
            score(Some(v.uniform))
        );
        println!(
            "  {:<width$}  {:>7}  {}",
            format!("{} (ensemble)", spec.name),
            "",
            score(Some(v.ensemble))
        );
        if let Some(cross) = v.cross_fit {
            println!(
                "  {:<width$}  {:>7}  {}",
                "cross-fitted",
                "",
                score(Some(cross))
            );
            println!(
                "  (cross-fitted: {} folds, each scored with weights fitted on the others; the ensemble row is fitted on the whole set)",
                crate::ensemble::fit::CROSS_FOLDS
            );
        }
    }
    if fitted.bias.iter().any(|b| *b != 0.0) {
        let bias: Vec<String> = fitted
            .labels
            .iter()
            .zip(&fitted.bias)
            .map(|(l, b)| format!("{l} {b:+.1}"))
            .collect();
        println!("  bias (log-probability): {}", bias.join(", "));
    }
    if let Some(eval) = &outcome.ensemble {
        println!();
        report::print_evaluation(
            &format!(
                "Ensemble `{}` on the validation set (fitted on it: optimistic)",
                spec.name
            ),
            eval,
            None,
        );
    }
}

/// First Ctrl-C asks the plugin to stop and checkpoint; a second exits at once.
fn install_interrupt_handler() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    static PRESSES: AtomicUsize = AtomicUsize::new(0);
    INSTALLED.get_or_init(|| {
        let result = ctrlc::set_handler(|| {
            if PRESSES.fetch_add(1, Ordering::SeqCst) == 0 {
                STOP.store(true, Ordering::SeqCst);
                eprintln!("\nStopping after the current step (press Ctrl-C again to exit now)...");
            } else {
                eprintln!("\nExiting now.");
                // Destructors do not run on this path: TensorBoard must not outlive us.
                crate::tensorboard::stop_all();
                std::process::exit(130);
            }
        });
        if let Err(e) = result {
            tracing::warn!("Ctrl-C will not stop training cleanly: {e}");
        }
    });
}
