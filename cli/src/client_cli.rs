//! `d402 client`: buy work from a gateway. `discover` prints what it sells; `run` answers the
//! 402, pays within `--max-spend` and prints the result and receipt as one JSON document.

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use d402_gateway::channel_wallet::ChannelWallet;
use d402_gateway::client::{Buyer, SolanaPayer, discover};
use d402_gateway::solana_channel_wallet::SolanaChannelWallet;
use d402_rails::Atomic;

#[derive(Args)]
pub struct ClientArgs {
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Print the gateway's /.well-known/d402-gateway.json.
    Discover {
        #[arg(long, value_name = "URL")]
        gateway: String,
    },
    /// Buy one task: pay the challenge, wait, print {result, receipt, payment}.
    Run {
        #[arg(long, value_name = "URL")]
        gateway: String,
        /// ID@VERSION, e.g. web.page_to_markdown@1.
        #[arg(long, value_name = "ID@VERSION")]
        capability: String,
        /// The input, a JSON object.
        #[arg(long, value_name = "JSON")]
        input: String,
        /// The buyer's EVM key: a file holding hex, or hex.
        #[arg(
            long,
            value_name = "FILE|HEX",
            required_unless_present = "solana_wallet"
        )]
        wallet: Option<String>,
        /// The buyer's Solana keypair (a `solana-keygen` JSON file, or base58), for gateways
        /// selling on solana-direct or solana-task-escrow.
        #[arg(long, value_name = "FILE|BASE58", requires = "solana_rpc_url")]
        solana_wallet: Option<String>,
        /// The Solana cluster's JSON-RPC URL (for the latest blockhash and the mint's decimals).
        #[arg(long, value_name = "URL")]
        solana_rpc_url: Option<String>,
        /// Refuse to pay more than this per task, e.g. '$0.05' (in the asset's whole units).
        #[arg(long, value_name = "PRICE")]
        max_spend: Option<String>,
        /// Decimals of the asset the gateway prices in [default: 6].
        #[arg(long, default_value_t = 6)]
        decimals: u8,
        /// How to pay: `exact` (one transfer per task), `batch-settlement` (an EVM channel: one
        /// deposit, then a voucher per task; needs --state) or `solana-channel` (a channel on
        /// d402's Solana program: one opening, then a voucher per task; needs --state and
        /// --solana-wallet).
        #[arg(long, value_enum, default_value_t = Scheme::Exact)]
        scheme: Scheme,
        /// Where the client keeps its channels (batch-settlement, solana-channel).
        #[arg(long, value_name = "DIR")]
        state: Option<std::path::PathBuf>,
        /// The most one channel deposit may be, e.g. '$5' [default: 100 × --max-spend, else $10].
        #[arg(long, value_name = "PRICE")]
        max_deposit: Option<String>,
        /// solana-channel: deposit at least this when opening or topping up, e.g. '$2' (within
        /// --max-deposit) [default: the gateway's minimum].
        #[arg(long, value_name = "PRICE")]
        deposit: Option<String>,
    },
    /// Ask a batch-settlement gateway for the unspent balance of this buyer's channel back.
    Refund {
        #[arg(long, value_name = "URL")]
        gateway: String,
        /// The buyer's EVM key: a file holding hex, or hex.
        #[arg(long, value_name = "FILE|HEX")]
        wallet: String,
        /// Where the client keeps its channels.
        #[arg(long, value_name = "DIR")]
        state: std::path::PathBuf,
        /// Only this much, e.g. '$1' [default: everything unspent].
        #[arg(long, value_name = "PRICE")]
        amount: Option<String>,
        #[arg(long, default_value_t = 6)]
        decimals: u8,
    },
}

/// How the client pays an EVM gateway.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scheme {
    Exact,
    BatchSettlement,
    SolanaChannel,
}

