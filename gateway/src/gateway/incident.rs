//! The incident switch (DESIGN §12, seed 000 "Incident shutdown"): while its file exists, no
//! challenge is issued and no new payment is taken, and paid work (tasks in flight, refunds,
//! worker pay owed) still finishes. A file rather than an API, so that an operator can turn it
//! on with nothing but a shell, even when the gateway's HTTP side is what is wrong.

use super::{Gateway, GatewayError};

impl Gateway {
    /// Whether the incident switch is on.
    pub fn incident(&self) -> bool {
        self.check_incident().is_err()
    }

    /// `Err(IncidentShutdown)` while the incident switch is on.
    pub fn check_incident(&self) -> Result<(), GatewayError> {
        match &self.policy.incident_file {
            Some(f) if f.exists() => Err(GatewayError::IncidentShutdown(f.display().to_string())),
            _ => Ok(()),
        }
    }
}
