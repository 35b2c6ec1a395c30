// Buys N tasks from a d402 gateway with the stock x402 v2 `batch-settlement` client:
// `@x402/fetch`'s `wrapFetchWithPayment` around an `x402Client` with `@x402/evm`'s
// `BatchSettlementEvmScheme` (ERC-3009 deposit, then cumulative vouchers), one request after
// another on one channel. Nothing here knows d402: the client reads the 402, deposits once,
// signs a voucher per request, keeps its running total from PAYMENT-RESPONSE, and recovers from
// a corrective 402 exactly as it would against any x402 batch-settlement server.
//
//   node pay-batch.mjs --url http://127.0.0.1:8080 --key 0x<buyer key> \
//     --rpc http://127.0.0.1:8545 --chain-id 31337 --asset 0x<token> --max-amount 10000 \
//     --bodies bodies.json
//
// `--bodies` is a JSON file holding an array of request bodies, bought one after another;
// `--body` with `--count N` buys the same body N times instead.
// `--refund` then asks for the channel's unspent balance back with the client's own `refund`
// (at `--refund-path`, default `/channel/refund`); `--count 0 --refund` only refunds (the client
// recovers its channel from the chain).
//
// Prints one JSON object: {ok, statuses, charged, paymentResponses, refund, ms}. Exits 1 unless
// every request ended in a 2xx.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { toClientEvmSigner } from "@x402/evm";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/client";
import { createPublicClient, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    key: { type: "string" },
    rpc: { type: "string" },
    "chain-id": { type: "string", default: "31337" },
    asset: { type: "string" },
    "max-amount": { type: "string" },
    body: { type: "string" },
    bodies: { type: "string" },
    count: { type: "string", default: "1" },
    path: { type: "string", default: "/tasks" },
    refund: { type: "boolean", default: false },
    "refund-path": { type: "string", default: "/channel/refund" },
  },
  strict: true,
});

for (const required of ["url", "key", "rpc"]) {
  if (!args[required]) {
    console.error(`missing --${required}`);
    process.exit(2);
  }
}

if (!args.body && !args.bodies && !args.refund) {
  console.error("missing --body or --bodies");
  process.exit(2);
}
const bodies = args.bodies
  ? JSON.parse(readFileSync(args.bodies, "utf8")).map((b) => JSON.stringify(b))
  : args.body
    ? Array.from({ length: Number(args.count) }, () => args.body)
    : [];

const network = `eip155:${args["chain-id"]}`;
const account = privateKeyToAccount(args.key);
const publicClient = createPublicClient({ transport: http(args.rpc) });
const signer = toClientEvmSigner(account, publicClient);
const scheme = new BatchSettlementEvmScheme(signer, { rpcUrl: args.rpc });
const client = new x402Client().register(network, scheme);
if (args.asset) {
  const entry = { network, asset: args.asset };
  if (args["max-amount"]) entry.maxAmountPerPayment = args["max-amount"];
  client.setSpendControls({ allowedAssets: [entry] });
}
const fetchWithPayment = wrapFetchWithPayment(fetch, client);

const started = performance.now();
const statuses = [];
const paymentResponses = [];
let charged = 0n;
let ok = true;
for (const body of bodies) {
  const res = await fetchWithPayment(new URL(args.path, args.url), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  await res.text();
  statuses.push(res.status);
  const header = res.headers.get("PAYMENT-RESPONSE");
  const pr = header ? decodePaymentResponseHeader(header) : null;
  paymentResponses.push(pr);
  charged += BigInt(pr?.extra?.chargedAmount ?? "0");
  if (!res.ok) ok = false;
}
let refund = null;
if (args.refund) {
  refund = await scheme.refund(new URL(args["refund-path"], args.url).toString());
}
const ms = Math.round(performance.now() - started);
console.log(JSON.stringify({ ok, statuses, charged: charged.toString(), paymentResponses, refund, ms }));
process.exit(ok ? 0 : 1);
