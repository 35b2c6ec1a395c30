// The one load generator of cli/benches/x402_express.rs, used unchanged against the d402
// gateway and against the stock express server: the stock x402 v2 client (`@x402/fetch`'s
// `wrapFetchWithPayment` around an `x402Client` with `@x402/evm`'s `exact` scheme). Every paid
// request is what an x402 buyer does: POST, get the 402, sign an EIP-3009 authorization, POST
// again with PAYMENT-SIGNATURE.
//
//   node load.mjs --url http://127.0.0.1:PORT --path /tasks --bodies bodies.json \
//     --keys keys.json --requests 400 [--warmup 20] \
//     --chain-id 31337 --asset 0x<token> --max-amount 10000
//
// `--keys`: a JSON array of buyer keys; one concurrent buyer per key (separate keys, so their
// authorizations never share a nonce space). `--bodies`: a JSON array of request bodies, sent in
// turn (request i sends body (offset + i) mod n). `--warmup` paid requests run first and are not counted:
// one alone, then the rest with every buyer.
//
// A request counts as done when the paid answer is HTTP 200 and, where the body has a `status`
// (the d402 gateway's task state), that status is "delivered". Anything else is an error.
//
// `--scheme batch-settlement` pays with `@x402/evm`'s batch-settlement client instead: each buyer
// deposits into its own channel once (up to 5 × `--max-amount`, the client's own rule) and pays
// every request after with a voucher.
//
// Prints one JSON line: {requests, seconds, rps, p50_ms, p99_ms, errors, client_cpu_ms,
// first_error} (`client_cpu_ms`: the CPU time this client used over the timed requests).
// `seconds` runs from the first timed request to the last answer; latencies are per paid request,
// both HTTP exchanges and the signing included.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { toClientEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/client";
import { createPublicClient, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    path: { type: "string", default: "/tasks" },
    bodies: { type: "string" },
    keys: { type: "string" },
    requests: { type: "string", default: "100" },
    warmup: { type: "string", default: "0" },
    offset: { type: "string", default: "0" },
    "chain-id": { type: "string", default: "31337" },
    asset: { type: "string" },
    "max-amount": { type: "string" },
    scheme: { type: "string", default: "exact" },
    rpc: { type: "string" },
  },
  strict: true,
});
for (const required of ["url", "bodies", "keys", "asset"]) {
  if (!args[required]) {
    console.error(`missing --${required}`);
    process.exit(2);
  }
}

const network = `eip155:${args["chain-id"]}`;
const bodies = JSON.parse(readFileSync(args.bodies, "utf8")).map((b) => JSON.stringify(b));
const keys = JSON.parse(readFileSync(args.keys, "utf8"));
const target = new URL(args.path, args.url);

// One stock client per buyer. By default the client pays only in assets it knows (USDC on known
// chains); its spend controls allow the test token, up to the price.
const publicClient = args.rpc ? createPublicClient({ transport: http(args.rpc) }) : null;
const buyers = keys.map((key) => {
  const account = privateKeyToAccount(key);
  const scheme =
    args.scheme === "batch-settlement"
      ? new BatchSettlementEvmScheme(
          publicClient ? toClientEvmSigner(account, publicClient) : account,
        )
      : new ExactEvmScheme(account);
  const client = new x402Client().register(network, scheme);
  const allowed = { network, asset: args.asset };
  if (args["max-amount"]) allowed.maxAmountPerPayment = args["max-amount"];
  client.setSpendControls({ allowedAssets: [allowed] });
  return wrapFetchWithPayment(fetch, client);
});

/** Runs `count` paid requests over the first `width` buyers at once; returns latencies (ms) and
 * errors. */
async function run(count, offset, width = buyers.length) {
  let next = 0;
  const latencies = [];
  const errors = [];
  const buyer = async (pay) => {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      const started = performance.now();
      try {
        const res = await pay(target, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: bodies[(offset + i) % bodies.length],
        });
        const text = await res.text();
        let status;
        try {
          status = JSON.parse(text).status;
        } catch {
          status = undefined;
        }
        if (res.status === 200 && (status === undefined || status === "delivered")) {
          latencies.push(performance.now() - started);
        } else {
          errors.push(`HTTP ${res.status}: ${text.slice(0, 300)}`);
        }
      } catch (e) {
        errors.push(String(e?.stack ?? e).slice(0, 300));
      }
    }
  };
  await Promise.all(buyers.slice(0, width).map(buyer));
  return { latencies, errors };
}

const percentile = (sorted, p) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : null;

// Warm-up: one request alone first, so that whatever a server does once (a d402 worker compiles
// the component on its first task) is done once, then the rest with every buyer.
const warmup = Number(args.warmup);
const offset = Number(args.offset);
if (warmup > 0) {
  const first = await run(1, offset, 1);
  if (first.errors.length) console.error(`warm-up request failed: ${first.errors[0]}`);
  await run(warmup - 1, offset + 1);
}
const requests = Number(args.requests);
const cpu = process.cpuUsage();
const started = performance.now();
const { latencies, errors } = await run(requests, offset + warmup);
const seconds = (performance.now() - started) / 1000;
const used = process.cpuUsage(cpu);
latencies.sort((a, b) => a - b);
const round = (x) => (x === null ? null : Math.round(x * 100) / 100);
console.log(
  JSON.stringify({
    requests: latencies.length,
    seconds: round(seconds),
    rps: round(latencies.length / seconds),
    p50_ms: round(percentile(latencies, 50)),
    p99_ms: round(percentile(latencies, 99)),
    errors: errors.length,
    client_cpu_ms: round((used.user + used.system) / 1000),
    first_error: errors[0] ?? null,
  }),
);
