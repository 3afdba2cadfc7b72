//! The training loop shared by the ML plugins.
//!
//! AdamW with linear warmup and decay, gradient accumulation and clipping, optional class
//! weights, evaluation and checkpoints by epoch or by steps, the best model and early
//! stopping by `metric_for_best_model` ([`clarity_sdk::selection`]; the best weights are
//! kept and restored at the end unless `load_best_model_at_end: false`), at most
//! `save_total_limit` checkpoints on disk, and `--resume` from the newest checkpoint. Every step and evaluation is reported to the host, which may answer
//! "stop": the loop then writes a checkpoint and returns [`TrainError::Cancelled`].

pub mod best;
pub mod checkpoint;
mod eval;
pub mod loss;
pub mod optim;
pub mod order;
pub mod schedule;

use crate::batch::{TensorBatch, TrainableModel};
use crate::tokenize::{EncodePairs, TokenizeError};
use candle_core::{Tensor, Var};
use checkpoint::{Best, CheckpointError, RunState};
use clarity_sdk::config::{Strategy, TrainingConfig};
use clarity_sdk::metrics::Evaluation;
use clarity_sdk::selection::Selection;
use clarity_sdk::{Example, Flow, TrainContext, TrainEvent, TrainJob, TrainReport};
use optim::{AdamW, AdamWConfig, Grads};
use schedule::LinearSchedule;
use std::collections::HashMap;
use std::path::PathBuf;

pub use eval::evaluate;

/// transformers' default for `eval_steps`/`save_steps` with the `steps` strategy.
const DEFAULT_INTERVAL: u64 = 500;

/// Why training did not finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The host asked to stop; a checkpoint was written where one could be.
    #[error("training stopped")]
    Cancelled {
        /// The checkpoint to resume from.
        checkpoint: Option<PathBuf>,
    },
    /// The configuration or data cannot be trained on.
    #[error("{0}")]
    Config(String),
    /// The loss became NaN or infinite.
    #[error("the training loss became {loss} at step {step}: lower training_config.learning_rate or set max_grad_norm")]
    Diverged {
        /// The step.
        step: u64,
        /// The loss.
        loss: f32,
    },
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Tokenization failed.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// A finished run.
#[derive(Debug)]
pub struct TrainOutcome {
    /// What goes back to the host.
    pub report: TrainReport,
}

/// Fine-tune `model` on `job` as `config` says, reporting through `ctx`. On success the
/// model holds the best weights (by `metric_for_best_model`), or the last ones without a
/// validation set or with `load_best_model_at_end: false`.
pub fn fit<M: TrainableModel>(
    model: &M,
    tokenizer: &dyn EncodePairs,
    job: &TrainJob,
    config: &TrainingConfig,
    ctx: &mut TrainContext<'_>,
) -> Result<TrainOutcome, TrainError> {
    Trainer::new(model, tokenizer, job, config)?.run(ctx)
}

struct Trainer<'a, M: TrainableModel> {
    model: &'a M,
    tokenizer: &'a dyn EncodePairs,
    job: &'a TrainJob,
    config: &'a TrainingConfig,
    selection: Selection,
    vars: Vec<(String, Var)>,
    optimizer: AdamW,
    schedule: LinearSchedule,
    class_weights: Option<Tensor>,
    state: RunState,
    /// In-memory copy of the best weights (restored at the end).
    best_weights: Option<HashMap<String, Tensor>>,
    /// The best weights changed since they were last written beside the checkpoints.
    best_dirty: bool,
    /// The newest checkpoint and the step it holds.
    last_checkpoint: Option<(u64, PathBuf)>,
    /// The newest evaluation of this run (what is exported without `load_best_model_at_end`).
    last_eval: Option<Evaluation>,
}

