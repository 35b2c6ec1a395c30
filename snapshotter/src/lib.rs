//! Freezes pages with a headless Chromium, so a capability sees the DOM as the browser built it
//! (scripts included), not just the HTML the server sent.
//!
//! One browser per node, started once and reused across tasks, with a fresh throw-away profile and
//! no background networking. Every request the browser makes (the page, its redirects and every
//! subresource) is paused and checked against the URL policy of [`d402_core::egress`] before it is
//! let through, so a page cannot use the browser to reach loopback, private or metadata addresses.
//! The browser lives on its own thread with its own async runtime; [`ChromiumSnapshotter::freeze`]
//! is a plain blocking call, safe from any thread. A browser that dies is started again on the next
//! snapshot.
//!
//! ```no_run
//! use d402_snapshotter::{ChromiumConfig, ChromiumSnapshotter};
//! let snapshotter = ChromiumSnapshotter::launch(ChromiumConfig::default())?;
//! # Ok::<(), d402_snapshotter::LaunchError>(())
//! ```

use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EventRequestPaused, FailRequestParams,
};
use chromiumoxide::cdp::browser_protocol::network::ErrorReason;
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::handler::viewport::Viewport;
use d402_core::egress::{
    BudgetExceeded, EgressDenied, EgressViolation, NetworkFailure, check_target, inward_class,
};
use d402_core::snapshot::{FrozenHtml, SnapshotError, SnapshotLimits, Snapshotter};
use futures::StreamExt;
use url::Url;

/// How to start the browser.
#[derive(Debug, Clone)]
pub struct ChromiumConfig {
    /// The Chromium binary (Debian's `chromium` by default).
    pub executable: PathBuf,
    /// How long the browser may take to start.
    pub launch_timeout: Duration,
}

impl Default for ChromiumConfig {
    fn default() -> Self {
        Self {
            executable: PathBuf::from("/usr/bin/chromium"),
            launch_timeout: Duration::from_secs(20),
        }
    }
}

/// The browser could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("Chromium not found at {0} (install Debian's `chromium` package)")]
    NotFound(PathBuf),
    #[error("starting Chromium: {0}")]
    Start(String),
    #[error("Chromium did not start within {0:?}")]
    Timeout(Duration),
}

/// Flags for a headless browser that talks to nothing but the pages it is asked for.
const FLAGS: &[&str] = &[
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--password-store=basic",
    "--no-sandbox",
    "--disable-setuid-sandbox",
];

mod browser_process;
use browser_process::BrowserProcess;

struct Job {
    url: Url,
    limits: SnapshotLimits,
    reply: mpsc::Sender<Result<FrozenHtml, SnapshotError>>,
}

/// A Chromium-backed [`Snapshotter`].
pub struct ChromiumSnapshotter {
    /// `None` only while dropping, so the thread sees the queue close.
    jobs: Option<tokio::sync::mpsc::UnboundedSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ChromiumSnapshotter {
    /// Closes the queue and waits for the browser thread to shut the browser down.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ChromiumSnapshotter {
    /// Starts the browser and waits until it is ready.
    pub fn launch(config: ChromiumConfig) -> Result<Self, LaunchError> {
        if !config.executable.exists() {
            return Err(LaunchError::NotFound(config.executable));
        }
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let launch_timeout = config.launch_timeout;
        let thread = std::thread::Builder::new()
            .name("d402-chromium".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(LaunchError::Start(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut session = match Session::start(&config).await {
                        Ok(s) => {
                            let _ = ready_tx.send(Ok(()));
                            Some(s)
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(LaunchError::Start(e)));
                            return;
                        }
                    };
                    while let Some(job) = queue.recv().await {
                        let result = snapshot_with_restart(&config, &mut session, &job).await;
                        let _ = job.reply.send(result);
                    }
                    // The snapshotter was dropped: close the browser and reap it, rather than
                    // leave it to be killed in the background.
                    if let Some(mut session) = session {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(5), session.browser.close())
                                .await;
                        session.process.kill().await;
                    }
                });
            })
            .map_err(|e| LaunchError::Start(e.to_string()))?;
        match ready_rx.recv_timeout(launch_timeout) {
            Ok(Ok(())) => Ok(Self {
                jobs: Some(jobs),
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LaunchError::Timeout(launch_timeout)),
        }
    }
}

