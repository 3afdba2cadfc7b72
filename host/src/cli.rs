//! Command-line arguments.

use clap::{Args as ClapArgs, Parser, Subcommand};
use std::path::PathBuf;

/// Train and serve the text classifiers declared in models.yaml.
#[derive(Debug, Parser)]
#[command(name = "clarity-host", version, about, long_about = None)]
pub struct Args {
    /// The models file.
    #[arg(
        long,
        short,
        global = true,
        env = "CLARITY_CONFIG",
        default_value = "models.yaml"
    )]
    pub config: PathBuf,

    /// The logging file [default: logging.yaml beside the models file].
    #[arg(long, global = true, env = "CLARITY_LOGGING")]
    pub logging: Option<PathBuf>,

    /// Log filter overriding logging.yaml, e.g. `debug` or `clarity_host=trace`.
    #[arg(long, global = true, env = "CLARITY_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the models in models.yaml with their routes, plugins and training state.
    List(ListArgs),
    /// Train one model on its configured data.
    Train(TrainArgs),
    /// Classify one question/context pair, score a labelled file, or ask interactively.
    Test(TestArgs),
    /// Serve every enabled model over HTTP.
    Serve(ServeArgs),
    /// (internal) Serve one model over stdin/stdout for `serve` (`isolation: process`).
    #[command(hide = true)]
    ModelProcess(ModelProcessArgs),
    /// Compare a model's recorded training runs: a table, and an HTML page with their curves and confusion matrices.
    Runs(RunsArgs),
    /// Rebuild a trained model's servable file (model.onnx; model.int8.onnx with --quantize int8) from its saved weights.
    Export(ExportArgs),
}

/// `model-process` (started by `serve`, not by people).
#[derive(Debug, ClapArgs)]
pub struct ModelProcessArgs {
    /// The model it serves (its entry comes on stdin; the name is for `ps`).
    #[arg(long)]
    pub model: String,
}

/// `list`.
#[derive(Debug, ClapArgs)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `train`.
#[derive(Debug, ClapArgs)]
pub struct TrainArgs {
    /// Model name in models.yaml [default: the first enabled model].
    #[arg(long, short)]
    pub model: Option<String>,

    /// Start TensorBoard for this run even if `tensorboard_config.auto_start` is false.
    #[arg(long, conflicts_with = "no_tensorboard")]
    pub tensorboard: bool,

    /// Continue from the newest checkpoint.
    #[arg(long, conflicts_with = "sweep")]
    pub resume: bool,

    /// Train a grid and keep the best on validation: `KEY=V1,V2,...`, repeatable (every
    /// combination is a trial). KEY is a models.yaml key (`learning_rate`, `max_length`)
    /// or a dotted path (`model_config.options.c`).
    #[arg(long, value_name = "KEY=V1,V2,...")]
    pub sweep: Vec<String>,

    /// The most trials a sweep may have.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_trials: usize,

    #[command(flatten)]
    pub tensorboard_args: TensorboardArgs,
}

/// Overrides of `tensorboard_config` for `train` and `serve`.
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct TensorboardArgs {
    /// Do not start TensorBoard, whatever `tensorboard_config.auto_start` says (event files
    /// are still written).
    #[arg(long, env = "CLARITY_NO_TENSORBOARD")]
    pub no_tensorboard: bool,

    /// Address TensorBoard binds instead of `tensorboard_config.host` (0.0.0.0 in Docker).
    #[arg(long, env = "CLARITY_TENSORBOARD_HOST", value_name = "HOST")]
    pub tensorboard_host: Option<String>,
}

/// `runs`.
#[derive(Debug, ClapArgs)]
pub struct RunsArgs {
    /// Model name in models.yaml [default: the first enabled model].
    #[arg(long, short)]
    pub model: Option<String>,

    /// Where to write the HTML page [default: <logdir>/<model>/runs.html].
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Print the runs as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `export`.
#[derive(Debug, ClapArgs)]
pub struct ExportArgs {
    /// Model name in models.yaml.
    #[arg(long, short)]
    pub model: String,

    /// Write the exported model folder here instead of replacing the model in place.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,

