//! `clarity-host serve`: every enabled model at its route.
//!
//! The listener opens at once; each model loads on its own thread, so `/health` answers
//! while models load and `/ready` turns 200 when all have. A model that fails to load (a
//! missing plugin, an ABI mismatch, no trained model) is reported and the others serve.
//!
//! SIGHUP (or `POST /admin/reload`) re-reads `models.yaml` while serving; see
//! [`crate::reload`].
//!
//! An entry of `models.yaml` with problems of its own (a typo, a wrong type, a duplicate
//! route) is not served: it is listed as failed, with its messages, beside the others.
//!
//! A model with no trained artifact is trained first (auto-train). Ctrl-C or SIGTERM asks
//! such a run to checkpoint and stop, and the process waits for it before exiting, so a
//! stop never leaves half a model behind.

use crate::backend::LoadedModel;
use crate::cli::ServeArgs;
use crate::config::{self, BrokenEntry, Config};
use crate::http::{self, AppState, Limits};
use crate::isolated::{IsolatedBackend, Launch, StartError};
use crate::plugins::{self, Registry};
use crate::reload::{ModelTable, Reloader, SpawnWorker};
use crate::tensorboard;
use crate::training::{self, ProgressMode, TrainOptions};
use crate::worker::{ModelWorker, Startup, Status};
use anyhow::{bail, Context};
use clarity_sdk::config::Isolation;
use clarity_sdk::{ErrorKind, ModelSpec, TextPair};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest the process waits, after a stop signal, for an auto-train to checkpoint.
const TRAINING_STOP_WAIT: Duration = Duration::from_secs(300);