impl<'a, M: TrainableModel> Trainer<'a, M> {
    fn new(
        model: &'a M,
        tokenizer: &'a dyn EncodePairs,
        job: &'a TrainJob,
        config: &'a TrainingConfig,
    ) -> Result<Self, TrainError> {
        if job.train.is_empty() {
            return Err(TrainError::Config("no training examples".into()));
        }
        let selection = Selection::from_config(config).map_err(TrainError::Config)?;
        if config.batch_size == 0 || config.gradient_accumulation_steps == 0 {
            return Err(TrainError::Config(
                "training_config.batch_size and gradient_accumulation_steps must be at least 1"
                    .into(),
            ));
        }
        let mut vars: Vec<(String, Var)> = match model.varmap().data().lock() {
            Ok(data) => data.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
            Err(_) => return Err(TrainError::Config("variable map lock poisoned".into())),
        };
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        if vars.is_empty() {
            return Err(TrainError::Config(
                "the model has no trainable variables".into(),
            ));
        }
        let optimizer = AdamW::new(
            vars.clone(),
            AdamWConfig {
                weight_decay: config.weight_decay,
                ..Default::default()
            },
        )?;
        let n = job.train.len() as u64;
        let batch = config.batch_size as u64;
        let accum = config.gradient_accumulation_steps as u64;
        let steps_per_epoch = n.div_ceil(batch).div_ceil(accum);
        let total = steps_per_epoch * config.num_epochs as u64;
        let mut counts = vec![0usize; job.labels.len()];
        for e in &job.train {
            if let Some(c) = counts.get_mut(e.label) {
                *c += 1;
            }
        }
        let class_weights =
            loss::class_weights(config.class_weights.as_ref(), &counts, job.groups.as_ref())
                .map_err(|e| TrainError::Config(e.to_string()))?
                .map(|w| Tensor::new(w.as_slice(), model.device()))
                .transpose()?;
        Ok(Self {
            model,
            tokenizer,
            job,
            config,
            selection,
            vars,
            optimizer,
            schedule: LinearSchedule::new(config.learning_rate, config.warmup_ratio, total),
            class_weights,
            state: RunState {
                format: RunState::FORMAT,
                step: 0,
                epoch: 0,
                examples_in_epoch: 0,
                updates: 0,
                train_examples: n,
                seed: config.seed,
                labels: job.labels.clone(),
                best: None,
                evals_since_best: 0,
                train_loss: None,
            },
            best_weights: None,
            best_dirty: false,
            last_checkpoint: None,
            last_eval: None,
        })
    }

    fn run(mut self, ctx: &mut TrainContext<'_>) -> Result<TrainOutcome, TrainError> {
        self.start(ctx)?;
        let epochs = self.config.num_epochs as u64;
        let mut stopped_early = false;
        while self.state.epoch < epochs && !stopped_early {
            stopped_early = self.epoch(ctx)?;
        }
        let (kept_epoch, valid) = self.keep_final_weights(ctx)?;
        Ok(TrainOutcome {
            report: TrainReport {
                steps: self.state.step,
                epochs: self.state.epoch,
                best_epoch: kept_epoch,
                train_loss: self.state.train_loss,
                valid,
                stopped_early,
                artifacts: Vec::new(),
            },
        })
    }

    /// Restore the best weights (`load_best_model_at_end`, the default) or keep the last
    /// ones; returns the epoch whose weights are kept and their validation scores.
    fn keep_final_weights(
        &mut self,
        ctx: &mut TrainContext<'_>,
    ) -> Result<(Option<u64>, Option<Evaluation>), TrainError> {
        let best = self.state.best.clone();
        if !self.config.load_best_model_at_end {
            if best.is_some() {
                ctx.message(format!(
                    "load_best_model_at_end is false: keeping the last weights (epoch {})",
                    self.state.epoch
                ));
            }
            let evaluated = best.is_some();
            return Ok((
                evaluated.then_some(self.state.epoch),
                self.last_eval.clone(),
            ));
        }
        if let (Some(weights), Some(b)) = (&self.best_weights, &best) {
            self.set_weights(weights)?;
            let value = self.selection.metric.value(&b.evaluation, b.loss);
            ctx.message(format!(
                "keeping the best model by {}: epoch {} step {} ({} {})",
                self.selection.describe(),
                b.epoch,
                b.step,
                self.selection.metric.name(),
                value.map_or("n/a".into(), |v| format!("{v:.4}"))
            ));
        }
        Ok((best.as_ref().map(|b| b.epoch), best.map(|b| b.evaluation)))
    }

