#!/usr/bin/env bash
# The main job: the whole d402 market on this machine. Installs what it needs (scripts/setup.sh),
# builds the d402 CLI and the Solana test validator, then runs `d402 devnet`: local anvil and
# Solana chains, a bootstrap, a gateway, three workers and a validator, and a paying client.
# Arguments are passed on, e.g. `scripts/devnet.sh --keep-running`. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
target=${CARGO_TARGET_DIR:-target}

printf '==> building the Solana test validator and the d402 CLI (the first build takes a while)\n' >&2
# Built on its own so that agave's features never unify with the rest of the workspace.
cargo build --locked -p d402-solana-chain --features validator --bin d402-solana-validator
cargo build --locked -p d402 --bin d402
exec "$target/debug/d402" devnet "$@"
