// The baseline x402 seller for cli/benches/x402_express.rs: an express app behind the stock
// x402 v2 payment middleware (`@x402/express`), paid through the stock facilitator
// (`@x402/core`'s `x402Facilitator` with `@x402/evm`'s `exact` EIP-3009 scheme) that settles on the
// given chain with the key it is handed. Nothing here knows d402.
//
//   node server.mjs --rpc http://127.0.0.1:8545 --chain-id 31337 \
//     --asset 0x<token> --asset-name "Test USD" --asset-version 2 --price 10000 \
//     --facilitator-key 0x<key> --pay-to 0x<address> [--pages pages.json] [--port 0]
//
// Routes, each sold at `--price` atomic units of `--asset`:
// - `POST /merkle` takes `merkle.verify_proof@1`'s input ({leaf, proof, root}, hex) and answers
//   {valid, computedRoot}, computed the same way (RFC 6962: SHA-256, 0x00 before a leaf, 0x01
//   before two children).
// - `POST /markdown` takes {url} and answers {markdown}: the page frozen beforehand for that URL
//   (`--pages`: a JSON object mapping URLs to HTML files, read once at start) converted by turndown.
//
// The facilitator runs in process (no HTTP hop to it): the cheapest stock arrangement, so the
// baseline is not slowed by a transport the d402 gateway does not pay either.
//
// `--scheme batch-settlement` sells the same routes on x402's `batch-settlement` scheme instead:
// `@x402/evm`'s batch-settlement server scheme and facilitator (in process, the facilitator key
// being the receiver authorizer too), on the settlement contract at the scheme's canonical address
// (and Multicall3's `tryAggregate` at its usual one, which the facilitator reads through).
// `POST /admin/claim` (not sold) claims every voucher and sweeps the claim to `--pay-to`, and
// answers {claims, settle}: the transactions it took.
//
// Prints one JSON line on stdout once it listens: {"url": "http://127.0.0.1:PORT"}.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import express from "express";
import TurndownService from "turndown";
import { concat, createWalletClient, http, numberToHex, publicActions } from "viem";
import { privateKeyToAccount, nonceManager } from "viem/accounts";
import { foundry } from "viem/chains";
import { x402Facilitator } from "@x402/core/facilitator";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme as ExactEvmFacilitatorScheme } from "@x402/evm/exact/facilitator";
import { ExactEvmScheme as ExactEvmServerScheme } from "@x402/evm/exact/server";
import { BatchSettlementEvmScheme as BatchFacilitatorScheme } from "@x402/evm/batch-settlement/facilitator";
import {
  BatchSettlementChannelManager,
  BatchSettlementEvmScheme as BatchServerScheme,
} from "@x402/evm/batch-settlement/server";

const { values: args } = parseArgs({
  options: {
    rpc: { type: "string" },
    "chain-id": { type: "string", default: "31337" },
    asset: { type: "string" },
    "asset-name": { type: "string", default: "Test USD" },
    "asset-version": { type: "string", default: "2" },
    price: { type: "string", default: "10000" },
    "facilitator-key": { type: "string" },
    "pay-to": { type: "string" },
    pages: { type: "string" },
    port: { type: "string", default: "0" },
    "polling-ms": { type: "string", default: "100" },
    scheme: { type: "string", default: "exact" },
    "withdraw-delay": { type: "string", default: "900" },
    "min-deposit": { type: "string" },
  },
  strict: true,
});
for (const required of ["rpc", "asset", "facilitator-key", "pay-to"]) {
  if (!args[required]) {
    console.error(`missing --${required}`);
    process.exit(2);
  }
}
const network = `eip155:${args["chain-id"]}`;

