//! Loading and checking `models.yaml`.
//!
//! The file is either a top-level YAML list of model entries (the original Clarity format) or a
//! mapping with a `models:` list ([`clarity_sdk::config::ModelsFile`]). Parsing goes through
//! `serde_path_to_error`, so every error names the file, the line and column, and the field
//! path (`models[1].training_config.batch_size`). After parsing, [`load`] checks what the
//! schema cannot express (unique names and routes, label counts, ranges) and reports every
//! problem it finds at once, one per line, each with the line of the offending field.

mod ensemble;
mod locate;
mod normalize;
mod parse_error;
mod presence;
mod shape;
mod tolerant;
mod validate;

use clarity_sdk::config::ModelsFile;
use clarity_sdk::groups::LabelGroups;
use clarity_sdk::{ModelSpec, PluginInit};
use locate::Locator;
use parse_error::{bare_message, parse_problem};
use serde::de::DeserializeSeed;
use shape::{Found, Shape, ShapeProbe};
use std::fmt;
use std::path::{Path, PathBuf};
use validate::validate;

pub use ensemble::{is_ensemble, ENSEMBLE_KIND, MEMBERS};
pub use normalize::{prompt_from_template, type_defaults, TypeDefaults};
pub use tolerant::BrokenEntry;

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
    "/redoc",
];

/// Path prefixes the server itself answers under (the Open Inference Protocol, hot reload).
pub const RESERVED_PREFIXES: &[&str] = &["/v2", "/admin"];

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
    let text = read(path)?;
    let models = parse(path, &text)?;
    Ok(Config {
        path: path.to_path_buf(),
        dir: folder_of(path)?,
        models,
    })
}

/// [`load`], setting aside entries with problems of their own instead of failing (for
/// `serve`: one broken entry must not stop the other models). Problems of the whole file
/// still fail.
pub fn load_tolerant(path: &Path) -> Result<(Config, Vec<BrokenEntry>), ConfigError> {
    let text = read(path)?;
    let (models, broken) = tolerant::parse_tolerant(path, &text)?;
    let config = Config {
        path: path.to_path_buf(),
        dir: folder_of(path)?,
        models,
    };
    Ok((config, broken))
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: path.to_path_buf(),
        cause,
    })
}

/// The absolute folder holding `path`.
fn folder_of(path: &Path) -> Result<PathBuf, ConfigError> {
    Ok(std::path::absolute(path)
        .map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default())
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
    let mut models = match shape {
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
    let presence = presence::Presence::read(text, shape);
    let mut issues = normalize::normalize(&mut models, &presence);
    issues.extend(validate(&models));
    let problems: Vec<Problem> = validate::in_file_order(issues)
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

    /// Root of the model's TensorBoard runs: `tensorboard_config.logdir` resolved.
    pub fn tensorboard_logdir(&self, spec: &ModelSpec) -> PathBuf {
        self.resolve(&spec.tensorboard_config.logdir)
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
        // With groups, the plugin's labels are the fine ones it trains on and answers.
        if let Some(groups) = label_groups(&spec) {
            spec.label_config.labels = groups.fine;
        }
        if let Some(labels) = labels {
            spec.label_config.labels = labels;
        }
        // Where the plugin runs and how long a text may be are the host's business; left
        // out, the entry also stays readable by plugins built before these keys existed.
        spec.serving_config.isolation = Default::default();
        spec.serving_config.memory_limit_mb = None;
        spec.serving_config.max_text_chars = clarity_sdk::config::DEFAULT_MAX_TEXT_CHARS;
        PluginInit {
            artifact_dir: self.artifact_dir(&spec),
            serving_threads: None,
            config_dir: self.dir.clone(),
            spec,
        }
    }
}

/// What the semantic checks find wrong in one entry on its own (an entry changed after
/// loading, such as a sweep's trial), as `field: message` lines.
pub fn entry_problems(spec: &ModelSpec) -> Vec<String> {
    validate::validate(std::slice::from_ref(spec))
        .iter()
        .map(|issue| issue.describe())
        .collect()
}

/// `label_config.groups` resolved, when set (a validated file always resolves).
pub fn label_groups(spec: &ModelSpec) -> Option<LabelGroups> {
    let groups = spec.label_config.groups.as_ref()?;
    LabelGroups::resolve(groups, &spec.label_config.labels).ok()
}

/// `"a", "b", "c"`.
pub(crate) fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod ensemble_tests;
#[cfg(test)]
mod original_tests;
#[cfg(test)]
mod tests;
