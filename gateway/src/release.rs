//! The task escrows' release keys as a validator node holds them: `base-task-escrow`'s
//! ([`EscrowReleaseSigner`]) and `solana-task-escrow`'s ([`SolanaEscrowReleaseSigner`]), one
//! node holding either or both ([`ReleaseSigners`]).
//!
//! Seed 000 keeps validator keys out of the process that serves public HTTP, so the key can live
//! on a validator node (`d402 node --validate … --release-key KEY`): the gateway's rail sends the
//! task's escrow terms with the task ([`EscrowRelease`], the task's release context), and the
//! validator signs the release of the claims it accepted (a quorum's agreeing workers share the
//! worker amount) inside its signed verdict. What is signed, and how, is the rail's
//! ([`d402_rails::evm::escrow::EscrowRelease`]); this is the network's hook for it.

use std::sync::Arc;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use d402_node::{ReleaseSigner, SignedRelease};
use d402_rails::evm::escrow::EscrowRelease;
use d402_registry::CreatorWallets;

/// A validator's `base-task-escrow` release key.
pub struct EscrowReleaseSigner {
    key: PrivateKeySigner,
}

impl EscrowReleaseSigner {
    pub fn new(key: PrivateKeySigner) -> Self {
        Self { key }
    }

    /// The escrow's validator address this key signs as.
    pub fn address(&self) -> Address {
        self.key.address()
    }
}

impl ReleaseSigner for EscrowReleaseSigner {
    fn sign_release(
        &self,
        task_id: &str,
        context: &serde_json::Value,
        payout_wallets: &[CreatorWallets],
    ) -> Result<Option<SignedRelease>, String> {
        let Some(release) = EscrowRelease::from_context(task_id, context)? else {
            return Ok(None);
        };
        // A worker without a usable EVM wallet cannot be paid on this chain: the others share.
        let workers: Vec<Address> = payout_wallets
            .iter()
            .filter_map(|w| w.evm.as_deref()?.parse().ok())
            .collect();
        if workers.is_empty() {
            return Err("no accepted worker has an EVM payout wallet".into());
        }
        let signature = release
            .sign(&self.key, &workers)
            .map_err(|e| e.to_string())?;
        Ok(Some(SignedRelease {
            workers: workers.iter().map(|w| w.to_checksum(None)).collect(),
            signature: alloy::hex::encode_prefixed(signature),
        }))
    }
}

/// A validator's `solana-task-escrow` release key.
pub struct SolanaEscrowReleaseSigner {
    key: solana_keypair::Keypair,
}

impl SolanaEscrowReleaseSigner {
    pub fn new(key: solana_keypair::Keypair) -> Self {
        Self { key }
    }

    /// The escrow validator key this signs as.
    pub fn public_key(&self) -> solana_pubkey::Pubkey {
        use solana_signer::Signer;
        self.key.pubkey()
    }
}

impl ReleaseSigner for SolanaEscrowReleaseSigner {
    fn sign_release(
        &self,
        task_id: &str,
        context: &serde_json::Value,
        payout_wallets: &[CreatorWallets],
    ) -> Result<Option<SignedRelease>, String> {
        use d402_rails::solana::escrow::{ReleaseContext, sign_release};
        let Some(context) = ReleaseContext::from_context(context)? else {
            return Ok(None);
        };
        // A worker without a usable Solana wallet cannot be paid on this chain: the others share.
        let workers: Vec<solana_pubkey::Pubkey> = payout_wallets
            .iter()
            .filter_map(|w| w.solana.as_deref()?.parse().ok())
            .take(d402_rails::solana::channel::program::escrow::MAX_RELEASE_WORKERS)
            .collect();
        if workers.is_empty() {
            return Err("no accepted worker has a Solana payout wallet".into());
        }
        // The escrow is derived from the task judged here, whatever the gateway sent.
        let task = d402_rails::TaskId::from_label(task_id);
        let signature =
            sign_release(&self.key, &context, &task, &workers).map_err(|e| e.to_string())?;
        Ok(Some(SignedRelease {
            workers: workers.iter().map(|w| w.to_string()).collect(),
            signature: alloy::hex::encode_prefixed(signature),
        }))
    }
}

