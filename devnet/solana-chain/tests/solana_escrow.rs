//! solana-task-escrow against a real in-process validator: settlement pays the split on chain,
//! refund after the deadline returns everything, the second of settle/refund fails on chain, and a
//! settlement sent but not recorded before a "crash" reconciles to exactly one transfer.
//! One validator for the whole file, so the steps run in sequence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use d402_rails::outbox::OutboxError;
use d402_rails::solana::escrow::{
    self, EscrowConfig, EscrowError, EscrowRoles, EscrowTerms, TaskEscrow, approve_settlement,
    funding_transaction, refund_transaction,
};
use d402_rails::solana::submit::{EntryKind, SubmitError, Submitter};
use d402_rails::{Outbox, SettlementState};
use d402_solana_chain::SolanaChain;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_signer::Signer;

const SOL: u64 = 1_000_000_000;
const USDC: u64 = 1_000_000;

struct World {
    chain: SolanaChain,
    rpc: Arc<RpcClient>,
    usdc: Pubkey,
    gateway: Keypair,
    validator: Keypair,
    finalizer: Keypair,
    buyer: Keypair,
    config: EscrowConfig,
    dir: tempfile::TempDir,
}

impl World {
    fn escrow(&self) -> TaskEscrow {
        let outbox = Outbox::open(&self.dir.path().join("outbox.redb")).expect("outbox");
        TaskEscrow::new(
            self.config.clone(),
            Submitter::new(self.rpc.clone(), outbox, escrow::NAME),
        )
    }

    fn terms(&self, task_id: &str, deadline: i64) -> EscrowTerms {
        EscrowTerms {
            task_id: task_id.to_string(),
            buyer: self.buyer.pubkey(),
            worker: Pubkey::new_unique(),
            creator: Pubkey::new_unique(),
            gateway: Pubkey::new_unique(),
            amount: 2_000_003,
            creator_commission_bps: 1_500,
            gateway_fee_bps: 250,
            deadline,
        }
    }

    async fn fund(&self, escrow: &TaskEscrow, terms: &EscrowTerms) {
        let rents = escrow.rents().await.expect("rents");
        let with_multisig = !escrow.multisig_exists(terms).await.expect("exists");
        let blockhash = self.rpc.get_latest_blockhash().await.expect("blockhash");
        let tx = funding_transaction(
            terms,
            &self.config,
            rents,
            with_multisig,
            &self.gateway.pubkey(),
            &self.buyer,
            blockhash,
        )
        .expect("funding tx");
        escrow
            .accept_funding(terms, &tx, &self.gateway)
            .await
            .expect("funding accepted");
        assert_eq!(
            escrow.vault_balance(terms).await.expect("vault"),
            Some(terms.amount)
        );
    }

    async fn settle(&self, escrow: &TaskEscrow, terms: &EscrowTerms) -> Result<(), EscrowError> {
        let blockhash = self.rpc.get_latest_blockhash().await.expect("blockhash");
        let approved =
            approve_settlement(terms, &self.config, &self.validator, blockhash).expect("approve");
        escrow
            .finalize_settlement(terms, approved, &self.finalizer)
            .await
            .map(|_| ())
    }

    async fn refund(&self, escrow: &TaskEscrow, terms: &EscrowTerms) -> Result<(), EscrowError> {
        let blockhash = self.rpc.get_latest_blockhash().await.expect("blockhash");
        let tx = refund_transaction(terms, &self.config, &self.buyer, blockhash).expect("refund");
        escrow
            .cosign_refund(terms, tx, &self.finalizer)
            .await
            .map(|_| ())
    }

    async fn balance(&self, owner: &Pubkey) -> u64 {
        self.chain
            .token_balance_of(owner, &self.usdc)
            .await
            .expect("balance")
    }

