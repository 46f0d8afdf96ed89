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
    match oneid::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
