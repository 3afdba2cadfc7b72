//! Loading and checking `models.yaml`.
//!
//! The file is either a top-level YAML list of model entries (the original Clarity format) or a
//! mapping with a `models:` list ([`clarity_sdk::config::ModelsFile`]). Parsing goes through
//! `serde_path_to_error`, so every error names the file, the line and column, and the field
//! path (`models[1].training_config.batch_size`). After parsing, [`load`] checks what the
//! schema cannot express (unique names and routes, label counts, ranges) and reports every
//! problem it finds at once, one per line, each with the line of the offending field.

use clarity_sdk::config::ModelsFile;
use clarity_sdk::{ModelSpec, PluginInit};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Model kinds served by the shipped plugins; other kinds need an explicit `plugin:`.
pub const BUILTIN_KINDS: &[&str] = &["classic", "encoder", "lora"];

/// Routes the server itself answers; no model may use them.
pub const RESERVED_ROUTES: &[&str] = &[
    "/",
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/docs",
];

/// A loaded and checked `models.yaml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file, as given to [`load`].
    pub path: PathBuf,
    /// The folder holding the file, absolute: relative paths in the file are relative to it.
    pub dir: PathBuf,
    /// Every declared model, enabled or not, in file order.
    pub models: Vec<ModelSpec>,
}

/// One problem in `models.yaml`, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Field path such as `models[1].training_config.batch_size` (empty for the whole file).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Why `models.yaml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the model configuration: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The file is empty, is not valid YAML, or does not match the schema.
    #[error("{0}")]
    Parse(Problem),
    /// The file parsed, but some entries are inconsistent. Never empty.
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Problem>),
    /// `--model` named a model the file does not declare.
    #[error(
        "{}: no model named \"{name}\"; {}",
        file.display(),
        if available.is_empty() {
            "the file declares no models".to_string()
        } else {
            format!("available: {}", available.join(", "))
        }
    )]
    UnknownModel {
        /// The file.
        file: PathBuf,
        /// The name asked for.
        name: String,
        /// The names the file declares.
        available: Vec<String>,
    },
}

fn join_lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Read, parse and check `models.yaml`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let dir = std::path::absolute(path)
        .map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let models = parse(path, &text)?;
    Ok(Config {
        path: path.to_path_buf(),
        dir,
        models,
    })
}

