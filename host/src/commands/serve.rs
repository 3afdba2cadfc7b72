//! `clarity-host serve`: every enabled model at its route.
//!
//! The listener opens at once; each model loads on its own thread, so `/health` answers
//! while models load and `/ready` turns 200 when all have. A model that fails to load (a
//! missing plugin, an ABI mismatch, no trained model) is reported and the others serve.

use super::{instantiate, train::train_model};
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::http::{self, AppState, Limits};
use crate::plugins::{self, Registry};
use crate::tensorboard;
use crate::training::ProgressMode;
use crate::worker::{ModelWorker, Startup, Status};
use anyhow::{bail, Context};
use clarity_sdk::{ErrorKind, ModelSpec};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub fn run(config: Config, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let specs = selected_models(&config, &args.models)?;
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
    let mut workers = Vec::with_capacity(specs.len());
    for spec in specs {
        let path = plugins::plugin_path(&spec, &config.dir);
        let startup = startup_for(
            Arc::clone(&config),
            Arc::clone(&registry),
            spec.clone(),
            !args.no_auto_train,
        );
        let worker = ModelWorker::spawn(spec, path.display().to_string(), startup)
            .context("cannot start a model thread")?;
        workers.push(Arc::new(worker));
    }
    let state = AppState {
        models: Arc::new(workers),
        metrics,
    };
    let limits = Limits {
        body_bytes: args.body_limit,
        timeout: Duration::from_secs(args.request_timeout.max(1)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(state, limits, &args.host, args.port))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(state: AppState, limits: Limits, host: &str, port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| {
            format!("cannot listen on {host}:{port} (in use? pick another with --port)")
        })?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    for worker in state.models.iter() {
        tracing::info!(
            "Route POST {} -> model `{}`",
            worker.spec().route(),
            worker.spec().name
        );
    }
    tracing::info!("Listening on http://{addr}");
    let app = http::router(state, limits);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server error")?;
    tracing::info!("Server stopped");
    Ok(())
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

/// What a model's thread does before serving: open the plugin, load the model, and, when
/// it was never trained and `auto_train` is on, train it on its configured data first.
fn startup_for(
    config: Arc<Config>,
    registry: Arc<Registry>,
    spec: ModelSpec,
    auto_train: bool,
) -> Startup {
    Box::new(move |set_status| {
        let fail = |e: anyhow::Error| format!("{e:#}");
        let mut model = instantiate(&registry, &config, &spec, None).map_err(fail)?;
        match model.load() {
            Ok(info) => return Ok((model, info)),
            Err(e)
                if e.kind == ErrorKind::NotTrained
                    && auto_train
                    && spec.data_config.train_file.is_some() =>
            {
                tracing::info!(
                    "Model `{}` has no trained model yet: training it first ({})",
                    spec.name,
                    e.message
                );
            }
            Err(e) if e.kind == ErrorKind::NotTrained => {
                return Err(format!(
                    "not trained yet ({}): run `clarity-host train --model {}`",
                    e.message, spec.name
                ))
            }
            Err(e) => return Err(format!("load failed ({}): {}", e.kind, e.message)),
        }
        set_status(Status::Training);
        let never = AtomicBool::new(false);
        train_model(
            &registry,
            &config,
            &spec,
            false,
            &never,
            ProgressMode::Lines,
        )
        .map_err(fail)?;
        let mut model = instantiate(&registry, &config, &spec, None).map_err(fail)?;
        let info = model
            .load()
            .map_err(|e| format!("load after training failed ({}): {}", e.kind, e.message))?;
        Ok((model, info))
    })
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
