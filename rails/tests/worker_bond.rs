//! `WorkerBond` on a real anvil: bonding, unbonding after the delay, and slashes signed by the
//! slasher, including every way a slash is refused (a forged or tampered signature, a replay of
//! the same task, more than the bond).

mod common;

use alloy::primitives::B256;
use common::*;
use d402_rails::RailError;
use d402_rails::evm::bond::{BondState, SlashOrder, WorkerBonds, sign_slash};

const DELAY: u64 = 3_600;
const BOND: u128 = 5_000_000;

fn refused_with(result: Result<B256, RailError>, error: &str) {
    match result {
        Err(RailError::Refused(m)) if m.contains(error) => {}
        other => panic!("expected {error}, got {other:?}"),
    }
}

#[tokio::test]
async fn bonds_unbond_after_the_delay_and_slash_once_per_task_with_the_slashers_signature() {
    let w = world().await;
    let slasher = w.others[0].clone();
    let worker = w.others[1].clone();
    let stranger = w.others[2].clone();
    let address = WorkerBonds::deploy(
        &w.chain.provider(&w.deployer),
        w.chain.asset.address,
        slasher.address(),
        DELAY,
    )
    .await
    .unwrap();
    w.anvil
        .mint(&w.deployer, w.chain.asset.address, worker.address(), BOND)
        .await
        .unwrap();
    let as_worker = WorkerBonds::new(w.chain.provider(&worker), address);
    let as_gateway = WorkerBonds::new(w.chain.provider(&w.facilitator), address);

    as_worker.bond(BOND).await.unwrap();
    assert_eq!(w.balance(worker.address()).await, 0);
    assert_eq!(
        as_gateway.bond_of(worker.address()).await.unwrap(),
        BondState {
            active: BOND,
            unbonding: 0,
            unlock_at: 0
        }
    );
    refused_with(as_worker.bond(0).await, "ZeroAmount");

    // A lost dispute: the slasher signs 10 % of the bond to the buyer for task 1.
    let chain_id = w.chain.chain_id;
    let order = SlashOrder {
        worker: worker.address(),
        to: w.buyer.address(),
        amount: BOND / 10,
        reason: B256::repeat_byte(1),
    };
    let signature = sign_slash(&slasher, chain_id, address, &order).unwrap();
    // Forged (someone else's key), tampered (a larger amount, another recipient): refused.
    let forged = sign_slash(&stranger, chain_id, address, &order).unwrap();
    refused_with(as_gateway.slash(&order, &forged).await, "NotSlasher");
    let more = SlashOrder {
        amount: BOND / 2,
        ..order
    };
    refused_with(as_gateway.slash(&more, &signature).await, "NotSlasher");
    let elsewhere = SlashOrder {
        to: stranger.address(),
        ..order
    };
    refused_with(as_gateway.slash(&elsewhere, &signature).await, "NotSlasher");
    // Another chain's or contract's signature does not apply here.
    let other_domain = sign_slash(&slasher, chain_id + 1, address, &order).unwrap();
    refused_with(as_gateway.slash(&order, &other_domain).await, "NotSlasher");

    assert!(!as_gateway.slashed(order.reason).await.unwrap());
    as_gateway.slash(&order, &signature).await.unwrap();
    assert!(as_gateway.slashed(order.reason).await.unwrap());
    assert_eq!(w.balance(w.buyer.address()).await, BUYER_FUNDS + BOND / 10);
    // The same task is slashed once, whoever resubmits it.
    refused_with(as_gateway.slash(&order, &signature).await, "AlreadySlashed");
    refused_with(as_worker.slash(&order, &signature).await, "AlreadySlashed");
    assert_eq!(w.balance(w.buyer.address()).await, BUYER_FUNDS + BOND / 10);

    // Leaving: half the rest unbonds; it cannot be withdrawn before the delay.
    let rest = BOND - BOND / 10;
    refused_with(as_worker.request_unbond(rest + 1).await, "InsufficientBond");
    as_worker.request_unbond(rest / 2).await.unwrap();
    let state = as_worker.bond_of(worker.address()).await.unwrap();
    assert_eq!((state.active, state.unbonding), (rest - rest / 2, rest / 2));
    assert!(state.unlock_at >= w.anvil.now().await.unwrap() + DELAY - 5);
    refused_with(as_worker.withdraw().await, "StillLocked");

    // What is unbonding can still be slashed: a slash larger than the active bond takes the
    // rest from it.
    let deep = SlashOrder {
        amount: rest - rest / 2 + 1_000,
        reason: B256::repeat_byte(2),
        ..order
    };
    let too_deep = SlashOrder {
        amount: rest + 1,
        reason: B256::repeat_byte(3),
        ..order
    };
    let too_deep_sig = sign_slash(&slasher, chain_id, address, &too_deep).unwrap();
    refused_with(
        as_gateway.slash(&too_deep, &too_deep_sig).await,
        "InsufficientBond",
    );
    as_gateway
        .slash(
            &deep,
            &sign_slash(&slasher, chain_id, address, &deep).unwrap(),
        )
        .await
        .unwrap();
    let state = as_worker.bond_of(worker.address()).await.unwrap();
    assert_eq!((state.active, state.unbonding), (0, rest / 2 - 1_000));

    // After the delay the worker gets what is left of its unbonding bond, once.
    w.anvil.advance_time(DELAY + 1).await.unwrap();
    as_worker.withdraw().await.unwrap();
    assert_eq!(w.balance(worker.address()).await, rest / 2 - 1_000);
    refused_with(as_worker.withdraw().await, "NothingUnbonding");
    assert_eq!(
        as_worker.bond_of(worker.address()).await.unwrap().unbonding,
        0
    );
    // Every token is accounted for: the worker's, the buyer's slashes, nothing left behind.
    assert_eq!(w.balance(address).await, 0);
}