/// Parse and check the text of a `models.yaml`; `file` is only used in messages.
pub fn parse(file: &Path, text: &str) -> Result<Vec<ModelSpec>, ConfigError> {
    // First pass: syntax and the file's shape.
    let shape = match ShapeProbe.deserialize(serde_yaml::Deserializer::from_str(text)) {
        Ok(Ok(shape)) => shape,
        Ok(Err(Found::Empty)) => {
            return Err(ConfigError::Parse(Problem {
                file: file.to_path_buf(),
                line: Some(1),
                column: Some(1),
                field: String::new(),
                message: "the file is empty; it should list the models, e.g.\n- name: my-model\n  type: classic".into(),
            }))
        }
        Ok(Err(Found::Scalar(what))) => {
            return Err(ConfigError::Parse(Problem {
                file: file.to_path_buf(),
                line: Some(1),
                column: Some(1),
                field: String::new(),
                message: format!(
                    "expected a list of models (or a mapping with a `models:` list), found {what}"
                ),
            }))
        }
        Err(err) => {
            let location = err.location().map(|l| (l.line(), l.column()));
            return Err(ConfigError::Parse(Problem {
                file: file.to_path_buf(),
                line: location.map(|l| l.0),
                column: location.map(|l| l.1),
                field: String::new(),
                message: bare_message(&err.to_string(), location),
            }));
        }
    };

    // Second pass: the typed schema, on the original text so locations stay right.
    let de = serde_yaml::Deserializer::from_str(text);
    let models = match shape {
        Shape::List => serde_path_to_error::deserialize::<_, Vec<ModelSpec>>(de),
        Shape::Mapping => serde_path_to_error::deserialize::<_, ModelsFile>(de).map(|f| f.models),
    }
    .map_err(|err| ConfigError::Parse(parse_problem(file, text, shape, err)))?;

    if models.is_empty() {
        let field = match shape {
            Shape::List => "",
            Shape::Mapping => "models",
        };
        return Err(ConfigError::Parse(Problem {
            file: file.to_path_buf(),
            line: Some(1),
            column: Some(1),
            field: field.into(),
            message: "no models are declared; add at least one entry with `name:` and `type:`"
                .into(),
        }));
    }

    let locator = Locator { text, shape };
    let problems: Vec<Problem> = validate(&models)
        .into_iter()
        .map(|issue| issue.into_problem(file, &locator))
        .collect();
    if problems.is_empty() {
        Ok(models)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

impl Config {
    /// The model called `name`, enabled or not.
    pub fn model(&self, name: &str) -> Result<&ModelSpec, ConfigError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ConfigError::UnknownModel {
                file: self.path.clone(),
                name: name.to_string(),
                available: self
                    .models
                    .iter()
                    .map(|m| {
                        if m.enabled {
                            m.name.clone()
                        } else {
                            format!("{} (disabled)", m.name)
                        }
                    })
                    .collect(),
            })
    }

    /// The enabled models, in file order.
    pub fn enabled(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models.iter().filter(|m| m.enabled)
    }

    /// A path from the file, resolved against the file's folder (absolute paths stay as they are).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }

    /// Where the model's trained artifacts live: `output_dir` resolved, by default
    /// `<dir>/artifacts/<name>`.
    pub fn artifact_dir(&self, spec: &ModelSpec) -> PathBuf {
        match &spec.output_dir {
            Some(dir) => self.resolve(dir),
            None => self.dir.join("artifacts").join(&spec.name),
        }
    }

    /// What the model's plugin is constructed with. `labels`, when given (labels derived from
    /// the training data), replace `label_config.labels`.
    pub fn plugin_init(&self, spec: &ModelSpec, labels: Option<Vec<String>>) -> PluginInit {
        let mut spec = spec.clone();
        if let Some(labels) = labels {
            spec.label_config.labels = labels;
        }
        PluginInit {
            artifact_dir: self.artifact_dir(&spec),
            config_dir: self.dir.clone(),
            spec,
        }
    }
}

/// Which of the two file layouts the file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A top-level list of models.
    List,
    /// `models: [...]`.
    Mapping,
}

/// What the top level of the file turned out to be, when it is not a list or a mapping.
enum Found {
    Empty,
    Scalar(&'static str),
}

/// Reads the whole document (so syntax errors surface) and reports its top-level shape.
struct ShapeProbe;

impl<'de> DeserializeSeed<'de> for ShapeProbe {
    type Value = Result<Shape, Found>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ShapeProbe {
    type Value = Result<Shape, Found>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of models")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Ok(Shape::List))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Ok(Shape::Mapping))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(Found::Empty))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(Found::Empty))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(Found::Scalar("a boolean")))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(Found::Scalar("a number")))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(Found::Scalar("a number")))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(Found::Scalar("a number")))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(Found::Scalar("a string")))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_enum(data)?;
        Ok(Err(Found::Scalar("a tagged value")))
    }
}

/// Turn a serde_yaml error (with the path serde_path_to_error tracked) into a [`Problem`].
fn parse_problem(
    file: &Path,
    text: &str,
    shape: Shape,
    err: serde_path_to_error::Error<serde_yaml::Error>,
) -> Problem {
    let mut path: Vec<Seg> = err
        .path()
        .iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            _ => None,
        })
        .collect();
    let segments: Vec<String> = err
        .path()
        .iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => format!("[{index}]"),
            serde_path_to_error::Segment::Map { key } => key.clone(),
            serde_path_to_error::Segment::Enum { variant } => variant.clone(),
            serde_path_to_error::Segment::Unknown => "?".into(),
        })
        .collect();
    let inner = err.into_inner();
    let mut location = inner.location().map(|l| (l.line(), l.column()));
    let mut message = bare_message(&inner.to_string(), location);

    // `unknown field `x`` already names the key: point at the mapping that holds it.
    let mut segments = segments;
    if let Some(last) = segments.last() {
        if message.starts_with(&format!("unknown field `{last}`")) {
            segments.pop();
        }
    }
    // serde_yaml places `duplicate field `x`` at the mapping: find the second `x:` instead.
    if let Some(dup) = message
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(k, _)| k.to_string())
    {
        path.push(Seg::Second(dup));
        if let Some(found) = (Locator { text, shape }).locate(&path) {
            location = Some(found);
        }
    }
    if let Some((before, after)) = message.split_once("expected struct ") {
        message = format!("{before}expected a mapping ({after})");
    }
    if segments.last().map(String::as_str) == Some("class_weights")
        && message.starts_with("data did not match any variant")
    {
        message = "expected \"balanced\", \"none\" or a list of weights, one per label".into();
    }

    let mut field = String::new();
    if shape == Shape::List && !segments.is_empty() {
        field.push_str("models");
    }
    for segment in &segments {
        if !segment.starts_with('[') && !field.is_empty() {
            field.push('.');
        }
        field.push_str(segment);
    }
    Problem {
        file: file.to_path_buf(),
        line: location.map(|l| l.0),
        column: location.map(|l| l.1),
        field,
        message,
    }
}

