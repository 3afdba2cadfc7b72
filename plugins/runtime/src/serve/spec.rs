//! The `models.yaml` settings every ONNX-served plugin reads the same way.

use clarity_sdk::config::Device;
use clarity_sdk::{Error, PluginInit};

/// Tokens per input when neither `model_config` nor `training_config` sets `max_length`.
pub const DEFAULT_MAX_LENGTH: usize = 256;

/// `model_config.model_name`; `required` is the error message when it is missing (each
/// plugin says what it accepts there).
pub fn model_name<'a>(init: &'a PluginInit, required: &str) -> Result<&'a str, Error> {
    init.spec
        .model_config
        .model_name
        .as_deref()
        .ok_or_else(|| Error::config(required))
}

/// The configured `max_length`: `model_config`'s, else `training_config`'s, else
/// [`DEFAULT_MAX_LENGTH`].
pub fn max_length(init: &PluginInit) -> usize {
    let spec = &init.spec;
    spec.model_config
        .max_length
        .or(spec.training_config.max_length)
        .unwrap_or(DEFAULT_MAX_LENGTH)
}

/// `model_config.device`: where training runs, and which execution provider serves.
pub fn device(init: &PluginInit) -> Device {
    init.spec.model_config.device
}

/// `model_config.options.threads`: ONNX Runtime's intra-op threads; unset, the share of
/// the cores `serve` gave this model ([`PluginInit::serving_threads`]), else all cores
/// (`None`).
pub fn threads(init: &PluginInit) -> Result<Option<usize>, Error> {
    match init.spec.model_config.options.get("threads") {
        None => Ok(init.serving_threads.filter(|&n| n > 0)),
        Some(v) => v
            .as_u64()
            .filter(|&n| n > 0)
            .map(|n| Some(n as usize))
            .ok_or_else(|| {
                Error::config(format!(
                    "model_config.options.threads must be a positive whole number, not {v}"
                ))
            }),
    }
}
