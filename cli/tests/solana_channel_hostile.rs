//! Hostile payments on `solana-channel`, against the rail on the real validator: tampered
//! openings (an extra instruction, another authority, a deposit above the caps or below the
//! minimum), forged, replayed and out-of-step vouchers, a voucher for someone else's channel,
//! a top-up above the balance cap, changed requirements. Each is refused with its reason and
//! nothing is committed; the honest payments around them go through.

use std::sync::Arc;

use d402_rails::caps::{MAX_CHANNEL_BALANCE, MAX_CHANNEL_INITIAL_FUNDING};
use d402_rails::evm::buyer::payment_payload;
use d402_rails::outbox::Outbox;
use d402_rails::rail::{Commission, PaymentPayload, PaymentRequirements, Rail, Terms};
use d402_rails::solana::channel::ledger::Ledger;
use d402_rails::solana::channel::payer::{Opening, open_instructions, top_up};
use d402_rails::solana::channel::rail::{
    ChannelPayload, ChannelPolicy, FundingTx, NAME, SolanaChannel,
};
use d402_rails::solana::channel::voucher;
use d402_rails::solana::direct::partially_signed;
use d402_rails::solana::submit::Submitter;
use d402_rails::split::GatewayFee;
use d402_rails::{Atomic, RailError, SafetyCaps, TaskId};
use d402_solana_chain::SolanaChain;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;

const PRICE: u64 = 10_000;

struct Fixture {
    chain: SolanaChain,
    mint: Pubkey,
    authority: Arc<Keypair>,
    maintainer: Pubkey,
    buyer: Keypair,
    rail: SolanaChannel,
    rent: u64,
    _dir: tempfile::TempDir,
}

fn reason(e: RailError) -> String {
    match e {
        RailError::Verify(v) => v.reason().to_string(),
        RailError::Replay(_) => "replay".into(),
        other => format!("not a refusal: {other}"),
    }
}

