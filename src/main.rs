use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    // Worker threads: default one per core; ONEID_WORKER_THREADS overrides
    // (several nodes sharing a small machine do better with fewer).
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = std::env::var("ONEID_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        rt.worker_threads(n);
    }
    match rt.build() {
        Ok(rt) => rt.block_on(real_main()),
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> std::process::ExitCode {
    let filter = EnvFilter::try_from_env("ONEID_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = oneid::cli::Cli::parse();
    if !matches!(
        cli.command,
        oneid::cli::Cmd::Serve(_) | oneid::cli::Cmd::Demo(_)
    ) {
        default_sigpipe();
    }
    match oneid::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
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