/// serde_yaml's message without its own ` at line L column C` suffix and path prefix (we
/// print both ourselves).
fn bare_message(full: &str, location: Option<(usize, usize)>) -> String {
    let mut message = full.to_string();
    if let Some((line, column)) = location {
        let at = format!(" at line {line} column {column}");
        if let Some(pos) = message.find(&at) {
            message.replace_range(pos..pos + at.len(), "");
        }
    }
    // serde_yaml prefixes messages with its own path (`.[0].training_config: ...`). Serde's
    // messages all start with words separated by spaces, so a first `word: ` without spaces
    // is that path.
    if let Some((prefix, rest)) = message.split_once(": ") {
        let looks_like_path = !prefix.is_empty()
            && !prefix.contains(char::is_whitespace)
            && !rest.is_empty()
            && (prefix.starts_with('.') || prefix.starts_with('[') || prefix.starts_with("models"));
        if looks_like_path {
            message = rest.to_string();
        }
    }
    message
}

// ---------------------------------------------------------------------------------------------
// Semantic checks
// ---------------------------------------------------------------------------------------------

/// One step of a path into the YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// The value of a mapping key (its first occurrence).
    Key(String),
    /// The value of the second occurrence of a duplicated key.
    Second(String),
    /// A list item.
    Index(usize),
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// A problem found by [`validate`], located by model index and field path.
#[derive(Debug, Clone)]
struct Issue {
    model: usize,
    field: Vec<Seg>,
    message: String,
}

impl Issue {
    fn new(model: usize, field: Vec<Seg>, message: impl Into<String>) -> Self {
        Self {
            model,
            field,
            message: message.into(),
        }
    }

