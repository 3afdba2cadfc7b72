//! Logging from inside a plugin, through the host's logger.
//!
//! A plugin is a separate library with its own copy of every static, so `tracing` or `log`
//! calls inside it would go nowhere. These macros forward to the host instead, so plugin
//! lines follow `logging.yaml` like the host's own.

use crate::abi::{HostServicesBox, LogLevel};
use abi_stable::std_types::RStr;
use std::sync::OnceLock;

static HOST: OnceLock<HostServicesBox> = OnceLock::new();

/// Install the host's services (done by the export glue when the first backend is built).
pub(crate) fn install(host: HostServicesBox) {
    // Every backend of one process gets the same host: keeping the first is correct.
    let _ = HOST.set(host);
}

/// Write one log line through the host; a no-op before any backend exists (e.g. unit tests).
pub fn write(level: LogLevel, target: &str, message: &str) {
    if let Some(host) = HOST.get() {
        host.log(level, RStr::from_str(target), RStr::from_str(message));
    }
}

/// Log at info level through the host: `clarity_sdk::info!("loaded {n} rows")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => {
        $crate::log::write($crate::abi::LogLevel::Info, module_path!(), &format!($($arg)*))
    };
}

/// Log at warn level through the host.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {
        $crate::log::write($crate::abi::LogLevel::Warn, module_path!(), &format!($($arg)*))
    };
}

/// Log at error level through the host.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => {
        $crate::log::write($crate::abi::LogLevel::Error, module_path!(), &format!($($arg)*))
    };
}

/// Log at debug level through the host.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        $crate::log::write($crate::abi::LogLevel::Debug, module_path!(), &format!($($arg)*))
    };
}