pub fn run(args: ClientArgs) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match args.command {
            ClientCommand::Discover { gateway } => {
                let d = discover(&reqwest::Client::new(), &gateway).await?;
                println!("{}", serde_json::to_string_pretty(&d)?);
            }
            ClientCommand::Run {
                gateway,
                capability,
                input,
                wallet,
                solana_wallet,
                solana_rpc_url,
                max_spend,
                decimals,
                scheme,
                state,
                max_deposit,
                deposit,
            } => {
                let input: serde_json::Value =
                    serde_json::from_str(&input).context("--input is not JSON")?;
                let signer = wallet
                    .map(|w| crate::serve::load_key("--wallet", &w))
                    .transpose()?;
                let solana_key = solana_wallet
                    .as_deref()
                    .map(|w| crate::serve::load_solana_keypair("--solana-wallet", w))
                    .transpose()?;
                let cap = max_spend
                    .map(|m| Atomic::parse_price(&m, decimals))
                    .transpose()
                    .map_err(|e| anyhow!("--max-spend: {e}"))?;
                let max_deposit = match max_deposit {
                    Some(m) => Atomic::parse_price(&m, decimals)
                        .map_err(|e| anyhow!("--max-deposit: {e}"))?,
                    None => cap
                        .map(|c| Atomic::new(c.get().saturating_mul(100)))
                        .unwrap_or(Atomic::new(10 * 10u128.pow(u32::from(decimals)))),
                };
                let solana = match (&solana_key, &solana_rpc_url) {
                    (Some(k), Some(rpc_url)) if scheme != Scheme::SolanaChannel => {
                        Some(SolanaPayer {
                            keypair: k.insecure_clone(),
                            rpc_url: rpc_url.clone(),
                        })
                    }
                    _ => None,
                };
                let mut buyer = Buyer::with_wallets(&gateway, signer.clone(), solana, cap);
                match scheme {
                    Scheme::Exact => {}
                    Scheme::BatchSettlement => {
                        let state = state.ok_or_else(|| {
                            anyhow!(
                                "--scheme batch-settlement keeps its channels under --state DIR"
                            )
                        })?;
                        let key = signer
                            .ok_or_else(|| anyhow!("--scheme batch-settlement needs --wallet"))?;
                        buyer.channels = Some(ChannelWallet::new(&state, key, max_deposit));
                    }
                    Scheme::SolanaChannel => {
                        let state = state.ok_or_else(|| {
                            anyhow!("--scheme solana-channel keeps its channels under --state DIR")
                        })?;
                        let (Some(key), Some(rpc_url)) = (solana_key, solana_rpc_url) else {
                            bail!(
                                "--scheme solana-channel needs --solana-wallet and --solana-rpc-url"
                            );
                        };
                        let mut wallet =
                            SolanaChannelWallet::new(&state, key, &rpc_url, max_deposit);
                        if let Some(d) = deposit {
                            wallet = wallet.depositing(
                                Atomic::parse_price(&d, decimals)
                                    .map_err(|e| anyhow!("--deposit: {e}"))?,
                            );
                        }
                        buyer.solana_channels = Some(wallet);
                    }
                }
                let purchase = buyer.run(&capability, input).await?;
                let t = &purchase.task;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "taskId": t["taskId"],
                        "url": t["url"],
                        "result": t["result"],
                        "receipt": t["receipt"],
                        "verdict": t["verdict"],
                        "payment": t["payment"],
                        "paid": purchase.paid.to_string(),
                    }))?
                );
            }
            ClientCommand::Refund {
                gateway,
                wallet,
                state,
                amount,
                decimals,
            } => {
                let key = crate::serve::load_key("--wallet", &wallet)?;
                let amount = amount
                    .map(|a| Atomic::parse_price(&a, decimals))
                    .transpose()
                    .map_err(|e| anyhow!("--amount: {e}"))?;
                let mut buyer = Buyer::new(&gateway, key.clone(), None);
                buyer.channels = Some(ChannelWallet::new(&state, key, Atomic::new(0)));
                let response = buyer.refund(amount).await?;
                println!("{}", serde_json::to_string_pretty(&response)?);
            }
        }
        anyhow::Ok(())
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}
