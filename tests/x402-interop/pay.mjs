// Buys one task from a d402 gateway with the stock x402 v2 client: `@x402/fetch`'s
// `wrapFetchWithPayment` around an `x402Client` with `@x402/evm`'s `exact` (EIP-3009) scheme.
// Nothing here knows d402: the client reads the 402's PAYMENT-REQUIRED, signs, retries with
// PAYMENT-SIGNATURE and decodes PAYMENT-RESPONSE exactly as it would against any x402 server.
//
//   node pay.mjs --url http://127.0.0.1:8080 --key 0x<buyer key> \
//     --rpc http://127.0.0.1:8545 --chain-id 31337 \
//     --asset 0x<token> --max-amount 10000 \
//     --body '{"capability":"web.page_to_markdown@1","input":{"url":"http://127.0.0.1:9000/"}}'
//
// `--asset` and `--max-amount` feed the client's spend controls: by default it pays only in the
// assets it knows (USDC on known chains) and refuses a test token; this allows exactly that
// token, up to that many atomic units per payment.
//
// Prints one JSON object on stdout: {status, body, paymentResponse, exchanges} (`exchanges`: the
// status and milliseconds of each HTTP request the wrapper made). Exits 1 if the paid request did
// not end in a 2xx.

import { parseArgs } from "node:util";
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
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
    path: { type: "string", default: "/tasks" },
  },
  strict: true,
});

for (const required of ["url", "key", "rpc", "body"]) {
  if (!args[required]) {
    console.error(`missing --${required}`);
    process.exit(2);
  }
}

const network = `eip155:${args["chain-id"]}`;
const account = privateKeyToAccount(args.key);
const client = new x402Client().register(
  network,
  new ExactEvmScheme(account, { rpcUrl: args.rpc }),
);
if (args.asset) {
  const entry = { network, asset: args.asset };
  if (args["max-amount"]) entry.maxAmountPerPayment = args["max-amount"];
  client.setSpendControls({ allowedAssets: [entry] });
}

// Times each HTTP exchange the stock wrapper makes (the 402, then the paid request), without
// changing what it sends.
const exchanges = [];
const timedFetch = async (input, init) => {
  const started = performance.now();
  const res = await fetch(input, init);
  exchanges.push({ status: res.status, ms: Math.round(performance.now() - started) });
  return res;
};
const fetchWithPayment = wrapFetchWithPayment(timedFetch, client);
const res = await fetchWithPayment(new URL(args.path, args.url), {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: args.body,
});

const text = await res.text();
let body;
try {
  body = JSON.parse(text);
} catch {
  body = text;
}
const header = res.headers.get("PAYMENT-RESPONSE");
const paymentResponse = header ? decodePaymentResponseHeader(header) : null;
console.log(JSON.stringify({ status: res.status, body, paymentResponse, exchanges }));
process.exit(res.ok ? 0 : 1);
