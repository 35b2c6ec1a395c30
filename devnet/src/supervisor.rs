//! The devnet's child processes, and how they are stopped.
//!
//! Every `d402 node` the devnet starts is registered here. Stopping is a `SIGTERM` to each, so a
//! node goes through its shutdown path (a worker closes its browser), then, after a grace period,
//! `SIGKILL` to any that are still running, and every child is reaped. A worker's browser dies
//! with the worker even when the worker is killed (see `d402_snapshotter`), so nothing the devnet
//! started outlives it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::process::Child;

/// How long a node gets to stop on `SIGTERM` before it is killed.
pub const GRACE: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Supervisor {
    children: Mutex<Vec<(String, Child)>>,
}

impl Supervisor {
    /// Takes charge of `child`: it is stopped by [`Supervisor::stop_all`] (or killed if the
    /// supervisor is dropped first, as the child is `kill_on_drop`).
    pub fn adopt(&self, label: &str, child: Child) {
        if let Ok(mut children) = self.children.lock() {
            children.push((label.to_string(), child));
        }
    }

    /// Stops every child: `SIGTERM` to all at once, `SIGKILL` to those still running after
    /// `grace`, and waits for each to exit. Returns the labels of those that had to be killed.
    pub async fn stop_all(&self, grace: Duration) -> Vec<String> {
        let children = match self.children.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(_) => return Vec::new(),
        };
        stop(children, grace).await
    }

    /// Stops the children named `labels` as [`Supervisor::stop_all`] stops every one (the
    /// incident drill stops a gateway and its maintainer this way); the others keep running.
    pub async fn stop_some(&self, labels: &[&str], grace: Duration) -> Vec<String> {
        let chosen = match self.children.lock() {
            Ok(mut c) => {
                let (chosen, rest) = std::mem::take(&mut *c)
                    .into_iter()
                    .partition(|(label, _)| labels.contains(&label.as_str()));
                *c = rest;
                chosen
            }
            Err(_) => return Vec::new(),
        };
        stop(chosen, grace).await
    }
}

/// `SIGTERM` to every one of `children` at once, `SIGKILL` to those still running after
/// `grace`; waits for each. Returns the labels of those that had to be killed.
async fn stop(children: Vec<(String, Child)>, grace: Duration) -> Vec<String> {
    for (_, child) in &children {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: a signal to our own child, by pid; no memory is involved.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    let deadline = tokio::time::Instant::now() + grace;
    let mut killed = Vec::new();
    for (label, mut child) in children {
        if tokio::time::timeout_at(deadline, child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
            killed.push(label);
        }
    }
    killed
}
