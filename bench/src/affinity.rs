//! CPU affinity for the scale benchmark: Redis on a core of its own, everything else on the rest.
//!
//! SLOWLOG times a command by the wall clock, so on a machine whose few cores Redis shares with
//! the workers, the sandbox and the driver, a command the kernel preempts reads as a slow
//! command. Production Redis runs on a core nobody else is busy on; giving it one here makes
//! SLOWLOG measure the scripts rather than the scheduler. `taskset` (util-linux, on every Debian)
//! sets it, for every thread of a running process, so no process has to be started differently;
//! `renice` raises Redis's priority too where it may (root), since the machine's other services
//! are not pinned and can still take Redis's core for a time slice (12-15 ms pauses without it).

use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Which cores go to Redis and which to everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The core Redis runs on (the machine's last).
    pub redis: String,
    /// The cores everything else runs on (the others).
    pub rest: String,
    /// Every core, to hand back when the benchmark ends.
    pub all: String,
}

impl Split {
    /// The split for a machine with `cores` cores; `None` with fewer than two (nothing to give).
    pub fn for_cores(cores: usize) -> Option<Self> {
        (cores >= 2).then(|| Self {
            redis: (cores - 1).to_string(),
            rest: if cores == 2 {
                "0".into()
            } else {
                format!("0-{}", cores - 2)
            },
            all: format!("0-{}", cores - 1),
        })
    }

    /// The split for this machine, when `taskset` is there to set it.
    pub fn here() -> Option<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let taskset = Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if taskset {
            Self::for_cores(cores)
        } else {
            None
        }
    }
}

/// Pins every thread of process `pid` to `cores` (a `taskset -c` list such as `0-2`).
pub fn pin(pid: u32, cores: &str) -> anyhow::Result<()> {
    let output = Command::new("taskset")
        .args(["-a", "-p", "-c", cores, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running taskset")?;
    if !output.status.success() {
        bail!(
            "taskset could not pin process {pid} to cores {cores}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Raises process `pid` to the highest CPU priority (nice -20), so the machine's other work
/// (other services, kernel threads woken on its core) cannot hold its core for a whole time
/// slice. Only root may; anyone else keeps the default priority, which the caller reports.
pub fn prioritise(pid: u32) -> bool {
    Command::new("renice")
        .args(["-n", "-20", "-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// This process pinned to a split's other cores until dropped, when it gets every core back.
#[derive(Debug)]
pub struct SelfPinned {
    all: String,
}

impl SelfPinned {
    /// Pins this process (every thread it has now; later ones inherit) to `split.rest`.
    pub fn new(split: &Split) -> anyhow::Result<Self> {
        pin(std::process::id(), &split.rest)?;
        Ok(Self {
            all: split.all.clone(),
        })
    }
}

impl Drop for SelfPinned {
    fn drop(&mut self) {
        if let Err(e) = pin(std::process::id(), &self.all) {
            eprintln!("could not hand this process its cores back: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_give_redis_the_last_core() {
        assert_eq!(Split::for_cores(1), None);
        let two = Split::for_cores(2).expect("two cores split");
        assert_eq!((two.redis.as_str(), two.rest.as_str()), ("1", "0"));
        let eight = Split::for_cores(8).expect("eight cores split");
        assert_eq!(
            (
                eight.redis.as_str(),
                eight.rest.as_str(),
                eight.all.as_str()
            ),
            ("7", "0-6", "0-7")
        );
    }
}
