//! An in-process Solana validator for d402's tests and benchmarks.
//!
//! [`SolanaChain::start`] boots agave's `solana-test-validator` (3.1.12) inside the test process with
//! its own free port block, a temporary ledger and `ticks_per_slot(8)` (confirmations in ~0.2 s
//! instead of ~1 s), then exposes what a rail test needs: the RPC URL, the genesis hash and its x402
//! CAIP-2 network id, a well-funded payer (the genesis mint keypair), and helpers that create an
//! SPL Token mint, associated token accounts, mint tokens, fund SOL and read balances.
//!
//! Two ways to run it:
//! - feature `validator`: in this process ([`SolanaChain::start`] calls agave directly);
//! - default: in a child process, the `d402-solana-validator` binary of this crate (itself the
//!   in-process start), found at `$D402_SOLANA_VALIDATOR` or next to the test executable's target
//!   directory. Build it once with
//!   `cargo build -p d402-solana-chain --features validator --bin d402-solana-validator`.
//!   The Solana rails' tests use this: they link `d402-rails` (and with it alloy), and compiling
//!   agave in the same build would unify features with alloy's and rebuild all of agave.
//!
//! This crate is test-only. Production crates (`d402-rails`) depend only on the RPC client crates.
//!
//! ```no_run
//! # async fn demo() -> Result<(), d402_solana_chain::ChainError> {
//! let chain = d402_solana_chain::SolanaChain::start()?;
//! let usdc = chain.create_mint(6).await?;
//! let buyer = chain.funded_keypair(1_000_000_000).await?;
//! chain.mint_to(&usdc, &buyer.pubkey(), 5_000_000).await?;
//! assert_eq!(chain.token_balance_of(&buyer.pubkey(), &usdc).await?, 5_000_000);
//! # Ok(()) }
//! # use solana_signer::Signer;
//! ```

use std::io::{BufRead, BufReader};
#[cfg(feature = "validator")]
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
#[cfg(feature = "validator")]
use std::time::{SystemTime, UNIX_EPOCH};

use solana_commitment_config::CommitmentConfig;
use solana_hash::Hash;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_program_pack::Pack;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_signature::Signature;
use solana_signer::Signer;
#[cfg(feature = "validator")]
use solana_streamer::socket::SocketAddrSpace;
#[cfg(feature = "validator")]
use solana_test_validator::{TestValidator, TestValidatorGenesis, UpgradeableProgramInfo};
use solana_transaction::Transaction;
use spl_associated_token_account_interface::address::get_associated_token_address;
use spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent;

/// The SPL Token program id (the test validator preloads it at genesis).
pub const TOKEN_PROGRAM_ID: Pubkey = spl_token_interface::ID;

/// The validator binary's name (see the crate docs).
pub const VALIDATOR_BIN: &str = "d402-solana-validator";

#[cfg(feature = "validator")]
/// How many ports one validator gets. Agave's own tests use 25 per validator; a little headroom
/// keeps a port that another process grabbed between our probe and the bind from failing the start.
const PORT_BLOCK: u16 = 32;
#[cfg(feature = "validator")]
/// Port blocks are chosen from this range, far above the 2000.. block agave's debug builds default
/// to, so that several test binaries (and other engineers' validators) never collide.
const PORT_SEARCH: std::ops::Range<u16> = 20_000..60_000;
#[cfg(feature = "validator")]
/// How many port blocks to try before giving up.
const START_ATTEMPTS: usize = 8;

/// Why the chain could not be started or a helper failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// No free port block was found, or the validator failed to start on every block tried.
    #[error("the test validator did not start: {0}")]
    Start(String),
    /// An RPC call to the validator failed.
    #[error("rpc: {0}")]
    Rpc(#[from] solana_rpc_client_api::client_error::Error),
    /// An SPL instruction could not be built (bad arguments).
    #[error("instruction: {0}")]
    Instruction(String),
    /// An account did not hold what a helper expected.
    #[error("account {0}: {1}")]
    Account(Pubkey, String),
}

