//! `d402-program` on the real test validator (loaded at genesis): a channel opened, roots
//! published by a maintainer, claimants withdrawing with proofs, the close and the rent reclaimed;
//! and every hostile instruction refused with its own error.

use d402_program::channel::{
    ChannelStage, ChannelState, ClaimState, claim_address, vault_authority,
};
use d402_program::instruction::{self as ix, Signed};
use d402_program::merkle::{Proof, Tree};
use d402_program::{ID, ProgramError};
use d402_solana_chain::{ChainError, SolanaChain, TOKEN_PROGRAM_ID};
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;
use spl_associated_token_account_interface::address::get_associated_token_address;
use spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent;

/// (128 + 112) bytes at the default rent.
const CLAIM_RENT: u64 = 1_670_400;

/// A channel under test and the keys around it.
struct Fixture {
    chain: SolanaChain,
    mint: Pubkey,
    payer: Keypair,
    authority: Keypair,
    maintainer: Keypair,
}

struct Channel {
    key: Pubkey,
    vault: Pubkey,
}

fn sign(k: &Keypair, message: &[u8]) -> [u8; 64] {
    k.sign_message(message).into()
}

/// The program error a failed transaction carries, from the RPC error's text.
fn refused(result: Result<impl std::fmt::Debug, ChainError>) -> ProgramError {
    let e = match result {
        Ok(ok) => panic!("expected a refusal, the transaction landed: {ok:?}"),
        Err(e) => format!("{e:?}"),
    };
    let code = e
        .split("Custom(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no custom error in {e}"));
    ProgramError::from_code(code).unwrap_or_else(|| panic!("unknown code {code}: {e}"))
}

impl Fixture {
    async fn new() -> Self {
        let chain = SolanaChain::start().expect("validator");
        let mint = chain.create_mint(6).await.expect("mint");
        let payer = chain.funded_keypair(1_000_000_000).await.expect("payer");
        chain
            .mint_to(&mint, &payer.pubkey(), 10_000)
            .await
            .expect("tokens");
        Fixture {
            chain,
            mint,
            payer,
            authority: Keypair::new(),
            maintainer: Keypair::new(),
        }
    }

    /// Creates, funds (`deposit`) and opens a channel whose vault is the vault PDA's ATA.
    async fn open(&self, deposit: u64, grace_secs: u64) -> Channel {
        let channel = Keypair::new();
        let (vault_owner, _) = vault_authority(&channel.pubkey());
        let vault = get_associated_token_address(&vault_owner, &self.mint);
        let instructions =
            self.open_instructions(&channel, &vault, &self.mint, deposit, grace_secs);
        self.chain
            .send(&instructions, &[&self.payer, &channel])
            .await
            .expect("open");
        Channel {
            key: channel.pubkey(),
            vault,
        }
    }

    fn open_instructions(
        &self,
        channel: &Keypair,
        vault: &Pubkey,
        mint: &Pubkey,
        deposit: u64,
        grace_secs: u64,
    ) -> Vec<Instruction> {
        let (vault_owner, _) = vault_authority(&channel.pubkey());
        let rent = 2_672_640; // (128 + 256) bytes at the default rent, rent-exempt
        vec![
            solana_system_interface::instruction::create_account(
                &self.payer.pubkey(),
                &channel.pubkey(),
                rent,
                d402_program::channel::CHANNEL_LEN as u64,
                &ID,
            ),
            create_associated_token_account_idempotent(
                &self.payer.pubkey(),
                &vault_owner,
                &self.mint,
                &TOKEN_PROGRAM_ID,
            ),
            spl_token_interface::instruction::transfer(
                &TOKEN_PROGRAM_ID,
                &get_associated_token_address(&self.payer.pubkey(), &self.mint),
                &get_associated_token_address(&vault_owner, &self.mint),
                &self.payer.pubkey(),
                &[],
                deposit,
            )
            .expect("transfer"),
            ix::open(
                &channel.pubkey(),
                &self.payer.pubkey(),
                vault,
                &self.authority.pubkey(),
                &self.maintainer.pubkey(),
                mint,
                grace_secs,
            ),
        ]
    }

