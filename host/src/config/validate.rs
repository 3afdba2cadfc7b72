//! Semantic checks: what the schema of `models.yaml` cannot express (unique names and routes,
//! label counts, ranges).

use super::locate::{key, Locator, Seg};
use super::{quoted_list, Problem, BUILTIN_KINDS, RESERVED_PREFIXES, RESERVED_ROUTES};
use clarity_sdk::ModelSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A problem found by [`validate`], located by model index and field path.
#[derive(Debug, Clone)]
pub(super) struct Issue {
    model: usize,
    field: Vec<Seg>,
    message: String,
}

impl Issue {
    pub(super) fn new(model: usize, field: Vec<Seg>, message: impl Into<String>) -> Self {
        Self {
            model,
            field,
            message: message.into(),
        }
    }

    pub(super) fn into_problem(self, file: &Path, locator: &Locator<'_>) -> Problem {
        let location = locator.nearest(self.model, &self.field);
        let field = format!("models[{}]{}", self.model, self.field_path());
        Problem {
            file: file.to_path_buf(),
            line: location.map(|l| l.0),
            column: location.map(|l| l.1),
            field,
            message: self.message,
        }
    }

    /// `.training_config.learning_rate: must be positive`, for an entry checked on its own.
    pub(super) fn describe(&self) -> String {
        format!(
            "{}: {}",
            self.field_path().trim_start_matches('.'),
            self.message
        )
    }

    /// The field as `.a.b[2].c`.
    fn field_path(&self) -> String {
        let mut field = String::new();
        for seg in &self.field {
            match seg {
                Seg::Key(k) | Seg::Second(k) => {
                    field.push('.');
                    field.push_str(k);
                }
                Seg::Index(i) => field.push_str(&format!("[{i}]")),
            }
        }
        field
    }
}

/// The smallest `serving_config.memory_limit_mb`: a process that loads a plugin and its
/// runtime needs more than this before it serves anything.
const MIN_MEMORY_LIMIT_MB: u64 = 64;

/// `parts[1].head` as path steps.
fn field_path(field: &str) -> Vec<Seg> {
    let mut path = Vec::new();
    for step in field.split('.') {
        let (name, index) = match step.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
            None => (step, None),
        };
        path.push(key(name));
        path.extend(index.map(Seg::Index));
    }
    path
}

fn name_is_safe(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn route_problem(route: &str) -> Option<String> {
    if !route.starts_with('/') {
        return Some(format!("route \"{route}\" must start with \"/\""));
    }
    if RESERVED_ROUTES.contains(&route) {
        return Some(format!(
            "route \"{route}\" is one of the server's own routes ({}); choose another, e.g. \"/classify/<name>\"",
            RESERVED_ROUTES.join(", ")
        ));
    }
    if let Some(prefix) = RESERVED_PREFIXES
        .iter()
        .find(|p| route == **p || route.starts_with(&format!("{p}/")))
    {
        return Some(format!(
            "route \"{route}\" is under {prefix}/, where the server answers itself; choose another, e.g. \"/classify/<name>\""
        ));
    }
    if route.contains("//") {
        return Some(format!("route \"{route}\" has an empty segment (\"//\")"));
    }
    if let Some(bad) = route
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '~')))
    {
        return Some(format!(
            "route \"{route}\" contains {bad:?}; use letters, digits, '/', '.', '_', '-' and '~'"
        ));
    }
    None
}

