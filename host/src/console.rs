//! The terminal, shared by log lines and the training progress bar: while a bar is drawn,
//! log lines are written through it so they appear above the bar instead of through it.

use indicatif::ProgressBar;
use std::io::{self, Write};
use std::sync::Mutex;
use tracing_subscriber::fmt::MakeWriter;

static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Make `bar` the one log lines go around (`None`: none is drawn).
pub fn set_active_bar(bar: Option<ProgressBar>) {
    *ACTIVE_BAR.lock().unwrap_or_else(|p| p.into_inner()) = bar;
}

fn active_bar() -> Option<ProgressBar> {
    ACTIVE_BAR.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Standard error for `tracing`, aware of the active progress bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // `tracing` hands over one whole formatted line per call.
        match active_bar() {
            Some(bar) if !bar.is_hidden() => {
                bar.suspend(|| io::stderr().write_all(buf))?;
                Ok(buf.len())
            }
            _ => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}