impl Fixture {
    async fn new() -> Fixture {
        let chain = tokio::task::spawn_blocking(SolanaChain::start)
            .await
            .unwrap()
            .expect("validator");
        let mint = chain.create_mint(6).await.unwrap();
        let buyer = chain.funded_keypair(1_000_000_000).await.unwrap();
        chain
            .mint_to(&mint, &buyer.pubkey(), 50_000_000)
            .await
            .unwrap();
        let authority = Arc::new(chain.funded_keypair(5_000_000_000).await.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let rpc = Arc::new(chain.rpc());
        let rent = rpc
            .get_minimum_balance_for_rent_exemption(
                d402_rails::solana::channel::program::channel::CHANNEL_LEN,
            )
            .await
            .unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox.redb")).unwrap();
        let ledger = Ledger::open(&dir.path().join("channels.redb")).unwrap();
        let caps = SafetyCaps::from_lookup(
            |name| match name {
                MAX_CHANNEL_INITIAL_FUNDING => Some("5000000".into()),
                MAX_CHANNEL_BALANCE => Some("8000000".into()),
                _ => None,
            },
            6,
        )
        .unwrap();
        let maintainer = Keypair::new().pubkey();
        let rail = SolanaChannel::new(
            chain.caip2().parse().unwrap(),
            mint,
            Arc::clone(&authority),
            Submitter::new(rpc, outbox, NAME),
            ledger,
            caps,
            ChannelPolicy::new(maintainer),
            rent,
            dir.path().join("roots"),
        );
        Fixture {
            chain,
            mint,
            authority,
            maintainer,
            buyer,
            rail,
            rent,
            _dir: dir,
        }
    }

    fn requirements(&self) -> PaymentRequirements {
        self.rail
            .challenge(&Terms {
                task_id: TaskId::from_label("t"),
                price: Atomic::new(PRICE.into()),
                pay_to: self.authority.pubkey().to_string(),
                commission: Some(Commission {
                    wallet: Pubkey::new_unique().to_string(),
                    bps: 1_000,
                }),
                gateway_fee: GatewayFee::Bps(500),
                max_timeout_seconds: 60,
                deadline_unix: 0,
            })
            .unwrap()
    }

    fn opening(&self, channel: &Keypair, deposit: u64) -> Opening {
        Opening {
            payer: self.buyer.pubkey(),
            channel: channel.pubkey(),
            mint: self.mint,
            authority: self.authority.pubkey(),
            maintainer: self.maintainer,
            deposit,
            grace_secs: 86_400,
            channel_rent: self.rent,
        }
    }

    async fn signed(&self, instructions: &[Instruction], signers: &[&Keypair]) -> String {
        let blockhash = self.chain.rpc().get_latest_blockhash().await.unwrap();
        partially_signed(instructions, &self.authority.pubkey(), signers, blockhash).unwrap()
    }

    fn payload(
        &self,
        r: &PaymentRequirements,
        channel: &Pubkey,
        cumulative: u64,
        open: Option<FundingTx>,
        top_up: Option<FundingTx>,
    ) -> PaymentPayload {
        let p = ChannelPayload {
            channel: channel.to_string(),
            payer: self.buyer.pubkey().to_string(),
            voucher: voucher::sign(&self.buyer, channel, cumulative),
            open,
            top_up,
        };
        payment_payload(r, serde_json::to_value(p).unwrap())
    }

    /// A payment carrying `opening`'s transaction (signed by `signers`, the gateway as fee
    /// payer), stating `amount`, and the buyer's first voucher.
    async fn opening_payload(
        &self,
        r: &PaymentRequirements,
        opening: &Opening,
        signers: &[&Keypair],
        amount: u64,
    ) -> PaymentPayload {
        let tx = self
            .signed(
                &open_instructions(opening, &self.authority.pubkey()),
                signers,
            )
            .await;
        self.payload(
            r,
            &opening.channel,
            PRICE,
            Some(FundingTx {
                transaction: tx,
                amount,
            }),
            None,
        )
    }

    async fn refused(&self, p: &PaymentPayload, r: &PaymentRequirements) -> String {
        match self.rail.verify(p, r).await {
            Ok(v) => panic!("accepted: {v:?}"),
            Err(e) => reason(e),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_openings_and_vouchers_are_refused_and_nothing_is_committed() {
    let f = Fixture::new().await;
    let r = f.requirements();
    let channel = Keypair::new();
    let ch = channel.pubkey();
    let gateway = f.authority.pubkey();

    // An opening with one more instruction: a transfer out of the gateway's own SOL.
    let mut ixs = open_instructions(&f.opening(&channel, 2_000_000), &gateway);
    ixs.push(solana_system_interface::instruction::transfer(
        &gateway,
        &f.buyer.pubkey(),
        1_000_000,
    ));
    let tx = f.signed(&ixs, &[&f.buyer, &channel]).await;
    let open = FundingTx {
        transaction: tx,
        amount: 2_000_000,
    };
    let p = f.payload(&r, &ch, PRICE, Some(open), None);
    assert_eq!(
        f.refused(&p, &r).await,
        "invalid_solana_channel_funding_transaction"
    );

    // An opening naming another authority (so that another key could sign its roots).
    let both: &[&Keypair] = &[&f.buyer, &channel];
    let mut other = f.opening(&channel, 2_000_000);
    other.authority = Pubkey::new_unique();
    let p = f.opening_payload(&r, &other, both, 2_000_000).await;
    assert_eq!(
        f.refused(&p, &r).await,
        "invalid_solana_channel_funding_transaction"
    );

    // The stated amount differs from the transaction's deposit.
    let honest = f.opening(&channel, 2_000_000);
    let p = f.opening_payload(&r, &honest, both, 3_000_000).await;
    assert_eq!(
        f.refused(&p, &r).await,
        "invalid_solana_channel_funding_transaction"
    );

    // Above the initial funding cap (5,000,000), and below the minimum deposit.
    let p = f
        .opening_payload(&r, &f.opening(&channel, 6_000_000), both, 6_000_000)
        .await;
    assert_eq!(
        f.refused(&p, &r).await,
        "invalid_solana_channel_deposit_above_cap"
    );
    let p = f
        .opening_payload(&r, &f.opening(&channel, 500_000), both, 500_000)
        .await;
    assert_eq!(
        f.refused(&p, &r).await,
        "invalid_solana_channel_deposit_below_minimum"
    );

    // Not signed by the channel's keypair.
    let p = f.opening_payload(&r, &honest, &[&f.buyer], 2_000_000).await;
    assert_eq!(
        f.refused(&p, &r).await,
        "invalid_solana_channel_funding_signature"
    );

    // A voucher forged by another key over an honest opening.
    let tx = f.signed(&open_instructions(&honest, &gateway), both).await;
    let opening = FundingTx {
        transaction: tx,
        amount: 2_000_000,
    };
    let mut forged = f.payload(&r, &ch, PRICE, Some(opening.clone()), None);
    forged.payload["voucher"] =
        serde_json::to_value(voucher::sign(&Keypair::new(), &ch, PRICE)).unwrap();
    assert_eq!(
        f.refused(&forged, &r).await,
        "invalid_solana_channel_voucher_signature"
    );

    // Changed requirements: a lower price, or no creator's share.
    let mut cheaper = f.payload(&r, &ch, PRICE, Some(opening.clone()), None);
    cheaper.accepted.amount = "1".into();
    assert_eq!(
        f.refused(&cheaper, &r).await,
        "invalid_payment_requirements"
    );
    let mut no_creator = f.payload(&r, &ch, PRICE, Some(opening.clone()), None);
    if let Some(e) = no_creator.accepted.extra.as_mut() {
        e["creatorBps"] = serde_json::json!(0);
    }
    assert_eq!(
        f.refused(&no_creator, &r).await,
        "invalid_payment_requirements"
    );
    assert!(
        f.rail.ledger().channels().unwrap().is_empty(),
        "nothing committed"
    );

    // The honest opening goes through, and lands.
    let p = f.payload(&r, &ch, PRICE, Some(opening.clone()), None);
    let v = f.rail.verify(&p, &r).await.expect("the honest opening");
    let s = f.rail.settle(&v).await.expect("settled");
    assert_eq!(s.tx_hashes.len(), 1);
    let vault = d402_rails::solana::channel::payer::vault_of(&ch, &f.mint);
    assert_eq!(
        f.chain.token_balance(&vault).await.unwrap(),
        Some(2_000_000)
    );
    // The same payment again: a replay, refused before anything is sent.
    assert_eq!(reason(f.rail.settle(&v).await.unwrap_err()), "replay");
    // A second opening of the same channel.
    assert_eq!(
        f.refused(&p, &r).await,
        "invalid_solana_channel_already_open"
    );

    // Vouchers: the next one pays; one out of step is told where the channel stands.
    let p = f.payload(&r, &ch, 2 * PRICE, None, None);
    let v = f.rail.verify(&p, &r).await.expect("a voucher");
    f.rail.settle(&v).await.expect("charged");
    let stale = f.payload(&r, &ch, 2 * PRICE, None, None);
    match f.rail.verify(&stale, &r).await {
        Err(RailError::Verify(e)) => {
            assert_eq!(e.reason(), "invalid_solana_channel_cumulative_mismatch");
            let c = e.requirements_extra().expect("a corrective");
            assert_eq!(c["channelState"]["charged"], "20000");
            assert_eq!(c["voucherState"]["cumulative"], "20000");
        }
        other => panic!("{other:?}"),
    }
    let skipping = f.payload(&r, &ch, 4 * PRICE, None, None);
    assert_eq!(
        f.refused(&skipping, &r).await,
        "invalid_solana_channel_cumulative_mismatch"
    );
    // Someone else's voucher on this channel: the payer is the channel's.
    let stranger = Keypair::new();
    let mut foreign = f.payload(&r, &ch, 3 * PRICE, None, None);
    foreign.payload["payer"] = serde_json::json!(stranger.pubkey().to_string());
    foreign.payload["voucher"] =
        serde_json::to_value(voucher::sign(&stranger, &ch, 3 * PRICE)).unwrap();
    assert_eq!(
        f.refused(&foreign, &r).await,
        "invalid_solana_channel_payer_mismatch"
    );

    // A top-up above the balance cap (8,000,000): 2,000,000 + 7,000,000.
    let tx = f
        .signed(
            &[top_up(&f.buyer.pubkey(), &ch, &f.mint, 7_000_000)],
            &[&f.buyer],
        )
        .await;
    let p = f.payload(
        &r,
        &ch,
        3 * PRICE,
        None,
        Some(FundingTx {
            transaction: tx,
            amount: 7_000_000,
        }),
    );
    assert_eq!(
        f.refused(&p, &r).await,
        "invalid_solana_channel_deposit_above_cap"
    );
    // Within it, it lands with the voucher it came with.
    let tx = f
        .signed(
            &[top_up(&f.buyer.pubkey(), &ch, &f.mint, 1_000_000)],
            &[&f.buyer],
        )
        .await;
    let p = f.payload(
        &r,
        &ch,
        3 * PRICE,
        None,
        Some(FundingTx {
            transaction: tx,
            amount: 1_000_000,
        }),
    );
    let v = f.rail.verify(&p, &r).await.expect("a top-up");
    f.rail.settle(&v).await.expect("topped up");
    let record = f.rail.ledger().channel(&ch.to_string()).unwrap().unwrap();
    assert_eq!((record.deposit, record.charged), (3_000_000, 3 * PRICE));
    assert_eq!(
        f.chain.token_balance(&vault).await.unwrap(),
        Some(3_000_000)
    );
}
