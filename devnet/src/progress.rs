//! The devnet's step display: one numbered line per step with its outcome and duration, so a
//! user sees what is slow and which step failed.

use std::io::Write;
use std::time::Instant;

/// Numbered steps, printed to stderr as `[3/9] deploying the rail contracts … ok (0.8 s)`.
pub struct Steps {
    total: usize,
    done: usize,
}

impl Steps {
    pub fn new(total: usize) -> Self {
        Self { total, done: 0 }
    }

    /// Runs one step, printing its title first (long steps show they started) and its outcome.
    pub async fn run<T, F>(&mut self, title: &str, step: F) -> anyhow::Result<T>
    where
        F: std::future::Future<Output = anyhow::Result<T>>,
    {
        self.done += 1;
        eprint!("[{}/{}] {title} … ", self.done, self.total);
        let _ = std::io::stderr().flush();
        let started = Instant::now();
        let result = step.await;
        let took = started.elapsed().as_secs_f64();
        match &result {
            Ok(_) => eprintln!("ok ({took:.1} s)"),
            Err(_) => eprintln!("failed ({took:.1} s)"),
        }
        result
    }

    /// Runs a step that prints its own output: the title gets a line of its own, so that the
    /// output reads under it.
    pub async fn run_printing<T, F>(&mut self, title: &str, step: F) -> anyhow::Result<T>
    where
        F: std::future::Future<Output = anyhow::Result<T>>,
    {
        self.done += 1;
        eprintln!("[{}/{}] {title}", self.done, self.total);
        let started = Instant::now();
        let result = step.await;
        let took = started.elapsed().as_secs_f64();
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        eprintln!("      {outcome} ({took:.1} s)");
        result
    }

    /// A detail line under the current step.
    pub fn detail(&self, text: impl std::fmt::Display) {
        eprintln!("      {text}");
    }
}
