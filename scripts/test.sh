#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The Solana rails' tests start the test validator as a child process (devnet/solana-chain): build it
# first, on its own, so that agave's features never unify with the rest of the workspace.
cargo build --locked -p d402-solana-chain --features validator --bin d402-solana-validator
exec cargo test --workspace --locked "$@"
