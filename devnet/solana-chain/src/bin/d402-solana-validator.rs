//! Runs a d402 test validator (see the `d402-solana-chain` crate) until stdin closes, after printing
//! `rpc <url>`, `genesis <hash>` and `payer <hex secret>` lines on stdout for the parent test.

use std::io::{Read, Write};

fn main() -> std::process::ExitCode {
    let chain = match d402_solana_chain::SolanaChain::start_in_process() {
        Ok(chain) => chain,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if out.write_all(chain.announcement().as_bytes()).is_err() || out.flush().is_err() {
        return std::process::ExitCode::FAILURE;
    }
    drop(out);
    // Block until the parent closes our stdin (or dies), then drop the chain: ledger removed.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(chain);
    std::process::ExitCode::SUCCESS
}