    /// Resume or start fresh, and tell the host what is planned.
    fn start(&mut self, ctx: &mut TrainContext<'_>) -> Result<(), TrainError> {
        let dir = &self.job.checkpoint_dir;
        let stale = checkpoint::remove_stale(dir)?;
        if stale > 0 {
            ctx.message(format!(
                "removed {stale} unfinished checkpoint folder(s) of a run that was killed from {}",
                dir.display()
            ));
        }
        if self.job.resume {
            match checkpoint::load_latest(dir, self.model.device())? {
                Some((loaded, skipped)) => {
                    for e in skipped {
                        ctx.message(format!(
                            "skipping a checkpoint that does not read back: {e}"
                        ));
                    }
                    self.restore(loaded, ctx)?
                }
                None => {
                    ctx.message(format!(
                        "no checkpoint in {} to resume from: starting from the pretrained weights",
                        dir.display()
                    ));
                }
            }
        } else {
            let removed = checkpoint::clear(dir)?;
            if removed > 0 {
                ctx.message(format!(
                    "removed {removed} checkpoint(s) of an earlier run from {} (use --resume to continue one)",
                    dir.display()
                ));
            }
        }
        let flow = ctx.emit(TrainEvent::Started {
            total_steps: Some(self.schedule.total),
            epochs: self.config.num_epochs as u64,
            train_examples: self.job.train.len() as u64,
            start_step: self.state.step,
        });
        if flow == Flow::Stop {
            return Err(TrainError::Cancelled { checkpoint: None });
        }
        if self.job.valid.is_empty() && self.config.eval_strategy != Strategy::No {
            ctx.message("no validation examples: evaluation and early stopping are off");
        }
        if self.config.fp16 || self.config.bf16 {
            // The candle models train in f32; mixed precision is not implemented for any
            // device yet, so say so once instead of ignoring the flag silently.
            let which = if self.config.bf16 { "bf16" } else { "fp16" };
            ctx.message(format!(
                "training_config.{which} is set, but training runs in f32 on this device ({:?})",
                self.model.device().location()
            ));
        }
        Ok(())
    }

    fn restore(
        &mut self,
        loaded: checkpoint::Loaded,
        ctx: &mut TrainContext<'_>,
    ) -> Result<(), TrainError> {
        let state = loaded.state;
        if state.labels != self.job.labels {
            return Err(TrainError::Config(format!(
                "the checkpoint in {} was trained for labels {:?}, not {:?}: train without --resume",
                loaded.dir.display(),
                state.labels,
                self.job.labels
            )));
        }
        self.set_weights(&loaded.weights).map_err(|e| {
            TrainError::Config(format!(
                "the checkpoint in {} does not fit this model ({e}): train without --resume",
                loaded.dir.display()
            ))
        })?;
        self.optimizer.restore(&loaded.optimizer, state.updates)?;
        if state.train_examples != self.job.train.len() as u64 || state.seed != self.config.seed {
            ctx.message(
                "the training data or seed changed since the checkpoint: the rest of its epoch uses a new order",
            );
        }
        if state.best.is_some() {
            self.best_weights =
                checkpoint::load_best(&self.job.checkpoint_dir, self.model.device())?;
        }
        ctx.message(format!(
            "resuming from {} (step {}, epoch {} done, {} examples into the next)",
            loaded.dir.display(),
            state.step,
            state.epoch,
            state.examples_in_epoch
        ));
        self.state = RunState {
            train_examples: self.job.train.len() as u64,
            seed: self.config.seed,
            ..state
        };
        self.last_checkpoint = Some((self.state.step, loaded.dir));
        Ok(())
    }

