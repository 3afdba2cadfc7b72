//! `train` for an ensemble: train the members that never were, score the validation set
//! with each, fit the weights (and bias), and write `ensemble.json` into the ensemble's
//! `output_dir` in one atomic step.

use super::artifact::{self, Fitted, Member, Score};
use super::combine::{align, alignment, Combiner};
use super::fit::{cross_fit, fit_bias, fit_weights, Fitting, Validation, CROSS_FOLDS};
use super::local::load_member;
use crate::artifacts::{ArtifactError, Staging};
use crate::backend::LoadedModel;
use crate::config::{quoted_list, Config};
use crate::data;
use crate::plugins::Registry;
use crate::training::{self, classify_examples, TrainOptions};
use anyhow::{anyhow, bail, Context};
use clarity_sdk::config::{EnsembleBias, EnsembleWeights};
use clarity_sdk::metrics::Evaluation;
use clarity_sdk::{ErrorKind, ModelSpec};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Pairs per call when members score the validation set.
const SCORE_BATCH: usize = 64;

/// What training an ensemble did.
pub struct Outcome {
    /// What was written.
    pub fitted: Fitted,
    /// Per member, its evaluation on the validation set (empty without one).
    pub members: Vec<(String, Evaluation)>,
    /// The fitted ensemble on the validation set.
    pub ensemble: Option<Evaluation>,
    /// Members trained first because they never were.
    pub trained: Vec<String>,
    /// Where `ensemble.json` now is.
    pub artifact_dir: PathBuf,
    /// Wall time, member training included.
    pub seconds: f64,
}

