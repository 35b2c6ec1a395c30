//! The Chromium process tree, tied to the node's life.
//!
//! A browser is a dozen processes (zygotes, renderers, GPU and utility processes). Left to itself,
//! it outlives a node that is killed, orphaned to init and holding hundreds of megabytes. So the
//! browser is started here rather than by chromiumoxide:
//! - with `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it when the thread that started it ends,
//!   which is at the latest when the node's process ends, however it ends (`kill -9` included); its
//!   helper processes then exit on their own as their connection to it closes;
//! - in a process group of its own, which is killed whole when the session ends normally, so no
//!   helper lingers even for a moment.
//!
//! The parent-death signal follows the *thread* that forked, so the browser must be started from a
//! thread that lives as long as the browser: the snapshotter's own browser thread.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running browser and the DevTools URL to drive it.
pub(crate) struct BrowserProcess {
    child: Child,
    /// The browser's process group (its pid, as it leads the group).
    group: Option<i32>,
    pub(crate) devtools_url: String,
}

impl BrowserProcess {
    /// Starts `executable ARGS --remote-debugging-port=0` and waits for its DevTools URL.
    pub(crate) async fn start(
        executable: &std::path::Path,
        args: &[String],
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut command = Command::new(executable);
        command
            .args(args)
            .arg("--remote-debugging-port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        // SAFETY: the closure runs in the child between fork and exec and only makes one
        // async-signal-safe system call (`prctl`), touching no memory of the parent.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", executable.display()))?;
        let group = child.id().and_then(|pid| i32::try_from(pid).ok());
        let stderr = child.stderr.take().ok_or("no stderr from the browser")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let found = tokio::time::timeout(timeout, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((_, url)) = line.rsplit_once("listening on ")
                    && url.starts_with("ws")
                    && url.contains("devtools/browser")
                {
                    return Some(url.trim().to_string());
                }
                if seen.len() < 20 {
                    seen.push(line);
                }
            }
            None
        })
        .await;
        let mut process = BrowserProcess {
            child,
            group,
            devtools_url: String::new(),
        };
        match found {
            Ok(Some(url)) => process.devtools_url = url,
            Ok(None) => {
                return Err(format!("the browser exited at start: {}", seen.join(" | ")));
            }
            Err(_) => return Err(format!("the browser did not start within {timeout:?}")),
        }
        // Keep draining its stderr: a browser blocked on a full pipe stops answering.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(process)
    }

    /// Kills the whole process group and reaps the browser.
    pub(crate) async fn kill(&mut self) {
        self.kill_group();
        let _ = self.child.kill().await;
    }

    fn kill_group(&mut self) {
        if let Some(group) = self.group.take() {
            // SAFETY: `kill` on our own child's process group; no memory is involved.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
    }
}

impl Drop for BrowserProcess {
    fn drop(&mut self) {
        self.kill_group();
    }
}
