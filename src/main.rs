//! The `coldstart` command: parse arguments, set up logging, run the command.

mod cli;

/// mimalloc instead of the system allocator: with tokio's worker threads, glibc's per-thread
/// arenas fragment and keep freed pages, which doubled the peak RSS of a 100k-object
/// snapshot; mimalloc returns them, after its purge delay (`coldstart::allocator`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    coldstart::allocator::return_freed_pages_soon();
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