/// Train the ensemble `spec`. `options` is used for each member that must be trained.
pub fn run(
    registry: &Registry,
    config: &Config,
    spec: &ModelSpec,
    options: TrainOptions<'_>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let ensemble = spec
        .ensemble_config
        .as_ref()
        .ok_or_else(|| anyhow!("model `{}` has no ensemble_config", spec.name))?;
    let member_specs: Vec<&ModelSpec> = ensemble
        .members
        .iter()
        .map(|name| config.model(name))
        .collect::<Result<_, _>>()?;

    // Members first: load each, training those never trained.
    let mut trained = Vec::new();
    let mut loaded: Vec<LoadedModel> = Vec::with_capacity(member_specs.len());
    for member in &member_specs {
        let ready = registry
            .model_for(config, member)
            .with_context(|| format!("member `{}` of ensemble `{}`", member.name, spec.name))?
            .into_loaded();
        match ready {
            Ok(model) => loaded.push(model),
            Err(e) if e.kind == ErrorKind::NotTrained => {
                println!(
                    "Member `{}` of `{}` is not trained yet: training it first",
                    member.name, spec.name
                );
                let member_options = TrainOptions {
                    resume: options.resume,
                    stop: options.stop,
                    progress: options.progress,
                    trial: None,
                };
                training::run(registry, config, member, member_options)
                    .with_context(|| format!("member `{}` of `{}`", member.name, spec.name))?;
                trained.push(member.name.clone());
                loaded.push(load_member(registry, config, spec, member)?);
            }
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| {
                    format!("member `{}` of `{}` does not load", member.name, spec.name)
                })
            }
        }
    }

    // One label order for all: the ensemble's own, or its first member's.
    let labels: Vec<String> = if spec.label_config.labels.is_empty() {
        loaded[0].labels().to_vec()
    } else {
        spec.label_config.labels.clone()
    };
    let mut columns = Vec::with_capacity(loaded.len());
    for (j, model) in loaded.iter().enumerate() {
        let Some(c) = alignment(&labels, model.labels()) else {
            bail!(
                "{}: model `{}`: ensemble_config.members[{j}]: member `{}` predicts {} but the \
                 ensemble predicts {}; the members of an ensemble must predict the same labels \
                 (set the same label_config.labels on each, or train them on data with the same \
                 labels)",
                config.path.display(),
                spec.name,
                member_specs[j].name,
                quoted_list(model.labels()),
                quoted_list(&labels)
            );
        };
        columns.push(c);
    }

    // The validation set, read as the members' training read it.
    let data_spec = data_spec(spec, member_specs[0], &labels);
    let data = data::prepare_training(config, &data_spec).with_context(|| {
        format!(
            "the validation data of ensemble `{}` (data_config of `{}`)",
            spec.name, data_spec.name
        )
    })?;
    let fitting =
        matches!(ensemble.weights, EnsembleWeights::Fit) || ensemble.bias == EnsembleBias::Fit;
    if data.valid.is_empty() && fitting {
        bail!(
            "ensemble `{}` fits its weights or bias on validation data, and `{}` has none: set \
             data_config.valid_file (or valid_split above 0) on the ensemble or its first member, \
             or give `weights: [...]` and `bias: none`",
            spec.name,
            data_spec.name
        );
    }
    tracing::info!(
        "Ensemble `{}`: scoring {} validation pairs from {} with {} members",
        spec.name,
        data.valid.len(),
        data.valid_source,
        loaded.len()
    );
    let mut tables = Vec::with_capacity(loaded.len());
    for ((model, c), member) in loaded.iter().zip(&columns).zip(&member_specs) {
        let rows = classify_examples(model, &data.valid, SCORE_BATCH).with_context(|| {
            format!(
                "member `{}` failed to classify the validation set",
                member.name
            )
        })?;
        tables.push(align(rows, c));
    }
    let gold: Vec<usize> = data.valid.iter().map(|e| e.label).collect();
    let valid = Validation {
        members: &tables,
        gold: &gold,
        labels: &labels,
    };

    let weights = match &ensemble.weights {
        EnsembleWeights::Given(w) => Combiner::new(w, vec![0.0; labels.len()], ensemble.combine)
            .weights()
            .to_vec(),
        EnsembleWeights::Fit => fit_weights(&valid, ensemble.combine),
    };
    let bias = match ensemble.bias {
        EnsembleBias::Fit => fit_bias(&valid, &weights, ensemble.combine),
        EnsembleBias::None => vec![0.0; labels.len()],
    };
    let combiner = Combiner::new(&weights, bias.clone(), ensemble.combine);
    let has_valid = !data.valid.is_empty();
    let member_evals: Vec<(String, Evaluation)> = if has_valid {
        member_specs
            .iter()
            .zip(&tables)
            .map(|(m, t)| (m.name.clone(), Evaluation::from_scores(&labels, &gold, t)))
            .collect()
    } else {
        Vec::new()
    };
    let ensemble_eval = has_valid.then(|| valid.evaluate(&combiner));
    let uniform = has_valid.then(|| {
        let even = vec![1.0; loaded.len()];
        valid.evaluate(&Combiner::new(
            &even,
            vec![0.0; labels.len()],
            ensemble.combine,
        ))
    });
    let members: Vec<Member> = member_specs
        .iter()
        .zip(&loaded)
        .zip(&weights)
        .map(|((m, model), w)| Member {
            name: m.name.clone(),
            labels: model.labels().to_vec(),
            weight: *w,
            valid: member_evals
                .iter()
                .find(|(n, _)| *n == m.name)
                .map(|(_, e)| Score::from(e)),
        })
        .collect();
    // The fitted score is chosen on the set it is measured on; cross-fitting says how much
    // of it survives on unseen pairs.
    let fits_something =
        matches!(ensemble.weights, EnsembleWeights::Fit) || ensemble.bias == EnsembleBias::Fit;
    let given = match &ensemble.weights {
        EnsembleWeights::Fit => None,
        EnsembleWeights::Given(_) => Some(weights.as_slice()),
    };
    let cross = (has_valid && fits_something)
        .then(|| {
            let fitting = Fitting {
                weights: given,
                bias: ensemble.bias == EnsembleBias::Fit,
                mode: ensemble.combine,
            };
            cross_fit(&valid, fitting, CROSS_FOLDS)
        })
        .flatten();
    let validation = match (&ensemble_eval, &uniform) {
        (Some(e), Some(u)) => Some(artifact::Validation {
            source: data.valid_source.clone(),
            pairs: data.valid.len(),
            ensemble: Score::from(e),
            uniform: Score::from(u),
            cross_fit: cross.as_ref().map(Score::from),
        }),
        _ => None,
    };
    let fitted = Fitted::new(ensemble.clone(), labels.clone(), members, bias, validation);
    drop(loaded);

    let artifact_dir = write(config, spec, &fitted, ensemble_eval.as_ref())?;
    Ok(Outcome {
        fitted,
        members: member_evals,
        ensemble: ensemble_eval,
        trained,
        artifact_dir,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The entry whose `data_config` gives the validation set: the ensemble's own when it names
/// data files, else its first member's (so a held-out split is the one that member was
/// trained without). Its labels are the ensemble's.
fn data_spec(spec: &ModelSpec, first: &ModelSpec, labels: &[String]) -> ModelSpec {
    let d = &spec.data_config;
    let own = d.train_file.is_some()
        || d.train_files.is_some()
        || d.valid_file.is_some()
        || d.valid_files.is_some();
    let mut chosen = if own { spec.clone() } else { first.clone() };
    chosen.label_config.labels = labels.to_vec();
    chosen.label_config.label2id = None;
    chosen.label_config.id2label = None;
    chosen
}

/// Write `ensemble.json` (with the entry, labels and metrics, as every model folder has)
/// into a staging folder and swap it into the ensemble's `output_dir`.
fn write(
    config: &Config,
    spec: &ModelSpec,
    fitted: &Fitted,
    valid: Option<&Evaluation>,
) -> anyhow::Result<PathBuf> {
    let final_dir = config.artifact_dir(spec);
    let staging = Staging::create(&final_dir).with_context(|| {
        format!(
            "ensemble `{}` cannot be saved to {}",
            spec.name,
            final_dir.display()
        )
    })?;
    let put = |name: &str, value: serde_json::Value| -> anyhow::Result<()> {
        let path = staging.path().join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&value)?).map_err(|error| {
            ArtifactError {
                action: "write",
                path,
                error,
            }
        })?;
        Ok(())
    };
    put(artifact::FILE, serde_json::to_value(fitted)?)?;
    put("model_spec.json", serde_json::to_value(spec)?)?;
    put("labels.json", json!(fitted.labels))?;
    put("metrics.json", json!({ "valid": valid }))?;
    Ok(staging.commit()?)
}
