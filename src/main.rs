use std::future::Future;

use clap::Parser;
use oneid::cli::{serve, Cli, Cmd};
use oneid::config::{self, Config};
use oneid::observe::log;

// jemalloc for the whole process, RocksDB's C++ included (the crate's
// unprefixed feature replaces malloc/free). glibc's allocator got slower as
// a node's heap aged: after a 3 M-card import, `_int_malloc` and
// `malloc_consolidate` took 8.5 % of a node serving counts against 3.3 % on
// a fresh node. With jemalloc, 3 M cards imported in 47-48 s instead of
// 57-58 s, counts after it cost 65-67 µs of node CPU instead of 78-88 µs,
// and each node's RSS was 236-278 MiB instead of 398-454 MiB (README,
// session 16).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // The command line comes first: `serve`'s configuration decides the log
    // format and the worker threads, so it is resolved before either starts.
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve(a) => match a.resolve() {
            Ok(cfg) => {
                let node = serve::run_config(cfg.clone());
                start(&cfg, node)
            }
            Err(e) => fail(e.into()),
        },
        command => {
            if !matches!(command, Cmd::Demo(_)) {
                default_sigpipe();
            }
            match Config::for_client(config::process_env) {
                Ok(cfg) => start(&cfg, oneid::cli::run(Cli { command })),
                Err(e) => fail(e.into()),
            }
        }
    }
}

/// Installs logging, starts the async runtime and runs `job` on it.
fn start(cfg: &Config, job: impl Future<Output = anyhow::Result<()>>) -> std::process::ExitCode {
    if let Err(e) = log::init(cfg.log.format, &cfg.log.filter) {
        return fail(e);
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    // Zero keeps tokio's default of one worker per core.
    if cfg.runtime.worker_threads > 0 {
        rt.worker_threads(cfg.runtime.worker_threads);
    }
    match rt.build() {
        Ok(rt) => match rt.block_on(job) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Err(e) => fail(anyhow::Error::new(e).context("starting the async runtime")),
    }
}

fn fail(e: anyhow::Error) -> std::process::ExitCode {
    eprintln!("error: {e:#}");
    std::process::ExitCode::FAILURE
}

/// Client commands end quietly when their output pipe closes
/// (`oneid status | head`), like other Unix tools; Rust ignores SIGPIPE, so
/// the next print would panic instead. Servers keep ignoring it: a peer
/// closing a connection must not kill a node.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal has no
    // preconditions; no handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
