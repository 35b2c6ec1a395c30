//! The `batch-settlement` contracts on a real anvil, placed at their canonical addresses: a
//! deposit through the ERC-3009 collector, claims (direct and relayed), the sweep, the payer's
//! timed withdrawal and the cooperative refund, with every refusal the scheme relies on reverting
//! and the exact balances after every step.

mod common;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::DynProvider;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use common::world;
use d402_rails::Atomic;
use d402_rails::evm::batch::config::{claim_batch_digest, refund_digest};
use d402_rails::evm::batch::{
    BatchPayload, ChannelConfig, ERC3009_COLLECTOR_ADDRESS, SETTLEMENT_ADDRESS, channel_id, payer,
};
use d402_rails::evm::contracts::BatchSettlement::{self, BatchSettlementInstance};
use d402_rails::evm::contracts::BatchSettlement::{Voucher, VoucherClaim};

const CHAIN: u64 = 31337;

fn requirements(w: &common::World, receiver: Address) -> d402_rails::PaymentRequirements {
    serde_json::from_value(serde_json::json!({
        "scheme": "batch-settlement",
        "network": "eip155:31337",
        "amount": "1000",
        "asset": w.chain.asset.address.to_string(),
        "payTo": receiver.to_string(),
        "maxTimeoutSeconds": 3600,
        "extra": {
            "receiverAuthorizer": receiver.to_string(),
            "withdrawDelay": 900,
            "name": w.chain.asset.name,
            "version": w.chain.asset.version,
        }
    }))
    .unwrap()
}

fn sig(key: &PrivateKeySigner, digest: B256) -> Bytes {
    key.sign_hash_sync(&digest)
        .unwrap()
        .as_bytes()
        .to_vec()
        .into()
}

/// A claim row of `config`'s channel: the payer's voucher for `max`, claiming up to `total`.
fn row(key: &PrivateKeySigner, config: &ChannelConfig, max: u128, total: u128) -> VoucherClaim {
    let v = payer::sign_voucher(key, config, CHAIN, Atomic::new(max)).unwrap();
    VoucherClaim {
        voucher: Voucher {
            channel: config.to_contract().unwrap(),
            maxClaimableAmount: max,
        },
        signature: v.signature,
        totalClaimed: total,
    }
}

/// Sends a call and waits for it to land; `Err` when it reverts (at estimation or on chain).
macro_rules! send {
    ($call:expr) => {
        async {
            let pending = $call.send().await.map_err(|e| e.to_string())?;
            let receipt = pending.get_receipt().await.map_err(|e| e.to_string())?;
            if receipt.status() {
                Ok(())
            } else {
                Err("reverted on chain".to_string())
            }
        }
    };
}

async fn state(s: &BatchSettlementInstance<DynProvider>, id: B256) -> (u128, u128) {
    let c = s.channels(id).call().await.unwrap();
    (c.balance, c.totalClaimed)
}