    /// `int8`: also write the dynamically quantized model.int8.onnx (and serve it for this
    /// export's check); `fp32`/`none`: model.onnx only [default: `model_config.quantize`]
    #[arg(long, value_parser = parse_quantize)]
    pub quantize: Option<clarity_sdk::config::Quantize>,
}

/// `--quantize`, spelled as `model_config.quantize` is.
fn parse_quantize(text: &str) -> Result<clarity_sdk::config::Quantize, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| format!("`{text}` is not one of int8, fp32, none"))
}

/// `test`.
#[derive(Debug, ClapArgs)]
pub struct TestArgs {
    /// Model name in models.yaml [default: the first enabled model].
    #[arg(long, short)]
    pub model: Option<String>,

    /// The question of one pair to classify.
    #[arg(long, requires = "context", conflicts_with = "file")]
    pub question: Option<String>,

    /// The context (interview question and answer) of that pair.
    #[arg(long, requires = "question")]
    pub context: Option<String>,

    /// A labelled file (JSON list, JSONL or CSV) to score [default: data_config.test_file;
    /// on a terminal, without a pair or a file, an interactive prompt].
    #[arg(long)]
    pub file: Option<PathBuf>,

    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `serve`.
#[derive(Debug, ClapArgs)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "CLARITY_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to bind (0 picks a free one; the chosen address is logged).
    #[arg(long, env = "CLARITY_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Serve only these models (repeatable) [default: every enabled model].
    #[arg(long = "model", short)]
    pub models: Vec<String>,

    /// Do not train a model that has no trained artifact yet; mark it failed instead.
    #[arg(long)]
    pub no_auto_train: bool,

    #[command(flatten)]
    pub tensorboard: TensorboardArgs,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "CLARITY_BODY_LIMIT", default_value_t = 2 * 1024 * 1024)]
    pub body_limit: usize,

    /// Seconds before a request is answered with 504 `timeout` (its pairs are dropped if
    /// they have not started).
    #[arg(long, env = "CLARITY_REQUEST_TIMEOUT", default_value_t = 60)]
    pub request_timeout: u64,

    /// Most model requests in flight at once, across models; more are answered 429.
    #[arg(long, env = "CLARITY_MAX_CONCURRENT_REQUESTS", default_value_t = 512,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_concurrent_requests: usize,

    /// Seconds a connection may take to send a request's headers (slow or silent clients are
    /// disconnected; also bounds how long an idle keep-alive connection waits).
    #[arg(long, env = "CLARITY_HEADER_READ_TIMEOUT", default_value_t = 10,
          value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub header_read_timeout: u64,

    /// Seconds one plugin call may run before its model is restarted on a fresh worker (a
    /// hung plugin); 0 never restarts. Default: twice --request-timeout.
    #[arg(long, env = "CLARITY_HANG_TIMEOUT")]
    pub hang_timeout: Option<u64>,

    /// Most client connections open at once; more wait until one closes (default: three
    /// quarters of the open-file limit, between 16 and 4096).
    #[arg(long, env = "CLARITY_MAX_CONNECTIONS",
          default_value_t = crate::http::listener::default_max_connections(),
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,

    /// Let browser pages from this origin call the API (CORS; repeatable, env
    /// comma-separated; `*` allows any origin). Off by default: no CORS headers.
    #[arg(
        long = "cors-origin",
        env = "CLARITY_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    #[command(flatten)]
    pub auth: AuthArgs,
}

/// API keys (see the README's "API keys").
#[derive(ClapArgs, Clone)]
pub struct AuthArgs {
    /// Require `Authorization: Bearer KEY` on every route but the open ones (repeatable;
    /// the env var takes several keys separated by commas).
    #[arg(
        long = "api-key",
        env = "CLARITY_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,

    /// File of API keys: one per line, blank lines and `#` comments ignored.
    #[arg(long, env = "CLARITY_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Routes that need no key when keys are set (repeatable, env comma-separated; replaces
    /// the default; `none` protects every route).
    #[arg(
        long = "open-route",
        env = "CLARITY_OPEN_ROUTES",
        value_delimiter = ',',
        default_values_t = crate::http::auth::DEFAULT_OPEN_ROUTES.map(String::from)
    )]
    pub open_routes: Vec<String>,
}

// Hand-written so a `{:?}` of the arguments never prints a key.
impl std::fmt::Debug for AuthArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthArgs")
            .field("api_keys", &self.api_keys.len())
            .field("api_key_file", &self.api_key_file)
            .field("open_routes", &self.open_routes)
            .finish()
    }
}