    /// One epoch (or its rest, when resuming). Returns whether early stopping ended the run.
    fn epoch(&mut self, ctx: &mut TrainContext<'_>) -> Result<bool, TrainError> {
        let epoch = self.state.epoch;
        let order = order::epoch_order(self.job.train.len(), self.config.seed, epoch);
        let batch_size = self.config.batch_size;
        let accum = self.config.gradient_accumulation_steps;
        let micro = order::batches(&order, batch_size);
        let skip = (self.state.examples_in_epoch as usize).div_ceil(batch_size);
        let mut pending: Option<Grads> = None;
        let mut pending_losses: Vec<f64> = Vec::new();
        let mut epoch_losses: Vec<f64> = Vec::new();
        for (i, indices) in micro.iter().enumerate().skip(skip) {
            let examples: Vec<&Example> = indices.iter().map(|&j| &self.job.train[j]).collect();
            self.model.begin_micro_batch((epoch << 32) | i as u64);
            let (loss, grads) = self.forward_backward(&examples)?;
            pending_losses.push(loss);
            match pending.as_mut() {
                Some(acc) => acc.accumulate(grads)?,
                None => pending = Some(grads),
            }
            let group_end = (i + 1) % accum == 0 || i + 1 == micro.len();
            let Some(grads) = pending.take().filter(|_| group_end) else {
                continue;
            };
            let mean = pending_losses.iter().sum::<f64>() / pending_losses.len() as f64;
            let lr = self.update(&grads, pending_losses.len(), ctx)?;
            pending_losses.clear();
            epoch_losses.push(mean);
            self.state.examples_in_epoch = ((i + 1) * batch_size) as u64;
            let flow = ctx.emit(TrainEvent::Step {
                step: self.state.step,
                epoch: epoch + 1,
                loss: mean,
                learning_rate: Some(lr),
            });
            if flow == Flow::Stop {
                return Err(self.cancel(ctx));
            }
            if self.due(self.config.eval_strategy, self.config.eval_steps) && self.evaluate(ctx)? {
                self.save(ctx)?;
                return Ok(true);
            }
            if self.due(self.config.save_strategy, self.config.save_steps) {
                self.save(ctx)?;
            }
        }
        self.state.epoch = epoch + 1;
        self.state.examples_in_epoch = 0;
        if !epoch_losses.is_empty() {
            self.state.train_loss =
                Some(epoch_losses.iter().sum::<f64>() / epoch_losses.len() as f64);
        }
        let stop = self.config.eval_strategy == Strategy::Epoch && self.evaluate(ctx)?;
        if self.config.save_strategy == Strategy::Epoch || stop {
            self.save(ctx)?;
        }
        Ok(stop)
    }

