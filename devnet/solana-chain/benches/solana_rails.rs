//! Solana rail benchmarks (figures in BENCHMARKS.md):
//! - `solana_direct/verify_offline`: the off-chain part of verifying an x402 `exact` payment
//!   (decode, layout, fee-payer isolation, amount/mint/recipient, signature check, co-sign);
//! - `solana_direct/verify_and_settle` and `solana_escrow/settle`: latency on the in-process
//!   validator (`ticks_per_slot(8)`), confirmed commitment;
//! - on-chain transactions and fees per 1,000 tasks, direct vs task escrow, measured from the fee
//!   payers' SOL balances over a run and printed as a table.
//!
//! `cargo bench -p d402-solana-chain --bench solana_rails`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use d402_rails::PaymentRequirements;
use d402_rails::solana::direct::{
    DirectConfig, SolanaDirect, partially_signed, payment_instructions,
};
use d402_rails::solana::escrow::{
    EscrowConfig, EscrowRoles, EscrowTerms, TaskEscrow, approve_settlement, funding_transaction,
};
use d402_rails::solana::submit::Submitter;
use d402_rails::solana::{direct, escrow};
use d402_rails::{Outbox, SafetyCaps};
use d402_solana_chain::SolanaChain;
use solana_commitment_config::CommitmentConfig;
use solana_hash::Hash;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_signer::Signer;

const SOL: u64 = 1_000_000_000;
/// Tasks per rail in the fee run; the per-1,000 figures scale from it.
const FEE_RUN_TASKS: u64 = 20;

fn rail(
    rpc: Arc<RpcClient>,
    outbox: Outbox,
    config: DirectConfig,
    gateway: Arc<Keypair>,
) -> SolanaDirect {
    let submitter = Submitter::new(rpc, outbox, direct::NAME);
    SolanaDirect::new(config, gateway, submitter, SafetyCaps::default())
}

fn verify_offline(c: &mut Criterion) {
    // No chain needed: the off-chain checks never touch the RPC client.
    let dir = tempfile::tempdir().expect("tempdir");
    let rpc = Arc::new(RpcClient::new("http://127.0.0.1:9".to_string()));
    let mint = Pubkey::new_unique();
    let gateway = Arc::new(Keypair::new());
    let outbox = Outbox::open(&dir.path().join("outbox.redb")).expect("outbox");
    let network = "solana:local".parse().expect("caip2");
    let rail = rail(
        rpc,
        outbox,
        DirectConfig::new(network, mint, 6),
        gateway.clone(),
    );
    let buyer = Keypair::new();
    let req = rail
        .requirements(&Pubkey::new_unique(), 10_000, 0)
        .expect("challenge");
    let ixs = payment_instructions(&buyer.pubkey(), &req, 6, 0).expect("ixs");
    let tx = partially_signed(&ixs, &gateway.pubkey(), &[&buyer], Hash::new_unique()).expect("tx");
    rail.check_offline(&req, &tx).expect("valid");
    c.bench_function("solana_direct/verify_offline", |b| {
        b.iter(|| rail.check_offline(&req, &tx).expect("valid"))
    });
}

struct Chain {
    chain: SolanaChain,
    rpc: Arc<RpcClient>,
    usdc: Pubkey,
    gateway: Arc<Keypair>,
    validator: Keypair,
    finalizer: Keypair,
    buyer: Keypair,
    payees: [Pubkey; 3],
    direct: SolanaDirect,
    escrow: TaskEscrow,
    _dir: tempfile::TempDir,
}

impl Chain {
    async fn start(chain: SolanaChain) -> Self {
        let rpc = Arc::new(RpcClient::new_with_commitment(
            chain.rpc_url().to_string(),
            CommitmentConfig::confirmed(),
        ));
        let usdc = chain.create_mint(6).await.expect("mint");
        let gateway = Arc::new(chain.funded_keypair(10 * SOL).await.expect("gateway"));
        let finalizer = chain.funded_keypair(10 * SOL).await.expect("finalizer");
        let buyer = chain.funded_keypair(10 * SOL).await.expect("buyer");
        chain
            .mint_to(&usdc, &buyer.pubkey(), 1_000_000_000_000)
            .await
            .expect("fund");
        // Steady state: worker, creator and gateway wallets already have token accounts.
        let payees = [
            Pubkey::new_unique(),
            Pubkey::new_unique(),
            Pubkey::new_unique(),
        ];
        for p in &payees {
            chain.create_ata(p, &usdc).await.expect("ata");
        }
        let validator = Keypair::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(&dir.path().join("outbox.redb")).expect("outbox");
        let direct = rail(
            rpc.clone(),
            outbox.clone(),
            DirectConfig::new(chain.caip2().parse().expect("caip2"), usdc, 6),
            gateway.clone(),
        );
        let escrow = TaskEscrow::new(
            EscrowConfig::new(
                usdc,
                6,
                EscrowRoles {
                    validator: validator.pubkey(),
                    finalizer: finalizer.pubkey(),
                },
            ),
            Submitter::new(rpc.clone(), outbox, escrow::NAME),
        );
        Self {
            chain,
            rpc,
            usdc,
            gateway,
            validator,
            finalizer,
            buyer,
            payees,
            direct,
            escrow,
            _dir: dir,
        }
    }