/// Every inconsistency the schema cannot catch.
pub(super) fn validate(models: &[ModelSpec]) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut routes: BTreeMap<String, usize> = BTreeMap::new();

    for (i, m) in models.iter().enumerate() {
        // Name: unique and usable as a folder name.
        if !name_is_safe(&m.name) {
            issues.push(Issue::new(
                i,
                vec![key("name")],
                format!(
                    "name \"{}\" cannot be used as a folder name; use only letters, digits, '.', '_' and '-'",
                    m.name
                ),
            ));
        }
        if let Some(&first) = names.get(m.name.as_str()) {
            issues.push(Issue::new(
                i,
                vec![key("name")],
                format!(
                    "duplicate name \"{}\": models[{first}] already uses it; names must be unique",
                    m.name
                ),
            ));
            issues.push(Issue::new(
                first,
                vec![key("name")],
                format!("name \"{}\" is declared again by models[{i}]", m.name),
            ));
        } else {
            names.insert(&m.name, i);
        }

        // Kind.
        if m.plugin.is_none()
            && !BUILTIN_KINDS.contains(&m.kind.as_str())
            && !super::ensemble::is_ensemble(m)
        {
            issues.push(Issue::new(
                i,
                vec![key("type")],
                format!(
                    "unknown type \"{}\": expected one of {}, {} (or set `plugin:` to use another backend)",
                    m.kind,
                    BUILTIN_KINDS.join(", "),
                    super::ensemble::ENSEMBLE_KIND
                ),
            ));
        }
        if let Some(plugin) = &m.plugin {
            if plugin.trim().is_empty() {
                issues.push(Issue::new(
                    i,
                    vec![key("plugin")],
                    "plugin is empty; give a library path or a shipped plugin name, or leave it out",
                ));
            }
        }

        // Route.
        let route = m.route();
        let route_field = if m.route.is_some() {
            vec![key("route")]
        } else {
            vec![key("name")]
        };
        let name_error_covers_route = m.route.is_none() && !name_is_safe(&m.name);
        if name_error_covers_route {
            // The name error above already explains it.
        } else if let Some(message) = route_problem(&route) {
            issues.push(Issue::new(i, route_field.clone(), message));
        } else if m.enabled {
            if let Some(&first) = routes.get(&route) {
                issues.push(Issue::new(
                    i,
                    route_field,
                    format!(
                        "route \"{route}\" is also used by models[{first}] (\"{}\"); enabled models need different routes",
                        models[first].name
                    ),
                ));
            } else {
                routes.insert(route, i);
            }
        }

        // Labels.
        let labels = &m.label_config.labels;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (j, label) in labels.iter().enumerate() {
            let field = vec![key("label_config"), key("labels"), Seg::Index(j)];
            if label.trim().is_empty() {
                issues.push(Issue::new(i, field.clone(), "empty label"));
            }
            if let Some(&first) = seen.get(label.as_str()) {
                issues.push(Issue::new(
                    i,
                    field,
                    format!("label \"{label}\" is listed twice (also at labels[{first}])"),
                ));
            } else {
                seen.insert(label, j);
            }
        }
        if let Some(n) = m.model_config.num_labels {
            let field = vec![key("model_config"), key("num_labels")];
            if n == 0 {
                issues.push(Issue::new(i, field, "num_labels must be at least 1"));
            } else if !labels.is_empty() && n != labels.len() {
                issues.push(Issue::new(
                    i,
                    field,
                    format!(
                        "num_labels is {n} but label_config.labels lists {} labels",
                        labels.len()
                    ),
                ));
            }
        }
        if !labels.is_empty() {
            // With groups, the mapping applies to the fine labels training reads.
            let fine = m
                .label_config
                .groups
                .iter()
                .flat_map(|g| g.values().flatten());
            let allowed: BTreeSet<&str> = labels.iter().chain(fine).map(String::as_str).collect();
            for (raw, target) in &m.data_config.label_mapping {
                if !allowed.contains(target.as_str()) {
                    issues.push(Issue::new(
                        i,
                        vec![key("data_config"), key("label_mapping"), key(raw)],
                        format!(
                            "maps \"{raw}\" to \"{target}\", which is not one of label_config.labels ({})",
                            quoted_list(labels)
                        ),
                    ));
                }
            }
        }

        // Data.
        let d = &m.data_config;
        for (field, value) in [
            ("train_sample_size", d.train_sample_size),
            ("valid_sample_size", d.valid_sample_size),
        ] {
            if value == Some(0) {
                issues.push(Issue::new(
                    i,
                    vec![key("data_config"), key(field)],
                    format!("{field} must be at least 1 (leave it out to use every record)"),
                ));
            }
        }
        if !(d.valid_split >= 0.0 && d.valid_split < 1.0) {
            issues.push(Issue::new(
                i,
                vec![key("data_config"), key("valid_split")],
                format!(
                    "valid_split must be at least 0 and less than 1 (a fraction of the training data), got {}",
                    d.valid_split
                ),
            ));
        }
        for (field, value) in [
            ("question_field", &d.question_field),
            ("context_field", &d.context_field),
            ("label_field", &d.label_field),
        ] {
            if value.is_empty() {
                issues.push(Issue::new(
                    i,
                    vec![key("data_config"), key(field)],
                    format!("{field} is empty; name the field of the data that holds it"),
                ));
            }
        }

        match (&m.label_config.groups, &d.fine_label_field) {
            (Some(groups), _) => {
                if let Err(message) =
                    clarity_sdk::groups::LabelGroups::resolve(groups, &m.label_config.labels)
                {
                    issues.push(Issue::new(
                        i,
                        vec![key("label_config"), key("groups")],
                        message,
                    ));
                }
            }
            (None, Some(_)) => issues.push(Issue::new(
                i,
                vec![key("data_config"), key("fine_label_field")],
                "fine_label_field needs label_config.groups (coarse label -> its fine labels)",
            )),
            (None, None) => {}
        }
        if let Some((field, message)) = d.input.as_ref().and_then(|c| c.problem()) {
            let mut path = vec![key("data_config"), key("input")];
            path.extend(field_path(&field));
            issues.push(Issue::new(i, path, message));
        }

        // Training.
        let t = &m.training_config;
        for (field, value) in [
            ("batch_size", Some(t.batch_size)),
            ("num_epochs", Some(t.num_epochs)),
            (
                "gradient_accumulation_steps",
                Some(t.gradient_accumulation_steps),
            ),
            ("logging_steps", Some(t.logging_steps)),
            ("max_length", t.max_length),
            ("eval_steps", t.eval_steps),
            ("save_steps", t.save_steps),
        ] {
            if value == Some(0) {
                issues.push(Issue::new(
                    i,
                    vec![key("training_config"), key(field)],
                    format!("{field} must be at least 1"),
                ));
            }
        }
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            issues.push(Issue::new(
                i,
                vec![key("training_config"), key("learning_rate")],
                format!(
                    "learning_rate must be a positive number, got {}",
                    t.learning_rate
                ),
            ));
        }
        if !(0.0..=1.0).contains(&t.warmup_ratio) {
            issues.push(Issue::new(
                i,
                vec![key("training_config"), key("warmup_ratio")],
                format!(
                    "warmup_ratio must be between 0 and 1, got {}",
                    t.warmup_ratio
                ),
            ));
        }
        if let Some(clarity_sdk::config::ClassWeights::Explicit(weights)) = &t.class_weights {
            let field = vec![key("training_config"), key("class_weights")];
            if !labels.is_empty() && weights.len() != labels.len() {
                issues.push(Issue::new(
                    i,
                    field,
                    format!(
                        "class_weights lists {} weights but label_config.labels lists {} labels",
                        weights.len(),
                        labels.len()
                    ),
                ));
            } else if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
                issues.push(Issue::new(
                    i,
                    field,
                    "class weights must be non-negative numbers",
                ));
            }
        }
        if m.model_config.max_length == Some(0) {
            issues.push(Issue::new(
                i,
                vec![key("model_config"), key("max_length")],
                "max_length must be at least 1",
            ));
        }

        // Serving.
        let s = &m.serving_config;
        for (field, value) in [
            ("max_batch_size", s.max_batch_size),
            ("queue_capacity", s.queue_capacity),
            ("max_request_pairs", s.max_request_pairs),
            ("max_text_chars", s.max_text_chars),
            ("max_batch_tokens", s.max_batch_tokens.unwrap_or(1)),
        ] {
            if value == 0 {
                issues.push(Issue::new(
                    i,
                    vec![key("serving_config"), key(field)],
                    format!("{field} must be at least 1"),
                ));
            }
        }
        let max_length = m.model_config.max_length.or(m.training_config.max_length);
        let budget = s.max_batch_tokens.unwrap_or(usize::MAX);
        if let Some(max_length) = max_length.filter(|&n| (1..n).contains(&budget)) {
            issues.push(Issue::new(
                i,
                vec![key("serving_config"), key("max_batch_tokens")],
                format!(
                    "max_batch_tokens {budget} is less than max_length {max_length}: one \
                     pair would not fit a run"
                ),
            ));
        }
        match s.memory_limit_mb {
            Some(_) if s.isolation != clarity_sdk::config::Isolation::Process => {
                issues.push(Issue::new(
                    i,
                    vec![key("serving_config"), key("memory_limit_mb")],
                    "memory_limit_mb needs `isolation: process`: a plugin in the server's own \
                     process cannot be limited on its own",
                ))
            }
            Some(mb) if mb < MIN_MEMORY_LIMIT_MB => issues.push(Issue::new(
                i,
                vec![key("serving_config"), key("memory_limit_mb")],
                format!(
                    "memory_limit_mb must be at least {MIN_MEMORY_LIMIT_MB}: the model's \
                     process needs that much to start"
                ),
            )),
            _ => {}
        }
        if let Some(lora) = &m.lora_config {
            if lora.r == 0 {
                issues.push(Issue::new(
                    i,
                    vec![key("lora_config"), key("r")],
                    "r (the adapter rank) must be at least 1",
                ));
            }
        }
        original_keys(i, m, &mut issues);
        if m.model_config.r == Some(0) {
            issues.push(Issue::new(
                i,
                vec![key("model_config"), key("r")],
                "r (the adapter rank) must be at least 1",
            ));
        }
    }
    super::ensemble::check(models, &mut issues);

    issues
}

