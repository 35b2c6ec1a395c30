//! `d402-program`'s task escrow on the real test validator: an escrow opened over a funded vault,
//! released by the validator's signature to workers, creator and gateway to the unit, or refunded
//! to the buyer once the deadline passed by the chain's clock; and every hostile instruction
//! (a release not signed by the validator, for other workers, after the deadline, twice; a refund
//! before the deadline or to someone else; an opening over too little money, a foreign vault, an
//! oversized split) refused with its own error.

use std::time::Duration;

use d402_program::channel::vault_authority;
use d402_program::escrow::{ESCROW_LEN, EscrowState, escrow_address};
use d402_program::instruction::{self as ix, EscrowOpen, Signed};
use d402_program::{ID, ProgramError};
use d402_solana_chain::{ChainError, SolanaChain, TOKEN_PROGRAM_ID};
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;
use spl_associated_token_account_interface::address::get_associated_token_address;
use spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent;

/// (128 + 272) bytes at the default rent.
const ESCROW_RENT: u64 = 2_784_000;

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

struct Fixture {
    chain: SolanaChain,
    mint: Pubkey,
    buyer: Keypair,
    validator: Keypair,
    creator: Pubkey,
    gateway: Pubkey,
}

/// One escrow's addresses and terms.
struct Escrow {
    key: Pubkey,
    seed: String,
    open: EscrowOpen,
}

impl Fixture {
    async fn new() -> Self {
        let chain = SolanaChain::start().expect("validator");
        let mint = chain.create_mint(6).await.expect("mint");
        let buyer = chain.funded_keypair(100_000_000).await.expect("buyer");
        chain
            .mint_to(&mint, &buyer.pubkey(), 100_000)
            .await
            .expect("tokens");
        let (creator, gateway) = (Pubkey::new_unique(), Pubkey::new_unique());
        let creator = chain.create_ata(&creator, &mint).await.expect("creator");
        let gateway = chain.create_ata(&gateway, &mint).await.expect("gateway");
        Fixture {
            chain,
            mint,
            buyer,
            validator: Keypair::new(),
            creator,
            gateway,
        }
    }

    async fn chain_time(&self) -> i64 {
        let rpc = self.chain.rpc();
        let slot = rpc.get_slot().await.expect("slot");
        rpc.get_block_time(slot).await.expect("time")
    }