    /// The two signed instructions of a root: the precompile's, then PublishRoot.
    #[allow(clippy::too_many_arguments)]
    fn root(
        &self,
        ch: &Channel,
        voucher_signer: &Keypair,
        voucher_channel: &Pubkey,
        voucher: u64,
        root_signer: &Keypair,
        seq: u64,
        tree: &Tree,
    ) -> Vec<Instruction> {
        let vm = ix::voucher_message(voucher_channel, voucher);
        let rm = ix::root_message(&ch.key, seq, tree.total(), &tree.root());
        vec![
            ix::ed25519_instruction(&[
                Signed {
                    signer: voucher_signer.pubkey(),
                    signature: sign(voucher_signer, &vm),
                    message: &vm,
                },
                Signed {
                    signer: root_signer.pubkey(),
                    signature: sign(root_signer, &rm),
                    message: &rm,
                },
            ]),
            ix::publish_root(&ch.key, &ch.vault, seq, tree.total(), voucher, &tree.root()),
        ]
    }

    async fn publish(
        &self,
        ch: &Channel,
        seq: u64,
        voucher: u64,
        tree: &Tree,
    ) -> Result<(), ChainError> {
        let ixs = self.root(
            ch,
            &self.payer,
            &ch.key,
            voucher,
            &self.authority,
            seq,
            tree,
        );
        self.chain.send(&ixs, &[]).await.map(drop)
    }

    async fn withdraw(&self, ch: &Channel, tree: &Tree, who: &Pubkey) -> Result<(), ChainError> {
        let (amount, proof) = tree.proof(who).expect("a leaf");
        self.withdraw_with(ch, who, amount, &proof).await
    }

    async fn withdraw_with(
        &self,
        ch: &Channel,
        who: &Pubkey,
        amount: u64,
        proof: &Proof,
    ) -> Result<(), ChainError> {
        let dest = self.chain.create_ata(who, &self.mint).await?;
        let fee_payer = self.chain.payer().pubkey();
        let w = ix::withdraw(
            &ch.key, &ch.vault, who, &dest, &fee_payer, amount, CLAIM_RENT, proof,
        );
        self.chain.send(&[w], &[]).await.map(drop)
    }

    /// Sends `instructions` after simulating them; returns the compute units they used.
    async fn measured(&self, instructions: &[Instruction], signers: &[&Keypair]) -> u64 {
        let rpc = self.chain.rpc();
        let blockhash = rpc.get_latest_blockhash().await.expect("blockhash");
        let mut all: Vec<&Keypair> = vec![self.chain.payer()];
        all.extend_from_slice(signers);
        let tx = solana_transaction::Transaction::new_signed_with_payer(
            instructions,
            Some(&self.chain.payer().pubkey()),
            &all,
            blockhash,
        );
        let sim = rpc.simulate_transaction(&tx).await.expect("simulate").value;
        assert!(sim.err.is_none(), "simulation failed: {sim:?}");
        self.chain.send(instructions, signers).await.expect("send");
        sim.units_consumed.expect("units")
    }

    async fn state(&self, ch: &Channel) -> ChannelState {
        let data = self
            .chain
            .rpc()
            .get_account_data(&ch.key)
            .await
            .expect("channel");
        ChannelState::parse(&data).expect("a channel")
    }

