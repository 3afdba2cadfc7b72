//! `clarity-host serve`: every enabled model at its route.
//!
//! The listener opens at once; each model loads on its own thread, so `/health` answers
//! while models load and `/ready` turns 200 when all have. A model that fails to load (a
//! missing plugin, an ABI mismatch, no trained model) is reported and the others serve.
//!
//! SIGHUP (or `POST /admin/reload`) re-reads `models.yaml` while serving; see
//! [`crate::reload`].
//!
//! A model with no trained artifact is trained first (auto-train). Ctrl-C or SIGTERM asks
//! such a run to checkpoint and stop, and the process waits for it before exiting, so a
//! stop never leaves half a model behind.

use crate::backend::LoadedModel;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::http::{self, AppState, Limits};
use crate::plugins::{self, Registry};
use crate::reload::{ModelTable, Reloader};
use crate::tensorboard;
use crate::training::{self, ProgressMode, TrainOptions};
use crate::worker::{ModelWorker, Startup, Status};
use anyhow::{bail, Context};
use clarity_sdk::{ErrorKind, ModelSpec, TextPair};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest the process waits, after a stop signal, for an auto-train to checkpoint.
const TRAINING_STOP_WAIT: Duration = Duration::from_secs(300);

pub fn run(config: Config, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let specs = selected_models(&config, &args.models)?;
    let cors = http::cors::layer(&args.cors_origins)?;
    if cors.is_some() {
        tracing::info!("CORS on for: {}", args.cors_origins.join(", "));
    }
    let auth = http::auth::Auth::new(
        &args.auth.api_keys,
        args.auth.api_key_file.as_deref(),
        &args.auth.open_routes,
    )?;
    if auth.enabled() {
        // Only the count: keys never reach the log.
        tracing::info!(
            "API key required ({} key(s) configured); open routes: {}",
            auth.key_count(),
            match auth.open_routes() {
                [] => "none".to_string(),
                open => open.join(", "),
            }
        );
    }
    // Installed before the model threads start, so their first measurements count.
    let metrics = match crate::metrics::install() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!("GET /metrics disabled: {e}");
            None
        }
    };
    let _tensorboard = tensorboard::start_for(
        &config,
        &specs.iter().collect::<Vec<_>>(),
        &args.tensorboard,
    );
    let config = Arc::new(config);
    let registry = Arc::new(Registry::default());
    // Set when the server is told to stop: auto-trains checkpoint and stop at their next step.
    let stop = Arc::new(AtomicBool::new(false));
    // Shares are fixed at startup: a reload that adds a model does not re-split the cores.
    let threads = inference_threads(&specs);
    let spawn = {
        let registry = Arc::clone(&registry);
        let stop = Arc::clone(&stop);
        let auto_train = !args.no_auto_train;
        move |config: Arc<Config>, spec: ModelSpec, train_first: bool| {
            let path = plugins::plugin_path(&spec, &config.dir);
            let startup = startup_for(
                config,
                Arc::clone(&registry),
                spec.clone(),
                (auto_train && train_first).then(|| Arc::clone(&stop)),
                threads,
            );
            ModelWorker::spawn(spec, path.display().to_string(), startup)
        }
    };
    let mut workers = Vec::with_capacity(specs.len());
    for spec in specs {
        let worker =
            spawn(Arc::clone(&config), spec, true).context("cannot start a model thread")?;
        workers.push(Arc::new(worker));
    }
    let table = ModelTable::shared(workers);
    let reloader = Arc::new(Reloader::new(
        Arc::clone(&config),
        args.models.clone(),
        Arc::clone(&table),
        Box::new(spawn),
    ));
    let state = AppState {
        models: table,
        metrics,
        auth: Arc::new(auth),
        reloader: Some(Arc::clone(&reloader)),
    };
    let limits = Limits {
        body_bytes: args.body_limit,
        timeout: Duration::from_secs(args.request_timeout.max(1)),
        max_concurrent_requests: args.max_concurrent_requests,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let app = http::cors::wrap(http::router(state.clone(), limits), cors);
    let connections = http::listener::ConnectionLimits {
        header_timeout: Duration::from_secs(args.header_read_timeout),
        max_connections: args.max_connections,
    };
    let served = runtime.block_on(serve(&state, app, &args.host, args.port, connections));
    stop.store(true, Ordering::SeqCst);
    let mut running: Vec<Arc<ModelWorker>> = state.models().iter().cloned().collect();
    running.extend(reloader.pending());
    for worker in running {
        if worker.status() == Status::Training {
            tracing::info!(
                "Waiting for `{}` to checkpoint its training",
                worker.spec().name
            );
            if !worker.wait_while_training(TRAINING_STOP_WAIT) {
                tracing::warn!(
                    "`{}` did not stop training within {} s; exiting without its checkpoint",
                    worker.spec().name,
                    TRAINING_STOP_WAIT.as_secs()
                );
            }
        }
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    state: &AppState,
    app: axum::Router,
    host: &str,
    port: u16,
    connections: http::listener::ConnectionLimits,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| {
            format!("cannot listen on {host}:{port} (in use? pick another with --port)")
        })?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    if let Some(reloader) = &state.reloader {
        reload_on_sighup(Arc::clone(reloader));
    }
    for worker in state.models().iter() {
        tracing::info!(
            "Route POST {} -> model `{}`",
            worker.spec().route(),
            worker.spec().name
        );
    }
    tracing::info!("Listening on http://{addr}");
    http::listener::serve(listener, app, connections, shutdown_signal()).await;
    tracing::info!("Server stopped");
    Ok(())
}

