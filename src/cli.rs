//! The command line: `run | check | quickstart | sign | verify | keygen | health | webhook`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;
use crate::quickstart::QuickstartArgs;

/// countersign: mTLS, HTTP message signatures, IP allow-lists and bearer tokens, checked in a
/// sidecar in front of a backend that cannot check them itself.
#[derive(Debug, Parser)]
#[command(name = "countersign", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar.
    Run(RunArgs),
    /// Validate a config and everything it names, without opening a port.
    Check(CheckArgs),
    /// A working local demo: dev certificates, a config, an echo backend and the sidecar.
    Quickstart(QuickstartArgs),
    /// Sign a request as a gateway would (schemes tyk, cavage, rfc9421); print or send it.
    Sign(Box<crate::tools::sign::SignArgs>),
    /// Verify one raw HTTP/1.1 request offline; --explain shows the rebuilt signing string.
    Verify(crate::tools::verify::VerifyArgs),
    /// Make an HMAC secret, an API key with its SHA-256, or a key pair in PEM.
    Keygen(crate::tools::keygen::KeygenArgs),
    /// Ask a running sidecar's admin listener whether it is healthy (for images without curl).
    Health(crate::health::HealthArgs),
    /// The Kubernetes mutating admission webhook that injects the sidecar.
    Webhook(crate::inject::WebhookArgs),
}

/// `run` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(short, long, env = "COUNTERSIGN_CONFIG")]
    pub config: PathBuf,
    /// Log format (default: json when stdout is not a terminal).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Worker threads (default: one per CPU).
    #[arg(long, env = "COUNTERSIGN_WORKERS")]
    pub workers: Option<usize>,
    /// Overrides the config's `upstream` (the injection webhook sets it from the pod's
    /// `countersign.dev/upstream-port`); the same rules apply (loopback unless allowed).
    #[arg(long, env = "COUNTERSIGN_UPSTREAM")]
    pub upstream: Option<String>,
}

/// `check` options.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(short, long)]
    pub config: PathBuf,
}