/// `issues` ordered by model, keeping the order found within a model.
pub(super) fn in_file_order(issues: Vec<Issue>) -> Vec<Issue> {
    let mut indexed: Vec<(usize, Issue)> = issues.into_iter().enumerate().collect();
    indexed.sort_by_key(|(n, issue)| (issue.model, *n));
    indexed.into_iter().map(|(_, issue)| issue).collect()
}

/// The optimizers `training_config.optimizer` may name; all are our AdamW.
pub const SUPPORTED_OPTIMIZERS: &[&str] =
    &["adamw_torch", "adamw_hf", "adamw", "adamw_torch_fused"];

/// `lora_config.task_type` values; both train the same last-token classification head.
const TASK_TYPES: &[&str] = &["CAUSAL_LM", "SEQ_CLS"];

/// The original's keys whose values we support only partly (training, LoRA, classic).
fn original_keys(i: usize, m: &ModelSpec, issues: &mut Vec<Issue>) {
    if m.module.is_some() || m.loader.is_some() {
        let field = if m.module.is_some() {
            "module"
        } else {
            "loader"
        };
        issues.push(Issue::new(
            i,
            vec![key(field)],
            format!(
                "`module:` / `loader:` import a Python loader in the original Clarity ({}); here a classic model is a compiled plugin: copy plugins/classic-template (README \"Writing your own classic plugin\"), build it, and set `plugin:` to its library instead",
                [m.module.as_deref(), m.loader.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(":")
            ),
        ));
    }
    let t = &m.training_config;
    let training = |k: &str| vec![key("training_config"), key(k)];
    if t.save_total_limit == 0 {
        issues.push(Issue::new(
            i,
            training("save_total_limit"),
            "save_total_limit must be at least 1: the newest checkpoint is what `train --resume` continues from",
        ));
    }
    if let Err(message) = clarity_sdk::selection::Selection::from_config(t) {
        issues.push(Issue::new(i, training("metric_for_best_model"), message));
    }
    if !(t.early_stopping_threshold.is_finite() && t.early_stopping_threshold >= 0.0) {
        issues.push(Issue::new(
            i,
            training("early_stopping_threshold"),
            format!(
                "early_stopping_threshold must be a number of at least 0, got {}",
                t.early_stopping_threshold
            ),
        ));
    }
    if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
        issues.push(Issue::new(
            i,
            training("weight_decay"),
            format!("weight_decay must be at least 0, got {}", t.weight_decay),
        ));
    }
    if !SUPPORTED_OPTIMIZERS.contains(&t.optimizer.as_str()) {
        issues.push(Issue::new(
            i,
            training("optimizer"),
            format!(
                "optimizer \"{}\" is not supported; use one of {} (all train with AdamW here)",
                t.optimizer,
                SUPPORTED_OPTIMIZERS.join(", ")
            ),
        ));
    }
    if let Some(lora) = &m.lora_config {
        if lora.bias != "none" {
            issues.push(Issue::new(
                i,
                vec![key("lora_config"), key("bias")],
                format!(
                    "bias \"{}\" is not supported: only \"none\" (biases stay frozen; the adapters and the head train)",
                    lora.bias
                ),
            ));
        }
        if !TASK_TYPES.contains(&lora.task_type.as_str()) {
            issues.push(Issue::new(
                i,
                vec![key("lora_config"), key("task_type")],
                format!(
                    "task_type \"{}\" is not supported; use {}",
                    lora.task_type,
                    TASK_TYPES.join(" or ")
                ),
            ));
        }
    }
}
