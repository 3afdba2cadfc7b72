//! After parsing: the original Clarity's spellings become ours, and `encoder` / `lora` models
//! get the original's training defaults for the keys they leave out.
//!
//! Everything a plugin reads is settled here, so plugins see one spelling: `output_dir` at
//! the top level, `question_field` / `context_field`, `label_config.labels` in output order,
//! and `model_config.prompt_template`.

use super::locate::key;
use super::presence::Presence;
use super::validate::Issue;
use clarity_sdk::config::{LabelConfig, LabelId};
use clarity_sdk::ModelSpec;
use std::collections::BTreeMap;

/// Training defaults of the original, per type: its `from_dict` defaults (what its users
/// get; the encoder dataclass says `logging_steps` 5 and the LoRA one `num_epochs` 3, but
/// `from_dict` overrides both). Keys not listed keep the schema's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TypeDefaults {
    /// Tokens per input (when neither `model_config` nor `training_config` sets it).
    pub max_length: usize,
    /// Examples per forward pass.
    pub batch_size: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Passes over the data.
    pub num_epochs: usize,
    /// Batches per optimizer step.
    pub gradient_accumulation_steps: usize,
    /// Steps between progress lines.
    pub logging_steps: usize,
}

/// `type: encoder`.
pub const ENCODER_DEFAULTS: TypeDefaults = TypeDefaults {
    max_length: 128,
    batch_size: 16,
    learning_rate: 2e-5,
    num_epochs: 3,
    gradient_accumulation_steps: 1,
    logging_steps: 10,
};

/// `type: lora`.
pub const LORA_DEFAULTS: TypeDefaults = TypeDefaults {
    max_length: 256,
    batch_size: 2,
    learning_rate: 3e-4,
    num_epochs: 5,
    gradient_accumulation_steps: 8,
    logging_steps: 5,
};

/// The training defaults of a model type, when they differ from the schema's.
pub fn type_defaults(kind: &str) -> Option<TypeDefaults> {
    match kind {
        "encoder" => Some(ENCODER_DEFAULTS),
        "lora" => Some(LORA_DEFAULTS),
        _ => None,
    }
}

/// Settle the original's spellings and per-type defaults in `models`; returns what cannot be
/// settled (both spellings set and different, inconsistent label maps, a bad template).
pub(super) fn normalize(models: &mut [ModelSpec], presence: &Presence) -> Vec<Issue> {
    let mut issues = Vec::new();
    for (i, m) in models.iter_mut().enumerate() {
        apply_type_defaults(m, |k| presence.has(i, "training_config", k));
        if let Some(dir) = m.model_config.output_dir.take() {
            match &m.output_dir {
                Some(top) if *top != dir => issues.push(Issue::new(
                    i,
                    vec![key("model_config"), key("output_dir")],
                    format!(
                        "model_config.output_dir ({}) and output_dir ({}) are both set and differ; keep one",
                        dir.display(),
                        top.display()
                    ),
                )),
                _ => m.output_dir = Some(dir),
            }
        }
        let d = &mut m.data_config;
        for (alias, ours, value, slot) in [
            (
                "text_field_1",
                "question_field",
                d.text_field_1.take(),
                &mut d.question_field,
            ),
            (
                "text_field_2",
                "context_field",
                d.text_field_2.take(),
                &mut d.context_field,
            ),
        ] {
            let Some(value) = value else { continue };
            if presence.has(i, "data_config", ours) {
                issues.push(Issue::new(
                    i,
                    vec![key("data_config"), key(alias)],
                    format!("{alias} is another name for {ours}, and both are set; keep {ours}"),
                ));
            } else {
                *slot = value;
            }
        }
        if let Err((field, message)) = settle_labels(&mut m.label_config) {
            issues.push(Issue::new(
                i,
                vec![key("label_config"), key(field)],
                message,
            ));
        }
        if let Some(template) = m.prompt_config.take().and_then(|p| p.template) {
            let field = vec![key("prompt_config"), key("template")];
            if m.model_config.prompt_template.is_some() {
                issues.push(Issue::new(
                    i,
                    field,
                    "prompt_config.template and model_config.prompt_template are both set; keep one",
                ));
            } else {
                match prompt_from_template(&template) {
                    Ok(prompt) => m.model_config.prompt_template = Some(prompt),
                    Err(message) => issues.push(Issue::new(i, field, message)),
                }
            }
        }
    }
    issues
}

