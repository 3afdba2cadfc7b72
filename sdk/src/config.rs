//! The `models.yaml` schema.
//!
//! The host parses `models.yaml` into these types (unknown keys are errors, so typos never
//! pass silently) and hands each plugin its model's entry as a [`PluginInit`]. Fields follow
//! the original Clarity `models.yaml`; everything beyond `name` has a default.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The file: a list of models, either at the top level or under `models:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsFile {
    /// Every declared model, enabled or not.
    pub models: Vec<ModelSpec>,
}

/// One model entry of `models.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Unique name, used by `--model` and in artifact paths.
    pub name: String,
    /// Backend kind: `classic` (the default, as in the original), `encoder` or `lora`.
    #[serde(rename = "type", default = "classic")]
    pub kind: String,
    /// The original's Python import of a classic loader; rejected by the host with a pointer
    /// to `plugins/classic-template` (a classic loader is a compiled plugin here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The original's classic loader function; see `module`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loader: Option<String>,
    /// Disabled models are listed but neither loaded nor served.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// HTTP route; defaults to `/classify/<name>`.
    #[serde(default)]
    pub route: Option<String>,
    /// Plugin library path (relative to `models.yaml`), or a bare shipped plugin name such as
    /// `encoder` or `classic-example`. Defaults to the shipped plugin for `type`.
    #[serde(default)]
    pub plugin: Option<String>,
    /// Where artifacts go; defaults to `artifacts/<name>` beside `models.yaml`.
    #[serde(default)]
    pub output_dir: Option<PathBuf>,
    /// What model to build and where it runs.
    #[serde(default)]
    pub model_config: ModelConfig,
    /// How to train it.
    #[serde(default)]
    pub training_config: TrainingConfig,
    /// The labels it predicts.
    #[serde(default)]
    pub label_config: LabelConfig,
    /// Where its data comes from.
    #[serde(default)]
    pub data_config: DataConfig,
    /// LoRA adapter settings (the `lora` type).
    #[serde(default)]
    pub lora_config: Option<LoraConfig>,
    /// The LoRA prompt (the original's `prompt_config.template`).
    #[serde(default)]
    pub prompt_config: Option<PromptConfig>,
    /// TensorBoard settings.
    #[serde(default)]
    pub tensorboard_config: TensorboardConfig,
    /// Request batching and queueing when served.
    #[serde(default)]
    pub serving_config: ServingConfig,
    /// `type: ensemble`: which entries it combines and how (read by the host only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble_config: Option<EnsembleConfig>,
}

fn yes() -> bool {
    true
}

fn classic() -> String {
    "classic".into()
}

impl ModelSpec {
    /// The HTTP route the model is served at.
    pub fn route(&self) -> String {
        match &self.route {
            Some(r) => r.clone(),
            None => format!("/classify/{}", self.name),
        }
    }
}

/// Which device to run on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// CUDA, then CoreML/Metal, then CPU: whatever is present.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// An NVIDIA GPU.
    Cuda,
    /// Apple's CoreML / Metal.
    #[serde(alias = "mps", alias = "metal")]
    Coreml,
}

/// Precision of the served ONNX graph (`model_config.quantize`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantize {
    /// fp32 `model.onnx` (also spelled `fp32`).
    #[default]
    #[serde(alias = "fp32")]
    None,
    /// Dynamically quantized `model.int8.onnx`, written beside the fp32 graph.
    Int8,
}

impl Quantize {
    /// Whether this is the default (fp32), left out when a spec is written back.
    pub fn is_none(&self) -> bool {
        *self == Quantize::None
    }
}

/// `model_config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Pretrained model: a local folder, a pip-installed model package, or a hub id.
    pub model_name: Option<String>,
    /// Number of labels; must match `label_config.labels` when both are given.
    pub num_labels: Option<usize>,
    /// Keep frozen base weights in 8 bits (LoRA).
    pub use_8bit: bool,
    /// Where to run.
    pub device: Device,
    /// Serve a dynamically quantized int8 graph (`int8`) instead of fp32 (`none`, `fp32`).
    #[serde(skip_serializing_if = "Quantize::is_none")]
    pub quantize: Quantize,
    /// Maximum tokens per pair (also accepted in `training_config`).
    pub max_length: Option<usize>,
    /// LoRA rank (also accepted in `lora_config`).
    pub r: Option<usize>,
    /// LoRA alpha.
    pub alpha: Option<f64>,
    /// LoRA dropout.
    pub dropout: Option<f64>,
    /// Modules that get LoRA adapters.
    pub target_modules: Option<Vec<String>>,
    /// Prompt template for decoder models: `{question}` and `{context}` are replaced.
    pub prompt_template: Option<String>,
    /// Free-form settings for the plugin (a user's classic loader reads its own keys here).
    pub options: BTreeMap<String, serde_json::Value>,
    /// The original's spelling of the top-level `output_dir` (the host moves it there).
    pub output_dir: Option<PathBuf>,
    /// Accepted for the original's files; it has no effect (no model code is downloaded or
    /// run here: architectures are built in).
    pub trust_remote_code: Option<bool>,
}

