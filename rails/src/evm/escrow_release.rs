//! The `base-task-escrow` release: what the validator role signs so that the escrow pays a
//! task's split, and where that signature comes from.
//!
//! Seed 000 keeps validator keys out of the process that serves public HTTP, so the key can
//! live on a validator node: the gateway sends the task's escrow terms with the task
//! ([`EscrowRelease`], the task's release context, from [`Rail::release_context`]) and the
//! validator signs the release of the claims it accepted (a quorum's agreeing workers share the
//! worker amount) inside its signed verdict. In a one-process development set-up the rail holds
//! the key itself ([`BaseTaskEscrow::with_release_key`]) and signs at delivery. Either way the
//! contract checks the signature against its validator address, so a release signed for other
//! terms or another escrow is worthless.
//!
//! [`Rail::release_context`]: crate::Rail::release_context
//! [`BaseTaskEscrow::with_release_key`]: super::escrow::BaseTaskEscrow::with_release_key

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};

use super::escrow::{EscrowTerms, NAME, sign_release};
use crate::error::RailError;
use crate::rail::{PaymentRequirements, TaskId};

/// What a gateway sends with a `base-task-escrow` task for the validator to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EscrowRelease {
    /// Always `base-task-escrow`: a validator signs only contexts of rails it holds keys for.
    pub rail: String,
    pub chain_id: u64,
    pub escrow: Address,
    pub terms: EscrowTerms,
}

impl EscrowRelease {
    /// The escrow a task's payment sits in, from the requirements the gateway issued for it.
    pub fn of(requirements: &PaymentRequirements) -> Result<EscrowRelease, RailError> {
        let terms: EscrowTerms = requirements
            .extra
            .as_ref()
            .and_then(|e| e.get("terms"))
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .ok_or_else(|| RailError::Refused("escrow terms missing".into()))?;
        Ok(EscrowRelease {
            rail: NAME.into(),
            chain_id: requirements
                .network
                .reference()
                .parse()
                .map_err(|_| RailError::Refused("network is not eip155".into()))?,
            escrow: requirements
                .pay_to
                .parse()
                .map_err(|_| RailError::Refused("escrow address invalid".into()))?,
            terms,
        })
    }

    /// Reads a task's release context as a validator receives it: `None` when it is another
    /// rail's; refused when it is unreadable or names the escrow of another task (terms for
    /// another task would pay for work nobody checked).
    pub fn from_context(
        task_label: &str,
        context: &serde_json::Value,
    ) -> Result<Option<EscrowRelease>, String> {
        if context.get("rail").and_then(|r| r.as_str()) != Some(NAME) {
            return Ok(None);
        }
        let release: EscrowRelease = serde_json::from_value(context.clone())
            .map_err(|e| format!("unreadable {NAME} release: {e}"))?;
        if release.terms.task_id != TaskId::from_label(task_label).0 {
            return Err(format!("the escrow terms are not task {task_label}'s"));
        }
        Ok(Some(release))
    }

    /// The validator role's signature of this escrow's release to `workers`, in this order.
    pub fn sign(&self, key: &PrivateKeySigner, workers: &[Address]) -> Result<Vec<u8>, RailError> {
        sign_release(key, self.chain_id, self.escrow, &self.terms, workers)
    }
}