    fn into_problem(self, file: &Path, locator: &Locator<'_>) -> Problem {
        let location = locator.nearest(self.model, &self.field);
        let mut field = format!("models[{}]", self.model);
        for seg in &self.field {
            match seg {
                Seg::Key(k) | Seg::Second(k) => {
                    field.push('.');
                    field.push_str(k);
                }
                Seg::Index(i) => field.push_str(&format!("[{i}]")),
            }
        }
        Problem {
            file: file.to_path_buf(),
            line: location.map(|l| l.0),
            column: location.map(|l| l.1),
            field,
            message: self.message,
        }
    }
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
fn validate(models: &[ModelSpec]) -> Vec<Issue> {
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
        if m.plugin.is_none() && !BUILTIN_KINDS.contains(&m.kind.as_str()) {
            issues.push(Issue::new(
                i,
                vec![key("type")],
                format!(
                    "unknown type \"{}\": expected one of {} (or set `plugin:` to use another backend)",
                    m.kind,
                    BUILTIN_KINDS.join(", ")
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
            let allowed: BTreeSet<&str> = labels.iter().map(String::as_str).collect();
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
        ] {
            if value == 0 {
                issues.push(Issue::new(
                    i,
                    vec![key("serving_config"), key(field)],
                    format!("{field} must be at least 1"),
                ));
            }
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
        if m.model_config.r == Some(0) {
            issues.push(Issue::new(
                i,
                vec![key("model_config"), key("r")],
                "r (the adapter rank) must be at least 1",
            ));
        }
    }

    // Report in file order.
    let mut indexed: Vec<(usize, Issue)> = issues.into_iter().enumerate().collect();
    indexed.sort_by_key(|(n, issue)| (issue.model, *n));
    indexed.into_iter().map(|(_, issue)| issue).collect()
}

/// `"a", "b", "c"`.
pub(crate) fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Finding the line of a field
// ---------------------------------------------------------------------------------------------

/// Finds where a field is in the text. serde_yaml does not expose node positions, but it does
/// attach the position of the current node to errors: so we walk the document along the path
/// and fail on purpose at the target, then read the error's location.
struct Locator<'a> {
    text: &'a str,
    shape: Shape,
}

const PROBE: &str = "clarity-config-locate-probe";

impl Locator<'_> {
    /// Line and column of `models[model].<field>`, or of its nearest present ancestor.
    fn nearest(&self, model: usize, field: &[Seg]) -> Option<(usize, usize)> {
        let mut path = match self.shape {
            Shape::List => vec![],
            Shape::Mapping => vec![key("models")],
        };
        path.push(Seg::Index(model));
        let base = path.len();
        path.extend_from_slice(field);
        while path.len() >= base {
            if let Some(found) = self.locate(&path) {
                return Some(found);
            }
            path.pop();
        }
        None
    }

    fn locate(&self, path: &[Seg]) -> Option<(usize, usize)> {
        let de = serde_yaml::Deserializer::from_str(self.text);
        match (Find { path }).deserialize(de) {
            Ok(()) => None,
            Err(err) if err.to_string().contains(PROBE) => {
                err.location().map(|l| (l.line(), l.column()))
            }
            Err(_) => None,
        }
    }
}

/// Walks to `path` and fails there.
struct Find<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.path.split_first() {
            None => deserializer.deserialize_any(Stop),
            Some((seg, rest)) => deserializer.deserialize_any(Walk { seg, rest }),
        }
    }
}

/// Rejects whatever it is given, so the deserializer reports the node's position.
struct Stop;

impl<'de> Visitor<'de> for Stop {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PROBE)
    }
}