/// Runs a job; if the browser has died, starts a new one and tries once more.
async fn snapshot_with_restart(
    config: &ChromiumConfig,
    session: &mut Option<Session>,
    job: &Job,
) -> Result<FrozenHtml, SnapshotError> {
    let mut gone = String::from("the browser stopped responding");
    for _attempt in 0..2 {
        if session.is_none() {
            match Session::start(config).await {
                Ok(s) => *session = Some(s),
                Err(e) => {
                    return Err(SnapshotError::Network(NetworkFailure::Unavailable(
                        format!("browser restart failed: {e}"),
                    )));
                }
            }
        }
        let Some(current) = session.as_ref() else {
            continue;
        };
        match current.freeze(&job.url, &job.limits).await {
            Err(Failure::BrowserGone(reason)) => {
                gone = format!("the browser stopped responding: {reason}");
                *session = None;
            }
            Err(Failure::Snapshot(e)) => return Err(e),
            Ok(frozen) => return Ok(frozen),
        }
    }
    Err(SnapshotError::Network(NetworkFailure::Unavailable(gone)))
}

impl Snapshotter for ChromiumSnapshotter {
    fn name(&self) -> &'static str {
        "chromium"
    }

    fn freeze(&self, url: &Url, limits: &SnapshotLimits) -> Result<FrozenHtml, SnapshotError> {
        // The page itself gets a typed refusal here; its redirects and subresources are refused by
        // the browser-side interception.
        if !check_target(url, limits.allow_private_targets).map_err(violation)? {
            return Err(SnapshotError::Network(NetworkFailure::Unavailable(
                format!("`{}` does not resolve", url.host_str().unwrap_or_default()),
            )));
        }
        let (reply, answer) = mpsc::channel();
        let job = Job {
            url: url.clone(),
            limits: *limits,
            reply,
        };
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        if !sent {
            return Err(SnapshotError::Network(NetworkFailure::Unavailable(
                "the browser thread has stopped".into(),
            )));
        }
        // The browser side enforces the timeout; this margin only covers a wedged browser thread.
        match answer.recv_timeout(limits.timeout + Duration::from_secs(5)) {
            Ok(result) => result,
            Err(_) => Err(SnapshotError::Network(NetworkFailure::Timeout(format!(
                "{url}: no answer from the browser"
            )))),
        }
    }
}

fn violation(denied: EgressDenied) -> SnapshotError {
    SnapshotError::Violation(EgressViolation::Denied(denied))
}

enum Failure {
    /// The browser connection is gone: start a new browser.
    BrowserGone(String),
    Snapshot(SnapshotError),
}

struct Session {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    /// The browser's processes: killed, the whole group, when the session ends (and by the
    /// kernel if the node dies first).
    process: BrowserProcess,
    /// A fresh profile per browser, removed when the session ends.
    _profile: tempfile::TempDir,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.handler.abort();
    }
}

impl Session {
    async fn start(config: &ChromiumConfig) -> Result<Self, String> {
        let profile = tempfile::Builder::new()
            .prefix("d402-chromium-")
            .tempdir()
            .map_err(|e| format!("profile directory: {e}"))?;
        let mut args: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let process =
            BrowserProcess::start(&config.executable, &args, config.launch_timeout).await?;
        let handler_config = HandlerConfig {
            request_intercept: true,
            cache_enabled: false,
            viewport: Some(Viewport::default()),
            ..HandlerConfig::default()
        };
        let (browser, mut handler) =
            Browser::connect_with_config(process.devtools_url.clone(), handler_config)
                .await
                .map_err(|e| e.to_string())?;
        // The handler must be polled for the browser to make progress; a bad message from the
        // browser is no reason to stop, so errors are skipped. It ends when the connection closes.
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Ok(Self {
            browser,
            handler,
            process,
            _profile: profile,
        })
    }

    async fn freeze(&self, url: &Url, limits: &SnapshotLimits) -> Result<FrozenHtml, Failure> {
        let page = self
            .browser
            .new_page("about:blank")
            .await
            .map_err(|e| Failure::BrowserGone(e.to_string()))?;
        let page = Arc::new(page);
        let guard = match page.event_listener::<EventRequestPaused>().await {
            Ok(mut paused) => {
                let page = page.clone();
                let allow_private = limits.allow_private_targets;
                tokio::spawn(async move {
                    while let Some(event) = paused.next().await {
                        let id = event.request_id.clone();
                        let verdict = if request_allowed(&event.request.url, allow_private).await {
                            page.execute(ContinueRequestParams::new(id))
                                .await
                                .map(|_| ())
                        } else {
                            page.execute(FailRequestParams::new(id, ErrorReason::BlockedByClient))
                                .await
                                .map(|_| ())
                        };
                        if verdict.is_err() {
                            break;
                        }
                    }
                })
            }
            Err(e) => {
                let _ = close(page).await;
                return Err(Failure::BrowserGone(e.to_string()));
            }
        };
        let load = async {
            page.goto(url.as_str()).await?;
            let html = page.content().await?;
            let final_url = page.url().await?;
            Ok::<_, chromiumoxide::error::CdpError>((html, final_url))
        };
        let outcome = tokio::time::timeout(limits.timeout, load).await;
        guard.abort();
        let _ = close(page).await;
        let (html, final_url) = match outcome {
            Err(_) => {
                return Err(Failure::Snapshot(SnapshotError::Network(
                    NetworkFailure::Timeout(format!(
                        "{url}: the page did not load within {:?}",
                        limits.timeout
                    )),
                )));
            }
            Ok(Err(e)) => {
                return Err(Failure::Snapshot(SnapshotError::Network(
                    NetworkFailure::Unavailable(format!("{url}: {e}")),
                )));
            }
            Ok(Ok(loaded)) => loaded,
        };
        if html.len() as u64 > limits.max_bytes {
            return Err(Failure::Snapshot(SnapshotError::Violation(
                EgressViolation::Budget(BudgetExceeded::Bytes {
                    limit: limits.max_bytes,
                }),
            )));
        }
        Ok(FrozenHtml {
            final_url: final_url.unwrap_or_else(|| url.to_string()),
            html,
        })
    }
}

