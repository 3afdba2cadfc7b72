//! `clarity-host train`: run [`training::run`] for one model, with Ctrl-C asking it to
//! checkpoint and stop, and print what it reached.

use super::report;
use crate::cli::TrainArgs;
use crate::config::Config;
use crate::plugins::Registry;
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
    };
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
