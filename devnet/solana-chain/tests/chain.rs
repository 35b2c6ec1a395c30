//! The harness against itself: a validator starts, a USDC-like mint works, balances read back.

use d402_solana_chain::SolanaChain;
use solana_signer::Signer;

#[test]
fn starts_mints_and_reads_balances() {
    let started = std::time::Instant::now();
    let chain = SolanaChain::start().expect("validator starts");
    eprintln!(
        "validator started in {:?} at {}",
        started.elapsed(),
        chain.rpc_url()
    );
    assert!(chain.caip2().starts_with("solana:"));
    assert_eq!(chain.caip2().len(), "solana:".len() + 32);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let usdc = chain.create_mint(6).await.expect("mint");
        let buyer = chain.funded_keypair(1_000_000_000).await.expect("funded");
        assert_eq!(
            chain.sol_balance(&buyer.pubkey()).await.expect("sol"),
            1_000_000_000
        );
        assert_eq!(
            chain
                .token_balance_of(&buyer.pubkey(), &usdc)
                .await
                .expect("bal"),
            0
        );
        chain
            .mint_to(&usdc, &buyer.pubkey(), 5_000_000)
            .await
            .expect("mint_to");
        assert_eq!(
            chain
                .token_balance_of(&buyer.pubkey(), &usdc)
                .await
                .expect("bal"),
            5_000_000
        );
    });
}