/// Fill the training keys `written` does not report with the type's defaults.
fn apply_type_defaults(m: &mut ModelSpec, written: impl Fn(&str) -> bool) {
    let Some(d) = type_defaults(&m.kind) else {
        return;
    };
    let t = &mut m.training_config;
    if !written("max_length") && m.model_config.max_length.is_none() {
        t.max_length = Some(d.max_length);
    }
    if !written("batch_size") {
        t.batch_size = d.batch_size;
    }
    if !written("learning_rate") {
        t.learning_rate = d.learning_rate;
    }
    if !written("num_epochs") {
        t.num_epochs = d.num_epochs;
    }
    if !written("gradient_accumulation_steps") {
        t.gradient_accumulation_steps = d.gradient_accumulation_steps;
    }
    if !written("logging_steps") {
        t.logging_steps = d.logging_steps;
    }
}

/// Turn `label2id` / `id2label` into `labels` (in id order), checking they agree with each
/// other and with `labels`. The error names the offending key.
fn settle_labels(lc: &mut LabelConfig) -> Result<(), (&'static str, String)> {
    let from_label2id = match &lc.label2id {
        Some(map) => Some(ordered(
            "label2id",
            map.iter().map(|(label, id)| (id, label.as_str())),
        )?),
        None => None,
    };
    let from_id2label = match &lc.id2label {
        Some(map) => Some(ordered(
            "id2label",
            map.iter().map(|(id, label)| (id, label.as_str())),
        )?),
        None => None,
    };
    let order = match (from_label2id, from_id2label) {
        (Some(a), Some(b)) if a != b => {
            return Err((
                "id2label",
                format!(
                    "label_config.label2id orders the labels {a:?} but label_config.id2label orders them {b:?}; they must describe the same ids"
                ),
            ))
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => return Ok(()),
    };
    let field = if lc.label2id.is_some() {
        "label2id"
    } else {
        "id2label"
    };
    if lc.labels.is_empty() {
        lc.labels = order;
    } else if lc.labels != order {
        return Err((
            field,
            format!(
                "label_config.labels lists {:?} but label_config.{field} orders them {order:?}; make them agree (or keep only one)",
                lc.labels
            ),
        ));
    }
    Ok(())
}

/// Labels by id, for ids 0..n-1 each used once.
fn ordered<'a>(
    field: &'static str,
    pairs: impl Iterator<Item = (&'a LabelId, &'a str)>,
) -> Result<Vec<String>, (&'static str, String)> {
    let mut by_id: BTreeMap<usize, String> = BTreeMap::new();
    for (id, label) in pairs {
        let Some(index) = id.index() else {
            return Err((
                field,
                format!("id {id} of \"{label}\" is not a whole number from 0"),
            ));
        };
        if let Some(other) = by_id.insert(index, label.to_string()) {
            return Err((
                field,
                format!("id {index} is given to both \"{other}\" and \"{label}\""),
            ));
        }
    }
    let n = by_id.len();
    if let Some(missing) = (0..n).find(|i| !by_id.contains_key(i)) {
        return Err((
            field,
            format!(
                "the ids must be 0 to {} with none missing; {missing} is missing",
                n.saturating_sub(1)
            ),
        ));
    }
    let labels: Vec<String> = by_id.into_values().collect();
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = labels.iter().find(|l| !seen.insert(l.as_str())) {
        return Err((field, format!("label \"{dup}\" has two ids")));
    }
    Ok(labels)
}

/// The original's training template (`{question}`, `{context}`, `{label}`, Python `format`
/// syntax) as our classification prompt: the text up to `{label}`, where the head reads the
/// last token. `{{` and `}}` are literal braces.
pub fn prompt_from_template(template: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut cut: Option<usize> = None;
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push(tail.as_bytes()[0] as char);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!(
                "prompt_config.template has a lone \"}}\" (write \"}}}}\" for a literal brace): {template:?}"
            ));
        }
        let Some(end) = tail.find('}') else {
            return Err(format!(
                "prompt_config.template has an unclosed \"{{\" (write \"{{{{\" for a literal brace): {template:?}"
            ));
        };
        let name = &tail[1..end];
        match name {
            "question" | "context" => {
                *counts.entry(name).or_default() += 1;
                if cut.is_some() {
                    return Err(format!(
                        "prompt_config.template has {{{name}}} after {{label}}; the prompt classified is the text before {{label}}"
                    ));
                }
                out.push_str(&tail[..=end]);
            }
            "label" => {
                cut.get_or_insert(out.len());
            }
            other => unknown.push(format!("{{{other}}}")),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    if !unknown.is_empty() {
        return Err(format!(
            "prompt_config.template has unknown placeholder(s) {}; it may use {{question}}, {{context}} and {{label}}",
            unknown.join(", ")
        ));
    }
    for slot in ["question", "context"] {
        let n = counts.get(slot).copied().unwrap_or(0);
        if n != 1 {
            return Err(format!(
                "prompt_config.template must hold {{{slot}}} exactly once (found {n})"
            ));
        }
    }
    if let Some(at) = cut {
        out.truncate(at);
    }
    Ok(out)
}