/// Where the validator runs.
enum Backend {
    /// `Option` so that `Drop` can hand the validator to a plain thread: agave's shutdown drops
    /// tokio runtimes, which panics when done on an async runtime's worker thread.
    #[cfg(feature = "validator")]
    InProcess(Option<TestValidator>),
    /// The `d402-solana-validator` binary; it exits when its stdin closes.
    Child(Child),
}

/// A running validator. Dropping it stops the validator and removes its ledger.
pub struct SolanaChain {
    backend: Backend,
    payer: Keypair,
    rpc_url: String,
    genesis_hash: Hash,
}

impl SolanaChain {
    /// Starts a validator on a free port block: in this process with the `validator` feature,
    /// otherwise as a child process (see the crate docs). Blocks for ~4 s.
    pub fn start() -> Result<Self, ChainError> {
        #[cfg(feature = "validator")]
        let chain = Self::start_in_process()?;
        #[cfg(not(feature = "validator"))]
        let chain = Self::start_child()?;
        chain.wait_for_programs()?;
        Ok(chain)
    }

    /// Programs loaded at genesis (SPL Token, the token-account program) become executable a
    /// slot after the one they were loaded in, so a transaction checked against the `confirmed`
    /// bank of slot 0 fails with "Program is not deployed" (seen when two validators started at
    /// once on a loaded machine). Waits, up to 30 s, until the confirmed slot is past that.
    fn wait_for_programs(&self) -> Result<(), ChainError> {
        let rpc = solana_rpc_client::rpc_client::RpcClient::new_with_commitment(
            self.rpc_url.clone(),
            CommitmentConfig::confirmed(),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if matches!(rpc.get_slot(), Ok(slot) if slot >= 2) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(ChainError::Start(
                    "the validator's confirmed slot did not pass 1 within 30 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the validator in this process.
    ///
    /// The start runs on its own thread, because agave's start-up `block_on`s a fresh tokio runtime,
    /// which panics when called from inside one (as in a `#[tokio::test]`).
    #[cfg(feature = "validator")]
    pub fn start_in_process() -> Result<Self, ChainError> {
        std::thread::spawn(Self::start_here)
            .join()
            .map_err(|_| ChainError::Start("the start thread panicked".into()))?
    }

    /// Starts the `d402-solana-validator` binary and reads where it listens.
    pub fn start_child() -> Result<Self, ChainError> {
        let bin = validator_bin()?;
        let program = write_program()?;
        let mut child = Command::new(&bin)
            .env(PROGRAM_ENV, &program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| ChainError::Start(format!("{}: {e}", bin.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| ChainError::Start("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        // Agave prints progress ("Waiting for fees to stabilize 1...") on stdout before the
        // announcement: skip lines until the expected one.
        let mut field = |name: &str| -> Result<String, ChainError> {
            for _ in 0..1_000 {
                let line = lines
                    .next()
                    .transpose()
                    .map_err(|e| ChainError::Start(e.to_string()))?
                    .ok_or_else(|| ChainError::Start(format!("{VALIDATOR_BIN} exited early")))?;
                if let Some(v) = line.strip_prefix(name) {
                    return Ok(v.trim().to_string());
                }
            }
            Err(ChainError::Start(format!(
                "no {name:?} line from {VALIDATOR_BIN}"
            )))
        };
        let started = (|| {
            let rpc_url = field("rpc ")?;
            let genesis_hash: Hash = field("genesis ")?
                .parse()
                .map_err(|_| ChainError::Start("bad genesis hash".into()))?;
            let secret = from_hex(&field("payer ")?)
                .ok_or_else(|| ChainError::Start("bad payer key".into()))?;
            Ok::<_, ChainError>((rpc_url, genesis_hash, Keypair::new_from_array(secret)))
        })();
        // Keep draining stdout so that later output never fills the pipe and blocks the child.
        std::thread::spawn(move || lines.for_each(drop));
        match started {
            Ok((rpc_url, genesis_hash, payer)) => Ok(Self {
                backend: Backend::Child(child),
                payer,
                rpc_url,
                genesis_hash,
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// What a parent needs to drive this validator, one `name value` per line (the protocol of
    /// the `d402-solana-validator` binary).
    pub fn announcement(&self) -> String {
        format!(
            "rpc {}\ngenesis {}\npayer {}\n",
            self.rpc_url,
            self.genesis_hash,
            to_hex(self.payer.secret_bytes())
        )
    }

    #[cfg(feature = "validator")]
    fn start_here() -> Result<Self, ChainError> {
        let mut last_error = String::from("no free port block found");
        // d402's own program, at genesis (the test validator loads programs from files). A
        // parent that starts this as a child passes its own build of the program, so a child
        // binary built before a program change never runs the old one.
        let program_path = match std::env::var_os(PROGRAM_ENV) {
            Some(path) => PathBuf::from(path),
            None => write_program()?,
        };
        for attempt in 0..START_ATTEMPTS {
            let Some(base) = free_port_block(attempt) else {
                continue;
            };
            let payer = Keypair::new();
            let mut genesis = TestValidatorGenesis::default();
            // Transaction history on: verification asks for signature statuses with history, so
            // a replayed payment is recognised even after it leaves the status cache.
            genesis
                .rpc_config(solana_rpc::rpc::JsonRpcConfig {
                    enable_rpc_transaction_history: true,
                    ..solana_rpc::rpc::JsonRpcConfig::default_for_test()
                })
                .ticks_per_slot(8)
                .gossip_port(base)
                .port_range((base, base + PORT_BLOCK))
                .rpc_port(base + PORT_BLOCK - 2)
                .add_upgradeable_programs_with_path(&[UpgradeableProgramInfo {
                    program_id: d402_program::ID,
                    loader: Pubkey::from_str_const("BPFLoaderUpgradeab1e11111111111111111111111"),
                    upgrade_authority: Pubkey::default(),
                    program_path: program_path.clone(),
                }]);
            match genesis.start_with_mint_address(payer.pubkey(), SocketAddrSpace::Unspecified) {
                Ok(validator) => {
                    let rpc_url = validator.rpc_url();
                    let genesis_hash = validator
                        .get_rpc_client()
                        .get_genesis_hash()
                        .map_err(|e| ChainError::Start(format!("genesis hash: {e}")))?;
                    return Ok(Self {
                        backend: Backend::InProcess(Some(validator)),
                        payer,
                        rpc_url,
                        genesis_hash,
                    });
                }
                Err(e) => last_error = format!("ports {base}..{}: {e}", base + PORT_BLOCK),
            }
        }
        Err(ChainError::Start(last_error))
    }

    /// The JSON-RPC URL (`http://127.0.0.1:<port>`).
    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    /// The genesis block hash, which identifies this cluster.
    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    /// The x402 / CAIP-2 network id of this cluster: `solana:` followed by the first 32 characters
    /// of the base58 genesis hash (as x402 names mainnet `solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp`).
    pub fn caip2(&self) -> String {
        caip2_of(&self.genesis_hash)
    }

    /// The genesis mint keypair: it holds the cluster's SOL and pays for the helpers' transactions.
    pub fn payer(&self) -> &Keypair {
        &self.payer
    }

    /// A fresh nonblocking RPC client at `confirmed` commitment.
    pub fn rpc(&self) -> RpcClient {
        RpcClient::new_with_commitment(self.rpc_url.clone(), CommitmentConfig::confirmed())
    }

    /// Sends `instructions` paid and signed by the payer plus `signers`, and waits for confirmation.
    pub async fn send(
        &self,
        instructions: &[Instruction],
        signers: &[&Keypair],
    ) -> Result<Signature, ChainError> {
        let rpc = self.rpc();
        let blockhash = rpc.get_latest_blockhash().await?;
        let mut all: Vec<&Keypair> = vec![&self.payer];
        all.extend_from_slice(signers);
        let tx = Transaction::new_signed_with_payer(
            instructions,
            Some(&self.payer.pubkey()),
            &all,
            blockhash,
        );
        Ok(rpc.send_and_confirm_transaction(&tx).await?)
    }

    /// Transfers `lamports` of SOL from the payer to `to`.
    pub async fn fund_sol(&self, to: &Pubkey, lamports: u64) -> Result<Signature, ChainError> {
        let ix = solana_system_interface::instruction::transfer(&self.payer.pubkey(), to, lamports);
        self.send(&[ix], &[]).await
    }

    /// A new keypair holding `lamports` of SOL.
    pub async fn funded_keypair(&self, lamports: u64) -> Result<Keypair, ChainError> {
        let key = Keypair::new();
        self.fund_sol(&key.pubkey(), lamports).await?;
        Ok(key)
    }

    /// Creates an SPL Token mint with `decimals` (6 for a USDC-like token) whose mint authority is
    /// the payer.
    pub async fn create_mint(&self, decimals: u8) -> Result<Pubkey, ChainError> {
        let mint = Keypair::new();
        let rpc = self.rpc();
        let space = spl_token_interface::state::Mint::LEN;
        let rent = rpc.get_minimum_balance_for_rent_exemption(space).await?;
        let create = solana_system_interface::instruction::create_account(
            &self.payer.pubkey(),
            &mint.pubkey(),
            rent,
            space as u64,
            &TOKEN_PROGRAM_ID,
        );
        let init = spl_token_interface::instruction::initialize_mint2(
            &TOKEN_PROGRAM_ID,
            &mint.pubkey(),
            &self.payer.pubkey(),
            None,
            decimals,
        )
        .map_err(|e| ChainError::Instruction(e.to_string()))?;
        self.send(&[create, init], &[&mint]).await?;
        Ok(mint.pubkey())
    }

    /// Creates (idempotently) the associated token account of `owner` for `mint` and returns it.
    pub async fn create_ata(&self, owner: &Pubkey, mint: &Pubkey) -> Result<Pubkey, ChainError> {
        let ix = create_associated_token_account_idempotent(
            &self.payer.pubkey(),
            owner,
            mint,
            &TOKEN_PROGRAM_ID,
        );
        self.send(&[ix], &[]).await?;
        Ok(get_associated_token_address(owner, mint))
    }

    /// Mints `amount` atomic units of `mint` to `owner`'s associated token account, creating the
    /// account if needed. Returns the account.
    pub async fn mint_to(
        &self,
        mint: &Pubkey,
        owner: &Pubkey,
        amount: u64,
    ) -> Result<Pubkey, ChainError> {
        let ata = get_associated_token_address(owner, mint);
        let create = create_associated_token_account_idempotent(
            &self.payer.pubkey(),
            owner,
            mint,
            &TOKEN_PROGRAM_ID,
        );
        let mint_ix = spl_token_interface::instruction::mint_to(
            &TOKEN_PROGRAM_ID,
            mint,
            &ata,
            &self.payer.pubkey(),
            &[],
            amount,
        )
        .map_err(|e| ChainError::Instruction(e.to_string()))?;
        self.send(&[create, mint_ix], &[]).await?;
        Ok(ata)
    }

    /// The balance of a token account in atomic units, or `None` if the account does not exist.
    pub async fn token_balance(&self, token_account: &Pubkey) -> Result<Option<u64>, ChainError> {
        let rpc = self.rpc();
        let account = rpc
            .get_account_with_commitment(token_account, CommitmentConfig::confirmed())
            .await?
            .value;
        let Some(account) = account else {
            return Ok(None);
        };
        let state = spl_token_interface::state::Account::unpack(&account.data)
            .map_err(|e| ChainError::Account(*token_account, e.to_string()))?;
        Ok(Some(state.amount))
    }

    /// The balance of `owner`'s associated token account for `mint`; 0 when it does not exist.
    pub async fn token_balance_of(&self, owner: &Pubkey, mint: &Pubkey) -> Result<u64, ChainError> {
        Ok(self
            .token_balance(&get_associated_token_address(owner, mint))
            .await?
            .unwrap_or(0))
    }

    /// The SOL balance of `account` in lamports.
    pub async fn sol_balance(&self, account: &Pubkey) -> Result<u64, ChainError> {
        Ok(self.rpc().get_balance(account).await?)
    }
}

impl Drop for SolanaChain {
    fn drop(&mut self) {
        match &mut self.backend {
            #[cfg(feature = "validator")]
            Backend::InProcess(validator) => {
                if let Some(validator) = validator.take() {
                    // Shutting agave down drops its runtimes; do it where no runtime is current.
                    let _ = std::thread::spawn(move || drop(validator)).join();
                }
            }
            Backend::Child(child) => {
                // Closing stdin asks it to stop and remove its ledger; kill if it does not.
                drop(child.stdin.take());
                for _ in 0..50 {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The environment variable through which a parent hands the child validator the program file.
const PROGRAM_ENV: &str = "D402_SOLANA_PROGRAM";

/// Writes `d402_program::ELF` to a file of its own for the validator to load.
fn write_program() -> Result<PathBuf, ChainError> {
    static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "d402-program-{}-{}.so",
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&path, d402_program::ELF)
        .map_err(|e| ChainError::Start(format!("{}: {e}", path.display())))?;
    Ok(path)
}

/// Where the validator binary is: `$D402_SOLANA_VALIDATOR`, else `debug/d402-solana-validator` in
/// the target directory this test executable was built in.
fn validator_bin() -> Result<PathBuf, ChainError> {
    if let Some(path) = std::env::var_os("D402_SOLANA_VALIDATOR") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| ChainError::Start(e.to_string()))?;
    // target/debug/deps/<test> or target/debug/<bin>: look in each ancestor's `debug/`.
    for dir in exe.ancestors().skip(1) {
        for candidate in [
            dir.join(VALIDATOR_BIN),
            dir.join("debug").join(VALIDATOR_BIN),
        ] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(ChainError::Start(format!(
        "{VALIDATOR_BIN} not found; build it with `cargo build -p d402-solana-chain --features validator --bin {VALIDATOR_BIN}` (same CARGO_TARGET_DIR) or set D402_SOLANA_VALIDATOR"
    )))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The x402 / CAIP-2 network id for a cluster with this genesis hash.
pub fn caip2_of(genesis_hash: &Hash) -> String {
    let text = genesis_hash.to_string();
    let prefix: String = text.chars().take(32).collect();
    format!("solana:{prefix}")
}

#[cfg(feature = "validator")]
/// Finds a block of `PORT_BLOCK` consecutive ports that are free for both UDP and TCP on
/// 127.0.0.1. The start is pseudo-random (clock and pid) so that concurrent processes spread out.
fn free_port_block(attempt: usize) -> Option<u16> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .subsec_nanos() as u64;
    let seed = nanos ^ (u64::from(std::process::id()) << 16) ^ (attempt as u64 * 7919);
    let blocks = u64::from((PORT_SEARCH.end - PORT_SEARCH.start) / PORT_BLOCK);
    for probe in 0..64u64 {
        let index = (seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(probe * 104729))
            % blocks;
        let base = PORT_SEARCH.start + (index as u16) * PORT_BLOCK;
        if (base..base + PORT_BLOCK).all(port_is_free) {
            return Some(base);
        }
    }
    None
}

#[cfg(feature = "validator")]
fn port_is_free(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caip2_uses_the_first_32_characters_of_the_genesis_hash() {
        let hash: Hash = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d"
            .parse()
            .expect("mainnet genesis hash parses");
        assert_eq!(caip2_of(&hash), "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp");
    }
}
