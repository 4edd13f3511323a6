//! The `coldstart` command: parse arguments, set up logging, run the command.

mod cli;

/// mimalloc instead of the system allocator: with tokio's worker threads, glibc's per-thread
/// arenas fragment and keep freed pages, which doubled the peak RSS of a 100k-object
/// snapshot; mimalloc returns them, after `MIMALLOC_PURGE_DELAY` ms (1 s by default in
/// mimalloc 3; the image sets 10 ms, see the Containerfile and docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    coldstart::telemetry::init(args.global.log_format);
    match cli::run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
