//! solana-direct against a real in-process validator: a buyer pays, the payee's token balance moves
//! by exactly the amount, and verification refuses each kind of bad payment with its own x402
//! reason. One validator for the whole file (it takes ~4 s to start), so the steps run in sequence.

use std::sync::Arc;
use std::time::Instant;

use d402_rails::evm::buyer::payment_payload;
use d402_rails::solana::direct::{
    self, DirectConfig, DirectError, SolanaDirect, VerifyError, memo_instruction, partially_signed,
    payment_instructions,
};
use d402_rails::solana::submit::Submitter;
use d402_rails::solana::wire;
use d402_rails::{
    Atomic, GatewayFee, Outbox, PaymentRequirements, Rail, RailError, SafetyCaps, SettlementState,
    TaskId, Terms,
};
use d402_solana_chain::SolanaChain;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_signer::Signer;
use spl_associated_token_account_interface::address::get_associated_token_address;

const SOL: u64 = 1_000_000_000;
const USDC: u64 = 1_000_000;

struct World {
    chain: SolanaChain,
    rpc: Arc<RpcClient>,
    rail: SolanaDirect,
    gateway: Arc<Keypair>,
    usdc: Pubkey,
    buyer: Keypair,
    payee: Pubkey,
    _dir: tempfile::TempDir,
}

impl World {
    async fn pay(
        &self,
        requirements: &PaymentRequirements,
        buyer: &Keypair,
    ) -> Result<String, String> {
        let ixs = payment_instructions(&buyer.pubkey(), requirements, 6, 0)?;
        self.sign(&ixs, &[buyer]).await
    }

    async fn sign(
        &self,
        ixs: &[solana_instruction::Instruction],
        signers: &[&Keypair],
    ) -> Result<String, String> {
        let blockhash = self
            .rpc
            .get_latest_blockhash()
            .await
            .map_err(|e| e.to_string())?;
        partially_signed(ixs, &self.gateway.pubkey(), signers, blockhash)
    }

    async fn refused(&self, requirements: &PaymentRequirements, tx: &str) -> VerifyError {
        match self.rail.verify_transaction(requirements, tx).await {
            Ok(p) => panic!("payment {} was accepted", p.signature),
            Err(e) => e,
        }
    }
}

