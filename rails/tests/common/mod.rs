//! Shared set-up for the acceptance tests: a fresh anvil, the test token, funded keys.
#![allow(dead_code)]

use alloy::signers::local::PrivateKeySigner;
use d402_evm_chain::Anvil;
use d402_rails::evm::EvmChain;
use d402_rails::{Atomic, GatewayFee, Outbox, TaskId, Terms};

pub struct World {
    pub anvil: Anvil,
    pub chain: EvmChain,
    pub dir: tempfile::TempDir,
    /// keys[0] deployed the token (and mints).
    pub deployer: PrivateKeySigner,
    /// The gateway's facilitator / fee-payer key.
    pub facilitator: PrivateKeySigner,
    pub buyer: PrivateKeySigner,
    /// Spare funded keys for payees, validators, other buyers.
    pub others: Vec<PrivateKeySigner>,
}

/// 100 TUSD for the buyer.
pub const BUYER_FUNDS: u128 = 100_000_000;

pub async fn world() -> World {
    let anvil = Anvil::start(10)
        .await
        .expect("anvil starts (run scripts/setup.sh)");
    let mut keys = anvil.keys.clone();
    let deployer = keys.remove(0);
    let facilitator = keys.remove(0);
    let buyer = keys.remove(0);
    let chain = anvil
        .deploy_test_usd(&deployer)
        .await
        .expect("TestUsd deploys");
    anvil
        .mint(&deployer, chain.asset.address, buyer.address(), BUYER_FUNDS)
        .await
        .expect("mint");
    World {
        anvil,
        chain,
        dir: tempfile::tempdir().expect("tempdir"),
        deployer,
        facilitator,
        buyer,
        others: keys,
    }
}

impl World {
    pub fn outbox(&self, name: &str) -> Outbox {
        Outbox::open(&self.dir.path().join(name)).expect("outbox opens")
    }

    pub async fn balance(&self, who: alloy::primitives::Address) -> u128 {
        self.anvil
            .balance(self.chain.asset.address, who)
            .await
            .expect("balance")
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

pub fn terms(label: &str, price: u128, pay_to: &str) -> Terms {
    Terms {
        task_id: TaskId::from_label(label),
        price: Atomic::new(price),
        pay_to: pay_to.to_string(),
        commission: None,
        gateway_fee: GatewayFee::Bps(0),
        max_timeout_seconds: 300,
        deadline_unix: now() + 3600,
    }
}
