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
use d402_rails::evm::buyer::payment_payload;
use d402_rails::rail::{Commission, Rail, Release, TaskId, Terms};
use d402_rails::solana::direct::{
    DirectConfig, SolanaDirect, partially_signed, payment_instructions,
};
use d402_rails::solana::escrow::{
    EscrowConfig, ReleaseContext, SolanaTaskEscrow, funding_transaction, sign_release,
};
use d402_rails::solana::submit::Submitter;
use d402_rails::solana::{direct, escrow};
use d402_rails::{Atomic, GatewayFee, Outbox, SafetyCaps};
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
    buyer: Keypair,
    payees: [Pubkey; 3],
    direct: SolanaDirect,
    escrow: SolanaTaskEscrow,
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
        let escrow = SolanaTaskEscrow::new(
            EscrowConfig::new(
                chain.caip2().parse().expect("caip2"),
                usdc,
                6,
                validator.pubkey(),
                payees[2],
            ),
            gateway.clone(),
            Submitter::new(rpc.clone(), outbox, escrow::NAME),
            SafetyCaps::default(),
        );
        Self {
            chain,
            rpc,
            usdc,
            gateway,
            validator,
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

    /// A commission-bearing task (10% to the creator, 2% to the gateway) with a deadline far
    /// enough away.
    fn terms(&self, n: u64) -> Terms {
        Terms {
            task_id: TaskId::from_label(&format!("bench-{n}-{}", Pubkey::new_unique())),
            price: Atomic::new(10_000),
            pay_to: self.payees[0].to_string(),
            commission: Some(Commission {
                wallet: self.payees[1].to_string(),
                bps: 1_000,
            }),
            gateway_fee: GatewayFee::Bps(200),
            max_timeout_seconds: 60,
            deadline_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs()
                + 3_600,
        }
    }

    /// The buyer funds the task's escrow through the rail, as the gateway would accept it.
    async fn fund(&self, terms: &Terms) {
        let req = self.escrow.challenge(terms).expect("challenge");
        let blockhash = self.rpc.get_latest_blockhash().await.expect("blockhash");
        let tx = funding_transaction(&self.buyer, &req, blockhash).expect("funding");
        let payload = payment_payload(&req, serde_json::json!({ "transaction": tx }));
        let verified = self.escrow.verify(&payload, &req).await.expect("verify");
        self.escrow.settle(&verified).await.expect("funded");
    }

    /// The validator's release to the worker, sent by the gateway.
    async fn settle(&self, terms: &Terms) -> Duration {
        let started = Instant::now();
        let context = ReleaseContext {
            rail: escrow::NAME.into(),
            base: self.gateway.pubkey().to_string(),
            mint: self.usdc.to_string(),
        };
        let signature = sign_release(&self.validator, &context, &terms.task_id, &[self.payees[0]])
            .expect("sign");
        self.escrow
            .finalize(&Release::Task {
                task_id: terms.task_id,
                workers: vec![self.payees[0].to_string()],
                validator_signature: signature,
            })
            .await
            .expect("release");
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

    // Fees: every lamport the gateway and the buyer spend over FEE_RUN_TASKS tasks of each rail,
    // in steady state (payee token accounts exist; the escrow's and the vault's rent come back to
    // the gateway's fee payer when the release closes them).
    runtime.block_on(async {
        let payers = [chain.gateway.pubkey(), chain.buyer.pubkey()];
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