#[tokio::test]
async fn channel_lifecycle_and_every_refusal_on_anvil() {
    let w = world().await;
    w.anvil.install_batch_settlement().await.unwrap();
    let buyer = &w.buyer;
    let receiver = &w.facilitator;
    let relayer = &w.others[0];
    let stranger = &w.others[1];
    let token = w.chain.asset.address;
    let req = requirements(&w, receiver.address());
    let config = payer::channel_for(buyer.address(), &req, B256::ZERO).unwrap();
    let id = channel_id(&config, CHAIN).unwrap();
    let as_relayer = BatchSettlement::new(SETTLEMENT_ADDRESS, w.chain.serial_provider(relayer));
    let as_receiver = BatchSettlement::new(SETTLEMENT_ADDRESS, w.chain.serial_provider(receiver));
    let as_buyer = BatchSettlement::new(SETTLEMENT_ADDRESS, w.chain.serial_provider(buyer));
    let as_stranger = BatchSettlement::new(SETTLEMENT_ADDRESS, w.chain.serial_provider(stranger));
    let cfg = config.to_contract().unwrap();
    let start = w.balance(buyer.address()).await;

    // The channel id is the contract's.
    assert_eq!(
        as_relayer.getChannelId(cfg.clone()).call().await.unwrap(),
        id
    );

    // Deposit 1,000,000 through the collector, relayed by someone else (gasless for the payer).
    let valid_before = w.anvil.now().await.unwrap() + 3600;
    let deposit = |amount: u128, salt: u64| {
        let p = payer::deposit(
            buyer,
            &req,
            &config,
            Atomic::new(amount),
            Atomic::new(1000),
            valid_before,
            U256::from(salt),
        )
        .unwrap();
        match p {
            BatchPayload::Deposit { deposit, .. } => {
                deposit.authorization.erc3009_authorization.collector_data()
            }
            _ => unreachable!(),
        }
    };
    let first = deposit(1_000_000, 1);
    send!(as_relayer.deposit(
        cfg.clone(),
        1_000_000,
        ERC3009_COLLECTOR_ADDRESS,
        first.clone()
    ))
    .await
    .unwrap();
    assert_eq!(state(&as_relayer, id).await, (1_000_000, 0));
    assert_eq!(w.balance(buyer.address()).await, start - 1_000_000);
    assert_eq!(w.balance(SETTLEMENT_ADDRESS).await, 1_000_000);

    // The same authorization again: the token refuses the used nonce.
    assert!(
        send!(as_relayer.deposit(
            cfg.clone(),
            1_000_000,
            ERC3009_COLLECTOR_ADDRESS,
            first.clone()
        ))
        .await
        .is_err()
    );
    // Another collector, or calling the collector directly, moves nothing.
    assert!(
        send!(as_relayer.deposit(cfg.clone(), 1_000_000, stranger.address(), deposit(5, 2)))
            .await
            .is_err()
    );
    let collector = d402_rails::evm::contracts::Erc3009DepositCollector::new(
        ERC3009_COLLECTOR_ADDRESS,
        w.chain.serial_provider(relayer),
    );
    assert!(
        send!(collector.collect(buyer.address(), token, U256::from(5), id, deposit(5, 3)))
            .await
            .is_err()
    );
    assert_eq!(w.balance(buyer.address()).await, start - 1_000_000);

    // The receiver claims 300,000 of a 300,000 voucher.
    send!(as_receiver.claim(vec![row(buyer, &config, 300_000, 300_000)]))
        .await
        .unwrap();
    assert_eq!(state(&as_relayer, id).await, (1_000_000, 300_000));
    // An older voucher reverts; the same claim again moves nothing.
    assert!(
        send!(as_receiver.claim(vec![row(buyer, &config, 200_000, 200_000)]))
            .await
            .is_err()
    );
    send!(as_receiver.claim(vec![row(buyer, &config, 300_000, 300_000)]))
        .await
        .unwrap();
    assert_eq!(state(&as_relayer, id).await, (1_000_000, 300_000));
    // Above the deposit, above the voucher, by a stranger: each reverts.
    assert!(
        send!(as_receiver.claim(vec![row(buyer, &config, 1_500_000, 1_500_000)]))
            .await
            .is_err()
    );
    assert!(
        send!(as_receiver.claim(vec![row(buyer, &config, 400_000, 400_001)]))
            .await
            .is_err()
    );
    assert!(
        send!(as_stranger.claim(vec![row(buyer, &config, 400_000, 400_000)]))
            .await
            .is_err()
    );
    // A voucher signed for another channel (another salt) does not claim this one.
    let other = ChannelConfig {
        salt: B256::repeat_byte(7),
        ..config
    };
    let mut foreign = row(buyer, &other, 400_000, 400_000);
    foreign.voucher.channel = cfg.clone();
    assert!(send!(as_receiver.claim(vec![foreign])).await.is_err());
    // A voucher signed by someone else.
    let mut forged = row(stranger, &config, 400_000, 400_000);
    forged.voucher.channel = cfg.clone();
    assert!(send!(as_receiver.claim(vec![forged])).await.is_err());
    assert_eq!(state(&as_relayer, id).await, (1_000_000, 300_000));

    // A relayed claim with the receiver authorizer's ClaimBatch signature; the digest computed
    // here is the contract's.
    let rows = vec![row(buyer, &config, 500_000, 500_000)];
    let digest = claim_batch_digest(&[(id, 500_000, 500_000)], CHAIN);
    assert_eq!(
        as_relayer
            .getClaimBatchDigest(rows.clone())
            .call()
            .await
            .unwrap(),
        digest
    );
    assert!(
        send!(as_relayer.claimWithSignature(rows.clone(), sig(stranger, digest)))
            .await
            .is_err()
    );
    send!(as_relayer.claimWithSignature(rows, sig(receiver, digest)))
        .await
        .unwrap();
    assert_eq!(state(&as_relayer, id).await, (1_000_000, 500_000));

    // The sweep: permissionless, to the receiver only.
    send!(as_stranger.settle(receiver.address(), token))
        .await
        .unwrap();
    assert_eq!(w.balance(receiver.address()).await, 500_000);
    assert_eq!(w.balance(SETTLEMENT_ADDRESS).await, 500_000);
    let r = as_relayer
        .receivers(receiver.address(), token)
        .call()
        .await
        .unwrap();
    assert_eq!((r.totalClaimed, r.totalSettled), (500_000, 500_000));

    // The payer's timed withdrawal: not above what is unclaimed, not before the delay, and the
    // receiver may still claim during it.
    assert!(
        send!(as_buyer.initiateWithdraw(cfg.clone(), 500_001))
            .await
            .is_err()
    );
    assert!(
        send!(as_stranger.initiateWithdraw(cfg.clone(), 400_000))
            .await
            .is_err()
    );
    send!(as_buyer.initiateWithdraw(cfg.clone(), 450_000))
        .await
        .unwrap();
    assert!(send!(as_buyer.finalizeWithdraw(cfg.clone())).await.is_err());
    send!(as_receiver.claim(vec![row(buyer, &config, 600_000, 600_000)]))
        .await
        .unwrap();
    w.anvil.advance_time(901).await.unwrap();
    send!(as_buyer.finalizeWithdraw(cfg.clone())).await.unwrap();
    // 450,000 asked, 400,000 left unclaimed: the payer gets 400,000.
    assert_eq!(
        w.balance(buyer.address()).await,
        start - 1_000_000 + 400_000
    );
    assert_eq!(state(&as_relayer, id).await, (600_000, 600_000));
    // A claim after the withdrawal finds no balance.
    assert!(
        send!(as_receiver.claim(vec![row(buyer, &config, 700_000, 700_000)]))
            .await
            .is_err()
    );

    // Cooperative refund: top up 200,000, refund 50,000 directly, then the rest by signature.
    let valid_before = w.anvil.now().await.unwrap() + 3600;
    let top_up = payer::deposit(
        buyer,
        &req,
        &config,
        Atomic::new(200_000),
        Atomic::new(0),
        valid_before,
        U256::from(9),
    )
    .unwrap();
    let BatchPayload::Deposit { deposit: d, .. } = top_up else {
        unreachable!()
    };
    send!(as_relayer.deposit(
        cfg.clone(),
        200_000,
        ERC3009_COLLECTOR_ADDRESS,
        d.authorization.erc3009_authorization.collector_data()
    ))
    .await
    .unwrap();
    assert!(
        send!(as_stranger.refund(cfg.clone(), 50_000))
            .await
            .is_err()
    );
    send!(as_receiver.refund(cfg.clone(), 50_000))
        .await
        .unwrap();
    assert_eq!(
        as_relayer.refundNonce(id).call().await.unwrap(),
        U256::from(1)
    );
    // A signature for the old nonce, or by someone else, reverts; the right one is capped to
    // what is unclaimed.
    let stale = sig(receiver, refund_digest(id, U256::ZERO, 1_000_000, CHAIN));
    assert!(
        send!(as_relayer.refundWithSignature(cfg.clone(), 1_000_000, U256::ZERO, stale))
            .await
            .is_err()
    );
    let wrong = sig(stranger, refund_digest(id, U256::from(1), 1_000_000, CHAIN));
    assert!(
        send!(as_relayer.refundWithSignature(cfg.clone(), 1_000_000, U256::from(1), wrong))
            .await
            .is_err()
    );
    let good = sig(receiver, refund_digest(id, U256::from(1), 1_000_000, CHAIN));
    send!(as_relayer.refundWithSignature(cfg.clone(), 1_000_000, U256::from(1), good))
        .await
        .unwrap();
    assert_eq!(state(&as_relayer, id).await, (600_000, 600_000));
    assert_eq!(
        as_relayer.refundNonce(id).call().await.unwrap(),
        U256::from(2)
    );

    // Sweep the last claim; nothing is left in the contract, and every unit is accounted for.
    send!(as_stranger.settle(receiver.address(), token))
        .await
        .unwrap();
    assert_eq!(w.balance(receiver.address()).await, 600_000);
    assert_eq!(w.balance(SETTLEMENT_ADDRESS).await, 0);
    assert_eq!(w.balance(buyer.address()).await, start - 600_000);
}
