#!/usr/bin/env node
// Compiles d402's contracts with the pinned solcjs (package.json) and writes one artifact per
// contract to artifacts/<Name>.json: {contractName, compiler, abi, bytecode, deployedBytecode}, the
// Hardhat shape alloy's `sol!` reads. The artifacts are checked in so that `cargo build` needs no
// node; a Rust test recompiles with this script (`--out <dir>`) and compares.
//
// usage: node rails/contracts/build.cjs [--out DIR]
// solc is found in $D402_TOOLS (default $HOME/.cache/d402-tools), where scripts/setup.sh installs it.
'use strict';
const fs = require('fs');
const path = require('path');
const os = require('os');

const here = __dirname;
const tools = process.env.D402_TOOLS || path.join(os.homedir(), '.cache', 'd402-tools');
const solc = require(require.resolve('solc', { paths: [path.join(tools, 'node_modules'), here] }));

const outArg = process.argv.indexOf('--out');
const out = outArg > 0 ? process.argv[outArg + 1] : path.join(here, 'artifacts');
const contracts = ['TestUsd', 'TaskEscrow', 'PaymentChannel', 'BatchSettlement', 'Erc3009DepositCollector', 'TryAggregate', 'WorkerBond'];

const sources = {};
for (const f of fs.readdirSync(here).filter((f) => f.endsWith('.sol')).sort()) {
  sources[f] = { content: fs.readFileSync(path.join(here, f), 'utf8') };
}
const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    // No metadata hash: the bytecode then depends only on the source and the settings, so the
    // checked-in artifacts can be compared byte for byte.
    metadata: { bytecodeHash: 'none', appendCBOR: false },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};
const result = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (result.errors || []).filter((e) => e.severity === 'error');
for (const e of result.errors || []) process.stderr.write(e.formattedMessage + '\n');
if (errors.length) process.exit(1);

fs.mkdirSync(out, { recursive: true });
for (const name of contracts) {
  const c = result.contracts[`${name}.sol`][name];
  const artifact = {
    contractName: name,
    compiler: `solc ${solc.version()}`,
    abi: c.abi,
    bytecode: '0x' + c.evm.bytecode.object,
    deployedBytecode: '0x' + c.evm.deployedBytecode.object,
  };
  fs.writeFileSync(path.join(out, `${name}.json`), JSON.stringify(artifact, null, 2) + '\n');
}
process.stdout.write(`compiled ${contracts.join(', ')} with solc ${solc.version()} into ${out}\n`);