/// When to evaluate or save.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// At the end of every epoch.
    #[default]
    Epoch,
    /// Every `eval_steps` / `save_steps` optimizer steps.
    Steps,
    /// Never.
    No,
}

/// Class weights for imbalanced labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassWeights {
    /// `"balanced"` (n / (k * count)) or `"none"`.
    Named(ClassWeightsName),
    /// One weight per label, in label order.
    Explicit(Vec<f64>),
}

/// Named class-weight schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeightsName {
    /// Weight each class by n / (k * count).
    Balanced,
    /// All classes weigh 1.
    None,
}

/// `training_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// Maximum tokens per pair.
    pub max_length: Option<usize>,
    /// Examples per forward pass.
    pub batch_size: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Passes over the training data.
    pub num_epochs: usize,
    /// When to evaluate on the validation set.
    pub eval_strategy: Strategy,
    /// When to write a checkpoint.
    pub save_strategy: Strategy,
    /// Steps between evaluations with `eval_strategy: steps` (default 500).
    pub eval_steps: Option<usize>,
    /// Steps between checkpoints with `save_strategy: steps`.
    pub save_steps: Option<usize>,
    /// Stop after this many evaluations without an improvement of `metric_for_best_model`.
    pub early_stopping_patience: Option<usize>,
    /// An evaluation counts as an improvement for early stopping only when it beats the
    /// best so far by more than this.
    pub early_stopping_threshold: f64,
    /// Step checkpoints kept on disk (the oldest are deleted); at least 1.
    pub save_total_limit: usize,
    /// What picks the best model and drives early stopping: `eval_loss`, `accuracy`, `f1`
    /// (macro-F1), with or without the `eval_` prefix.
    pub metric_for_best_model: String,
    /// Whether a larger metric is better; by default false for a loss, true otherwise.
    pub greater_is_better: Option<bool>,
    /// Export the best evaluation's weights (true) or the last epoch's (false).
    pub load_best_model_at_end: bool,
    /// Accepted for the original's files; no effect (batches are tokenized in the training
    /// thread, there is no data-loader process pool).
    pub dataloader_num_workers: usize,
    /// `adamw_torch`, `adamw_hf`, `adamw` or `adamw_torch_fused`: all are our AdamW.
    pub optimizer: String,
    /// Half-precision training where the device supports it; f32 otherwise.
    pub fp16: bool,
    /// bfloat16 training where the device supports it; f32 otherwise.
    pub bf16: bool,
    /// Batches accumulated per optimizer step.
    pub gradient_accumulation_steps: usize,
    /// Fraction of steps spent warming the learning rate up.
    pub warmup_ratio: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Gradient clipping norm.
    pub max_grad_norm: Option<f64>,
    /// Class weights in the loss (none when unset).
    pub class_weights: Option<ClassWeights>,
    /// Seed for shuffling, sampling and initialisation.
    pub seed: u64,
    /// Steps between progress log lines.
    pub logging_steps: usize,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            max_length: None,
            batch_size: 8,
            learning_rate: 2e-5,
            num_epochs: 3,
            eval_strategy: Strategy::Epoch,
            save_strategy: Strategy::Epoch,
            eval_steps: None,
            save_steps: None,
            early_stopping_patience: None,
            early_stopping_threshold: 0.0,
            save_total_limit: 3,
            metric_for_best_model: "eval_loss".into(),
            greater_is_better: None,
            load_best_model_at_end: true,
            dataloader_num_workers: 0,
            optimizer: "adamw_torch".into(),
            fp16: false,
            bf16: false,
            gradient_accumulation_steps: 1,
            warmup_ratio: 0.1,
            weight_decay: 0.01,
            max_grad_norm: Some(1.0),
            class_weights: None,
            seed: 42,
            logging_steps: 10,
        }
    }
}

/// `label_config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelConfig {
    /// The labels, in the order of the model's outputs. When empty, the labels found in the
    /// training data are used, sorted.
    pub labels: Vec<String>,
    /// Label -> output index (the original's spelling; the host turns it into `labels`).
    pub label2id: Option<BTreeMap<String, LabelId>>,
    /// Output index -> label; keys may be numbers or strings such as `"0"`.
    pub id2label: Option<BTreeMap<LabelId, String>>,
    /// Coarse label -> its fine labels: the model trains on the fine labels (read from
    /// `data_config.fine_label_field`) and answers with the coarse ones, each the sum of its
    /// fine labels' probabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<BTreeMap<String, Vec<String>>>,
}

