//! The `solana-task-escrow` rail against the real validator: the gateway accepts only the exact
//! funding its challenge asks for (a tampered amount, escrow, extra instruction or signature is
//! refused before anything is sent), a funding is settled once (a replay is refused), the release
//! pays the split the validator signed and is idempotent, a refund waits for the deadline, and a
//! funding recorded but not sent before a crash reconciles to exactly one escrow.

use std::sync::Arc;
use std::time::Duration;

use d402_rails::evm::buyer::payment_payload;
use d402_rails::rail::{Commission, Rail, Release, TaskId, Terms};
use d402_rails::solana::escrow::{
    self, EscrowConfig, ReleaseContext, SolanaTaskEscrow, funding_instructions,
    funding_transaction, sign_release,
};
use d402_rails::solana::submit::Submitter;
use d402_rails::solana::{direct, wire};
use d402_rails::{Atomic, GatewayFee, Outbox, RailError, SafetyCaps, SettlementState};
use d402_solana_chain::SolanaChain;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_signer::Signer;

const SOL: u64 = 1_000_000_000;

struct World {
    chain: SolanaChain,
    rpc: Arc<RpcClient>,
    usdc: Pubkey,
    gateway: Arc<Keypair>,
    validator: Keypair,
    buyer: Keypair,
    creator: Pubkey,
    gateway_wallet: Pubkey,
    dir: tempfile::TempDir,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

impl World {
    async fn new() -> Self {
        let chain = SolanaChain::start().expect("validator starts");
        let rpc = Arc::new(RpcClient::new_with_commitment(
            chain.rpc_url().to_string(),
            CommitmentConfig::confirmed(),
        ));
        let usdc = chain.create_mint(6).await.expect("mint");
        let gateway = Arc::new(chain.funded_keypair(SOL).await.expect("gateway"));
        let buyer = chain.funded_keypair(SOL).await.expect("buyer");
        chain
            .mint_to(&usdc, &buyer.pubkey(), 10_000_000)
            .await
            .expect("tokens");
        World {
            chain,
            rpc,
            usdc,
            gateway,
            validator: Keypair::new(),
            buyer,
            creator: Pubkey::new_unique(),
            gateway_wallet: Pubkey::new_unique(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The rail as a gateway holds it (a fresh process each call: same outbox).
    fn rail(&self) -> SolanaTaskEscrow {
        self.rail_with(SafetyCaps::default())
    }

    fn rail_with(&self, caps: SafetyCaps) -> SolanaTaskEscrow {
        let outbox = Outbox::open(&self.dir.path().join("outbox.redb")).expect("outbox");
        SolanaTaskEscrow::new(
            EscrowConfig::new(
                self.chain.caip2().parse().expect("caip2"),
                self.usdc,
                6,
                self.validator.pubkey(),
                self.gateway_wallet,
            ),
            self.gateway.clone(),
            Submitter::new(self.rpc.clone(), outbox, escrow::NAME),
            caps,
        )
    }

    fn terms(&self, label: &str, deadline_unix: u64) -> Terms {
        Terms {
            task_id: TaskId::from_label(label),
            price: Atomic::new(1_000_003),
            pay_to: Pubkey::new_unique().to_string(),
            commission: Some(Commission {
                wallet: self.creator.to_string(),
                bps: 1_500,
            }),
            gateway_fee: GatewayFee::Bps(250),
            max_timeout_seconds: 60,
            deadline_unix,
        }
    }

    async fn payload(
        &self,
        rail: &SolanaTaskEscrow,
        terms: &Terms,
    ) -> (d402_rails::PaymentRequirements, d402_rails::PaymentPayload) {
        let req = rail.challenge(terms).expect("challenge");
        let blockhash = self.rpc.get_latest_blockhash().await.expect("blockhash");
        let tx = funding_transaction(&self.buyer, &req, blockhash).expect("funding");
        let payload = payment_payload(&req, serde_json::json!({ "transaction": tx }));
        (req, payload)
    }

    async fn balance(&self, owner: &Pubkey) -> u64 {
        self.chain
            .token_balance_of(owner, &self.usdc)
            .await
            .expect("balance")
    }

    fn release(&self, terms: &Terms, workers: &[Pubkey]) -> Release {
        let context = ReleaseContext {
            rail: escrow::NAME.into(),
            base: self.gateway.pubkey().to_string(),
            mint: self.usdc.to_string(),
        };
        Release::Task {
            task_id: terms.task_id,
            workers: workers.iter().map(|w| w.to_string()).collect(),
            validator_signature: sign_release(&self.validator, &context, &terms.task_id, workers)
                .expect("sign"),
        }
    }
}

fn refusal(result: Result<impl std::fmt::Debug, RailError>) -> String {
    match result {
        Ok(ok) => panic!("expected a refusal, got {ok:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_funds_only_the_escrow_it_asked_for_and_releases_the_signed_split() {
    let w = World::new().await;
    let rail = w.rail();
    let start = w.balance(&w.buyer.pubkey()).await;
    let terms = w.terms("task-1", now() + 600);
    let (req, payload) = w.payload(&rail, &terms).await;

    // Tampered fundings: each refused before anything is sent.
    let blockhash = w.rpc.get_latest_blockhash().await.expect("blockhash");
    let fee_payer = w.gateway.pubkey();
    let resign = |ixs: &[solana_instruction::Instruction]| {
        let tx = direct::partially_signed(ixs, &fee_payer, &[&w.buyer], blockhash).expect("tx");
        payment_payload(&req, serde_json::json!({ "transaction": tx }))
    };
    let mut cheaper = req.clone();
    cheaper.amount = "1".into();
    let ixs = funding_instructions(&w.buyer.pubkey(), &cheaper, 0).expect("ixs");
    assert!(refusal(rail.verify(&resign(&ixs), &req).await).contains("not the funding"));
    let mut ixs = funding_instructions(&w.buyer.pubkey(), &req, 0).expect("ixs");
    ixs.push(solana_system_interface::instruction::transfer(
        &fee_payer,
        &w.buyer.pubkey(),
        SOL / 2,
    ));
    assert!(refusal(rail.verify(&resign(&ixs), &req).await).contains("not the funding"));
    let ixs = funding_instructions(&w.buyer.pubkey(), &req, 10_000_000_000).expect("ixs");
    assert!(refusal(rail.verify(&resign(&ixs), &req).await).contains("compute unit price"));
    let mut forged = payload.clone();
    let mut tx = wire::decode_transaction(forged.payload["transaction"].as_str().unwrap()).unwrap();
    tx.signatures[1] = Keypair::new().sign_message(&tx.message.serialize());
    forged.payload["transaction"] = wire::encode_transaction(&tx).unwrap().into();
    assert!(refusal(rail.verify(&forged, &req).await).contains("signature"));
    // Requirements the gateway did not issue.
    let mut other = req.clone();
    other.amount = "5".into();
    assert!(refusal(rail.verify(&payload, &other).await).contains("not the ones issued"));
    assert_eq!(w.balance(&w.buyer.pubkey()).await, start, "nothing moved");

    // The real one: verified, settled once.
    let verified = rail.verify(&payload, &req).await.expect("verify");
    rail.settle(&verified).await.expect("settle");
    assert_eq!(w.balance(&w.buyer.pubkey()).await, start - 1_000_003);
    assert!(refusal(rail.verify(&payload, &req).await).contains("already used"));
    assert!(rail.settle(&verified).await.is_err(), "a second settle");
    assert_eq!(w.balance(&w.buyer.pubkey()).await, start - 1_000_003);
    // A refund before the deadline is refused by the program; nothing is recorded.
    assert!(refusal(rail.refund(&terms.task_id).await).contains("Custom(28)"));

    // A release signed by another key (the gateway's own, say) over the right message: the
    // rail presents it as the escrow's validator's, which the Ed25519 precompile refuses (in
    // simulation, so nothing is sent or recorded; a precompile entry naming the other key is
    // refused by the program itself, `program_escrow.rs`).
    let stranger = [Pubkey::new_unique()];
    let context = ReleaseContext {
        rail: escrow::NAME.into(),
        base: w.gateway.pubkey().to_string(),
        mint: w.usdc.to_string(),
    };
    let forged = Release::Task {
        task_id: terms.task_id,
        workers: vec![stranger[0].to_string()],
        validator_signature: sign_release(&w.gateway, &context, &terms.task_id, &stranger)
            .expect("sign"),
    };
    let refused = refusal(rail.finalize(&forged).await);
    assert!(refused.contains("would revert the release"), "{refused}");

    // The validator's release to two workers: 1,000,003 less 15% (150,000) and 2.5% (25,000)
    // = 825,003, shared 412,502 + 412,501.
    let workers = [Pubkey::new_unique(), Pubkey::new_unique()];
    let release = w.release(&terms, &workers);
    let settled = rail.finalize(&release).await.expect("release");
    assert_eq!(w.balance(&workers[0]).await, 412_502);
    assert_eq!(w.balance(&workers[1]).await, 412_501);
    assert_eq!(w.balance(&w.creator).await, 150_000);
    assert_eq!(w.balance(&w.gateway_wallet).await, 25_000);
    assert_eq!(
        settled.payouts.iter().map(|p| p.amount.get()).sum::<u128>(),
        1_000_003
    );
    // Asked again (a retried delivery, another process): answered from the outbox.
    drop(rail);
    let rail = w.rail();
    let again = rail.finalize(&release).await.expect("idempotent");
    assert_eq!(again.tx_hashes, settled.tx_hashes);
    assert_eq!(w.balance(&workers[0]).await, 412_502, "paid once");
    assert!(
        rail.refund(&terms.task_id).await.is_err(),
        "released: no refund"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_refunded_after_the_deadline_and_a_crash_funds_once() {
    let w = World::new().await;
    let start = w.balance(&w.buyer.pubkey()).await;

    // A funding recorded but not sent before a crash: the restarted gateway's reconciliation
    // sends it exactly once.
    let rail = w.rail();
    let terms = w.terms("task-crash", now() + 4);
    let (req, payload) = w.payload(&rail, &terms).await;
    let verified = rail.verify(&payload, &req).await.expect("verify");
    rail.stop_before_next_funding_send();
    assert!(rail.settle(&verified).await.is_err(), "recorded, not sent");
    assert_eq!(w.balance(&w.buyer.pubkey()).await, start, "not sent yet");
    drop(rail);
    let rail = w.rail();
    let report = rail.reconcile().await.expect("reconcile");
    assert_eq!(report.resent, std::slice::from_ref(&verified.settlement_id));
    assert_eq!(
        rail.settlement_state(&verified.settlement_id).unwrap(),
        Some(SettlementState::Confirmed)
    );
    assert_eq!(w.balance(&w.buyer.pubkey()).await, start - 1_000_003);
    assert!(rail.reconcile().await.expect("again").resent.is_empty());

    // D402_SAFETY_MAX_OPEN_TASK_ESCROW_BUDGET: with 1.5 tasks' worth allowed open, the funded
    // escrow leaves no room for a second challenge until it is refunded.
    drop(rail);
    let rail = w.rail_with(SafetyCaps {
        max_open_task_escrow_budget: Some(Atomic::new(1_500_000)),
        ..SafetyCaps::default()
    });
    let refused = refusal(rail.challenge(&w.terms("task-over-cap", now() + 600)));
    assert!(refused.contains("open"), "{refused}");

    // The task fails: the escrow waits for its deadline, then the buyer gets everything back.
    let deadline = terms.deadline_unix;
    loop {
        match rail.refund(&terms.task_id).await {
            Ok(_) => break,
            Err(e) if e.to_string().contains("Custom(28)") => {
                assert!(now() < deadline + 30, "the chain's clock never passed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("refund: {e}"),
        }
    }
    assert!(now() >= deadline, "refunded before the deadline");
    assert_eq!(w.balance(&w.buyer.pubkey()).await, start);
    // Refunded money is no longer held: the cap has room again.
    rail.challenge(&w.terms("task-after-refund", now() + 600))
        .expect("within the cap once the escrow closed");
    // Too late for a release now, even signed by the validator.
    let release = w.release(&terms, &[Pubkey::new_unique()]);
    assert!(rail.finalize(&release).await.is_err());
    assert_eq!(w.balance(&w.buyer.pubkey()).await, start);
}
