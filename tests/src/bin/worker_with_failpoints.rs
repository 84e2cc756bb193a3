//! `paywatch-worker` with fail points armed from the `FAILPOINTS` environment variable, for the
//! crash tests (for example `FAILPOINTS=notify-delivered=pause` parks a notifier right after the
//! channel accepted a message and before the job is acknowledged, so the test can `kill -9` it
//! exactly there).

use paywatch_worker::app::App;
use paywatch_worker::config::WorkerConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scenario = fail::FailScenario::setup();
    let config: WorkerConfig = paywatch_core::cli::parse();
    let traces = paywatch_worker::telemetry::init(&config)?;
    let app = App::build(config).await?;
    app.run_until(paywatch_core::shutdown::signal()).await?;
    traces.shutdown().await;
    scenario.teardown();
    Ok(())
}