/// An output index as written in `label2id` / `id2label`: a number or a string of digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelId {
    /// `0`
    Number(i64),
    /// `"0"`
    Text(String),
}

impl LabelId {
    /// The index, when it is a non-negative whole number.
    pub fn index(&self) -> Option<usize> {
        match self {
            Self::Number(n) => usize::try_from(*n).ok(),
            Self::Text(s) => s.trim().parse().ok(),
        }
    }
}

impl std::fmt::Display for LabelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(s) => write!(f, "\"{s}\""),
        }
    }
}

/// `data_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Training data: JSON list, JSONL or CSV.
    pub train_file: Option<PathBuf>,
    /// Candidate training files; the first that exists is used (the original's spelling).
    pub train_files: Option<Vec<PathBuf>>,
    /// Validation data; when absent, `valid_split` of the training data is held out.
    pub valid_file: Option<PathBuf>,
    /// Candidate validation files; the first that exists is used.
    pub valid_files: Option<Vec<PathBuf>>,
    /// Test data for `clarity-host test` without `--file`.
    pub test_file: Option<PathBuf>,
    /// Field holding the question.
    pub question_field: String,
    /// Field holding the context (interview question and answer).
    pub context_field: String,
    /// Field holding the label.
    pub label_field: String,
    /// Field holding the fine label, with `label_config.groups`: training reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fine_label_field: Option<String>,
    /// Another name for `question_field` (in the original's comments); the host moves it.
    pub text_field_1: Option<String>,
    /// Another name for `context_field`; the host moves it.
    pub text_field_2: Option<String>,
    /// Use at most this many training examples (a seeded random sample).
    pub train_sample_size: Option<usize>,
    /// Use at most this many validation examples (a seeded random sample).
    pub valid_sample_size: Option<usize>,
    /// Fraction of the training data held out for validation when there is no `valid_file`.
    pub valid_split: f64,
    /// Raw label in the data -> configured label.
    pub label_mapping: BTreeMap<String, String>,
    /// Seed for sampling; defaults to `training_config.seed`.
    pub seed: Option<u64>,
    /// How a pair becomes the model's input (parts, order, truncation); absent: the
    /// plugin's own layout (question, then the context cut first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<crate::input::InputConfig>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train_file: None,
            train_files: None,
            valid_file: None,
            valid_files: None,
            test_file: None,
            question_field: "question".into(),
            context_field: "context".into(),
            label_field: "clarity_label".into(),
            fine_label_field: None,
            text_field_1: None,
            text_field_2: None,
            train_sample_size: None,
            valid_sample_size: None,
            valid_split: 0.1,
            label_mapping: BTreeMap::new(),
            seed: None,
            input: None,
        }
    }
}

/// `lora_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Adapter rank.
    pub r: usize,
    /// Scaling numerator: updates are scaled by alpha / r.
    pub alpha: f64,
    /// Dropout on the adapter input.
    pub dropout: f64,
    /// Modules that get adapters.
    pub target_modules: Vec<String>,
    /// Which biases train: only `none` is supported.
    pub bias: String,
    /// PEFT's task type: `CAUSAL_LM` (the original's) or `SEQ_CLS`; both train the same
    /// last-token classification head here.
    pub task_type: String,
    /// Recompute each decoder block's forward pass during the backward pass instead of
    /// keeping its activations: much less memory, one more forward pass of time.
    pub gradient_checkpointing: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 8,
            alpha: 16.0,
            dropout: 0.05,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
            bias: "none".into(),
            task_type: "CAUSAL_LM".into(),
            gradient_checkpointing: false,
        }
    }
}

/// `prompt_config` (LoRA).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptConfig {
    /// The original's training prompt with `{question}`, `{context}` and `{label}`; the
    /// prompt classified is the template up to `{label}`.
    pub template: Option<String>,
}

/// `tensorboard_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TensorboardConfig {
    /// Start a `tensorboard` process with `train` (and `serve`). On by default, as in the
    /// original Clarity; `--no-tensorboard` / `CLARITY_NO_TENSORBOARD` turn it off per run.
    pub auto_start: bool,
    /// Its port.
    pub port: u16,
    /// Its bind address.
    pub host: String,
    /// Root of the event files: runs go to `<logdir>/<model>/<time>/`.
    pub logdir: PathBuf,
}

impl Default for TensorboardConfig {
    fn default() -> Self {
        Self {
            auto_start: true,
            port: 6006,
            // Not the original's 0.0.0.0: TensorBoard has no authentication. Containers get
            // 0.0.0.0 from CLARITY_TENSORBOARD_HOST in the Dockerfile.
            host: "127.0.0.1".into(),
            logdir: PathBuf::from("runs"),
        }
    }
}

