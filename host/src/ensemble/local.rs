//! An ensemble in this process (`test`, and `train`'s check of what it wrote): its members'
//! plugins loaded here, combined behind the same [`Classify`] seam as any model.

use super::artifact::{Fitted, FILE};
use super::combine::{align, alignment, Combiner};
use crate::backend::{Classify, LoadedModel};
use crate::config::{quoted_list, Config};
use crate::plugins::Registry;
use anyhow::{anyhow, Context};
use clarity_sdk::{Error as SdkError, ErrorKind, ModelInfo, ModelSpec, TextPair};
use serde_json::json;
use std::path::Path;

/// The members' loaded models, combined.
struct Local {
    members: Vec<(String, LoadedModel, Vec<usize>)>,
    combiner: Combiner,
}

impl Classify for Local {
    fn classify(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, SdkError> {
        let mut tables = Vec::with_capacity(self.members.len());
        for (name, model, columns) in &self.members {
            let rows = model
                .classify(pairs)
                .map_err(|e| SdkError::new(e.kind, format!("member `{name}`: {}", e.message)))?;
            tables.push(align(rows, columns));
        }
        Ok(self.combiner.combine(&tables))
    }
}

/// Load the trained ensemble `spec` and its members.
pub fn load(registry: &Registry, config: &Config, spec: &ModelSpec) -> anyhow::Result<LoadedModel> {
    let dir = config.artifact_dir(spec);
    let fitted = Fitted::read(&dir, spec).map_err(|e| match e.kind {
        ErrorKind::NotTrained => anyhow!(
            "ensemble `{}` is not trained yet ({}): run `clarity-host train --model {}` (it \
             trains missing members first)",
            spec.name,
            e.message,
            spec.name
        ),
        _ => anyhow!(e),
    })?;
    let mut members = Vec::with_capacity(fitted.members.len());
    for m in &fitted.members {
        let member_spec = config.model(&m.name)?;
        let model = load_member(registry, config, spec, member_spec)?;
        let columns = check_member(&fitted, &m.name, model.labels()).map_err(|e| anyhow!(e))?;
        members.push((m.name.clone(), model, columns));
    }
    let info = info(&fitted, &dir);
    Ok(LoadedModel::new(
        Box::new(Local {
            members,
            combiner: fitted.combiner(),
        }),
        info,
    ))
}

/// Load one member, saying which ensemble needs it.
pub fn load_member(
    registry: &Registry,
    config: &Config,
    ensemble: &ModelSpec,
    member: &ModelSpec,
) -> anyhow::Result<LoadedModel> {
    let model = registry
        .model_for(config, member)
        .with_context(|| format!("member `{}` of ensemble `{}`", member.name, ensemble.name))?;
    model.into_loaded().map_err(|e| {
        let hint = if e.kind == ErrorKind::NotTrained {
            format!(
                ": run `clarity-host train --model {}` (it trains missing members first)",
                ensemble.name
            )
        } else {
            String::new()
        };
        anyhow!(
            "member `{}` of ensemble `{}` does not load: {e}{hint}",
            member.name,
            ensemble.name
        )
    })
}

/// The columns putting `member`'s answers in the ensemble's label order, or why its labels
/// are no longer the ones the ensemble was fitted with.
pub fn check_member(
    fitted: &Fitted,
    member: &str,
    labels: &[String],
) -> Result<Vec<usize>, String> {
    let fitted_labels = fitted
        .members
        .iter()
        .find(|m| m.name == member)
        .map(|m| m.labels.as_slice())
        .unwrap_or_default();
    match alignment(&fitted.labels, labels) {
        Some(columns) if labels == fitted_labels => Ok(columns),
        _ => Err(format!(
            "member `{member}` now predicts {} but the ensemble was fitted with {}; train the \
             ensemble again",
            quoted_list(labels),
            quoted_list(fitted_labels)
        )),
    }
}

/// What an ensemble reports about itself (`GET /` shows it).
pub fn info(fitted: &Fitted, dir: &Path) -> ModelInfo {
    let mut info = ModelInfo::new("ensemble", fitted.labels.clone());
    info.device = "host".into();
    info.loaded = true;
    info.artifact_dir = Some(dir.to_path_buf());
    info.artifacts = vec![FILE.into()];
    let members: Vec<serde_json::Value> = fitted
        .members
        .iter()
        .map(|m| json!({"name": m.name, "weight": m.weight, "valid_macro_f1": m.valid.map(|s| s.macro_f1)}))
        .collect();
    info.details.insert("members".into(), json!(members));
    info.details.insert("combine".into(), json!(fitted.combine));
    info.details.insert("bias".into(), json!(fitted.bias));
    if let Some(v) = &fitted.validation {
        info.details
            .insert("valid_macro_f1".into(), json!(v.ensemble.macro_f1));
    }
    info
}
