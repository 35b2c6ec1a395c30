#!/usr/bin/env bash
# A smaller job than the devnet (scripts/devnet.sh): build the d402 CLI and the web.page_to_markdown@1
# component, run it on a page of the Rust book that ships with the toolchain, then replay the run
# from its receipt and evidence alone, and check that output and fuel match.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
target=${CARGO_TARGET_DIR:-target}
state=.d402/demo
mkdir -p "$state"

printf '==> building the d402 CLI and the web.page_to_markdown@1 component\n' >&2
cargo build --release --locked -p d402
cargo build --release --locked --target wasm32-wasip2 -p d402-cap-page-to-markdown
d402="$target/release/d402"
wasm="$target/wasm32-wasip2/release/d402_cap_page_to_markdown.wasm"
page="$(rustc --print sysroot)/share/doc/rust/html/book/ch01-01-installation.html"
url="https://doc.rust-lang.org/book/ch01-01-installation.html"

printf '==> running it on %s (frozen from %s)\n' "$url" "$page" >&2
"$d402" run --wasm "$wasm" --state "$state" \
  --capability web.page_to_markdown@1 --canonicalizer normalized-text \
  --input "{\"url\": \"$url\"}" --snapshot "$url=$page" > "$state/run.json"
head -c 1500 "$state/run.json"; printf '\n...\n(full report in %s)\n' "$state/run.json"

printf '==> replaying the receipt from its evidence (no network)\n' >&2
"$d402" run --replay "$state/run.json" --state "$state" > "$state/replay.json"
grep -m1 '"match"' "$state/replay.json"
