//! `solana-channel`'s money path on the real validator: a buyer opens one channel, pays 1,000 tasks
//! with cumulative vouchers checked off chain, each task's split is allocated to its worker (three
//! of them), the capability's creator and the gateway's fee; three roots are published; each
//! claimant withdraws once; the chain's balances equal the split to the unit.

use std::sync::Arc;

use d402_rails::Atomic;
use d402_rails::outbox::Outbox;
use d402_rails::solana::channel::ledger::{ChannelRecord, ChargeRefusal, Ledger};
use d402_rails::solana::channel::payer::{Opening, open_instructions, vault_of};
use d402_rails::solana::channel::roots::ChannelChain;
use d402_rails::solana::channel::voucher;
use d402_rails::solana::submit::Submitter;
use d402_rails::split::{GatewayFee, Split, SplitTerms};
use d402_solana_chain::SolanaChain;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;

const PRICE: u64 = 1_000;
const TASKS: u64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_three_roots_one_withdrawal_per_claimant() {
    let chain = SolanaChain::start().expect("validator");
    let mint = chain.create_mint(6).await.expect("mint");
    let buyer = chain.funded_keypair(1_000_000_000).await.expect("buyer");
    chain
        .mint_to(&mint, &buyer.pubkey(), 2_000_000)
        .await
        .expect("tokens");
    let authority = Arc::new(
        chain
            .funded_keypair(1_000_000_000)
            .await
            .expect("authority"),
    );
    let maintainer = chain
        .funded_keypair(1_000_000_000)
        .await
        .expect("maintainer");
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(&dir.path().join("channels.redb")).expect("ledger");
    let outbox = Outbox::open(&dir.path().join("outbox.redb")).expect("outbox");
    let rpc = Arc::new(chain.rpc());

    // The buyer opens a channel with 1,050,000: one transaction.
    let channel = Keypair::new();
    let rent = rpc
        .get_minimum_balance_for_rent_exemption(d402_program::channel::CHANNEL_LEN)
        .await
        .expect("rent");
    let opening = Opening {
        payer: buyer.pubkey(),
        channel: channel.pubkey(),
        mint,
        authority: authority.pubkey(),
        maintainer: maintainer.pubkey(),
        deposit: 1_050_000,
        grace_secs: 3_600,
        channel_rent: rent,
    };
    chain
        .send(
            &open_instructions(&opening, &chain.payer().pubkey()),
            &[&buyer, &channel],
        )
        .await
        .expect("open");
    let ch = channel.pubkey();
    ledger
        .adopt(&ChannelRecord {
            channel: ch.to_string(),
            payer: buyer.pubkey().to_string(),
            vault: vault_of(&ch, &mint).to_string(),
            mint: mint.to_string(),
            deposit: 1_050_000,
            charged: 0,
            voucher: None,
            opened_ms: 0,
        })
        .expect("adopt");

    let workers: Vec<Pubkey> = (0..3).map(|_| Pubkey::new_unique()).collect();
    let creator = Pubkey::new_unique();
    let fee_wallet = authority.pubkey();
    let terms = SplitTerms {
        creator_bps: 1_000,
        gateway_fee: GatewayFee::Bps(250),
    };
    let gateway_chain = ChannelChain::new(
        Arc::clone(&rpc),
        Submitter::new(Arc::clone(&rpc), outbox.clone(), "solana-channel"),
        Arc::clone(&authority),
    );
    let mut expected = std::collections::HashMap::<Pubkey, u64>::new();
    let mut roots = 0;
    for i in 0..TASKS {
        // The buyer's voucher, checked without the chain, committed before the "response".
        let v = voucher::sign(&buyer, &ch, (i + 1) * PRICE);
        voucher::verify(&buyer.pubkey(), &ch, &v).expect("a good voucher");
        let id = format!("task-{i}");
        ledger
            .charge(&id, &ch.to_string(), &v, PRICE)
            .expect("db")
            .expect("charged");
        if i == 10 {
            // The same voucher again, and one below what was charged: refused.
            assert_eq!(
                ledger.charge(&id, &ch.to_string(), &v, PRICE).expect("db"),
                Err(ChargeRefusal::Replay)
            );
            let old = voucher::sign(&buyer, &ch, i * PRICE);
            assert!(matches!(
                ledger
                    .charge("task-x", &ch.to_string(), &old, PRICE)
                    .expect("db"),
                Err(ChargeRefusal::Mismatch { .. })
            ));
        }
        let split = Split::compute(Atomic::new(PRICE.into()), &terms).expect("split");
        let worker = workers[(i % 3) as usize];
        let parts = [
            (worker, split.worker.get() as u64),
            (creator, split.creator.get() as u64),
            (fee_wallet, split.gateway.get() as u64),
        ];
        let named: Vec<(String, u64)> = parts.iter().map(|(k, a)| (k.to_string(), *a)).collect();
        assert!(ledger.allocate(&id, &named).expect("allocate"));
        assert!(
            !ledger.allocate(&id, &named).expect("retry"),
            "allocated once"
        );
        for (k, a) in parts {
            *expected.entry(k).or_default() += a;
        }
        if i == 332 || i == 665 || i == TASKS - 1 {
            gateway_chain
                .publish_due(&ledger, &authority, &ch)
                .await
                .expect("publish")
                .expect("a root was due");
            roots += 1;
        }
    }
    assert_eq!(roots, 3);
    // Nothing new: no fourth root.
    assert!(
        gateway_chain
            .publish_due(&ledger, &authority, &ch)
            .await
            .expect("publish")
            .is_none()
    );

    // The maintainer cranks one withdrawal per claimant with its own fee payer and the gateway's
    // kept roots (it holds no key that moves channel money).
    let maintainer_outbox =
        Outbox::open(&dir.path().join("maintainer-outbox.redb")).expect("outbox");
    let maintainer_chain = ChannelChain::new(
        Arc::clone(&rpc),
        Submitter::new(
            Arc::clone(&rpc),
            maintainer_outbox.clone(),
            "solana-channel",
        ),
        Arc::new(maintainer),
    );
    let mut claimants: Vec<Pubkey> = workers.clone();
    claimants.push(creator);
    claimants.push(fee_wallet);
    for who in &claimants {
        maintainer_chain
            .withdraw(&ledger, &ch, who)
            .await
            .expect("withdraw")
            .expect("something was due");
        assert!(
            maintainer_chain
                .withdraw(&ledger, &ch, who)
                .await
                .expect("again")
                .is_none()
        );
    }
    let mut total = 0;
    for who in &claimants {
        let got = chain.token_balance_of(who, &mint).await.expect("balance");
        assert_eq!(got, expected[who], "claimant {who}");
        total += got;
    }
    assert_eq!(total, TASKS * PRICE);
    assert_eq!(
        chain
            .token_balance(&vault_of(&ch, &mint))
            .await
            .expect("vault"),
        Some(1_050_000 - TASKS * PRICE)
    );
    let (creator_bps, fee_bps) = (1_000u64, 250u64);
    assert_eq!(expected[&creator], TASKS * PRICE * creator_bps / 10_000);
    assert_eq!(expected[&fee_wallet], TASKS * PRICE * fee_bps / 10_000);
    // Transactions: the opening (1), three roots, one withdrawal per claimant (5).
    assert_eq!(outbox.all().expect("outbox").len(), 3);
    assert_eq!(
        maintainer_outbox.all().expect("outbox").len(),
        claimants.len()
    );
}