/// Descends into the child named by `seg`, skipping everything else.
struct Walk<'p> {
    seg: &'p Seg,
    rest: &'p [Seg],
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = 0;
        while let Some(k) = map.next_key::<serde_yaml::Value>()? {
            let wanted = match (self.seg, k.as_str()) {
                (Seg::Key(want), Some(k)) if want == k => {
                    seen += 1;
                    seen == 1
                }
                (Seg::Second(want), Some(k)) if want == k => {
                    seen += 1;
                    seen == 2
                }
                _ => false,
            };
            if wanted {
                map.next_value_seed(Find { path: self.rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let more = match self.seg {
                Seg::Index(want) if *want == index => {
                    seq.next_element_seed(Find { path: self.rest })?.is_some()
                }
                _ => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(IgnoredAny).map(|_| ())
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(IgnoredAny).map(|_| ())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        IgnoredAny.visit_enum(data).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = r#"- name: "roberta-large"
  type: "encoder"
  enabled: true
  route: "/classify/roberta-large"
  model_config:
    model_name: "roberta-large"
    num_labels: 3
  training_config:
    max_length: 256
    batch_size: 8
    learning_rate: 1e-5
    num_epochs: 5
    eval_strategy: "epoch"
    save_strategy: "epoch"
    early_stopping_patience: 2
  label_config:
    labels:
      - "Clear Reply"
      - "Clear Non-Reply"
      - "Ambivalent"
- name: "opt-1.3b"
  type: "lora"
  enabled: false
  route: "/classify/opt-1-3b"
  model_config:
    model_name: "facebook/opt-1.3b"
    use_8bit: true
  training_config:
    batch_size: 2
    gradient_accumulation_steps: 8
    learning_rate: 3e-4
    num_epochs: 5
  data_config:
    train_sample_size: 600
    valid_sample_size: 200
  tensorboard_config:
    auto_start: true
    port: 6006
- name: "tfidf"
  type: "classic"
  data_config: {label_field: "sentiment", question_field: "text", context_field: "context"}
"#;

    fn file() -> &'static Path {
        Path::new("models.yaml")
    }

    fn parse_ok(text: &str) -> Vec<ModelSpec> {
        match parse(file(), text) {
            Ok(models) => models,
            Err(e) => panic!("expected the config to parse, got:\n{e}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match parse(file(), text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse(file(), text) {
            Err(ConfigError::Invalid(p)) => p,
            Err(e) => panic!("expected semantic problems, got: {e}"),
            Ok(_) => panic!("expected semantic problems for:\n{text}"),
        }
    }

    #[test]
    fn readme_entries_parse() {
        let models = parse_ok(README);
        assert_eq!(models.len(), 3);
        let r = &models[0];
        assert_eq!(r.name, "roberta-large");
        assert_eq!(r.kind, "encoder");
        assert!(r.enabled);
        assert_eq!(r.route(), "/classify/roberta-large");
        assert_eq!(r.model_config.num_labels, Some(3));
        assert_eq!(r.training_config.max_length, Some(256));
        assert_eq!(r.training_config.learning_rate, 1e-5);
        assert_eq!(r.training_config.early_stopping_patience, Some(2));
        assert_eq!(r.label_config.labels.len(), 3);
        let o = &models[1];
        assert!(!o.enabled);
        assert!(o.model_config.use_8bit);
        assert_eq!(o.training_config.learning_rate, 3e-4);
        assert_eq!(o.training_config.gradient_accumulation_steps, 8);
        assert_eq!(o.data_config.train_sample_size, Some(600));
        assert_eq!(o.data_config.valid_sample_size, Some(200));
        assert!(o.tensorboard_config.auto_start);
        let t = &models[2];
        assert_eq!(t.data_config.label_field, "sentiment");
        assert_eq!(t.data_config.question_field, "text");
        assert_eq!(t.route(), "/classify/tfidf");
    }

    #[test]
    fn float_forms_parse() {
        for (text, want) in [
            ("1e-5", 1e-5),
            ("2e-5", 2e-5),
            ("1.0e-5", 1e-5),
            ("1E-5", 1e-5),
            ("+3e-4", 3e-4),
            ("0.001", 0.001),
            ("1", 1.0),
        ] {
            let yaml = format!(
                "- name: a\n  type: classic\n  training_config:\n    learning_rate: {text}\n"
            );
            assert_eq!(
                parse_ok(&yaml)[0].training_config.learning_rate,
                want,
                "{text}"
            );
        }
    }

    #[test]
    fn mapping_shape_parses() {
        let indented: String = README.lines().map(|l| format!("  {l}\n")).collect();
        let text = format!("# comment\nmodels:\n{indented}");
        assert_eq!(parse_ok(&text), parse_ok(README));
    }

    #[test]
    fn unknown_field_names_line_and_path() {
        let text = "- name: a\n  type: classic\n- name: b\n  type: classic\n  training_config:\n    batch_size: 2\n    learnin_rate: 1e-5\n";
        let err = parse_err(text);
        assert!(
            err.starts_with("models.yaml:7:5: models[1].training_config: unknown field `learnin_rate`, expected one of `max_length`, `batch_size`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_field_in_mapping_shape() {
        let text = "models:\n  - name: a\n    type: classic\n    modle_config: {}\n";
        let err = parse_err(text);
        assert!(
            err.starts_with("models.yaml:4:5: models[0]: unknown field `modle_config`"),
            "{err}"
        );
        let err = parse_err("models: []\nextra: 1\n");
        assert!(
            err.starts_with("models.yaml:2:1: unknown field `extra`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_line_and_path() {
        let text = "- name: a\n  type: classic\n  training_config:\n    batch_size: \"eight\"\n";
        assert_eq!(
            parse_err(text),
            "models.yaml:4:17: models[0].training_config.batch_size: invalid type: string \"eight\", expected usize"
        );
        let text = "- name: a\n  type: classic\n  enabled: yes\n";
        assert_eq!(
            parse_err(text),
            "models.yaml:3:12: models[0].enabled: invalid type: string \"yes\", expected a boolean"
        );
        let text = "- name: a\n  type: classic\n  training_config:\n    class_weights: heavy\n";
        let err = parse_err(text);
        assert!(err.starts_with("models.yaml:4:"), "{err}");
        assert!(
            err.contains("models[0].training_config.class_weights: expected \"balanced\""),
            "{err}"
        );
    }

    #[test]
    fn missing_field_names_entry() {
        let err = parse_err("- name: a\n  type: classic\n- name: b\n");
        assert_eq!(err, "models.yaml:3:3: models[1]: missing field `type`");
    }

    #[test]
    fn syntax_errors_have_locations() {
        let err = parse_err("- name: a\n  type: [classic\n- name: b\n");
        assert!(err.starts_with("models.yaml:3:"), "{err}");
        let err = parse_err("- name: a\n   type: classic\n");
        assert!(err.starts_with("models.yaml:2:"), "{err}");
        assert!(!err.contains(" at line "), "{err}");
        let err = parse_err("- name: a\n  name: b\n  type: classic\n");
        assert_eq!(err, "models.yaml:2:9: models[0]: duplicate field `name`");
        let err = parse_err(
            "models:\n- name: a\n  type: classic\n  training_config:\n    seed: 1\n    seed: 2\n",
        );
        assert_eq!(
            err,
            "models.yaml:6:11: models[0].training_config: duplicate field `seed`"
        );
    }

    #[test]
    fn empty_and_odd_files() {
        for text in ["", "   \n", "# only a comment\n"] {
            let err = parse_err(text);
            assert!(
                err.starts_with("models.yaml:1:1: the file is empty"),
                "{err}"
            );
        }
        assert!(parse_err("[]").contains("no models are declared"));
        assert!(parse_err("models: []").starts_with("models.yaml:1:1: models: no models"));
        assert!(parse_err("hello").contains("found a string"));
    }

    #[test]
    fn missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.yaml");
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("models.yaml: cannot read"), "{err}");
    }

    #[test]
    fn duplicate_names_name_both_lines() {
        let text = "- name: a\n  type: classic\n  route: /x\n- name: b\n  type: classic\n- name: a\n  type: classic\n  route: /y\n";
        let p = problems(text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].line, Some(1));
        assert_eq!(p[0].field, "models[0].name");
        assert_eq!(p[1].line, Some(6));
        assert!(p[1].message.contains("duplicate name \"a\""));
    }

    #[test]
    fn route_problems() {
        let text = "\
- name: a
  type: classic
- name: b
  type: classic
  route: /classify/a
- name: c
  type: classic
  enabled: false
  route: /classify/a
- name: d
  type: classic
  route: classify/d
- name: e
  type: classic
  route: /health
- name: f
  type: classic
  route: /x/{id}
";
        let p = problems(text);
        let summary: Vec<(Option<usize>, &str)> =
            p.iter().map(|p| (p.line, p.field.as_str())).collect();
        assert_eq!(
            summary,
            vec![
                (Some(5), "models[1].route"),
                (Some(12), "models[3].route"),
                (Some(15), "models[4].route"),
                (Some(18), "models[5].route"),
            ]
        );
        assert!(p[0].message.contains("also used by models[0]"));
        assert!(p[1].message.contains("must start with \"/\""));
        assert!(p[2].message.contains("server's own routes"));
    }

    #[test]
    fn names_and_kinds() {
        let text = "\
- name: my model
  type: classic
- name: b
  type: bert
- name: c
  type: bert
  plugin: ./libbert.so
";
        let p = problems(text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!((p[0].line, p[0].column), (Some(1), Some(9)));
        assert!(p[0].message.contains("folder name"));
        assert_eq!(
            (p[1].line, p[1].field.as_str()),
            (Some(4), "models[1].type")
        );
        assert!(p[1]
            .message
            .contains("expected one of classic, encoder, lora"));
    }

    #[test]
    fn label_problems() {
        let text = "\
- name: a
  type: classic
  model_config:
    num_labels: 2
  label_config:
    labels:
      - X
      - Y
      - X
  data_config:
    label_mapping:
      x: X
      z: Z
";
        let p = problems(text);
        let summary: Vec<(Option<usize>, &str)> =
            p.iter().map(|p| (p.line, p.field.as_str())).collect();
        assert_eq!(
            summary,
            vec![
                (Some(9), "models[0].label_config.labels[2]"),
                (Some(4), "models[0].model_config.num_labels"),
                (Some(13), "models[0].data_config.label_mapping.z"),
            ]
        );
        assert!(p[1]
            .message
            .contains("num_labels is 2 but label_config.labels lists 3"));
    }

    #[test]
    fn range_problems_are_collected() {
        let text = "\
- name: a
  type: classic
  training_config:
    batch_size: 0
    num_epochs: 0
    gradient_accumulation_steps: 0
  data_config:
    train_sample_size: 0
    valid_sample_size: 0
    valid_split: 1.0
- name: b
  type: classic
  data_config: {valid_split: -0.5}
";
        let p = problems(text);
        let summary: Vec<(Option<usize>, &str)> =
            p.iter().map(|p| (p.line, p.field.as_str())).collect();
        assert_eq!(
            summary,
            vec![
                (Some(8), "models[0].data_config.train_sample_size"),
                (Some(9), "models[0].data_config.valid_sample_size"),
                (Some(10), "models[0].data_config.valid_split"),
                (Some(4), "models[0].training_config.batch_size"),
                (Some(5), "models[0].training_config.num_epochs"),
                (
                    Some(6),
                    "models[0].training_config.gradient_accumulation_steps"
                ),
                (Some(13), "models[1].data_config.valid_split"),
            ]
        );
        let all = parse_err(text);
        assert_eq!(all.lines().count(), 7, "{all}");
        assert!(
            all.starts_with("models.yaml:8:24: models[0].data_config.train_sample_size: "),
            "{all}"
        );
    }

    #[test]
    fn locations_in_mapping_shape() {
        let text = "models:\n  - name: a\n    type: classic\n  - name: a\n    type: classic\n    route: /other\n";
        let p = problems(text);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].line, p[0].column), (Some(2), Some(11)));
        assert_eq!((p[1].line, p[1].column), (Some(4), Some(11)));
    }

    #[test]
    fn load_and_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.yaml");
        std::fs::write(&path, README).unwrap();
        let config = load(&path).unwrap();
        assert!(config.dir.is_absolute());
        assert_eq!(config.dir, dir.path());
        assert_eq!(
            config
                .enabled()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["roberta-large", "tfidf"]
        );
        let spec = config.model("tfidf").unwrap();
        assert_eq!(
            config.artifact_dir(spec),
            dir.path().join("artifacts").join("tfidf")
        );
        let err = config.model("nope").unwrap_err().to_string();
        assert!(
            err.ends_with(
                "no model named \"nope\"; available: roberta-large, opt-1.3b (disabled), tfidf"
            ),
            "{err}"
        );
        assert_eq!(
            config.resolve(Path::new("data/x.json")),
            dir.path().join("data/x.json")
        );
        assert_eq!(
            config.resolve(Path::new("/abs/x.json")),
            PathBuf::from("/abs/x.json")
        );

        let mut custom = spec.clone();
        custom.output_dir = Some(PathBuf::from("out/t"));
        assert_eq!(config.artifact_dir(&custom), dir.path().join("out/t"));

        let init = config.plugin_init(spec, Some(vec!["neg".into(), "pos".into()]));
        assert_eq!(init.labels(), ["neg", "pos"]);
        assert_eq!(init.config_dir, dir.path());
        assert_eq!(
            init.artifact_dir,
            dir.path().join("artifacts").join("tfidf")
        );
        let init = config.plugin_init(config.model("roberta-large").unwrap(), None);
        assert_eq!(init.labels().len(), 3);
    }

    #[test]
    fn locator_handles_flow_style_and_anchors() {
        let text = "defaults: &d {batch_size: 4}\nmodels:\n  - {name: a, type: classic, training_config: *d}\n  - name: b\n    type: classic\n    training_config: {batch_size: 0}\n";
        // `defaults` is not a field of the mapping shape, so this is a parse error...
        assert!(parse_err(text).contains("unknown field `defaults`"));
        // ...but the locator itself copes with flow mappings.
        let locator = Locator {
            text,
            shape: Shape::Mapping,
        };
        assert_eq!(locator.nearest(0, &[key("name")]), Some((3, 12)));
        assert_eq!(
            locator.nearest(1, &[key("training_config"), key("batch_size")]),
            Some((6, 35))
        );
        assert_eq!(
            locator.nearest(1, &[key("nope"), key("deeper")]),
            Some((4, 5))
        );
    }
}