    async fn wait_past(&self, deadline: i64) {
        for _ in 0..60 {
            if self.chain_time().await > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("the chain's clock did not pass {deadline}");
    }

    /// The terms of a new escrow of `amount` with the given shares, its deadline `secs` away.
    async fn terms(&self, amount: u64, creator: u64, gateway: u64, secs: i64) -> Escrow {
        let seed = format!("{:032x}", rand_u128());
        let rent_payer = self.chain.payer().pubkey();
        let key = escrow_address(&rent_payer, &seed);
        let vault = get_associated_token_address(&vault_authority(&key).0, &self.mint);
        Escrow {
            key,
            seed,
            open: EscrowOpen {
                escrow: key,
                buyer: self.buyer.pubkey(),
                vault,
                validator: self.validator.pubkey(),
                mint: self.mint,
                creator_token: self.creator,
                gateway_token: self.gateway,
                rent_payer,
                deadline: self.chain_time().await + secs,
                amount,
                creator_amount: creator,
                gateway_amount: gateway,
            },
        }
    }

    /// The funding transaction's instructions: the escrow account, the vault, the buyer's
    /// transfer of `deposit`, then EscrowOpen.
    fn funding(&self, e: &Escrow, deposit: u64) -> Vec<Instruction> {
        let fee_payer = self.chain.payer().pubkey();
        let owner = vault_authority(&e.key).0;
        vec![
            solana_system_interface::instruction::create_account_with_seed(
                &fee_payer,
                &e.key,
                &fee_payer,
                &e.seed,
                ESCROW_RENT,
                ESCROW_LEN as u64,
                &ID,
            ),
            create_associated_token_account_idempotent(
                &fee_payer,
                &owner,
                &self.mint,
                &TOKEN_PROGRAM_ID,
            ),
            spl_token_interface::instruction::transfer(
                &TOKEN_PROGRAM_ID,
                &get_associated_token_address(&self.buyer.pubkey(), &self.mint),
                &get_associated_token_address(&owner, &self.mint),
                &self.buyer.pubkey(),
                &[],
                deposit,
            )
            .expect("transfer"),
            ix::escrow_open(&e.open),
        ]
    }

    async fn open(&self, e: &Escrow) -> Result<(), ChainError> {
        let ixs = self.funding(e, e.open.amount);
        self.chain.send(&ixs, &[&self.buyer]).await.map(drop)
    }

    async fn state(&self, e: &Escrow) -> EscrowState {
        let data = self
            .chain
            .rpc()
            .get_account_data(&e.key)
            .await
            .expect("escrow");
        EscrowState::parse(&data).expect("an open escrow")
    }

    /// The release instructions: `signer`'s signature over `signed` workers, paying `paid`.
    fn release(
        &self,
        e: &Escrow,
        state: &EscrowState,
        signer: &Keypair,
        signed: &[Pubkey],
        paid: &[Pubkey],
    ) -> Vec<Instruction> {
        let message = ix::release_message(&e.key, signed);
        vec![
            ix::ed25519_instruction(&[Signed {
                signer: signer.pubkey(),
                signature: signer.sign_message(&message).into(),
                message: &message,
            }]),
            ix::escrow_release(&e.key, state, paid),
        ]
    }

    async fn balance(&self, token: &Pubkey) -> u64 {
        self.chain
            .token_balance(token)
            .await
            .expect("balance")
            .unwrap_or(0)
    }
}

fn rand_u128() -> u128 {
    u128::from_le_bytes(
        Pubkey::new_unique().to_bytes()[..16]
            .try_into()
            .expect("16"),
    ) ^ std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_signed_by_the_validator_pays_the_split_and_nothing_else_moves_it() {
    let f = Fixture::new().await;
    let workers: Vec<Pubkey> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            v.push(
                f.chain
                    .create_ata(&Pubkey::new_unique(), &f.mint)
                    .await
                    .expect("worker"),
            );
        }
        v
    };
    let other = f
        .chain
        .create_ata(&Pubkey::new_unique(), &f.mint)
        .await
        .expect("ata");
    let rent_payer = f.chain.payer().pubkey();
    let e = f.terms(10_001, 1_000, 500, 120).await;
    let lamports_before = f.chain.sol_balance(&rent_payer).await.expect("sol");
    f.open(&e).await.expect("open");
    let state = f.state(&e).await;
    assert_eq!(state.amount, 10_001);
    assert_eq!(state.validator, f.validator.pubkey());
    assert_eq!(f.balance(&e.open.vault).await, 10_001);
    // Opening it again is refused: the escrow is recorded once.
    assert_eq!(
        refused(f.chain.send(&[ix::escrow_open(&e.open)], &[&f.buyer]).await),
        ProgramError::Escrow
    );

    // A release not signed by the validator (the gateway's own key, say) is refused.
    let gateway_key = Keypair::new();
    let forged = f.release(&e, &state, &gateway_key, &workers, &workers);
    assert_eq!(
        refused(f.chain.send(&forged, &[]).await),
        ProgramError::ReleaseSignature
    );
    // The validator's signature for other workers does not pay these.
    let swapped = f.release(&e, &state, &f.validator, &workers, &[workers[0], other]);
    assert_eq!(
        refused(f.chain.send(&swapped, &[]).await),
        ProgramError::ReleaseSignature
    );
    // Without the precompile at all.
    assert_eq!(
        refused(
            f.chain
                .send(&[ix::escrow_release(&e.key, &state, &workers)], &[])
                .await
        ),
        ProgramError::ReleaseSignature
    );
    // A refund before the deadline is refused.
    let buyer_token = get_associated_token_address(&f.buyer.pubkey(), &f.mint);
    assert_eq!(
        refused(
            f.chain
                .send(&[ix::escrow_refund(&e.key, &state, &buyer_token)], &[])
                .await
        ),
        ProgramError::BeforeDeadline
    );
    assert_eq!(f.balance(&e.open.vault).await, 10_001, "nothing moved");