    async fn wait_past(&self, escrow: &TaskEscrow, deadline: i64) {
        let started = Instant::now();
        while escrow.chain_time().await.expect("time") <= deadline {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chain clock stuck"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn failed_on_chain(result: Result<(), EscrowError>) -> bool {
    matches!(
        result,
        Err(EscrowError::Submit(SubmitError::FailedOnChain { .. }))
    )
}

async fn world() -> World {
    let chain = SolanaChain::start().expect("validator starts");
    let rpc = Arc::new(RpcClient::new_with_commitment(
        chain.rpc_url().to_string(),
        CommitmentConfig::confirmed(),
    ));
    let usdc = chain.create_mint(6).await.expect("mint");
    let gateway = chain.funded_keypair(SOL).await.expect("gateway");
    // The validator role needs no SOL: it only signs.
    let validator = Keypair::new();
    let finalizer = chain.funded_keypair(SOL).await.expect("finalizer");
    let buyer = chain.funded_keypair(SOL).await.expect("buyer");
    chain
        .mint_to(&usdc, &buyer.pubkey(), 100 * USDC)
        .await
        .expect("fund buyer");
    let config = EscrowConfig::new(
        usdc,
        6,
        EscrowRoles {
            validator: validator.pubkey(),
            finalizer: finalizer.pubkey(),
        },
    );
    World {
        chain,
        rpc,
        usdc,
        gateway,
        validator,
        finalizer,
        buyer,
        config,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solana_task_escrow_settles_refunds_and_reconciles() {
    let started = Instant::now();
    let w = world().await;
    let escrow = w.escrow();
    eprintln!("setup {:?}", started.elapsed());

    // --- settle: the split lands on chain ---
    let now = escrow.chain_time().await.expect("time");
    let t1 = w.terms("task-settle", now + 2);
    let buyer_before = w.balance(&w.buyer.pubkey()).await;
    w.fund(&escrow, &t1).await;
    assert_eq!(w.balance(&w.buyer.pubkey()).await, buyer_before - t1.amount);
    let split = t1.split().expect("split");
    assert_eq!(split.creator, 300_000); // floor(2,000,003 × 1,500 / 10,000)
    assert_eq!(split.gateway, 50_000); // floor(2,000,003 × 250 / 10,000)
    assert_eq!(split.worker, 1_650_003);
    let t = Instant::now();
    w.settle(&escrow, &t1).await.expect("settles");
    eprintln!("escrow settle {:?}", t.elapsed());
    assert_eq!(w.balance(&t1.worker).await, split.worker);
    assert_eq!(w.balance(&t1.creator).await, split.creator);
    assert_eq!(w.balance(&t1.gateway).await, split.gateway);
    assert_eq!(
        escrow.vault_balance(&t1).await.expect("vault"),
        None,
        "vault closed"
    );

    // --- refund after settle fails on chain (after the deadline, so the finalizer co-signs) ---
    w.wait_past(&escrow, t1.deadline).await;
    assert!(failed_on_chain(w.refund(&escrow, &t1).await));
    assert_eq!(w.balance(&w.buyer.pubkey()).await, buyer_before - t1.amount);

    // --- refund: refused before the deadline, returns everything after it ---
    let now = escrow.chain_time().await.expect("time");
    let t2 = w.terms("task-refund", now + 3);
    let buyer_before = w.balance(&w.buyer.pubkey()).await;
    w.fund(&escrow, &t2).await;
    assert!(matches!(
        w.refund(&escrow, &t2).await,
        Err(EscrowError::BeforeDeadline { .. })
    ));
    w.wait_past(&escrow, t2.deadline).await;
    w.refund(&escrow, &t2)
        .await
        .expect("refund after the deadline");
    assert_eq!(w.balance(&w.buyer.pubkey()).await, buyer_before);
    assert_eq!(escrow.vault_balance(&t2).await.expect("vault"), None);

    // --- settle after refund fails on chain; nobody got paid ---
    assert!(failed_on_chain(w.settle(&escrow, &t2).await));
    assert_eq!(w.balance(&t2.worker).await, 0);
    assert_eq!(w.balance(&t2.creator).await, 0);
    assert_eq!(w.balance(&t2.gateway).await, 0);
    assert_eq!(w.balance(&w.buyer.pubkey()).await, buyer_before);

    // --- crash: settlement sent, process dies before recording the outcome ---
    let now = escrow.chain_time().await.expect("time");
    let t3 = w.terms("task-crash", now + 600);
    w.fund(&escrow, &t3).await;
    let blockhash = w.rpc.get_latest_blockhash().await.expect("blockhash");
    let approved = approve_settlement(&t3, &w.config, &w.validator, blockhash).expect("approve");
    let signed = escrow
        .cosign_settlement(&t3, approved.clone(), &w.finalizer)
        .expect("cosign");
    let record = escrow
        .submitter()
        .record(&signed, EntryKind::EscrowSettlement, &t3.task_id)
        .expect("intent recorded");
    escrow.submitter().send_only(&signed).await.expect("sent");
    drop(escrow); // the crash: the outbox says Intent, the chain has (or will have) the transfer

    let escrow = w.escrow(); // restart on the same outbox
    let in_flight = escrow
        .submitter()
        .outbox()
        .in_flight(escrow::NAME)
        .expect("in flight");
    assert_eq!(in_flight.len(), 1);
    assert_eq!(in_flight[0].id, record.id);
    let report = escrow.submitter().reconcile().await.expect("reconcile");
    assert_eq!(report.confirmed, vec![record.id.clone()], "{report:?}");
    assert_eq!(
        escrow
            .submitter()
            .outbox()
            .get(&record.id)
            .expect("get")
            .map(|r| r.state),
        Some(SettlementState::Confirmed)
    );
    let split = t3.split().expect("split");
    assert_eq!(
        w.balance(&t3.worker).await,
        split.worker,
        "paid exactly once"
    );
    assert_eq!(w.balance(&t3.creator).await, split.creator);
    assert_eq!(w.balance(&t3.gateway).await, split.gateway);
    // Settling again with the same transaction is refused by the outbox; a fresh one fails on chain.
    assert!(matches!(
        escrow
            .finalize_settlement(&t3, approved, &w.finalizer)
            .await,
        Err(EscrowError::Submit(SubmitError::Outbox(
            OutboxError::AlreadyRecorded { .. }
        )))
    ));
    assert!(failed_on_chain(w.settle(&escrow, &t3).await));
    assert_eq!(
        w.balance(&t3.worker).await,
        split.worker,
        "still exactly once"
    );
    assert!(
        escrow
            .submitter()
            .outbox()
            .in_flight(escrow::NAME)
            .expect("in flight")
            .is_empty()
    );
    eprintln!("total {:?}", started.elapsed());
}
