//! Structured logs through `tracing`: JSON when stdout is not a terminal, text otherwise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

mod json_lines;

pub use json_lines::JsonLines;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Installs the global subscriber once; `level` is a tracing filter (`RUST_LOG` overrides it).
pub fn init(format: Option<LogFormat>, level: &str) {
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
        LogFormat::Text => builder.with_target(true).try_init(),
    };
}