    fn requirements(&self) -> PaymentRequirements {
        self.direct
            .requirements(&self.payees[0], 10_000, 0)
            .expect("challenge")
    }

    async fn direct_payment(&self, req: &PaymentRequirements) -> Duration {
        let ixs = payment_instructions(&self.buyer.pubkey(), req, 6, 0).expect("ixs");
        let blockhash = self.rpc.get_latest_blockhash().await.expect("blockhash");
        let tx =
            partially_signed(&ixs, &self.gateway.pubkey(), &[&self.buyer], blockhash).expect("tx");
        let started = Instant::now();
        let payment = self
            .direct
            .verify_transaction(req, &tx)
            .await
            .expect("verify");
        self.direct
            .settle_payment(&payment, "bench")
            .await
            .expect("settle");
        started.elapsed()
    }

    fn terms(&self, n: u64) -> EscrowTerms {
        EscrowTerms {
            task_id: format!("bench-{n}-{}", Pubkey::new_unique()),
            buyer: self.buyer.pubkey(),
            worker: self.payees[0],
            creator: self.payees[1],
            gateway: self.payees[2],
            amount: 10_000,
            creator_commission_bps: 1_000,
            gateway_fee_bps: 200,
            deadline: i64::MAX,
        }
    }

    async fn fund(&self, terms: &EscrowTerms) {
        let rents = self.escrow.rents().await.expect("rents");
        let with_multisig = !self.escrow.multisig_exists(terms).await.expect("exists");
        let blockhash = self.rpc.get_latest_blockhash().await.expect("blockhash");
        let tx = funding_transaction(
            terms,
            self.escrow.config(),
            rents,
            with_multisig,
            &self.gateway.pubkey(),
            &self.buyer,
            blockhash,
        )
        .expect("funding");
        self.escrow
            .accept_funding(terms, &tx, &self.gateway)
            .await
            .expect("funded");
    }

    async fn settle(&self, terms: &EscrowTerms) -> Duration {
        let blockhash = self.rpc.get_latest_blockhash().await.expect("blockhash");
        let started = Instant::now();
        let approved = approve_settlement(terms, self.escrow.config(), &self.validator, blockhash)
            .expect("approve");
        self.escrow
            .finalize_settlement(terms, approved, &self.finalizer)
            .await
            .expect("settle");
        started.elapsed()
    }

    async fn sol(&self, who: &Pubkey) -> u64 {
        self.chain.sol_balance(who).await.expect("balance")
    }
}

fn on_chain(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // The on-chain figures need the validator binary (see d402-solana-chain's docs); without it
    // only the off-chain figures are produced.
    let chain = match SolanaChain::start() {
        Ok(chain) => chain,
        Err(e) => {
            eprintln!("skipping the on-chain benchmarks: {e}");
            return;
        }
    };
    let chain = runtime.block_on(Chain::start(chain));
    let req = chain.requirements();
    // Create the buyer's multisig once, outside every measurement (a one-off per buyer).
    runtime.block_on(chain.fund(&chain.terms(0)));

    let mut group = c.benchmark_group("solana_on_chain");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("direct_verify_and_settle", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += chain.direct_payment(&req).await;
                }
                total
            })
        })
    });
    group.bench_function("escrow_settle", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for n in 0..iters {
                    let terms = chain.terms(n);
                    chain.fund(&terms).await;
                    total += chain.settle(&terms).await;
                }
                total
            })
        })
    });
    group.finish();

    // Fees: every lamport the gateway, finalizer and buyer spend over FEE_RUN_TASKS tasks of
    // each rail, in steady state (multisig and payee token accounts exist; vault rent comes back
    // to the buyer when the vault closes).
    runtime.block_on(async {
        let payers = [
            chain.gateway.pubkey(),
            chain.finalizer.pubkey(),
            chain.buyer.pubkey(),
        ];
        let total = |balances: &[u64]| balances.iter().sum::<u64>();
        let mut before = Vec::new();
        for p in &payers {
            before.push(chain.sol(p).await);
        }
        for _ in 0..FEE_RUN_TASKS {
            chain.direct_payment(&req).await;
        }
        let mut mid = Vec::new();
        for p in &payers {
            mid.push(chain.sol(p).await);
        }
        for n in 0..FEE_RUN_TASKS {
            let terms = chain.terms(n);
            chain.fund(&terms).await;
            chain.settle(&terms).await;
        }
        let mut after = Vec::new();
        for p in &payers {
            after.push(chain.sol(p).await);
        }
        let direct = (total(&before) - total(&mid)) / FEE_RUN_TASKS;
        let escrow = (total(&mid) - total(&after)) / FEE_RUN_TASKS;
        println!(
            "\nSolana on-chain cost per 1,000 tasks (measured over {FEE_RUN_TASKS} tasks each):"
        );
        println!("| rail | transactions | fees (lamports) | fees (SOL) |");
        println!("|---|---:|---:|---:|");
        for (name, txs, per_task) in [
            ("solana-direct", 1_000, direct),
            ("solana-task-escrow", 2_000, escrow),
        ] {
            let fees = per_task * 1_000;
            println!(
                "| {name} | {txs} | {fees} | {:.6} |",
                fees as f64 / SOL as f64
            );
        }
        let _ = chain.usdc;
    });
}

criterion_group!(benches, verify_offline, on_chain);
criterion_main!(benches);