/// `ensemble_config`: an ensemble combines the probability vectors of other entries of the
/// same file (its members); the host does it, no plugin is involved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleConfig {
    /// Names of the entries combined (2 to 6, none an ensemble itself).
    pub members: Vec<String>,
    /// `fit` (the default: chosen on the validation set to maximise macro-F1) or one
    /// non-negative weight per member.
    #[serde(default)]
    pub weights: EnsembleWeights,
    /// Per-label log-probability offsets: `none` (the default) or `fit` on validation.
    #[serde(default)]
    pub bias: EnsembleBias,
    /// How the members' probabilities are combined.
    #[serde(default)]
    pub combine: Combine,
}

/// `ensemble_config.weights`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "`fit` or a list of numbers, one weight per member"
)]
pub enum EnsembleWeights {
    /// Fitted on the validation set.
    #[default]
    #[serde(with = "fit_word")]
    Fit,
    /// Given, one per member, in member order.
    Given(Vec<f64>),
}

/// `ensemble_config.bias`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnsembleBias {
    /// No offsets.
    #[default]
    None,
    /// One offset per label, fitted on the validation set to maximise macro-F1.
    Fit,
}

/// `ensemble_config.combine`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// The weighted mean of the probabilities.
    #[default]
    MeanProb,
    /// The weighted mean of the log-probabilities, renormalised (a weighted geometric mean).
    MeanLogProb,
}

/// The word `fit` as a unit variant of an untagged enum.
mod fit_word {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("fit")
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        match String::deserialize(d)?.as_str() {
            "fit" => Ok(()),
            other => Err(D::Error::custom(format!("expected `fit`, got `{other}`"))),
        }
    }
}

/// `serving_config`: how requests to one model are queued and batched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServingConfig {
    /// Most pairs run in one `classify_batch` call.
    pub max_batch_size: usize,
    /// Most pairs waiting; beyond it requests get 429 at once.
    pub queue_capacity: usize,
    /// Most pairs in one HTTP request.
    pub max_request_pairs: usize,
    /// Most characters (Unicode scalar values) in one `question` or `context`: longer texts
    /// get a 422 before any tokenizer sees them.
    #[serde(skip_serializing_if = "is_default_text_chars")]
    pub max_text_chars: usize,
    /// Most tokens (pairs x padded length) in one forward pass: a batch of long pairs is
    /// cut into several runs so its activations stay bounded (TEI's `max_batch_tokens`).
    /// Unset: chosen by the device that serves (small runs on a CPU, where they stay in
    /// cache; large ones on an accelerator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_tokens: Option<usize>,
    /// Where the plugin runs: in the server's process (`thread`, the default and the
    /// fastest) or in a child process of its own (`process`), so that a crash, an abort or
    /// runaway memory in the plugin ends that process only; it is started again on the
    /// next request.
    #[serde(skip_serializing_if = "Isolation::is_default")]
    pub isolation: Isolation,
    /// With `isolation: process`: the most memory, in MiB, the model's process may allocate
    /// (its data segment, `RLIMIT_DATA`); an allocation beyond it fails in that process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_mb: Option<u64>,
}

impl Default for ServingConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            queue_capacity: 1024,
            max_request_pairs: 256,
            max_text_chars: DEFAULT_MAX_TEXT_CHARS,
            max_batch_tokens: None,
            isolation: Isolation::Thread,
            memory_limit_mb: None,
        }
    }
}

/// The default `max_text_chars`.
pub const DEFAULT_MAX_TEXT_CHARS: usize = 100_000;

fn is_default_text_chars(n: &usize) -> bool {
    *n == DEFAULT_MAX_TEXT_CHARS
}

/// `serving_config.isolation`: where a served model's plugin runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// On a thread of the server's process.
    #[default]
    Thread,
    /// In a child process of its own.
    Process,
}

impl Isolation {
    fn is_default(&self) -> bool {
        *self == Isolation::Thread
    }
}

/// What a plugin's constructor receives: the model's entry plus paths the host resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInit {
    /// The model's `models.yaml` entry, as written.
    pub spec: ModelSpec,
    /// Folder of `models.yaml`: relative paths in `spec` are relative to it.
    pub config_dir: PathBuf,
    /// Absolute folder the trained model lives in (`output_dir`, resolved).
    pub artifact_dir: PathBuf,
    /// Inference threads this model should use when `serve` shares the cores between
    /// several models (`None`: all of them). `model_config.options.threads` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_threads: Option<usize>,
}

impl PluginInit {
    /// A path from `models.yaml`, resolved against its folder.
    pub fn resolve(&self, path: &std::path::Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.config_dir.join(path)
        }
    }

    /// The model's labels (from `label_config`), in output order.
    pub fn labels(&self) -> &[String] {
        &self.spec.label_config.labels
    }
}