async fn close(page: Arc<Page>) -> Result<(), ()> {
    match Arc::try_unwrap(page) {
        Ok(page) => page.close().await.map_err(|_| ()),
        Err(_) => Ok(()),
    }
}

/// Whether the browser may make a request: http(s) to an outward address, or a URL that never
/// leaves the browser (`data:`, `blob:`, `about:`). Everything else (`file:`, `chrome:`, `ftp:`,
/// websockets) is refused.
pub async fn request_allowed(raw: &str, allow_private: bool) -> bool {
    let Ok(url) = Url::parse(raw) else {
        return false;
    };
    match url.scheme() {
        "data" | "blob" | "about" => return true,
        "http" | "https" => {}
        _ => return false,
    }
    if allow_private {
        return true;
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<std::net::IpAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![ip.into()],
        Some(url::Host::Ipv6(ip)) => vec![ip.into()],
        Some(url::Host::Domain(name)) => match tokio::net::lookup_host((name, port)).await {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(_) => return false,
        },
        None => return false,
    };
    !addrs.is_empty() && addrs.into_iter().all(|a| inward_class(a).is_none())
}

/// Tries `primary` and, when it cannot produce the page (the browser failed, timed out, or the page
/// would not load), `fallback`: what `--fallback-to-fetch true` does. A policy refusal is final and
/// is never retried another way.
pub struct FallbackSnapshotter<P, F> {
    pub primary: P,
    pub fallback: F,
}

impl<P: Snapshotter, F: Snapshotter> Snapshotter for FallbackSnapshotter<P, F> {
    fn name(&self) -> &'static str {
        self.primary.name()
    }

    fn freeze(&self, url: &Url, limits: &SnapshotLimits) -> Result<FrozenHtml, SnapshotError> {
        match self.primary.freeze(url, limits) {
            Err(SnapshotError::Network(_)) => self.fallback.freeze(url, limits),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FallbackSnapshotter, request_allowed};
    use d402_core::FrozenPages;
    use d402_core::snapshot::{SnapshotError, SnapshotLimits, Snapshotter};
    use std::time::Duration;

    #[test]
    fn fallback_retries_failures_but_never_refusals() {
        let url = url::Url::parse("https://example.com/").unwrap();
        let mut page = FrozenPages::new();
        page.insert(url.as_str(), "<p>fallback</p>".into()).unwrap();
        let limits = SnapshotLimits {
            timeout: Duration::from_secs(1),
            max_bytes: 1024,
            allow_private_targets: false,
        };
        // The primary has no page (a network failure): the fallback answers.
        let both = FallbackSnapshotter {
            primary: FrozenPages::new(),
            fallback: page.clone(),
        };
        assert_eq!(both.freeze(&url, &limits).unwrap().html, "<p>fallback</p>");
        // The primary refuses (over the size cap): the refusal stands.
        let mut big = FrozenPages::new();
        big.insert(url.as_str(), "x".repeat(2048)).unwrap();
        let refusing = FallbackSnapshotter {
            primary: big,
            fallback: page,
        };
        assert!(matches!(
            refusing.freeze(&url, &limits),
            Err(SnapshotError::Violation(_))
        ));
    }

    #[tokio::test]
    async fn only_outward_http_and_local_schemes() {
        assert!(request_allowed("data:text/plain,hi", false).await);
        assert!(request_allowed("about:blank", false).await);
        assert!(!request_allowed("file:///etc/passwd", false).await);
        assert!(!request_allowed("chrome://settings", false).await);
        assert!(!request_allowed("http://127.0.0.1:9/", false).await);
        assert!(!request_allowed("http://169.254.169.254/latest/", false).await);
        assert!(!request_allowed("http://localhost/", false).await);
        assert!(!request_allowed("http://[::1]/", false).await);
        assert!(request_allowed("http://127.0.0.1:9/", true).await);
        assert!(!request_allowed("file:///etc/passwd", true).await);
    }
}