// The facilitator's wallet. viem's nonce manager hands out nonces locally, so that concurrent
// settlements from the one facilitator account do not race for the same nonce. The polling
// interval is how often viem looks for a receipt; its default (4 s for a chain without a block
// time) would be a sleep against an auto-mining anvil, not a cost of x402.
const account = privateKeyToAccount(args["facilitator-key"], { nonceManager });
const chain = { ...foundry, id: Number(args["chain-id"]) };
const wallet = createWalletClient({
  account,
  chain,
  transport: http(args.rpc),
  pollingInterval: Number(args["polling-ms"]),
}).extend(publicActions);
// d402's test token (rails/contracts/TestUsd.sol) has EIP-3009's `bytes signature` form of
// `transferWithAuthorization` only; USDC also has the `(v, r, s)` form, which the stock
// facilitator calls for a plain 65-byte signature. The signer (the part a facilitator operator
// writes) re-packs (v, r, s) as the 65 bytes r‖s‖v, the form the facilitator itself sends for any
// other signature: the same call, the same checks on chain.
const packed = (a) => {
  if (a.functionName !== "transferWithAuthorization" || a.args?.length !== 9) {
    return { ...a, args: a.args || [] };
  }
  const [v, r, s] = a.args.slice(6);
  const v27 = Number(v) < 27 ? Number(v) + 27 : Number(v);
  return { ...a, args: [...a.args.slice(0, 6), concat([r, s, numberToHex(v27, { size: 1 })])] };
};
const signer = toFacilitatorEvmSigner({
  address: account.address,
  getCode: (a) => wallet.getCode(a),
  readContract: (a) => wallet.readContract(packed(a)),
  verifyTypedData: (a) => wallet.verifyTypedData(a),
  writeContract: (a) => wallet.writeContract(packed(a)),
  sendTransaction: (a) => wallet.sendTransaction(a),
  waitForTransactionReceipt: (a) => wallet.waitForTransactionReceipt(a),
});
const batch = args.scheme === "batch-settlement";
// On batch-settlement the facilitator key also signs claims and refunds as receiver authorizer.
const authorizer = {
  address: account.address,
  signTypedData: (m) => account.signTypedData(m),
};
const facilitator = new x402Facilitator().register(
  network,
  batch ? new BatchFacilitatorScheme(signer, authorizer) : new ExactEvmFacilitatorScheme(signer),
);
// `x402Facilitator` has the verify/settle of a `FacilitatorClient`; only `getSupported` differs
// (synchronous there).
const facilitatorClient = {
  verify: (payload, requirements) => facilitator.verify(payload, requirements),
  settle: (payload, requirements) => facilitator.settle(payload, requirements),
  getSupported: async () => facilitator.getSupported(),
};

const batchServer = batch
  ? new BatchServerScheme(args["pay-to"], { withdrawDelay: Number(args["withdraw-delay"]) })
  : null;
const resourceServer = new x402ResourceServer(facilitatorClient).register(
  network,
  batch ? batchServer : new ExactEvmServerScheme(),
);
const price = {
  amount: args.price,
  asset: args.asset,
  extra: { name: args["asset-name"], version: args["asset-version"] },
};
// The deposit a batch-settlement client is asked for (the scheme's default is 10 requests' worth).
if (batch && args["min-deposit"]) price.extra.minDeposit = args["min-deposit"];
const accepts = {
  scheme: batch ? "batch-settlement" : "exact",
  price,
  network,
  payTo: args["pay-to"],
  maxTimeoutSeconds: 300,
};

const pages = new Map();
if (args.pages) {
  for (const [url, file] of Object.entries(JSON.parse(readFileSync(args.pages, "utf8")))) {
    pages.set(url, readFileSync(file, "utf8"));
  }
}
// As bench/turndown/convert.js configures it.
const turndown = new TurndownService({ headingStyle: "atx", codeBlockStyle: "fenced" });
turndown.remove(["script", "style", "noscript"]);

const sha256 = (...parts) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};
const hex = (s) => (/^([0-9a-f]{2})*$/i.test(s) ? Buffer.from(s, "hex") : null);

const app = express();
app.use(express.json({ limit: "64kb" }));
if (batch) {
  const manager = new BatchSettlementChannelManager({
    scheme: batchServer,
    facilitator: facilitatorClient,
    receiver: args["pay-to"],
    token: args.asset,
    network,
  });
  app.post("/admin/claim", async (_req, res) => {
    try {
      const { claims, settle } = await manager.claimAndSettle();
      res.json({ claims, settle: settle ?? null });
    } catch (e) {
      res.status(500).json({ error: String(e?.stack ?? e) });
    }
  });
}
app.use(
  paymentMiddleware(
    {
      "POST /merkle": { accepts, description: "merkle.verify_proof@1, in JS" },
      "POST /markdown": { accepts, description: "a frozen page as Markdown, by turndown" },
    },
    resourceServer,
  ),
);

app.post("/merkle", (req, res) => {
  const { leaf, proof, root } = req.body ?? {};
  const leafBytes = typeof leaf === "string" ? hex(leaf) : null;
  const rootBytes = typeof root === "string" ? hex(root) : null;
  if (!leafBytes || !rootBytes || rootBytes.length !== 32 || !Array.isArray(proof)) {
    return res.status(400).json({ error: "invalid input" });
  }
  let node = sha256(Buffer.from([0]), leafBytes);
  for (const step of proof) {
    const sibling = typeof step?.hash === "string" ? hex(step.hash) : null;
    if (!sibling || sibling.length !== 32) return res.status(400).json({ error: "invalid proof" });
    node =
      step.position === "left"
        ? sha256(Buffer.from([1]), sibling, node)
        : sha256(Buffer.from([1]), node, sibling);
  }
  res.json({ valid: node.equals(rootBytes), computedRoot: node.toString("hex") });
});

app.post("/markdown", (req, res) => {
  const html = pages.get(req.body?.url);
  if (html === undefined) return res.status(404).json({ error: "no frozen page for that URL" });
  res.json({ markdown: turndown.turndown(html) });
});

const server = app.listen(Number(args.port), "127.0.0.1", () => {
  console.log(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` }));
});
