//! Test-only: a real local EVM chain for d402's tests and benchmarks.
//!
//! [`Anvil::start`] finds the anvil binary (`D402_ANVIL`, else the copy `scripts/setup.sh`
//! installs from npm under `$HOME/.cache/d402-tools`, else `anvil` on `PATH`), starts it on a
//! free port of 127.0.0.1, waits until it answers JSON-RPC, and funds fresh random keys with
//! ether. [`Anvil::deploy_test_usd`] deploys d402's `TestUsd` token. Dropping the [`Anvil`] kills
//! the process.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use d402_rails::evm::contracts::TestUsd;
use d402_rails::evm::{Asset, EvmChain};

/// Chain id of every test chain (anvil's default).
pub const CHAIN_ID: u64 = 31337;
/// EIP-712 domain of the test token, as x402's `extra` carries it.
pub const TOKEN_NAME: &str = "Test USD";
pub const TOKEN_VERSION: &str = "2";

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(
        "anvil not found: set D402_ANVIL, or run scripts/setup.sh (installs it under ~/.cache/d402-tools), or put anvil on PATH"
    )]
    NotFound,
    #[error("could not start anvil at {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("anvil did not answer on {0} within 30 s")]
    NotReady(String),
    #[error("{0}")]
    Rpc(String),
}

fn rpc(e: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc(e.to_string())
}

/// Where anvil is.
pub fn locate_anvil() -> Result<PathBuf, ChainError> {
    if let Some(p) = std::env::var_os("D402_ANVIL") {
        return Ok(PathBuf::from(p));
    }
    let tools = std::env::var_os("D402_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/d402-tools")));
    if let Some(tools) = tools {
        let p = tools.join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
        if p.is_file() {
            return Ok(p);
        }
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|d| d.join("anvil"))
        .find(|p| p.is_file())
        .ok_or(ChainError::NotFound)
}

/// A running anvil. Killed on drop.
pub struct Anvil {
    child: Child,
    pub url: url::Url,
    /// Funded with 10,000 ether each; fresh for every chain.
    pub keys: Vec<PrivateKeySigner>,
}

impl Anvil {
    /// Starts anvil with `accounts` funded random keys.
    pub async fn start(accounts: usize) -> Result<Anvil, ChainError> {
        Self::start_with(accounts, &[]).await
    }