/// Reload `models.yaml` on each SIGHUP (the reply goes to the log).
fn reload_on_sighup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP (reload with POST /admin/reload): {e}");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading {}", reloader.config_path().display());
            if let Err(e) = reloader.reload("SIGHUP").await {
                tracing::error!("Reload (SIGHUP): {e}");
            }
        }
    });
    #[cfg(not(unix))]
    drop(reloader);
}

/// Every enabled model, or exactly the ones named with `--model`.
fn selected_models(config: &Config, names: &[String]) -> anyhow::Result<Vec<ModelSpec>> {
    if names.is_empty() {
        let specs: Vec<ModelSpec> = config.enabled().cloned().collect();
        if specs.is_empty() {
            bail!(
                "no enabled model in {}: set `enabled: true` on one",
                config.path.display()
            );
        }
        return Ok(specs);
    }
    names
        .iter()
        .map(|n| config.model(n).cloned().map_err(anyhow::Error::from))
        .collect()
}

/// Model types whose plugins run ONNX Runtime, which by default uses every core.
const ORT_KINDS: [&str; 2] = ["encoder", "lora"];

/// Each ONNX Runtime model's share of the cores when several are served, so their thread
/// pools do not oversubscribe the machine (`None`: one model, all cores). A model's own
/// `model_config.options.threads` still wins.
fn inference_threads(specs: &[ModelSpec]) -> Option<usize> {
    let models = specs
        .iter()
        .filter(|s| ORT_KINDS.contains(&s.kind.as_str()))
        .count();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let share = (models > 1).then(|| (cores / models).max(1));
    if let Some(share) = share {
        tracing::info!(
            "{models} ONNX Runtime models share {cores} cores: {share} inference thread(s) each \
             (model_config.options.threads overrides)"
        );
    }
    share
}

/// What a model's thread does before serving: open the plugin, load the model, and, when
/// it was never trained and auto-train is on (`stop` is its stop flag), train it on its
/// configured data first.
fn startup_for(
    config: Arc<Config>,
    registry: Arc<Registry>,
    spec: ModelSpec,
    auto_train: Option<Arc<AtomicBool>>,
    threads: Option<usize>,
) -> Startup {
    Box::new(move |set_status| {
        let fail = |e: anyhow::Error| format!("{e:#}");
        let model = open_for_serving(&registry, &config, &spec, threads)?;
        let stop = match (model.into_loaded(), auto_train) {
            (Ok(loaded), _) => return warm_up(&spec.name, loaded),
            (Err(e), Some(stop))
                if e.kind == ErrorKind::NotTrained && spec.data_config.train_file.is_some() =>
            {
                tracing::info!(
                    "Model `{}` has no trained model yet: training it first ({})",
                    spec.name,
                    e.message
                );
                stop
            }
            (Err(e), _) if e.kind == ErrorKind::NotTrained => {
                return Err(format!(
                    "not trained yet ({}): run `clarity-host train --model {}`",
                    e.message, spec.name
                ))
            }
            (Err(e), _) => return Err(format!("load failed: {e}")),
        };
        set_status(Status::Training);
        let options = TrainOptions {
            resume: false,
            stop: &stop,
            progress: ProgressMode::Lines,
        };
        training::run(&registry, &config, &spec, options).map_err(fail)?;
        let loaded = open_for_serving(&registry, &config, &spec, threads)?
            .into_loaded()
            .map_err(|e| format!("load after training failed: {e}"))?;
        warm_up(&spec.name, loaded)
    })
}

/// One call through the whole path before the model is marked ready, so ONNX Runtime
/// plans and allocates for a full-length input now rather than on the first request. A
/// model that cannot score a plain pair is not ready to serve.
fn warm_up(name: &str, model: LoadedModel) -> Result<LoadedModel, String> {
    let words = model.info().max_length.unwrap_or(16);
    let pair = TextPair::new("Is this a warm-up call?", "warm up ".repeat(words));
    let started = Instant::now();
    model
        .classify(std::slice::from_ref(&pair))
        .map_err(|e| format!("the warm-up call failed: {e}"))?;
    tracing::info!(
        "Model `{name}` warmed up in {} ms",
        started.elapsed().as_millis()
    );
    Ok(model)
}

/// `spec`'s backend, told how many inference threads it may use.
fn open_for_serving(
    registry: &Registry,
    config: &Config,
    spec: &ModelSpec,
    threads: Option<usize>,
) -> Result<plugins::Model, String> {
    let mut init = config.plugin_init(spec, None);
    init.serving_threads = threads;
    registry
        .model_with(config, spec, &init)
        .map_err(|e| e.to_string())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("Shutting down: finishing requests in flight");
}
