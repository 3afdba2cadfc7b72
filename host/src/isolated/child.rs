//! The model's side: `clarity-host model-process --model NAME`, started by the server for a
//! model with `serving_config.isolation: process`. It reads the model's entry from stdin
//! (a [`Hello`]), loads it, then answers requests read from stdin, one per line, until
//! stdin closes.
//!
//! Replies go to the stdout the server gave it; stdout itself is pointed at stderr first, so
//! whatever a plugin or its runtime prints cannot garble the replies. stderr is the log,
//! which the server copies into its own.

use super::protocol::{from_wire, FromChild, Hello, ToChild, WireError};
use crate::backend::LoadedModel;
use crate::config::Config;
use crate::plugins::Registry;
use anyhow::Context;
use clarity_sdk::Error as SdkError;
use std::io::{BufRead, Write};
use std::process::ExitCode;

/// Serve the model the server names on stdin, over stdin/stdout.
pub fn run() -> anyhow::Result<ExitCode> {
    let mut replies = reply_channel()?;
    let mut requests = std::io::stdin().lock().lines();
    let hello = requests
        .next()
        .context("the server sent nothing")?
        .context("cannot read the server's first line")?;
    let hello: Hello = serde_json::from_str(&hello).context("unreadable first line")?;
    let config = Config {
        path: hello.config_path,
        dir: hello.config_dir,
        models: vec![hello.spec.clone()],
    };
    let registry = Registry::default();
    let mut init = config.plugin_init(&hello.spec, None);
    init.serving_threads = hello.threads;
    let loaded = registry
        .model_with(&config, &hello.spec, &init)
        .map_err(|e| SdkError::other(e.to_string()))
        .and_then(|model| model.into_loaded());
    let model = match loaded {
        Ok(model) => model,
        Err(error) => {
            send(
                &mut replies,
                &FromChild::LoadFailed {
                    error: WireError::from(&error),
                },
            )?;
            return Ok(ExitCode::FAILURE);
        }
    };
    send(
        &mut replies,
        &FromChild::Ready {
            info: model.info().clone(),
        },
    )?;
    for line in requests {
        let line = line.context("cannot read a request from the server")?;
        let reply = match serde_json::from_str::<ToChild>(&line) {
            Ok(request) => answer(&model, request),
            Err(e) => FromChild::Failed {
                error: WireError::from(&SdkError::other(format!("unreadable request: {e}"))),
            },
        };
        send(&mut replies, &reply)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn answer(model: &LoadedModel, request: ToChild) -> FromChild {
    let failed = |e: SdkError| FromChild::Failed {
        error: WireError::from(&e),
    };
    match request {
        ToChild::Classify { pairs } => match model.classify(&from_wire(pairs)) {
            Ok(scores) => FromChild::Scores { scores },
            Err(e) => failed(e),
        },
        ToChild::TokenCounts { pairs } => match model.token_counts(&from_wire(pairs)) {
            Ok(counts) => FromChild::TokenCounts { counts },
            Err(e) => failed(e),
        },
    }
}

fn send(out: &mut impl Write, reply: &FromChild) -> anyhow::Result<()> {
    let line = serde_json::to_string(reply).context("cannot encode a reply")?;
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("the server stopped listening")
}

/// The server's end of stdout, kept for replies; fd 1 then points at stderr.
#[cfg(unix)]
fn reply_channel() -> anyhow::Result<std::fs::File> {
    let replies = nix::unistd::dup(std::io::stdout()).context("cannot keep stdout")?;
    nix::unistd::dup2_stdout(std::io::stderr()).context("cannot point stdout at stderr")?;
    Ok(std::fs::File::from(replies))
}

#[cfg(not(unix))]
fn reply_channel() -> anyhow::Result<std::io::Stdout> {
    Ok(std::io::stdout())
}