    /// Starts anvil with `accounts` funded random keys and `extra` command-line arguments (a
    /// benchmark passes `--prune-history`: by default anvil keeps every block's state and writes
    /// older ones to disk, so each block costs more the longer a run goes, and whichever side of
    /// a side-by-side run goes second would pay for the first one's blocks).
    pub async fn start_with(accounts: usize, extra: &[&str]) -> Result<Anvil, ChainError> {
        let path = locate_anvil()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|source| ChainError::Spawn {
                path: path.clone(),
                source,
            })?
            .port();
        let child = Command::new(&path)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--chain-id", &CHAIN_ID.to_string(), "--accounts", "1"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ChainError::Spawn { path, source })?;
        let url: url::Url = format!("http://127.0.0.1:{port}").parse().map_err(rpc)?;
        let mut anvil = Anvil {
            child,
            url: url.clone(),
            keys: Vec::new(),
        };
        let probe = ProviderBuilder::new().connect_http(url.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if probe.get_chain_id().await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(ChainError::NotReady(url.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..accounts {
            let key = PrivateKeySigner::random();
            let wei = U256::from(10_000u64) * U256::from(10u64).pow(U256::from(18u64));
            probe
                .raw_request::<_, serde_json::Value>(
                    "anvil_setBalance".into(),
                    (key.address(), wei),
                )
                .await
                .map_err(rpc)?;
            anvil.keys.push(key);
        }
        Ok(anvil)
    }

    /// A provider that signs with `key`.
    pub fn provider(&self, key: &PrivateKeySigner) -> DynProvider {
        ProviderBuilder::new()
            .wallet(EthereumWallet::from(key.clone()))
            .connect_http(self.url.clone())
            .erased()
    }

    /// Deploys `TestUsd` from `deployer` (who becomes its minter) and describes the chain.
    pub async fn deploy_test_usd(
        &self,
        deployer: &PrivateKeySigner,
    ) -> Result<EvmChain, ChainError> {
        let token = TestUsd::deploy(
            self.provider(deployer),
            TOKEN_NAME.to_string(),
            TOKEN_VERSION.to_string(),
        )
        .await
        .map_err(rpc)?;
        Ok(EvmChain {
            rpc_url: self.url.clone(),
            chain_id: CHAIN_ID,
            asset: Asset {
                address: *token.address(),
                name: TOKEN_NAME.into(),
                version: TOKEN_VERSION.into(),
                decimals: 6,
            },
        })
    }

    /// Places the x402 `batch-settlement` contracts (settlement and ERC-3009 deposit collector)
    /// at their canonical addresses, where the stock client expects them: their runtime code is
    /// written there with `anvil_setCode` (neither keeps constructor state). Idempotent.
    pub async fn install_batch_settlement(&self) -> Result<(), ChainError> {
        use d402_rails::evm::batch::{ERC3009_COLLECTOR_ADDRESS, SETTLEMENT_ADDRESS};
        use d402_rails::evm::contracts::{BatchSettlement, Erc3009DepositCollector};
        let p = ProviderBuilder::new().connect_http(self.url.clone());
        for (at, code) in [
            (SETTLEMENT_ADDRESS, &BatchSettlement::DEPLOYED_BYTECODE),
            (
                ERC3009_COLLECTOR_ADDRESS,
                &Erc3009DepositCollector::DEPLOYED_BYTECODE,
            ),
        ] {
            p.raw_request::<_, serde_json::Value>("anvil_setCode".into(), (at, code.clone()))
                .await
                .map_err(rpc)?;
        }
        Ok(())
    }

    /// Places a stand-in for Multicall3 (`tryAggregate` only, `rails/contracts/TryAggregate.sol`)
    /// at Multicall3's usual address, where the stock x402 facilitator reads through it.
    pub async fn install_multicall3(&self) -> Result<(), ChainError> {
        use d402_rails::evm::contracts::TryAggregate;
        let at = alloy::primitives::address!("cA11bde05977b3631167028862bE2a173976CA11");
        let p = ProviderBuilder::new().connect_http(self.url.clone());
        p.raw_request::<_, serde_json::Value>(
            "anvil_setCode".into(),
            (at, TryAggregate::DEPLOYED_BYTECODE.clone()),
        )
        .await
        .map_err(rpc)?;
        Ok(())
    }

    /// Mints `amount` atomic units of `token` to `to` (the deployer is the minter).
    pub async fn mint(
        &self,
        minter: &PrivateKeySigner,
        token: Address,
        to: Address,
        amount: u128,
    ) -> Result<(), ChainError> {
        let t = TestUsd::new(token, self.provider(minter));
        let receipt = t
            .mint(to, U256::from(amount))
            .send()
            .await
            .map_err(rpc)?
            .get_receipt()
            .await
            .map_err(rpc)?;
        if !receipt.status() {
            return Err(ChainError::Rpc("mint reverted".into()));
        }
        Ok(())
    }

    /// `who`'s balance of `token`, in atomic units.
    pub async fn balance(&self, token: Address, who: Address) -> Result<u128, ChainError> {
        let t = TestUsd::new(
            token,
            ProviderBuilder::new()
                .connect_http(self.url.clone())
                .erased(),
        );
        let b = t.balanceOf(who).call().await.map_err(rpc)?;
        u128::try_from(b).map_err(rpc)
    }

    /// How many transactions `who` has sent.
    pub async fn tx_count(&self, who: Address) -> Result<u64, ChainError> {
        ProviderBuilder::new()
            .connect_http(self.url.clone())
            .get_transaction_count(who)
            .await
            .map_err(rpc)
    }

    /// Moves the chain's clock forward by `secs` and mines a block.
    pub async fn advance_time(&self, secs: u64) -> Result<(), ChainError> {
        let p = ProviderBuilder::new().connect_http(self.url.clone());
        p.raw_request::<_, serde_json::Value>("evm_increaseTime".into(), (secs,))
            .await
            .map_err(rpc)?;
        p.raw_request::<_, serde_json::Value>("evm_mine".into(), ())
            .await
            .map_err(rpc)?;
        Ok(())
    }

    /// The latest block's timestamp.
    pub async fn now(&self) -> Result<u64, ChainError> {
        let p = ProviderBuilder::new().connect_http(self.url.clone());
        let b = p
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(rpc)?
            .ok_or_else(|| ChainError::Rpc("no latest block".into()))?;
        Ok(b.header.timestamp)
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