    // The validator's release: workers share 8,501 (4,251 + 4,250), creator 1,000, gateway 500.
    let release = f.release(&e, &state, &f.validator, &workers, &workers);
    f.chain.send(&release, &[]).await.expect("release");
    assert_eq!(f.balance(&workers[0]).await, 4_251);
    assert_eq!(f.balance(&workers[1]).await, 4_250);
    assert_eq!(f.balance(&f.creator).await, 1_000);
    assert_eq!(f.balance(&f.gateway).await, 500);
    // The escrow and the vault are gone; their rent went back to the rent payer (who paid the
    // transaction fees meanwhile: the rent is back to within those).
    let rpc = f.chain.rpc();
    assert!(rpc.get_account(&e.key).await.is_err());
    assert!(rpc.get_account(&e.open.vault).await.is_err());
    let lamports_after = f.chain.sol_balance(&rent_payer).await.expect("sol");
    assert!(
        lamports_before - lamports_after < 100_000,
        "rent returned: {lamports_before} -> {lamports_after}"
    );
    // A second release (replayed) or a refund finds no escrow.
    assert_eq!(
        refused(f.chain.send(&release, &[]).await),
        ProgramError::Owner
    );
    assert_eq!(
        refused(
            f.chain
                .send(&[ix::escrow_refund(&e.key, &state, &buyer_token)], &[])
                .await
        ),
        ProgramError::Owner
    );
    assert_eq!(f.balance(&workers[0]).await, 4_251, "paid once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_deadline_only_the_buyer_is_refunded_and_hostile_openings_fail() {
    let f = Fixture::new().await;
    let buyer_token = get_associated_token_address(&f.buyer.pubkey(), &f.mint);
    let start = f.balance(&buyer_token).await;

    // Openings the program refuses, each with its own error; nothing is taken from the buyer.
    let e = f.terms(1_000, 0, 0, 60).await;
    let short = f.funding(&e, 999);
    assert_eq!(
        refused(f.chain.send(&short, &[&f.buyer]).await),
        ProgramError::Underfunded
    );
    let e = f.terms(1_000, 700, 400, 60).await;
    assert_eq!(refused(f.open(&e).await), ProgramError::Split);
    let mut e = f.terms(1_000, 0, 0, 60).await;
    e.open.creator_token = e.open.vault;
    assert_eq!(refused(f.open(&e).await), ProgramError::Account);
    let mut e = f.terms(1_000, 0, 0, 60).await;
    // A vault the buyer holds, not the escrow's PDA.
    e.open.vault = buyer_token;
    let mut ixs = f.funding(&e, 1_000);
    ixs.remove(2);
    assert_eq!(
        refused(f.chain.send(&ixs, &[&f.buyer]).await),
        ProgramError::Vault
    );
    assert_eq!(f.balance(&buyer_token).await, start);

    // A task that fails: its escrow runs to the deadline.
    let e = f.terms(2_000, 200, 100, 3).await;
    f.open(&e).await.expect("open");
    let state = f.state(&e).await;
    assert_eq!(f.balance(&buyer_token).await, start - 2_000);
    f.wait_past(state.deadline).await;
    // Too late to release, even with the validator's signature.
    let worker = f
        .chain
        .create_ata(&Pubkey::new_unique(), &f.mint)
        .await
        .expect("ata");
    let release = f.release(&e, &state, &f.validator, &[worker], &[worker]);
    assert_eq!(
        refused(f.chain.send(&release, &[]).await),
        ProgramError::DeadlinePassed
    );
    // A refund to a token account that is not the buyer's.
    assert_eq!(
        refused(
            f.chain
                .send(&[ix::escrow_refund(&e.key, &state, &worker)], &[])
                .await
        ),
        ProgramError::Account
    );
    // Anyone may send the refund; the buyer gets everything back.
    f.chain
        .send(&[ix::escrow_refund(&e.key, &state, &buyer_token)], &[])
        .await
        .expect("refund");
    assert_eq!(f.balance(&buyer_token).await, start);
    assert_eq!(f.balance(&worker).await, 0);
    assert!(f.chain.rpc().get_account(&e.key).await.is_err());
    assert_eq!(
        refused(
            f.chain
                .send(&[ix::escrow_refund(&e.key, &state, &buyer_token)], &[])
                .await
        ),
        ProgramError::Owner
    );
}