async fn world() -> World {
    let chain = SolanaChain::start().expect("validator starts");
    let rpc = Arc::new(RpcClient::new_with_commitment(
        chain.rpc_url().to_string(),
        CommitmentConfig::confirmed(),
    ));
    let usdc = chain.create_mint(6).await.expect("mint");
    let gateway = Arc::new(chain.funded_keypair(10 * SOL).await.expect("gateway"));
    // The buyer holds no SOL at all: the gateway pays the fee.
    let buyer = Keypair::new();
    chain
        .mint_to(&usdc, &buyer.pubkey(), 10 * USDC)
        .await
        .expect("fund buyer");
    let payee = Pubkey::new_unique();
    chain.create_ata(&payee, &usdc).await.expect("payee ata");
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(&dir.path().join("outbox.redb")).expect("outbox");
    let submitter = Submitter::new(rpc.clone(), outbox, direct::NAME);
    let rail = SolanaDirect::new(
        DirectConfig::new(chain.caip2().parse().expect("caip2"), usdc, 6),
        gateway.clone(),
        submitter,
        SafetyCaps::default(),
    );
    World {
        chain,
        rpc,
        rail,
        gateway,
        usdc,
        buyer,
        payee,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solana_direct_pays_exactly_and_refuses_bad_payments() {
    let started = Instant::now();
    let w = world().await;
    eprintln!("setup {:?}", started.elapsed());

    // A commission-bearing manifest never gets a direct challenge.
    assert!(matches!(
        w.rail.requirements(&w.payee, 1_000, 500),
        Err(DirectError::CommissionBearing)
    ));
    let mut terms = Terms {
        task_id: TaskId::from_label("task-1"),
        price: Atomic::new(1_250_000),
        pay_to: w.payee.to_string(),
        commission: Some(d402_rails::Commission {
            wallet: Pubkey::new_unique().to_string(),
            bps: 500,
        }),
        gateway_fee: GatewayFee::Bps(0),
        max_timeout_seconds: 60,
        deadline_unix: 0,
    };
    assert!(matches!(
        Rail::challenge(&w.rail, &terms),
        Err(RailError::CommissionOnDirectRail { .. })
    ));
    terms.commission = None;

    // --- the happy path, through the core Rail trait: the payee gets exactly the amount ---
    let amount = 1_250_000u64;
    let req = Rail::challenge(&w.rail, &terms).expect("challenge");
    assert_eq!(req.network.to_string(), w.chain.caip2());
    assert_eq!(
        req.extra.as_ref().and_then(|e| e["feePayer"].as_str()),
        Some(w.gateway.pubkey().to_string().as_str())
    );
    let payee_before = w
        .chain
        .token_balance_of(&w.payee, &w.usdc)
        .await
        .expect("bal");
    let buyer_before = w
        .chain
        .token_balance_of(&w.buyer.pubkey(), &w.usdc)
        .await
        .expect("bal");
    let gateway_sol_before = w.chain.sol_balance(&w.gateway.pubkey()).await.expect("sol");
    let tx = w.pay(&req, &w.buyer).await.expect("build");
    let payload = payment_payload(&req, serde_json::json!({ "transaction": tx }));
    let t = Instant::now();
    let verified = Rail::verify(&w.rail, &payload, &req)
        .await
        .expect("valid payment verifies");
    eprintln!("verify (with rpc) {:?}", t.elapsed());
    assert_eq!(verified.payer, w.buyer.pubkey().to_string());
    assert_eq!(verified.amount, Atomic::new(u128::from(amount)));
    let t = Instant::now();
    let settlement = Rail::settle(&w.rail, &verified).await.expect("settles");
    eprintln!("settle {:?}", t.elapsed());
    assert_eq!(settlement.tx_hashes.len(), 1);
    assert_eq!(
        w.rail
            .submitter()
            .outbox()
            .get(&verified.settlement_id)
            .expect("outbox")
            .map(|r| r.state),
        Some(SettlementState::Confirmed)
    );
    assert_eq!(
        w.chain
            .token_balance_of(&w.payee, &w.usdc)
            .await
            .expect("bal"),
        payee_before + amount
    );
    assert_eq!(
        w.chain
            .token_balance_of(&w.buyer.pubkey(), &w.usdc)
            .await
            .expect("bal"),
        buyer_before - amount
    );
    let fee = gateway_sol_before - w.chain.sol_balance(&w.gateway.pubkey()).await.expect("sol");
    assert_eq!(
        fee, 10_000,
        "two signatures at 5,000 lamports, no priority fee"
    );
    assert_eq!(settlement.fee_native, 10_000);

    // --- replay of the used transaction ---
    let e = w.refused(&req, &tx).await;
    assert_eq!(e.reason(), "duplicate_settlement", "{e}");
    match Rail::verify(&w.rail, &payload, &req).await {
        Err(e) => assert_eq!(e.reason(), Some("duplicate_settlement")),
        Ok(_) => panic!("replay verified"),
    }
    assert!(matches!(
        Rail::settle(&w.rail, &verified).await,
        Err(RailError::Replay(_))
    ));

    // --- wrong amount ---
    let mut cheaper = req.clone();
    cheaper.amount = (amount - 1).to_string();
    let tx = w.pay(&cheaper, &w.buyer).await.expect("build");
    let e = w.refused(&req, &tx).await;
    assert_eq!(
        e.reason(),
        "invalid_exact_svm_payload_amount_mismatch",
        "{e}"
    );

    // --- wrong asset (another mint the buyer also holds) ---
    let other_mint = w.chain.create_mint(6).await.expect("mint");
    w.chain
        .mint_to(&other_mint, &w.buyer.pubkey(), 10 * USDC)
        .await
        .expect("fund");
    w.chain
        .create_ata(&w.payee, &other_mint)
        .await
        .expect("ata");
    let mut other_asset = req.clone();
    other_asset.asset = other_mint.to_string();
    let tx = w.pay(&other_asset, &w.buyer).await.expect("build");
    let e = w.refused(&req, &tx).await;
    assert_eq!(e.reason(), "invalid_exact_svm_payload_mint_mismatch", "{e}");

    // --- wrong recipient ---
    let thief = Pubkey::new_unique();
    w.chain.create_ata(&thief, &w.usdc).await.expect("ata");
    let mut elsewhere = req.clone();
    elsewhere.pay_to = thief.to_string();
    let tx = w.pay(&elsewhere, &w.buyer).await.expect("build");
    let e = w.refused(&req, &tx).await;
    assert_eq!(
        e.reason(),
        "invalid_exact_svm_payload_recipient_mismatch",
        "{e}"
    );

    // --- bad signature: the buyer's signature tampered with ---
    let tx = w.pay(&req, &w.buyer).await.expect("build");
    let mut decoded = wire::decode_transaction(&tx).expect("decode");
    let mut sig = <[u8; 64]>::from(decoded.signatures[1]);
    sig[7] ^= 0x40;
    decoded.signatures[1] = sig.into();
    let tampered = wire::encode_transaction(&decoded).expect("encode");
    let e = w.refused(&req, &tampered).await;
    assert_eq!(e.reason(), "invalid_exact_svm_payload_signature", "{e}");
    // ... and a message changed after signing (amount raised in place) is refused too.
    let mut decoded = wire::decode_transaction(&tx).expect("decode");
    if let solana_message::VersionedMessage::V0(m) = &mut decoded.message {
        m.instructions[1].data[1] = 1; // compute unit price 0 -> 1 after signing
    }
    let e = w
        .refused(&req, &wire::encode_transaction(&decoded).expect("enc"))
        .await;
    assert_eq!(e.reason(), "invalid_exact_svm_payload_signature", "{e}");

    // --- expired or never valid: the SVM authorization window is the recent blockhash. A hash
    // the cluster never produced stands for one that aged out (~150 slots).
    let ixs = payment_instructions(&w.buyer.pubkey(), &req, 6, 0).expect("ixs");
    let stale = partially_signed(
        &ixs,
        &w.gateway.pubkey(),
        &[&w.buyer],
        solana_hash::Hash::new_from_array([7; 32]),
    )
    .expect("build");
    let e = w.refused(&req, &stale).await;
    assert_eq!(
        e.reason(),
        "invalid_exact_svm_payload_transaction_expired",
        "{e}"
    );

    // --- insufficient balance ---
    let poor = Keypair::new();
    w.chain
        .mint_to(&w.usdc, &poor.pubkey(), 10)
        .await
        .expect("fund poor");
    let tx = w.pay(&req, &poor).await.expect("build");
    let e = w.refused(&req, &tx).await;
    assert_eq!(e.reason(), "insufficient_funds", "{e}");

    // --- fee payer misuse: the gateway's own tokens as the transfer's source/authority ---
    w.chain
        .mint_to(&w.usdc, &w.gateway.pubkey(), 10 * USDC)
        .await
        .expect("fund gateway");
    let mut ixs = payment_instructions(&w.gateway.pubkey(), &req, 6, 0).expect("ixs");
    ixs[2] = spl_token_interface::instruction::transfer_checked(
        &spl_token_interface::ID,
        &get_associated_token_address(&w.gateway.pubkey(), &w.usdc),
        &w.usdc,
        &get_associated_token_address(&w.payee, &w.usdc),
        &w.gateway.pubkey(),
        &[],
        amount,
        6,
    )
    .expect("ix");
    let tx = w.sign(&ixs, &[]).await.expect("build");
    let e = w.refused(&req, &tx).await;
    assert_eq!(
        e.reason(),
        "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds",
        "{e}"
    );

    // --- fee payer misuse: the gateway's key smuggled into another instruction's accounts ---
    let mut ixs = payment_instructions(&w.buyer.pubkey(), &req, 6, 0).expect("ixs");
    ixs.push(memo_instruction("hi", &[w.gateway.pubkey()]));
    let tx = w.sign(&ixs, &[&w.buyer]).await.expect("build");
    let e = w.refused(&req, &tx).await;
    assert_eq!(
        e.reason(),
        "invalid_exact_svm_payload_transaction_fee_payer_included_in_instruction_accounts",
        "{e}"
    );

    // --- a priority fee above the gateway's cap ---
    let ixs = payment_instructions(&w.buyer.pubkey(), &req, 6, 50_000_000).expect("ixs");
    let tx = w.sign(&ixs, &[&w.buyer]).await.expect("build");
    let e = w.refused(&req, &tx).await;
    assert_eq!(
        e.reason(),
        "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high",
        "{e}"
    );

    // --- a memo is allowed, and the payment then settles ---
    let mut ixs = payment_instructions(&w.buyer.pubkey(), &req, 6, 0).expect("ixs");
    ixs.push(memo_instruction("d402 task 2", &[]));
    let tx = w.sign(&ixs, &[&w.buyer]).await.expect("build");
    let payment = w
        .rail
        .verify_transaction(&req, &tx)
        .await
        .expect("memo payment verifies");
    w.rail
        .settle_payment(&payment, "payment-2")
        .await
        .expect("settles");
    assert_eq!(
        w.chain
            .token_balance_of(&w.payee, &w.usdc)
            .await
            .expect("bal"),
        payee_before + 2 * amount
    );

    // Nothing reached the thief, nothing left the gateway's token account.
    assert_eq!(
        w.chain
            .token_balance_of(&thief, &w.usdc)
            .await
            .expect("bal"),
        0
    );
    assert_eq!(
        w.chain
            .token_balance_of(&w.gateway.pubkey(), &w.usdc)
            .await
            .expect("bal"),
        10 * USDC
    );
    eprintln!("total {:?}", started.elapsed());
}

/// The gateway pays a worker, and refunds a buyer, out of its own wallet: each payout once,
/// across repeated calls, a crash between record and send, and a transaction that expired
/// before it was ever sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solana_direct_pays_out_each_payout_once() {
    use d402_rails::{Payout, Release};
    let w = world().await;
    let gateway = w.gateway.pubkey();
    w.chain
        .mint_to(&w.usdc, &gateway, USDC)
        .await
        .expect("fund the gateway's wallet");
    let balance = |owner: Pubkey| {
        let chain = &w.chain;
        let usdc = w.usdc;
        async move {
            chain
                .token_balance_of(&owner, &usdc)
                .await
                .expect("balance")
        }
    };
    let release = |task: &str, to: Pubkey, amount: u128| Release::Payouts {
        task_id: TaskId::from_label(task),
        from: gateway.to_string(),
        payouts: vec![Payout {
            to: to.to_string(),
            amount: Atomic::new(amount),
        }],
    };
    let outbox = w.rail.submitter().outbox().clone();
    assert!(w.rail.pays_out());
    assert!(w.rail.accepts_wallet(&gateway.to_string()));
    assert!(
        !w.rail
            .accepts_wallet("0x0000000000000000000000000000000000000001")
    );

    // Out of a wallet whose key the rail does not hold: refused, nothing recorded.
    let worker = Pubkey::new_unique();
    let mut foreign = release("t-foreign", worker, 10);
    if let Release::Payouts { from, .. } = &mut foreign {
        *from = Pubkey::new_unique().to_string();
    }
    assert!(matches!(
        w.rail.finalize(&foreign).await,
        Err(RailError::PayoutSource { .. })
    ));

    // A worker with no token account yet: it is created, and the net lands exactly.
    let paid = w
        .rail
        .finalize(&release("t-1", worker, 9_500))
        .await
        .expect("payout");
    assert_eq!(balance(worker).await, 9_500);
    assert_eq!(balance(gateway).await, USDC - 9_500);
    assert_eq!(paid.tx_hashes.len(), 1);
    assert!(paid.fee_native > 0);
    // Again: the same signature, nothing sent, nothing paid.
    let again = w
        .rail
        .finalize(&release("t-1", worker, 9_500))
        .await
        .expect("repeat");
    assert_eq!(again.tx_hashes, paid.tx_hashes);
    assert_eq!(again.fee_native, 0);
    assert_eq!(balance(worker).await, 9_500);
    // The same payout with another amount is refused, not added.
    assert!(matches!(
        w.rail.finalize(&release("t-1", worker, 9_000)).await,
        Err(RailError::PayoutConflict { .. })
    ));

    // A crash between the record and the send: reconciliation sends it, once.
    let buyer = w.buyer.pubkey();
    let buyer_before = balance(buyer).await;
    w.rail.stop_before_next_payout_send();
    assert!(
        w.rail
            .finalize(&release("t-2", buyer, 10_000))
            .await
            .is_err()
    );
    assert_eq!(balance(buyer).await, buyer_before);
    let refund_id = direct::payout_id(&TaskId::from_label("t-2"), &buyer);
    let report = w.rail.reconcile().await.expect("reconcile");
    assert!(report.resent.contains(&refund_id), "{report:?}");
    assert!(report.confirmed.contains(&refund_id), "{report:?}");
    assert_eq!(balance(buyer).await, buyer_before + 10_000);
    w.rail
        .finalize(&release("t-2", buyer, 10_000))
        .await
        .expect("repeat after reconcile");
    assert_eq!(balance(buyer).await, buyer_before + 10_000);

    // Recorded, never sent, and its blockhash expired: it can never land, so the next call
    // sends a new transaction, and the payout is still made once.
    w.rail.stop_before_next_payout_send();
    assert!(
        w.rail
            .finalize(&release("t-3", worker, 1_000))
            .await
            .is_err()
    );
    let id = direct::payout_id(&TaskId::from_label("t-3"), &worker);
    let first = outbox.get(&id).unwrap().expect("recorded");
    let blockhash: solana_hash::Hash = first.request["blockhash"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let waited = Instant::now();
    while w
        .rpc
        .is_blockhash_valid(&blockhash, CommitmentConfig::processed())
        .await
        .unwrap()
    {
        assert!(
            waited.elapsed().as_secs() < 120,
            "the blockhash never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let paid = w
        .rail
        .finalize(&release("t-3", worker, 1_000))
        .await
        .expect("payout after expiry");
    assert_eq!(balance(worker).await, 9_500 + 1_000);
    let record = outbox.get(&id).unwrap().expect("recorded");
    assert_eq!(record.state, SettlementState::Confirmed);
    assert_ne!(record.request["transaction"], first.request["transaction"]);
    assert_eq!(record.tx_hash.as_deref(), Some(paid.tx_hashes[0].as_str()));

    // More than the wallet holds: refused by the simulation, nothing recorded or sent.
    let poor = Pubkey::new_unique();
    assert!(matches!(
        w.rail
            .finalize(&release("t-4", poor, 100 * USDC as u128))
            .await,
        Err(RailError::WouldRevert { .. })
    ));
    assert!(
        outbox
            .get(&direct::payout_id(&TaskId::from_label("t-4"), &poor))
            .unwrap()
            .is_none()
    );
    assert_eq!(balance(poor).await, 0);
}