pub fn run(config: Config, broken: Vec<BrokenEntry>, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let specs = selected_models(&config, &broken, &args.models)?;
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
    } else if !is_loopback(&args.host) {
        tracing::warn!(
            "Serving on {} without an API key: anyone who can reach this port can classify, \
             reload the models (POST /admin/reload) and read /metrics; set --api-key or \
             --api-key-file, or bind 127.0.0.1 behind a proxy that checks callers",
            args.host
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
    // Created empty so ensembles can look their members up in it; filled below.
    let table = ModelTable::shared(Vec::new());
    let spawn_model: Arc<SpawnWorker> = {
        let registry = Arc::clone(&registry);
        let stop = Arc::clone(&stop);
        let auto_train = !args.no_auto_train;
        Arc::new(
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
            },
        )
    };
    let spawn = {
        let table = Arc::clone(&table);
        let selected = args.models.clone();
        move |config: Arc<Config>, spec: ModelSpec, train_first: bool| {
            if !config::is_ensemble(&spec) {
                return spawn_model(config, spec, train_first);
            }
            // A member is served on its own route when `serve` serves its entry.
            let served = {
                let config = Arc::clone(&config);
                let selected = selected.clone();
                move |name: &str| {
                    config.model(name).is_ok_and(|m| m.enabled)
                        && (selected.is_empty() || selected.iter().any(|s| s == name))
                }
            };
            crate::ensemble::serve::spawn(
                config,
                spec,
                Arc::clone(&table),
                served,
                Arc::clone(&spawn_model),
            )
        }
    };
    let mut workers = Vec::with_capacity(specs.len());
    for spec in specs {
        let worker =
            spawn(Arc::clone(&config), spec, true).context("cannot start a model thread")?;
        workers.push(Arc::new(worker));
    }
    if args.models.is_empty() {
        workers.extend(set_aside(&config, &broken, &workers)?);
    }
    table.store(Arc::new(ModelTable::new(workers)));
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
    let timeouts = Timeouts {
        connections: http::listener::ConnectionLimits {
            header_timeout: Duration::from_secs(args.header_read_timeout),
            max_connections: args.max_connections,
        },
        hang: hang_limit(args.hang_timeout, args.request_timeout),
    };
    let served = runtime.block_on(serve(&state, app, &args.host, args.port, timeouts));
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

/// The server's clocks besides the per-request timeout.
struct Timeouts {
    /// The header-read timeout and the connection cap.
    connections: http::listener::ConnectionLimits,
    /// Longest one plugin call may run before the watchdog restarts its model (`None`: off).
    hang: Option<Duration>,
}

/// `--hang-timeout`, or twice the request timeout when unset; 0 turns the watchdog off.
fn hang_limit(hang_timeout: Option<u64>, request_timeout: u64) -> Option<Duration> {
    match hang_timeout {
        Some(0) => None,
        Some(secs) => Some(Duration::from_secs(secs)),
        None => Some(Duration::from_secs(
            request_timeout.max(1).saturating_mul(2),
        )),
    }
}

async fn serve(
    state: &AppState,
    app: axum::Router,
    host: &str,
    port: u16,
    timeouts: Timeouts,
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
        if let Some(limit) = timeouts.hang {
            crate::watchdog::spawn(Arc::clone(&state.models), Arc::clone(reloader), limit);
        }
    }
    for worker in state.models().iter() {
        tracing::info!(
            "Route POST {} -> model `{}`",
            worker.spec().route(),
            worker.spec().name
        );
    }
    tracing::info!("Listening on http://{addr}");
    http::listener::serve(listener, app, timeouts.connections, shutdown_signal()).await;
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
fn selected_models(
    config: &Config,
    broken: &[BrokenEntry],
    names: &[String],
) -> anyhow::Result<Vec<ModelSpec>> {
    if let Some(entry) = broken
        .iter()
        .find(|b| b.name.as_ref().is_some_and(|n| names.contains(n)))
    {
        bail!("{}", problems_of(entry));
    }
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

/// One line per problem of a set-aside entry.
fn problems_of(entry: &BrokenEntry) -> String {
    entry
        .problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A failed model per enabled entry set aside for its problems, so `GET /` and `/ready`
/// show it with why; listed after the served models, so a route it shares with one of
/// them stays theirs.
fn set_aside(
    config: &Config,
    broken: &[BrokenEntry],
    served: &[Arc<ModelWorker>],
) -> anyhow::Result<Vec<Arc<ModelWorker>>> {
    let mut failed = Vec::new();
    for entry in broken.iter().filter(|b| b.enabled) {
        let reason = format!(
            "{}; not served: fix the entry, then reload (SIGHUP or POST /admin/reload)",
            entry
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
        tracing::error!(
            "{}: entry {} is not served:\n{}",
            config.path.display(),
            entry.index,
            problems_of(entry)
        );
        let taken = |name: &str| served.iter().any(|w| w.spec().name == name);
        let name = match &entry.name {
            Some(name) if !name.is_empty() && !taken(name) => name.clone(),
            _ => format!("models[{}]", entry.index),
        };
        let spec: ModelSpec =
            serde_json::from_value(serde_json::json!({"name": name, "route": entry.route}))
                .context("cannot describe a broken entry")?;
        let startup: Startup = Box::new(move |_| Err(reason));
        let worker = ModelWorker::spawn(spec, String::new(), startup)
            .context("cannot start a model thread")?;
        failed.push(Arc::new(worker));
    }
    Ok(failed)
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
        if spec.serving_config.isolation == Isolation::Process {
            return start_isolated(&config, &registry, &spec, auto_train, threads, set_status);
        }
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
            trial: None,
        };
        training::run(&registry, &config, &spec, options).map_err(fail)?;
        let loaded = open_for_serving(&registry, &config, &spec, threads)?
            .into_loaded()
            .map_err(|e| format!("load after training failed: {e}"))?;
        warm_up(&spec.name, loaded)
    })
}

/// [`startup_for`] for `isolation: process`: the model loads in a process of its own; when
/// it was never trained (and auto-train is on) it is trained here first, then loaded there.
fn start_isolated(
    config: &Config,
    registry: &Registry,
    spec: &ModelSpec,
    auto_train: Option<Arc<AtomicBool>>,
    threads: Option<usize>,
    set_status: &dyn Fn(Status),
) -> Result<LoadedModel, String> {
    let launch = Launch {
        config_path: config.path.clone(),
        config_dir: config.dir.clone(),
        spec: spec.clone(),
        threads,
    };
    let start = || IsolatedBackend::start(launch.clone());
    let (backend, info) = match (start(), auto_train) {
        (Ok(started), _) => started,
        (Err(StartError::Load(e)), Some(stop))
            if e.kind == ErrorKind::NotTrained && spec.data_config.train_file.is_some() =>
        {
            tracing::info!(
                "Model `{}` has no trained model yet: training it first ({})",
                spec.name,
                e.message
            );
            set_status(Status::Training);
            let options = TrainOptions {
                resume: false,
                stop: &stop,
                progress: ProgressMode::Lines,
                trial: None,
            };
            training::run(registry, config, spec, options).map_err(|e| format!("{e:#}"))?;
            start().map_err(|e| format!("load after training failed: {e}"))?
        }
        (Err(StartError::Load(e)), _) if e.kind == ErrorKind::NotTrained => {
            return Err(format!(
                "not trained yet ({}): run `clarity-host train --model {}`",
                e.message, spec.name
            ))
        }
        (Err(e), _) => return Err(format!("load failed: {e}")),
    };
    warm_up(&spec.name, LoadedModel::new(Box::new(backend), info))
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

/// Whether `host` (an address or name to bind) is reachable from this machine only.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_addresses_are_told_from_the_rest() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "::", "192.0.2.10", "example.org", ""] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
