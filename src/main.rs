//! The `countersign` binary: parse the command line and run the subcommand.

use std::process::ExitCode;

use clap::Parser;
use countersign::cli::{Cli, Command, RunArgs};
use countersign::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => countersign::check::run(&args.config),
        Command::Quickstart(args) => {
            countersign::logging::init(None, "info");
            runtime(None).block_on(countersign::quickstart::run(args))
        }
        Command::Sign(args) => runtime(Some(1)).block_on(countersign::tools::sign::run(*args)),
        Command::Verify(args) => runtime(Some(1)).block_on(countersign::tools::verify::run(args)),
        Command::Keygen(args) => runtime(Some(1)).block_on(countersign::tools::keygen::run(args)),
        Command::Health(args) => runtime(Some(1)).block_on(countersign::health::run(args)),
        Command::Webhook(args) => runtime(None).block_on(countersign::inject::run(args)),
    }
}

/// A runtime with `workers` threads (one per CPU by default). One worker gets tokio's
/// current-thread scheduler: no work stealing, no cross-thread wake-ups, the least CPU per request
/// (a sidecar pinned to one core, or the one-worker benchmark).
fn runtime(workers: Option<usize>) -> tokio::runtime::Runtime {
    let mut b = match workers {
        Some(n) if n <= 1 => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    b.enable_all();
    b.build().expect("the tokio runtime starts")
}

fn run(args: RunArgs) -> ExitCode {
    let config = match Config::load_with_upstream(&args.config, args.upstream.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    countersign::sys::limit_allocator_arenas(args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    }));
    countersign::logging::init(args.log_format, &config.log.level);
    runtime(args.workers).block_on(async move {
        let running = match countersign::server::start(config).await {
            Ok(r) => r,
            Err(countersign::server::StartError::Config(e)) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        countersign::signals::wait_for_shutdown(&running).await;
        running.shutdown();
        running.wait().await;
        ExitCode::SUCCESS
    })
}
