#!/usr/bin/env bash
# Installs what d402's build and tests need, idempotently. Safe to run again: every step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed (install Rust with rustup first)" >&2
  exit 1
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  say "adding the wasm32-wasip2 target (capabilities are built for it)"
  rustup target add wasm32-wasip2
fi

# The determinism tests and benchmarks use the Rust documentation that ships with the toolchain as a
# corpus of real HTML pages.
if [ ! -d "$(rustc --print sysroot)/share/doc/rust/html/book" ]; then
  say "adding the rust-docs component (a corpus of real HTML pages for the tests)"
  rustup component add rust-docs
fi

# The snapshotter drives Debian's Chromium (tests use the real browser).
if ! command -v chromium >/dev/null 2>&1; then
  say "installing Chromium from Debian (the snapshotter's browser)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  if ! $sudo apt-get install -y -qq --no-install-recommends chromium; then
    # An interrupted earlier install leaves dpkg half-configured; mend it and try once more.
    $sudo dpkg --configure -a || true
    $sudo apt-get -f install -y -qq
    $sudo apt-get install -y -qq --no-install-recommends chromium
  fi
fi

# The EVM rails' tests run a real chain (anvil) and check the contracts' bytecode with the pinned
# Solidity compiler (solcjs); both come from npm, pinned in rails/contracts/package.json and its
# lock file, and are installed outside the clone, under $D402_TOOLS.
D402_TOOLS="${D402_TOOLS:-$HOME/.cache/d402-tools}"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "installing node.js and npm from Debian (for anvil and solc from npm)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends nodejs npm
fi
if ! cmp -s rails/contracts/package-lock.json "$D402_TOOLS/package-lock.json" \
   || [ ! -x "$D402_TOOLS/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" ] \
   || [ ! -f "$D402_TOOLS/node_modules/solc/soljson.js" ]; then
  say "installing anvil and solc from npm into $D402_TOOLS (pinned in rails/contracts/package.json)"
  mkdir -p "$D402_TOOLS"
  cp rails/contracts/package.json rails/contracts/package-lock.json "$D402_TOOLS/"
  (cd "$D402_TOOLS" && npm ci --no-audit --no-fund --silent)
fi

# The x402 interoperability test (cli/tests/x402_interop.rs) pays the gateway with the stock
# x402 v2 client from npm (@x402/fetch, @x402/evm, viem), pinned in tests/x402-interop/package.json
# and its lock file, installed outside the clone like anvil.
X402_INTEROP="$D402_TOOLS/x402-interop"
if ! cmp -s tests/x402-interop/package-lock.json "$X402_INTEROP/package-lock.json" \
   || [ ! -f "$X402_INTEROP/node_modules/@x402/fetch/package.json" ] \
   || [ ! -f "$X402_INTEROP/node_modules/@x402/evm/package.json" ]; then
  say "installing the stock x402 client from npm into $X402_INTEROP (pinned in tests/x402-interop)"
  mkdir -p "$X402_INTEROP"
  cp tests/x402-interop/package.json tests/x402-interop/package-lock.json "$X402_INTEROP/"
  (cd "$X402_INTEROP" && npm ci --no-audit --no-fund --silent)
fi

# The Solana test validator (devnet/solana-chain) builds rocksdb, whose bindings need libclang.
if ! dpkg -s libclang-dev >/dev/null 2>&1 || ! command -v clang >/dev/null 2>&1; then
  say "installing clang and libclang-dev from Debian (rocksdb bindings of the Solana test validator)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  if ! $sudo apt-get install -y -qq --no-install-recommends clang libclang-dev; then
    $sudo dpkg --configure -a || true
    $sudo apt-get -f install -y -qq
    $sudo apt-get install -y -qq --no-install-recommends clang libclang-dev
  fi
fi

# The API fuzz (cli/tests/openapi.rs) runs schemathesis and openapi-spec-validator from PyPI,
# every package pinned in tests/api-fuzz/requirements.txt, in a virtualenv under $D402_TOOLS/py.
# The copy of the requirements kept in the virtualenv says what it holds: the same file does
# nothing, a changed one rebuilds it from scratch (so that a dropped pin does not linger).
API_FUZZ_REQUIREMENTS=tests/api-fuzz/requirements.txt
API_FUZZ_VENV="$D402_TOOLS/py"
if ! cmp -s "$API_FUZZ_REQUIREMENTS" "$API_FUZZ_VENV/requirements.txt" \
   || [ ! -x "$API_FUZZ_VENV/bin/schemathesis" ] \
   || [ ! -x "$API_FUZZ_VENV/bin/openapi-spec-validator" ] \
   || ! "$API_FUZZ_VENV/bin/python" -c '' >/dev/null 2>&1; then
  say "installing schemathesis and openapi-spec-validator from PyPI into $API_FUZZ_VENV (pinned in $API_FUZZ_REQUIREMENTS)"
  mkdir -p "$D402_TOOLS"
  rm -rf "$API_FUZZ_VENV"
  if ! python3 -m venv "$API_FUZZ_VENV" >/dev/null 2>&1; then
    # Debian ships venv (and the pip it bootstraps) apart from python3 itself.
    say "installing python3-venv from Debian (for the API fuzz's virtualenv)"
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends python3 python3-venv
    rm -rf "$API_FUZZ_VENV"
    python3 -m venv "$API_FUZZ_VENV"
  fi
  "$API_FUZZ_VENV/bin/python" -m pip install --quiet --no-input --disable-pip-version-check \
    -r "$API_FUZZ_REQUIREMENTS"
  cp "$API_FUZZ_REQUIREMENTS" "$API_FUZZ_VENV/requirements.txt"
fi

# The benchmarks compare against turndown under node; only fetched when asked for.
if [ "${D402_SETUP_BENCH:-0}" = 1 ]; then
  if ! command -v node >/dev/null 2>&1; then
    say "installing node.js (for the turndown baseline)"
    apt-get update -qq && apt-get install -y -qq nodejs npm
  fi
  if [ ! -d bench/turndown/node_modules/turndown ]; then
    say "installing turndown from npm (benchmark baseline)"
    (cd bench/turndown && npm ci --no-audit --no-fund --silent)
  fi
  # cli/benches/x402_express.rs: the stock x402 v2 express server, facilitator and client
  # (@x402/express, @x402/core, @x402/evm, @x402/fetch, viem, turndown), pinned in
  # bench/x402-express/package.json and its lock file, installed outside the clone like anvil.
  X402_EXPRESS="$D402_TOOLS/x402-express"
  if ! cmp -s bench/x402-express/package-lock.json "$X402_EXPRESS/package-lock.json" \
     || [ ! -f "$X402_EXPRESS/node_modules/@x402/express/package.json" ] \
     || [ ! -f "$X402_EXPRESS/node_modules/turndown/package.json" ]; then
    say "installing the stock x402 express server and client from npm into $X402_EXPRESS (pinned in bench/x402-express)"
    mkdir -p "$X402_EXPRESS"
    cp bench/x402-express/package.json bench/x402-express/package-lock.json "$X402_EXPRESS/"
    (cd "$X402_EXPRESS" && npm ci --no-audit --no-fund --silent)
  fi
fi
