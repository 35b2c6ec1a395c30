//! A worker's Chromium dies with the worker, however the worker dies. This test process is made
//! the reaper of its orphans, so any browser process a worker leaves behind is found here.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Killed, assert_nothing_left, become_subreaper, descendants, spawn_node};

/// Starts a worker with the Chromium snapshotter and returns it with its browser's processes.
fn worker_with_browser(state: &std::path::Path) -> (Killed, Vec<(i32, String)>) {
    let mut node = Command::new(env!("CARGO_BIN_EXE_d402"));
    node.arg("node")
        .args(["--label", "worker", "--state", state.to_str().unwrap()])
        .args(["--port", "0", "--offer", "web.page_to_markdown@1"])
        .args(["--snapshotter", "chromium"]);
    let (worker, info) = spawn_node(node);
    assert_eq!(info["role"], "worker", "{info}");
    let browser: Vec<_> = descendants(worker.0.id() as i32)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("chromium"))
        .collect();
    assert!(
        browser.len() >= 2,
        "the worker runs a browser of several processes: {browser:?}"
    );
    (worker, browser)
}

#[test]
fn a_workers_browser_dies_with_the_worker() {
    become_subreaper();
    let tmp = tempfile::tempdir().unwrap();

    // Killed outright: nothing of the browser survives (the kernel's parent-death signal).
    let (mut worker, browser) = worker_with_browser(&tmp.path().join("killed"));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(worker.0.id() as i32, libc::SIGKILL) };
    let _ = worker.0.wait();
    assert_nothing_left(
        Duration::from_secs(15),
        &format!("a worker killed with SIGKILL (its browser was {browser:?})"),
    );

    // Stopped with SIGTERM, as a supervisor stops it: it exits cleanly, and takes its browser.
    let (mut worker, _) = worker_with_browser(&tmp.path().join("stopped"));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(worker.0.id() as i32, libc::SIGTERM) };
    let status = worker.0.wait().unwrap();
    assert!(
        status.success(),
        "a worker stopped by SIGTERM exits 0: {status}"
    );
    assert_nothing_left(Duration::from_secs(15), "a worker stopped with SIGTERM");
}
