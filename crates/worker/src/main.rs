//! `paywatch-worker`: load config, init telemetry, run until SIGTERM/ctrl-c, drain.

use paywatch_worker::app::App;
use paywatch_worker::config::WorkerConfig;
use paywatch_worker::telemetry;

/// mimalloc rather than the system allocator: every check allocates (an HTTP exchange, JSON in
/// and out). In `just bench e2e` it cut a worker's CPU by about 11 % for about 17 MB more RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // `provider check FILE`: the definition-file tools, before the worker's own flags.
    let args: Vec<String> = std::env::args().collect();
    if paywatch_worker::provider_cmd::wanted(&args) {
        return paywatch_worker::provider_cmd::run(&args);
    }
    // clap's errors, reworded to name the environment variable at fault.
    let config: WorkerConfig = paywatch_core::cli::parse();
    config.runtime()?.block_on(async {
        let traces = telemetry::init(&config)?;
        let app = App::build(config).await?;
        let ran = app.run_until(paywatch_core::shutdown::signal()).await;
        // The spans of the drained jobs are buffered: export them before exiting.
        traces.shutdown().await;
        ran
    })
}
