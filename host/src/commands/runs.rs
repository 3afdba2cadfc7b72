//! `clarity-host runs`: a model's recorded training runs side by side, and the HTML page.

use crate::cli::RunsArgs;
use crate::config::Config;
use crate::runs::{self, collect::show, collect::FIGURES};
use crate::training::report::write_atomically;
use anyhow::Context;
use std::process::ExitCode;

pub fn run(config: &Config, args: &RunsArgs) -> anyhow::Result<ExitCode> {
    let spec = super::chosen_model(config, args.model.as_deref())?;
    let logdir = config.tensorboard_logdir(spec);
    let folder = logdir.join(&spec.name);
    let recorded = match runs::collect(&logdir, &spec.name) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", folder.display())),
    };
    if recorded.is_empty() {
        anyhow::bail!(
            "no recorded runs of `{}` in {}; `clarity-host train --model {}` records one",
            spec.name,
            folder.display(),
            spec.name
        );
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs::collect::as_json(&recorded))?
        );
    } else {
        print_table(&recorded);
    }
    let html = args
        .html
        .clone()
        .unwrap_or_else(|| folder.join("runs.html"));
    write_atomically(&html, runs::page::render(&spec.name, &recorded).as_bytes())
        .with_context(|| format!("cannot write {}", html.display()))?;
    eprintln!("Compared {} runs: {}", recorded.len(), html.display());
    Ok(ExitCode::SUCCESS)
}

/// One line per run: its figures, then the settings that differ between runs.
fn print_table(recorded: &[runs::RecordedRun]) {
    let differing = runs::differing_settings(recorded);
    let mut rows: Vec<Vec<String>> = vec![std::iter::once("run".to_string())
        .chain(FIGURES.iter().map(|(name, _)| (*name).to_string()))
        .chain(differing.iter().cloned())
        .collect()];
    for run in recorded {
        let settings = run.settings();
        let mut row = vec![run.name.clone()];
        for (_, pointer) in FIGURES {
            row.push(run.number(pointer).map_or("-".into(), |v| match *pointer {
                "/seconds" => format!("{v:.1}"),
                _ if v.fract() == 0.0 => format!("{v}"),
                _ => format!("{v:.4}"),
            }));
        }
        row.extend(differing.iter().map(|k| show(settings.get(k))));
        if let Err(e) = &run.report {
            row.push(format!("unreadable: {e}"));
        }
        rows.push(row);
    }
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|t| t.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(text, width)| format!("{text:<width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}
