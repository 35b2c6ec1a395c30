//! The devnet's local chains: anvil with the test token and the task-escrow contract, and a
//! Solana test validator with a USDC-like SPL mint. Each comes with funded test wallets.

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, anyhow};
use d402_evm_chain::Anvil;
use d402_rails::evm::EvmChain;
use d402_rails::evm::escrow::BaseTaskEscrow;
use d402_solana_chain::SolanaChain;
use serde::Serialize;
use solana_keypair::Keypair;
use solana_signer::Signer;

/// Test USD each EVM and Solana test buyer starts with: 1,000.00 of a 6-decimals token.
pub const BUYER_FUNDS: u64 = 1_000_000_000;
/// SOL each Solana test wallet gets for fees: 10 SOL.
const WALLET_LAMPORTS: u64 = 10_000_000_000;

/// Anvil and what the devnet deployed on it.
pub struct Evm {
    pub anvil: Anvil,
    pub chain: EvmChain,
    pub escrow: Address,
    /// Pays the gas of settlements and receives the gateway fee.
    pub facilitator: PrivateKeySigner,
    /// The `base-x402-direct` gateway's facilitator: it is paid into, pays gas, and pays workers
    /// and refunds out of its wallet.
    pub direct_facilitator: PrivateKeySigner,
    /// The `base-batch-settlement` gateway's receiver authorizer and wallet: it claims the
    /// channels, is swept into, and pays workers out of its wallet.
    pub batch_facilitator: PrivateKeySigner,
    /// The `base-x402-solana-channel` gateway's facilitator: it is paid into on Base and refunds
    /// out of its wallet (the split is paid on Solana).
    pub hybrid_facilitator: PrivateKeySigner,
    /// The validator role's release key: signs split releases of the escrow.
    pub release: PrivateKeySigner,
    /// Funded test buyers.
    pub buyers: Vec<PrivateKeySigner>,
    /// Where the creator commission goes.
    pub creator: PrivateKeySigner,
    /// One payout wallet per worker.
    pub workers: Vec<PrivateKeySigner>,
}

/// Starts anvil, deploys the test token and the escrow, funds `buyers` buyers.
pub async fn evm(buyers: usize, workers: usize) -> anyhow::Result<Evm> {
    let anvil = Anvil::start(7 + buyers + workers)
        .await
        .map_err(|e| anyhow!("{e} (scripts/setup.sh installs anvil)"))?;
    let mut keys = anvil.keys.clone().into_iter();
    let mut next = || {
        keys.next()
            .ok_or_else(|| anyhow!("anvil gave too few keys"))
    };
    let deployer = next()?;
    let facilitator = next()?;
    let release = next()?;
    let creator = next()?;
    let direct_facilitator = next()?;
    let batch_facilitator = next()?;
    let hybrid_facilitator = next()?;
    let buyers: Vec<_> = (0..buyers).map(|_| next()).collect::<Result<_, _>>()?;
    let workers: Vec<_> = (0..workers).map(|_| next()).collect::<Result<_, _>>()?;
    let chain = anvil
        .deploy_test_usd(&deployer)
        .await
        .context("deploying the test token")?;
    for b in &buyers {
        anvil
            .mint(
                &deployer,
                chain.asset.address,
                b.address(),
                BUYER_FUNDS.into(),
            )
            .await
            .context("funding a test buyer")?;
    }
    anvil
        .install_batch_settlement()
        .await
        .context("placing the batch-settlement contracts")?;
    let escrow = BaseTaskEscrow::deploy(
        &anvil.provider(&deployer),
        chain.asset.address,
        release.address(),
    )
    .await
    .context("deploying TaskEscrow")?;
    Ok(Evm {
        anvil,
        chain,
        escrow,
        facilitator,
        direct_facilitator,
        batch_facilitator,
        hybrid_facilitator,
        release,
        buyers,
        creator,
        workers,
    })
}

/// The Solana test validator and what the devnet created on it.
pub struct Solana {
    pub chain: SolanaChain,
    pub mint: solana_pubkey::Pubkey,
    pub buyers: Vec<Keypair>,
    pub creator: Keypair,
    pub workers: Vec<Keypair>,
    /// The solana-direct gateway's fee payer: co-signs buyers' transfers and pays the fees, and
    /// is the wallet the gateway is paid into and pays workers and refunds out of (its token
    /// account exists from the start).
    pub fee_payer: Keypair,
    /// The solana-channel gateway's settlement key: fee payer, the channels' authority (it signs
    /// roots) and the gateway fee's claimant.
    pub channel_authority: Keypair,
    /// The channel maintainer's fee payer: publishes roots and cranks withdrawals, holds no funds.
    pub maintainer: Keypair,
    /// The `base-x402-solana-channel` gateway's Solana key: funds its own channel from its tokens,
    /// signs its vouchers and roots, pays the fees, claims the gateway fee.
    pub hybrid_key: Keypair,
    /// The solana-task-escrow gateway's fee payer: co-signs buyers' escrow fundings (paying the
    /// escrow's rent, returned when it closes), sends releases and refunds, receives the fee.
    pub escrow_fee_payer: Keypair,
    /// The validator node's `solana-task-escrow` release key (it signs releases in verdicts).
    pub release: Keypair,
}

/// Starts the test validator (the `d402-solana-validator` binary), creates a 6-decimals mint and
/// funds `buyers` buyers with SOL and tokens.
pub async fn solana(buyers: usize, workers: usize) -> anyhow::Result<Solana> {
    let chain = tokio::task::spawn_blocking(SolanaChain::start)
        .await
        .context("starting the Solana test validator")??;
    let mint = chain.create_mint(6).await.context("creating the mint")?;
    let mut funded = Vec::new();
    for _ in 0..buyers {
        let b = chain.funded_keypair(WALLET_LAMPORTS).await?;
        chain.mint_to(&mint, &b.pubkey(), BUYER_FUNDS).await?;
        funded.push(b);
    }
    let fee_payer = chain.funded_keypair(WALLET_LAMPORTS).await?;
    chain.create_ata(&fee_payer.pubkey(), &mint).await?;
    let channel_authority = chain.funded_keypair(WALLET_LAMPORTS).await?;
    let maintainer = chain.funded_keypair(WALLET_LAMPORTS).await?;
    let hybrid_key = chain.funded_keypair(WALLET_LAMPORTS).await?;
    chain
        .mint_to(&mint, &hybrid_key.pubkey(), BUYER_FUNDS)
        .await?;
    let escrow_fee_payer = chain.funded_keypair(WALLET_LAMPORTS).await?;
    Ok(Solana {
        chain,
        mint,
        buyers: funded,
        creator: Keypair::new(),
        workers: (0..workers).map(|_| Keypair::new()).collect(),
        fee_payer,
        channel_authority,
        maintainer,
        hybrid_key,
        escrow_fee_payer,
        release: Keypair::new(),
    })
}

/// A funded test wallet as `devnet.json` lists it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Wallet {
    pub address: String,
    pub private_key: String,
}

impl Evm {
    pub fn buyer_wallets(&self) -> Vec<Wallet> {
        self.buyers
            .iter()
            .map(|k| Wallet {
                address: k.address().to_checksum(None),
                private_key: format!("0x{}", alloy::hex::encode(k.to_bytes())),
            })
            .collect()
    }
}

impl Solana {
    pub fn buyer_wallets(&self) -> Vec<Wallet> {
        self.buyers
            .iter()
            .map(|k| Wallet {
                address: k.pubkey().to_string(),
                private_key: k.to_base58_string(),
            })
            .collect()
    }
}
