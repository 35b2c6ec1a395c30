//! A claim's payout wallets are the worker's own word: signed with the key that signs its
//! receipt, bound to the lease, so a coordinator (or a gateway behind it) that swaps them is
//! caught by the coordinator's own check and by a validator asked to sign an escrow release.

use std::sync::Arc;

use d402_core::{ContentId, Identity};
use d402_host::{Host, HostConfig, Task};
use d402_network_support::{artifacts, component, merkle_input};
use d402_node::wire::Claim;
use d402_registry::CreatorWallets;

fn claim(worker: &Identity, wallets: CreatorWallets) -> Claim {
    let host = Host::new(
        HostConfig::default(),
        Arc::new(Identity::from_seed(worker.secret_seed())),
    )
    .unwrap();
    let bytes = component(artifacts::MERKLE_VERIFY_COMPONENT);
    let cid = ContentId::of(&bytes);
    host.load(&cid, &bytes).unwrap();
    let input = merkle_input("payout");
    let execution = host
        .execute(Task {
            input: &input,
            ..Task::defaults(cid, "task-1")
        })
        .unwrap();
    let lease_id = "task-1/lease-1".to_string();
    let payout_signature = worker.sign(&Claim::payout_message(&lease_id, &wallets).unwrap());
    Claim {
        lease_id,
        output: execution.output,
        receipt: execution.receipt,
        evidence_objects: Vec::new(),
        payout_wallets: wallets,
        payout_signature,
    }
}

#[test]
fn payout_wallets_are_bound_to_the_worker_and_the_lease() {
    let worker = Identity::from_seed([7; 32]);
    let wallets = CreatorWallets {
        solana: None,
        evm: Some("0x1111111111111111111111111111111111111111".into()),
    };
    let honest = claim(&worker, wallets);
    honest.verify_payout().unwrap();

    // Swapped for someone else's wallet: the signature no longer holds.
    let mut swapped = honest.clone();
    swapped.payout_wallets.evm = Some("0x2222222222222222222222222222222222222222".into());
    assert!(swapped.verify_payout().is_err());

    // Moved to another lease: refused too.
    let mut moved = honest.clone();
    moved.lease_id = "task-2/lease-1".into();
    assert!(moved.verify_payout().is_err());

    // Signed by a key other than the receipt's: refused.
    let mut forged = honest;
    forged.payout_signature = Identity::from_seed([8; 32])
        .sign(&Claim::payout_message(&forged.lease_id, &forged.payout_wallets).unwrap());
    assert!(forged.verify_payout().is_err());
}
