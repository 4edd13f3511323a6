//! The `coldstart` command: parse arguments, set up logging, run the command.

mod cli;

/// mimalloc instead of the system allocator: with tokio's worker threads, glibc's per-thread
/// arenas fragment and keep freed pages, which doubled the peak RSS of a 100k-object
/// snapshot; mimalloc returns them, after its purge delay (`coldstart::allocator`).
#[cfg(not(feature = "heap-stats"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The measuring build (`--features heap-stats`): the same allocator, counted; the trace goes
/// to the file `COLDSTART_HEAP_TRACE` names (tests/bench/ uses it).
#[cfg(feature = "heap-stats")]
#[global_allocator]
static GLOBAL: coldstart::allocator::heap_stats::Counting<mimalloc::MiMalloc> =
    coldstart::allocator::heap_stats::Counting(mimalloc::MiMalloc);

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    coldstart::allocator::configure();
    #[cfg(feature = "heap-stats")]
    if let Some(path) = std::env::var_os("COLDSTART_HEAP_TRACE") {
        coldstart::allocator::heap_stats::trace_to(path.into());
    }
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
