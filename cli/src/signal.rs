//! How a `d402` process is asked to stop: Ctrl-C or `SIGTERM` (a supervisor such as the devnet,
//! systemd or a container runtime stops a node with `SIGTERM`, and the node must go through its
//! shutdown path then too).

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The stop request, listened for from the moment it is installed: a `SIGTERM` that arrives before
/// anyone awaits [`Stop::requested`] is kept, not left to the default action (which would end the
/// process without its shutdown path).
pub struct Stop {
    term: Option<Signal>,
}

impl Stop {
    /// Starts listening. Call before the process announces that it is up.
    pub fn install() -> Self {
        Self {
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Waits for Ctrl-C or `SIGTERM`.
    pub async fn requested(&mut self) {
        let term = async {
            match self.term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
}