/// The release keys one validator node holds: each task's context goes to the signer of its
/// rail.
pub struct ReleaseSigners(Vec<Arc<dyn ReleaseSigner>>);

impl ReleaseSigners {
    /// `None` when the node holds no release key.
    pub fn of(signers: Vec<Arc<dyn ReleaseSigner>>) -> Option<Arc<dyn ReleaseSigner>> {
        match signers.len() {
            0 => None,
            1 => signers.into_iter().next(),
            _ => Some(Arc::new(ReleaseSigners(signers))),
        }
    }
}

impl ReleaseSigner for ReleaseSigners {
    fn sign_release(
        &self,
        task_id: &str,
        context: &serde_json::Value,
        payout_wallets: &[CreatorWallets],
    ) -> Result<Option<SignedRelease>, String> {
        for signer in &self.0 {
            if let Some(signed) = signer.sign_release(task_id, context, payout_wallets)? {
                return Ok(Some(signed));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use d402_rails::evm::escrow::{EscrowTerms, sign_release};
    use d402_rails::{Atomic, TaskId};

    fn terms(task: &str) -> EscrowTerms {
        EscrowTerms {
            task_id: TaskId::from_label(task).0,
            amount: Atomic::new(10_000),
            creator: Address::repeat_byte(1),
            creator_amount: Atomic::new(1_000),
            gateway: Address::repeat_byte(2),
            gateway_amount: Atomic::new(500),
            deadline: 1_900_000_000,
        }
    }

    fn context(task: &str) -> serde_json::Value {
        serde_json::to_value(EscrowRelease {
            rail: d402_rails::evm::escrow::NAME.into(),
            chain_id: 31337,
            escrow: Address::repeat_byte(3),
            terms: terms(task),
        })
        .unwrap()
    }

    /// The validator signs the release of the task it judged, to the accepted workers that can
    /// be paid on the chain, and nothing else.
    #[test]
    fn signs_only_the_judged_tasks_release() {
        let key = PrivateKeySigner::random();
        let signer = EscrowReleaseSigner::new(key.clone());
        let worker = Address::repeat_byte(9);
        let wallets = CreatorWallets {
            solana: None,
            evm: Some(worker.to_checksum(None)),
        };
        let wallets = [wallets];
        let signed = signer
            .sign_release("task-1", &context("task-1"), &wallets)
            .unwrap()
            .unwrap();
        assert_eq!(signed.workers, [worker.to_checksum(None)]);
        let expected = sign_release(
            &key,
            31337,
            Address::repeat_byte(3),
            &terms("task-1"),
            &[worker],
        )
        .unwrap();
        assert_eq!(signed.signature, alloy::hex::encode_prefixed(expected));

        // A quorum: both accepted workers share, in order; one with no EVM wallet is left out.
        let other = Address::repeat_byte(8);
        let quorum = [
            wallets[0].clone(),
            CreatorWallets::default(),
            CreatorWallets {
                solana: None,
                evm: Some(other.to_checksum(None)),
            },
        ];
        let signed = signer
            .sign_release("task-1", &context("task-1"), &quorum)
            .unwrap()
            .unwrap();
        assert_eq!(
            signed.workers,
            [worker.to_checksum(None), other.to_checksum(None)]
        );
        let expected = sign_release(
            &key,
            31337,
            Address::repeat_byte(3),
            &terms("task-1"),
            &[worker, other],
        )
        .unwrap();
        assert_eq!(signed.signature, alloy::hex::encode_prefixed(expected));

        // Terms of another task: refused, whatever the gateway says.
        assert!(
            signer
                .sign_release("task-2", &context("task-1"), &wallets)
                .unwrap_err()
                .contains("not task task-2's")
        );
        // A worker without an EVM wallet cannot be released to.
        assert!(
            signer
                .sign_release("task-1", &context("task-1"), &[CreatorWallets::default()])
                .is_err()
        );
        // Another rail's context is not this signer's to sign.
        assert_eq!(
            signer
                .sign_release(
                    "task-1",
                    &serde_json::json!({"rail": "solana-task-escrow"}),
                    &wallets
                )
                .unwrap(),
            None
        );
    }
}
