//! The processes of a chaos run: workers started, `kill -9`'d and replaced, and (in the failover
//! scenarios) the producer's API as the `paywatch-producer serve` binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

/// What a worker process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Checks payments.
    Checker,
    /// Delivers email, Telegram and webhook notifications.
    Notifier,
}

/// One running worker process.
#[derive(Debug)]
pub struct Worker {
    /// Its name (`PAYWATCH_WORKER_NAME`), which its lease tokens start with.
    pub name: String,
    /// What it serves.
    pub role: Role,
    child: Child,
}

/// The fleet: how to start a worker of each role, and the ones running now.
#[derive(Debug)]
pub struct Fleet {
    binary: PathBuf,
    checker_args: Vec<String>,
    notifier_args: Vec<String>,
    logs: PathBuf,
    started: usize,
    /// The running workers.
    pub workers: Vec<Worker>,
    /// `paywatch-producer serve`, when the run uses the binary rather than the in-process API.
    producer: Option<Child>,
}

impl Fleet {
    /// A fleet of `binary` (a `paywatch-worker`) processes; each writes its log under `logs`.
    pub fn new(
        binary: PathBuf,
        checker_args: Vec<String>,
        notifier_args: Vec<String>,
        logs: &Path,
    ) -> Self {
        Self {
            binary,
            checker_args,
            notifier_args,
            logs: logs.to_path_buf(),
            started: 0,
            workers: Vec::new(),
            producer: None,
        }
    }

    /// Starts `paywatch-producer serve` from `binary` with nothing but `env` (as operators
    /// configure it); its log goes beside the workers'.
    pub fn start_producer(&mut self, binary: &Path, env: &[(&str, String)]) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.logs.join("producer.log"))?;
        let child = Command::new(binary)
            .arg("serve")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", binary.display()))?;
        self.producer = Some(child);
        Ok(())
    }

    /// Starts one more worker of `role`.
    pub fn start(&mut self, role: Role) -> anyhow::Result<&Worker> {
        self.started += 1;
        let kind = match role {
            Role::Checker => "checker",
            Role::Notifier => "notifier",
        };
        let name = format!("chaos-{kind}-{}", self.started);
        let args = match role {
            Role::Checker => &self.checker_args,
            Role::Notifier => &self.notifier_args,
        };
        let log = std::fs::File::create(self.logs.join(format!("{name}.log")))?;
        let child = Command::new(&self.binary)
            .args(args)
            .args(["--name", &name])
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", self.binary.display()))?;
        self.workers.push(Worker { name, role, child });
        Ok(self.workers.last().expect("just pushed"))
    }

    /// `kill -9`s the worker at `index` (no drain, no goodbye) and reaps it.
    pub async fn kill(&mut self, index: usize) -> anyhow::Result<Worker> {
        let mut worker = self.workers.remove(index);
        worker.child.start_kill()?;
        worker.child.wait().await?;
        Ok(worker)
    }

    /// Workers that died on their own since the last look (none should): their names and exit
    /// statuses. They leave the fleet.
    pub fn casualties(&mut self) -> Vec<String> {
        let mut dead = Vec::new();
        self.workers.retain_mut(|w| match w.child.try_wait() {
            Ok(Some(status)) => {
                dead.push(format!("{} exited: {status}", w.name));
                false
            }
            _ => true,
        });
        if let Some(producer) = &mut self.producer
            && let Ok(Some(status)) = producer.try_wait()
        {
            dead.push(format!("paywatch-producer exited: {status}"));
            self.producer = None;
        }
        dead
    }

    /// Stops every worker gracefully (SIGTERM, then waits for the drain).
    pub async fn stop(&mut self) {
        let children = self
            .workers
            .iter()
            .map(|w| &w.child)
            .chain(self.producer.as_ref());
        for child in children {
            if let Some(pid) = child.id() {
                // tokio has no SIGTERM of its own; `kill` is on every Unix.
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        for worker in &mut self.workers {
            let _ = worker.child.wait().await;
        }
        if let Some(producer) = &mut self.producer {
            let _ = producer.wait().await;
        }
        self.workers.clear();
        self.producer = None;
    }
}
