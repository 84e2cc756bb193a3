//! `paywatch-worker`: load config, init telemetry, run until SIGTERM/ctrl-c, drain.

use clap::Parser;
use paywatch_worker::app::App;
use paywatch_worker::config::WorkerConfig;
use paywatch_worker::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = WorkerConfig::parse();
    telemetry::init(&config)?;
    let app = App::build(config).await?;
    app.run_until(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
