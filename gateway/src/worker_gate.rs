//! A gateway's minimum bond for work nobody can re-execute exactly: a worker is leased for a
//! non-verifiable or scoreable offer only if its EVM payout wallet has at least the minimum
//! actively bonded in the [`WorkerBonds`] contract the gateway names. Read at every bid, so a
//! worker that starts unbonding stops being leased at once.

use std::future::Future;
use std::pin::Pin;

use d402_node::WorkerGate;
use d402_rails::evm::bond::WorkerBonds;
use d402_registry::CreatorWallets;

/// The `--min-worker-bond` gate.
pub struct BondGate {
    pub bonds: WorkerBonds,
    /// Atomic units of the bond token.
    pub minimum: u128,
}

impl std::fmt::Debug for BondGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BondGate")
            .field("contract", &self.bonds.address())
            .field("minimum", &self.minimum)
            .finish()
    }
}

impl WorkerGate for BondGate {
    fn admit<'a>(
        &'a self,
        wallets: &'a CreatorWallets,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let wallet = wallets
                .evm
                .as_deref()
                .ok_or("the worker names no EVM wallet to hold its bond")?;
            let address = wallet
                .parse()
                .map_err(|_| format!("{wallet:?} is not an EVM address"))?;
            let bond = self
                .bonds
                .bond_of(address)
                .await
                .map_err(|e| format!("reading the bond of {wallet}: {e}"))?;
            if bond.active < self.minimum {
                return Err(format!(
                    "{wallet} has {} bonded, under the minimum {}",
                    bond.active, self.minimum
                ));
            }
            Ok(())
        })
    }
}