    async fn balance(&self, who: &Pubkey) -> u64 {
        self.chain
            .token_balance_of(who, &self.mint)
            .await
            .expect("balance")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_allocates_by_roots_and_claimants_withdraw_their_share() {
    let f = Fixture::new().await;
    let ch = f.open(1_000, 3_600).await;
    let s = f.state(&ch).await;
    assert_eq!(
        (s.payer, s.authority, s.maintainer),
        (
            f.payer.pubkey(),
            f.authority.pubkey(),
            f.maintainer.pubkey()
        )
    );
    assert_eq!(
        (s.stage, s.seq, s.allocated, s.vault),
        (ChannelStage::Open, 0, 0, ch.vault)
    );

    let (w1, w2, creator) = (
        Pubkey::new_unique(),
        Pubkey::new_unique(),
        Pubkey::new_unique(),
    );
    let first = Tree::new([(w1, 300), (w2, 100), (creator, 50)]);
    f.publish(&ch, 1, 450, &first).await.expect("root 1");
    f.withdraw(&ch, &first, &w1).await.expect("w1 withdraws");
    assert_eq!(f.balance(&w1).await, 300);
    // The same amount again: nothing is due.
    assert_eq!(
        refused(f.withdraw(&ch, &first, &w1).await),
        ProgramError::NothingDue
    );

    // A later root grows the cumulative amounts; w1 gets only the difference.
    let second = Tree::new([(w1, 420), (w2, 180), (creator, 70)]);
    f.publish(&ch, 2, 700, &second).await.expect("root 2");
    for who in [w1, w2, creator] {
        f.withdraw(&ch, &second, &who).await.expect("withdraw");
    }
    assert_eq!(
        (
            f.balance(&w1).await,
            f.balance(&w2).await,
            f.balance(&creator).await
        ),
        (420, 180, 70)
    );
    assert_eq!(f.balance(&vault_authority(&ch.key).0).await, 1_000 - 670);
    let claim = f
        .chain
        .rpc()
        .get_account_data(&claim_address(&ch.key, &w1))
        .await
        .expect("claim");
    let claim = ClaimState::parse(&claim).expect("a claim");
    assert_eq!(
        (claim.claimant, claim.withdrawn, claim.channel),
        (w1, 420, ch.key)
    );
    let s = f.state(&ch).await;
    assert_eq!(
        (s.seq, s.allocated, s.voucher, s.withdrawn, s.root),
        (2, 670, 700, 670, second.root())
    );

    // Hostile roots, each refused by the program.
    let big = Tree::new([(w1, 2_000)]);
    assert_eq!(
        refused(f.publish(&ch, 3, 2_000, &big).await),
        ProgramError::AboveVault
    );
    let third = Tree::new([(w1, 500), (w2, 180), (creator, 70)]);
    assert_eq!(
        refused(f.publish(&ch, 3, 700, &third).await),
        ProgramError::AboveVoucher
    );
    assert_eq!(
        refused(f.publish(&ch, 2, 800, &third).await),
        ProgramError::Sequence
    );
    let smaller = Tree::new([(w1, 10)]);
    assert_eq!(
        refused(f.publish(&ch, 3, 800, &smaller).await),
        ProgramError::TotalDecreased
    );
    let stranger = Keypair::new();
    let by_stranger = f.root(&ch, &f.payer, &ch.key, 800, &stranger, 3, &third);
    assert_eq!(
        refused(f.chain.send(&by_stranger, &[]).await),
        ProgramError::RootSignature
    );
    let forged_voucher = f.root(&ch, &stranger, &ch.key, 800, &f.authority, 3, &third);
    assert_eq!(
        refused(f.chain.send(&forged_voucher, &[]).await),
        ProgramError::VoucherSignature
    );
    let other = f.open(1_000, 3_600).await;
    let foreign_voucher = f.root(&ch, &f.payer, &other.key, 800, &f.authority, 3, &third);
    assert_eq!(
        refused(f.chain.send(&foreign_voucher, &[]).await),
        ProgramError::VoucherSignature
    );
    // Without the precompile instruction before it.
    let bare = ix::publish_root(&ch.key, &ch.vault, 3, third.total(), 800, &third.root());
    assert_eq!(
        refused(f.chain.send(&[bare], &[]).await),
        ProgramError::VoucherSignature
    );
    // Another channel's vault.
    let mut wrong_vault = f.root(&ch, &f.payer, &ch.key, 800, &f.authority, 3, &third);
    wrong_vault[1] = ix::publish_root(&ch.key, &other.vault, 3, third.total(), 800, &third.root());
    assert_eq!(
        refused(f.chain.send(&wrong_vault, &[]).await),
        ProgramError::Vault
    );
    f.publish(&ch, 3, 800, &third)
        .await
        .expect("root 3, the genuine one");

    // Hostile withdrawals.
    let (amount, proof) = third.proof(&w1).expect("leaf");
    assert_eq!(
        refused(f.withdraw_with(&ch, &w1, amount + 1, &proof).await),
        ProgramError::Proof
    );
    let mut forged = proof.clone();
    forged.nodes[0][0] ^= 1;
    assert_eq!(
        refused(f.withdraw_with(&ch, &w1, amount, &forged).await),
        ProgramError::Proof
    );
    let outsider = Pubkey::new_unique();
    assert_eq!(
        refused(f.withdraw_with(&ch, &outsider, amount, &proof).await),
        ProgramError::Proof
    );
    // A destination of another mint.
    let other_mint = f.chain.create_mint(6).await.expect("mint");
    let dest = f.chain.create_ata(&w1, &other_mint).await.expect("ata");
    let w = ix::withdraw(
        &ch.key,
        &ch.vault,
        &w1,
        &dest,
        &f.chain.payer().pubkey(),
        amount,
        CLAIM_RENT,
        &proof,
    );
    assert_eq!(refused(f.chain.send(&[w], &[]).await), ProgramError::Mint);
    // A channel account that is not this program's.
    let fake = f
        .chain
        .create_ata(&Pubkey::new_unique(), &f.mint)
        .await
        .expect("ata");
    let mut w = ix::withdraw(
        &ch.key,
        &ch.vault,
        &w1,
        &get_associated_token_address(&w1, &f.mint),
        &f.chain.payer().pubkey(),
        amount,
        CLAIM_RENT,
        &proof,
    );
    w.accounts[0].pubkey = fake;
    assert_eq!(refused(f.chain.send(&[w], &[]).await), ProgramError::Owner);
    f.withdraw(&ch, &third, &w1).await.expect("w1's last 80");
    assert_eq!(f.balance(&w1).await, 500);

    // Close: not before the grace period.
    f.chain
        .send(
            &[ix::request_close(&ch.key, &f.payer.pubkey())],
            &[&f.payer],
        )
        .await
        .expect("request close");
    let payer_token = get_associated_token_address(&f.payer.pubkey(), &f.mint);
    assert_eq!(
        refused(
            f.chain
                .send(&[ix::close(&ch.key, &ch.vault, &payer_token)], &[])
                .await
        ),
        ProgramError::Grace
    );
    // A stranger cannot request a close.
    let ask = ix::request_close(&other.key, &stranger.pubkey());
    assert_eq!(
        refused(f.chain.send(&[ask], &[&stranger]).await),
        ProgramError::Signer
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_channel_returns_the_remainder_and_its_rent() {
    let f = Fixture::new().await;
    // Opening checks: a vault the payer holds, a mint that is not a mint.
    let channel = Keypair::new();
    let own = get_associated_token_address(&f.payer.pubkey(), &f.mint);
    let ixs = f.open_instructions(&channel, &own, &f.mint, 10, 0);
    assert_eq!(
        refused(f.chain.send(&ixs, &[&f.payer, &channel]).await),
        ProgramError::Vault
    );
    let channel = Keypair::new();
    let (vault_owner, _) = vault_authority(&channel.pubkey());
    let vault = get_associated_token_address(&vault_owner, &f.mint);
    let not_a_mint = f.payer.pubkey();
    let ixs = f.open_instructions(&channel, &vault, &not_a_mint, 10, 0);
    assert_eq!(
        refused(f.chain.send(&ixs, &[&f.payer, &channel]).await),
        ProgramError::Owner
    );

    let before = f.balance(&f.payer.pubkey()).await;
    let ch = f.open(1_000, 0).await;
    let (w1, w2) = (Pubkey::new_unique(), Pubkey::new_unique());
    let tree = Tree::new([(w1, 600), (w2, 150)]);
    f.publish(&ch, 1, 750, &tree).await.expect("root");
    f.withdraw(&ch, &tree, &w1).await.expect("w1");
    // Reclaiming before the close, or a claim that still holds funds, is refused.
    let (a1, p1) = tree.proof(&w1).expect("leaf");
    let rent_payer = f.chain.payer().pubkey();
    let reclaim = ix::reclaim_claim(&ch.key, &w1, &rent_payer, a1, &p1);
    assert_eq!(
        refused(f.chain.send(std::slice::from_ref(&reclaim), &[]).await),
        ProgramError::NotClosed
    );

    f.chain
        .send(
            &[ix::request_close(&ch.key, &f.authority.pubkey())],
            &[&f.authority],
        )
        .await
        .expect("close request");
    let payer_token = get_associated_token_address(&f.payer.pubkey(), &f.mint);
    f.chain
        .send(&[ix::close(&ch.key, &ch.vault, &payer_token)], &[])
        .await
        .expect("close");
    assert_eq!(f.state(&ch).await.stage, ChannelStage::Closed);
    // The payer got back what no root allocated: 1,000 - 750.
    assert_eq!(f.balance(&f.payer.pubkey()).await, before - 1_000 + 250);
    assert_eq!(
        refused(f.publish(&ch, 2, 800, &tree).await),
        ProgramError::Closed
    );
    // No claim's rent comes back while another claimant's allocation is still in the vault.
    assert_eq!(
        refused(f.chain.send(std::slice::from_ref(&reclaim), &[]).await),
        ProgramError::HoldsFunds
    );
    // Claimants still withdraw after the close.
    f.withdraw(&ch, &tree, &w2)
        .await
        .expect("w2 after the close");
    assert_eq!((f.balance(&w1).await, f.balance(&w2).await), (600, 150));

    // Rent: each claim back to whoever paid it, then the vault and the channel to the payer.
    let (a2, p2) = tree.proof(&w2).expect("leaf");
    let wrong = ix::reclaim_claim(&ch.key, &w2, &rent_payer, a2 - 1, &p2);
    assert_eq!(
        refused(f.chain.send(&[wrong], &[]).await),
        ProgramError::Proof
    );
    f.chain
        .send(&[reclaim], &[])
        .await
        .expect("reclaim w1's claim");
    f.chain
        .send(
            &[ix::reclaim_claim(&ch.key, &w2, &rent_payer, a2, &p2)],
            &[],
        )
        .await
        .expect("reclaim w2's claim");
    let rpc = f.chain.rpc();
    assert!(
        rpc.get_account(&claim_address(&ch.key, &w1)).await.is_err(),
        "claim closed"
    );
    // A withdrawal creating w1's claim again finds nothing left to take.
    assert_eq!(
        refused(f.withdraw(&ch, &tree, &w1).await),
        ProgramError::AboveAllocation
    );
    // The channel's and the vault's rent go to the authority, not to the payer (who did not
    // pay them at a gateway, and would otherwise profit from opening and closing channels).
    assert_eq!(
        refused(
            f.chain
                .send(
                    &[ix::reclaim_channel(&ch.key, &ch.vault, &f.payer.pubkey())],
                    &[],
                )
                .await
        ),
        ProgramError::Account
    );
    let lamports_before = f
        .chain
        .sol_balance(&f.authority.pubkey())
        .await
        .expect("sol");
    f.chain
        .send(
            &[ix::reclaim_channel(
                &ch.key,
                &ch.vault,
                &f.authority.pubkey(),
            )],
            &[],
        )
        .await
        .expect("reclaim channel");
    assert!(rpc.get_account(&ch.key).await.is_err(), "channel closed");
    assert!(rpc.get_account(&ch.vault).await.is_err(), "vault closed");
    assert!(
        f.chain
            .sol_balance(&f.authority.pubkey())
            .await
            .expect("sol")
            > lamports_before + 2_000_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_never_exceed_the_roots_total_whatever_its_leaves_say() {
    let f = Fixture::new().await;
    let ch = f.open(1_000, 0).await;
    let (w1, w2) = (Pubkey::new_unique(), Pubkey::new_unique());
    // The authority signs a total of 100 over leaves adding up to 160.
    let tree = Tree::new([(w1, 80), (w2, 80)]);
    let vm = ix::voucher_message(&ch.key, 100);
    let rm = ix::root_message(&ch.key, 1, 100, &tree.root());
    let ixs = [
        ix::ed25519_instruction(&[
            Signed {
                signer: f.payer.pubkey(),
                signature: sign(&f.payer, &vm),
                message: &vm,
            },
            Signed {
                signer: f.authority.pubkey(),
                signature: sign(&f.authority, &rm),
                message: &rm,
            },
        ]),
        ix::publish_root(&ch.key, &ch.vault, 1, 100, 100, &tree.root()),
    ];
    f.chain.send(&ixs, &[]).await.expect("root");
    f.withdraw(&ch, &tree, &w1).await.expect("w1");
    assert_eq!(
        refused(f.withdraw(&ch, &tree, &w2).await),
        ProgramError::AboveAllocation
    );
    assert_eq!((f.balance(&w1).await, f.balance(&w2).await), (80, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_still_holding_funds_is_not_reclaimed() {
    let f = Fixture::new().await;
    let ch = f.open(500, 0).await;
    let w1 = Pubkey::new_unique();
    let tree = Tree::new([(w1, 200)]);
    f.publish(&ch, 1, 200, &tree).await.expect("root");
    f.chain
        .send(
            &[ix::request_close(&ch.key, &f.payer.pubkey())],
            &[&f.payer],
        )
        .await
        .expect("request");
    let payer_token = get_associated_token_address(&f.payer.pubkey(), &f.mint);
    f.chain
        .send(&[ix::close(&ch.key, &ch.vault, &payer_token)], &[])
        .await
        .expect("close");
    // w1 has not withdrawn its 200: the vault holds it, and the channel cannot be reclaimed.
    let r = f
        .chain
        .send(
            &[ix::reclaim_channel(
                &ch.key,
                &ch.vault,
                &f.authority.pubkey(),
            )],
            &[],
        )
        .await;
    assert_eq!(refused(r), ProgramError::HoldsFunds);
    // Someone funds w1's claim address first (a system account CreateAccount would refuse):
    // the program adopts it and w1 still withdraws.
    f.chain
        .fund_sol(&claim_address(&ch.key, &w1), 1_000_000)
        .await
        .expect("pre-fund");
    f.withdraw(&ch, &tree, &w1).await.expect("w1");
    let claim = f
        .chain
        .rpc()
        .get_account(&claim_address(&ch.key, &w1))
        .await
        .expect("claim");
    assert_eq!(claim.owner, ID);
    assert_eq!(
        ClaimState::parse(&claim.data).map(|c| c.withdrawn),
        Some(200)
    );
    assert_eq!(f.balance(&w1).await, 200);
}

/// Compute units of each instruction in its own transaction (with the token program's and the
/// system program's CPIs it makes), for BENCHMARKS.md:
/// `cargo test -p d402-solana-chain --test program compute_units -- --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_units_per_instruction() {
    let f = Fixture::new().await;
    let channel = Keypair::new();
    let (vault_owner, _) = vault_authority(&channel.pubkey());
    let vault = get_associated_token_address(&vault_owner, &f.mint);
    let mut rows = Vec::new();
    let opening = f.open_instructions(&channel, &vault, &f.mint, 1_000, 0);
    let whole = f.measured(&opening, &[&f.payer, &channel]).await;
    rows.push(("Open (with create account, vault ATA, deposit)", whole));
    let ch = Channel {
        key: channel.pubkey(),
        vault,
    };
    let claimants: Vec<Pubkey> = (0..16).map(|_| Pubkey::new_unique()).collect();
    let tree = Tree::new(claimants.iter().map(|w| (*w, 10)));
    let root = f.root(&ch, &f.payer, &ch.key, 160, &f.authority, 1, &tree);
    rows.push((
        "PublishRoot (two Ed25519 signatures)",
        f.measured(&root, &[]).await,
    ));
    let who = claimants[3];
    let dest = f.chain.create_ata(&who, &f.mint).await.expect("ata");
    let (amount, proof) = tree.proof(&who).expect("leaf");
    let fee_payer = f.chain.payer().pubkey();
    let w = ix::withdraw(
        &ch.key, &ch.vault, &who, &dest, &fee_payer, amount, CLAIM_RENT, &proof,
    );
    rows.push((
        "Withdraw, first (creates the claim; 16 claimants, 4 proof nodes)",
        f.measured(&[w], &[]).await,
    ));
    let tree2 = Tree::new(claimants.iter().map(|w| (*w, 20)));
    let root2 = f.root(&ch, &f.payer, &ch.key, 320, &f.authority, 2, &tree2);
    f.measured(&root2, &[]).await;
    let (amount, proof) = tree2.proof(&who).expect("leaf");
    let w = ix::withdraw(
        &ch.key, &ch.vault, &who, &dest, &fee_payer, amount, CLAIM_RENT, &proof,
    );
    rows.push(("Withdraw, later", f.measured(&[w], &[]).await));
    let ask = ix::request_close(&ch.key, &f.payer.pubkey());
    rows.push(("RequestClose", f.measured(&[ask], &[&f.payer]).await));
    let payer_token = get_associated_token_address(&f.payer.pubkey(), &f.mint);
    rows.push((
        "Close (returns the remainder)",
        f.measured(&[ix::close(&ch.key, &ch.vault, &payer_token)], &[])
            .await,
    ));
    // A claim's rent comes back once everything allocated was withdrawn.
    for other in claimants.iter().filter(|c| **c != who) {
        f.withdraw(&ch, &tree2, other).await.expect("withdraw");
    }
    let reclaim = ix::reclaim_claim(&ch.key, &who, &fee_payer, amount, &proof);
    rows.push(("ReclaimClaim", f.measured(&[reclaim], &[]).await));
    println!("| instruction | compute units |\n|---|---:|");
    for (name, units) in rows {
        assert!(units > 0 && units < 200_000, "{name}: {units}");
        println!("| {name} | {units} |");
    }
}