    /// Loss and gradients of one micro-batch.
    fn forward_backward(&self, examples: &[&Example]) -> Result<(f64, Grads), TrainError> {
        let pairs: Vec<(&str, &str)> = examples
            .iter()
            .map(|e| (e.question.as_str(), e.context.as_str()))
            .collect();
        let encoded = self.tokenizer.encode(&pairs)?;
        let device = self.model.device();
        let batch = TensorBatch::from_encoded(&encoded, device)?;
        let gold: Vec<u32> = examples.iter().map(|e| e.label as u32).collect();
        let targets = Tensor::new(gold.as_slice(), device)?;
        let logits = self.model.forward(&batch, true)?;
        let loss = loss::cross_entropy(&logits, &targets, self.class_weights.as_ref())?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(TrainError::Diverged {
                step: self.state.step + 1,
                loss: value,
            });
        }
        let grads = self.optimizer.collect(self.model.backward(&loss)?);
        Ok((f64::from(value), grads))
    }

    /// Clip and apply one optimizer step over `members` accumulated micro-batches; returns
    /// the learning rate used.
    fn update(
        &mut self,
        grads: &Grads,
        members: usize,
        ctx: &mut TrainContext<'_>,
    ) -> Result<f64, TrainError> {
        if self.state.step == 0 || self.state.updates == 0 {
            let missing = self.optimizer.missing_gradients(grads);
            if !missing.is_empty() {
                ctx.message(format!(
                    "warning: {} of {} trainable variables received no gradient (they will not learn): {}",
                    missing.len(),
                    self.optimizer.len(),
                    missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let lr = self.schedule.at(self.state.step);
        let scale = 1.0 / members as f64;
        self.optimizer
            .step(grads, lr, scale, self.config.max_grad_norm)?;
        self.state.step += 1;
        self.state.updates += 1;
        Ok(lr)
    }

    /// Whether a `steps` strategy falls due at the current step.
    fn due(&self, strategy: Strategy, every: Option<usize>) -> bool {
        let every = every.map_or(DEFAULT_INTERVAL, |e| e.max(1) as u64);
        strategy == Strategy::Steps && self.state.step.is_multiple_of(every)
    }

    /// Score the validation set, keep the best weights; returns whether patience ran out.
    fn evaluate(&mut self, ctx: &mut TrainContext<'_>) -> Result<bool, TrainError> {
        if self.job.valid.is_empty() {
            return Ok(false);
        }
        let batch = self.config.batch_size * 2;
        let (evaluation, loss) = eval::evaluate(self.model, self.tokenizer, self.job, batch)?;
        // A mid-epoch evaluation belongs to the epoch under way.
        let epoch = if self.state.examples_in_epoch > 0 {
            self.state.epoch + 1
        } else {
            self.state.epoch
        };
        let verdict = best::judge(
            &self.selection,
            &evaluation,
            Some(loss),
            self.state.best.as_ref(),
        );
        self.last_eval = Some(evaluation.clone());
        let flow = ctx.emit(TrainEvent::Eval {
            step: self.state.step,
            epoch,
            loss: Some(loss),
            metrics: evaluation.clone(),
        });
        if verdict.improved {
            self.best_weights = Some(self.snapshot()?);
            self.best_dirty = true;
            self.state.best = Some(Best {
                epoch,
                step: self.state.step,
                evaluation,
                loss: Some(loss),
            });
        }
        if verdict.resets_patience {
            self.state.evals_since_best = 0;
        } else {
            self.state.evals_since_best += 1;
        }
        if flow == Flow::Stop {
            return Err(self.cancel(ctx));
        }
        let patience = self.config.early_stopping_patience;
        if best::patience_ran_out(patience, self.state.evals_since_best) {
            let p = patience.unwrap_or_default();
            ctx.message(format!(
                "early stopping: validation {} has not improved by more than {} for {p} evaluation(s)",
                self.selection.metric.name(),
                self.selection.threshold
            ));
            return Ok(true);
        }
        Ok(false)
    }

    /// Write a checkpoint of where the run is now.
    fn save(&mut self, ctx: &mut TrainContext<'_>) -> Result<PathBuf, TrainError> {
        let dir = &self.job.checkpoint_dir;
        if self.best_dirty {
            if let Some(best) = &self.best_weights {
                checkpoint::save_best(dir, best)?;
            }
            self.best_dirty = false;
        }
        let (moments, _) = self.optimizer.state()?;
        let path = checkpoint::save(
            dir,
            &self.state,
            &self.snapshot()?,
            &moments,
            self.config.save_total_limit,
        )?;
        ctx.emit(TrainEvent::Checkpoint {
            step: self.state.step,
            path: path.clone(),
        });
        self.last_checkpoint = Some((self.state.step, path.clone()));
        Ok(path)
    }

    /// The host asked to stop: checkpoint (unless the newest one already holds this step).
    fn cancel(&mut self, ctx: &mut TrainContext<'_>) -> TrainError {
        let checkpoint = match &self.last_checkpoint {
            Some((step, path)) if *step == self.state.step => Some(path.clone()),
            _ => match self.save(ctx) {
                Ok(path) => Some(path),
                Err(e) => {
                    ctx.message(format!("could not write a checkpoint while stopping: {e}"));
                    None
                }
            },
        };
        TrainError::Cancelled { checkpoint }
    }

    /// Copies of the trainable weights, by name.
    fn snapshot(&self) -> Result<HashMap<String, Tensor>, TrainError> {
        self.vars
            .iter()
            .map(|(name, var)| Ok((name.clone(), var.as_tensor().copy()?)))
            .collect()
    }

    /// Overwrite the trainable weights; every variable must be present with its shape.
    fn set_weights(&self, weights: &HashMap<String, Tensor>) -> Result<(), TrainError> {
        for (name, var) in &self.vars {
            let w = weights
                .get(name)
                .ok_or_else(|| TrainError::Config(format!("no weights for `{name}`")))?;
            if w.dims() != var.dims() {
                return Err(TrainError::Config(format!(
                    "`{name}` has shape {:?}, the model {:?}",
                    w.dims(),
                    var.dims()
                )));
            }
            var.set(&w.to_device(var.device())?.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }
}
