//! Rails benchmarks on a real anvil (started by `d402-evm-chain`):
//!
//! - `verify-offchain/*`: the part of verification that needs no chain, per payment.
//! - `verify-full/base-x402-direct`: verification with its RPC reads and simulation.
//! - `settle/*`: settlement latency on anvil (transaction sent, receipt seen, outbox updated).
//! - then a table of on-chain transactions, gas and fees for 1,000 tasks on each rail, from
//!   real runs.
//!
//! `cargo bench -p d402-rails --bench rails`

use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use criterion::Criterion;
use d402_evm_chain::Anvil;
use d402_rails::evm::EvmChain;
use d402_rails::evm::buyer;
use d402_rails::evm::channel::BaseChannel;
use d402_rails::evm::direct::BaseDirect;
use d402_rails::evm::eip712::Voucher;
use d402_rails::evm::escrow::{BaseTaskEscrow, EscrowTerms, sign_release};
use d402_rails::{
    Atomic, Commission, GatewayFee, Outbox, PaymentPayload, PaymentRequirements, Rail, Release,
    SafetyCaps, TaskId, Terms,
};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Bench {
    anvil: Anvil,
    chain: EvmChain,
    dir: tempfile::TempDir,
    buyer: PrivateKeySigner,
    keys: Vec<PrivateKeySigner>,
}

fn terms(label: &str, price: u128, pay_to: Address, creator: Option<Address>) -> Terms {
    Terms {
        task_id: TaskId::from_label(label),
        price: Atomic::new(price),
        pay_to: pay_to.to_string(),
        commission: creator.map(|c| Commission {
            wallet: c.to_string(),
            bps: 1_000,
        }),
        gateway_fee: if creator.is_some() {
            GatewayFee::Bps(200)
        } else {
            GatewayFee::Bps(0)
        },
        max_timeout_seconds: 600,
        deadline_unix: now() + 3_600,
    }
}

async fn setup() -> Bench {
    let anvil = Anvil::start(14)
        .await
        .expect("anvil (run scripts/setup.sh)");
    let mut keys = anvil.keys.clone();
    let deployer = keys.remove(0);
    let buyer = keys.remove(0);
    let chain = anvil.deploy_test_usd(&deployer).await.expect("token");
    anvil
        .mint(
            &deployer,
            chain.asset.address,
            buyer.address(),
            1_000_000_000_000,
        )
        .await
        .expect("mint");
    Bench {
        anvil,
        chain,
        dir: tempfile::tempdir().expect("tempdir"),
        buyer,
        keys,
    }
}

impl Bench {
    fn outbox(&self, name: &str) -> Outbox {
        Outbox::open(&self.dir.path().join(name)).expect("outbox")
    }
}

/// Gas used by the transactions `hashes`.
async fn gas_of(b: &Bench, hashes: &[String]) -> u128 {
    let p = b.anvil.provider(&b.keys[0]);
    let mut gas = 0u128;
    for h in hashes {
        let r = p
            .get_transaction_receipt(h.parse().expect("hash"))
            .await
            .expect("rpc")
            .expect("receipt");
        gas += r.gas_used as u128;
    }
    gas
}

struct Row {
    rail: &'static str,
    txs: usize,
    gas: u128,
    fee_wei: u128,
    wall: Duration,
}

fn benches(c: &mut Criterion, rt: &tokio::runtime::Runtime, b: &Bench) {
    let facilitator = b.keys[0].clone();
    let payee = b.keys[1].address();
    let direct = BaseDirect::new(
        b.chain.clone(),
        &facilitator,
        b.outbox("direct.redb"),
        SafetyCaps::default(),
    );
    let req = direct
        .challenge(&terms("bench-direct", 10_000, payee, None))
        .expect("challenge");
    let payload = buyer::pay_exact(&b.buyer, &req, now()).expect("sign");

    let validator = b.keys[2].clone();
    let escrow_addr = rt
        .block_on(BaseTaskEscrow::deploy(
            &b.anvil.provider(&b.keys[3]),
            b.chain.asset.address,
            validator.address(),
        ))
        .expect("escrow");
    let escrow = BaseTaskEscrow::new(
        b.chain.clone(),
        escrow_addr,
        validator.address(),
        &b.keys[4],
        b.keys[5].address(),
        b.outbox("escrow.redb"),
        SafetyCaps::default(),
    );
    let ereq = escrow
        .challenge(&terms(
            "bench-escrow",
            10_000,
            payee,
            Some(b.keys[6].address()),
        ))
        .expect("challenge");
    let epayload = buyer::pay_escrow(&b.buyer, &ereq, now()).expect("sign");

    let mut g = c.benchmark_group("verify-offchain");
    g.bench_function("base-x402-direct", |bench| {
        bench.iter(|| direct.verify_offchain(&payload, &req).expect("valid"))
    });
    g.bench_function("base-task-escrow", |bench| {
        bench.iter(|| escrow.verify_offchain(&epayload, &ereq).expect("valid"))
    });
    // A channel voucher: verify is off chain once the channel is loaded.
    let channel_addr = rt
        .block_on(BaseChannel::deploy(
            &b.anvil.provider(&b.keys[3]),
            b.chain.asset.address,
            3_600,
        ))
        .expect("channel");
    let channel = BaseChannel::new(
        b.chain.clone(),
        channel_addr,
        &b.keys[7],
        b.keys[5].address(),
        b.outbox("channel-verify.redb"),
        SafetyCaps::default(),
    );
    let channel_id = B256::repeat_byte(1);
    rt.block_on(async {
        let f = channel
            .funding_challenge(channel_id, Atomic::new(1_000_000_000), 600)
            .await
            .expect("funding challenge");
        let p = buyer::pay_escrow(&b.buyer, &f, now()).expect("sign");
        channel.fund(&p, &f).await.expect("fund");
    });
    let creq = channel
        .challenge(&terms(
            "bench-channel",
            10_000,
            payee,
            Some(b.keys[6].address()),
        ))
        .expect("challenge");
    let cpayload = voucher_payload(&b.buyer, channel_addr, channel_id, &creq, 1);
    rt.block_on(channel.verify(&cpayload, &creq))
        .expect("valid");
    g.bench_function("base-channel", |bench| {
        bench
            .to_async(rt)
            .iter(|| async { channel.verify(&cpayload, &creq).await.expect("valid") })
    });
    g.finish();

    let mut g = c.benchmark_group("verify-full");
    g.sample_size(20);
    g.bench_function("base-x402-direct", |bench| {
        bench
            .to_async(rt)
            .iter(|| async { direct.verify(&payload, &req).await.expect("valid") })
    });
    g.finish();

    let mut g = c.benchmark_group("settle");
    g.sample_size(10);
    g.bench_function("base-x402-direct", |bench| {
        bench.to_async(rt).iter_custom(|iters| {
            let (direct, req) = (&direct, &req);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let p = buyer::pay_exact(&b.buyer, req, now()).expect("sign");
                    let v = direct.verify(&p, req).await.expect("valid");
                    let t = Instant::now();
                    direct.settle(&v).await.expect("settle");
                    total += t.elapsed();
                }
                total
            }
        })
    });
    let counter = std::sync::atomic::AtomicU64::new(0);
    g.bench_function("base-task-escrow (fund + release)", |bench| {
        bench.to_async(rt).iter_custom(|iters| {
            let (escrow, counter, validator) = (&escrow, &counter, &validator);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let t = terms(
                        &format!("bench-escrow-{n}"),
                        10_000,
                        payee,
                        Some(b.keys[6].address()),
                    );
                    let r = escrow.challenge(&t).expect("challenge");
                    let p = buyer::pay_escrow(&b.buyer, &r, now()).expect("sign");
                    let v = escrow.verify(&p, &r).await.expect("valid");
                    let et: EscrowTerms =
                        serde_json::from_value(r.extra.as_ref().expect("extra")["terms"].clone())
                            .expect("terms");
                    let sig = sign_release(validator, 31337, escrow.address(), &et, &[payee])
                        .expect("release");
                    let start = Instant::now();
                    escrow.settle(&v).await.expect("fund");
                    escrow
                        .finalize(&Release::Task {
                            task_id: t.task_id,
                            workers: vec![payee.to_string()],
                            validator_signature: sig,
                        })
                        .await
                        .expect("release");
                    total += start.elapsed();
                }
                total
            }
        })
    });
    g.finish();
}

fn voucher_payload(
    key: &PrivateKeySigner,
    contract: Address,
    channel_id: B256,
    req: &PaymentRequirements,
    times: u128,
) -> PaymentPayload {
    let extra = req.extra.as_ref().expect("extra");
    let a = |k: &str| extra[k].as_str().expect(k).parse::<Address>().expect(k);
    let n = |k: &str| U256::from(extra[k].as_str().expect(k).parse::<u128>().expect(k) * times);
    let v = buyer::sign_voucher(
        key,
        31337,
        contract,
        &Voucher {
            channelId: channel_id,
            worker: a("worker"),
            creator: a("creator"),
            gateway: a("gateway"),
            workerTotal: n("workerAmount"),
            creatorTotal: n("creatorAmount"),
            gatewayTotal: n("gatewayAmount"),
        },
    )
    .expect("voucher");
    buyer::payment_payload(req, serde_json::to_value(v).expect("json"))
}

/// 1,000 tasks on each rail, for real: transactions, gas and fees.
async fn thousand_tasks(b: &Bench) -> Vec<Row> {
    const TASKS: usize = 1_000;
    let workers: Vec<Address> = (8..11).map(|i| b.keys[i].address()).collect();
    let creator = b.keys[6].address();
    let mut rows = Vec::new();

    // Direct: one transferWithAuthorization per task (no commission possible).
    let direct = BaseDirect::new(
        b.chain.clone(),
        &b.keys[0],
        b.outbox("direct-1000.redb"),
        SafetyCaps::default(),
    );
    let start = Instant::now();
    let (mut hashes, mut fee) = (Vec::new(), 0u128);
    for i in 0..TASKS {
        let r = direct
            .challenge(&terms(&format!("d{i}"), 10_000, workers[i % 3], None))
            .expect("challenge");
        let p = buyer::pay_exact(&b.buyer, &r, now()).expect("sign");
        let s = direct
            .settle(&direct.verify(&p, &r).await.expect("valid"))
            .await
            .expect("settle");
        fee += s.fee_native;
        hashes.extend(s.tx_hashes);
    }
    rows.push(Row {
        rail: "base-x402-direct",
        txs: hashes.len(),
        gas: gas_of(b, &hashes).await,
        fee_wei: fee,
        wall: start.elapsed(),
    });

    // Task escrow: fund + release per task.
    let validator = b.keys[2].clone();
    let escrow_addr = BaseTaskEscrow::deploy(
        &b.anvil.provider(&b.keys[3]),
        b.chain.asset.address,
        validator.address(),
    )
    .await
    .expect("escrow");
    let escrow = BaseTaskEscrow::new(
        b.chain.clone(),
        escrow_addr,
        validator.address(),
        &b.keys[4],
        b.keys[5].address(),
        b.outbox("escrow-1000.redb"),
        SafetyCaps::default(),
    );
    let start = Instant::now();
    let (mut hashes, mut fee) = (Vec::new(), 0u128);
    for i in 0..TASKS {
        let t = terms(&format!("e{i}"), 10_000, workers[i % 3], Some(creator));
        let r = escrow.challenge(&t).expect("challenge");
        let p = buyer::pay_escrow(&b.buyer, &r, now()).expect("sign");
        let s = escrow
            .settle(&escrow.verify(&p, &r).await.expect("valid"))
            .await
            .expect("fund");
        fee += s.fee_native;
        hashes.extend(s.tx_hashes);
        let et: EscrowTerms =
            serde_json::from_value(r.extra.as_ref().expect("extra")["terms"].clone())
                .expect("terms");
        let sig =
            sign_release(&validator, 31337, escrow_addr, &et, &[workers[i % 3]]).expect("sign");
        let s = escrow
            .finalize(&Release::Task {
                task_id: t.task_id,
                workers: vec![workers[i % 3].to_string()],
                validator_signature: sig,
            })
            .await
            .expect("release");
        fee += s.fee_native;
        hashes.extend(s.tx_hashes);
    }
    rows.push(Row {
        rail: "base-task-escrow",
        txs: hashes.len(),
        gas: gas_of(b, &hashes).await,
        fee_wei: fee,
        wall: start.elapsed(),
    });

    // Channel: one funding, 1,000 vouchers, one batch claim.
    let channel_addr =
        BaseChannel::deploy(&b.anvil.provider(&b.keys[3]), b.chain.asset.address, 3_600)
            .await
            .expect("channel");
    let channel = BaseChannel::new(
        b.chain.clone(),
        channel_addr,
        &b.keys[7],
        b.keys[5].address(),
        b.outbox("channel-1000.redb"),
        SafetyCaps::default(),
    );
    let channel_id = B256::repeat_byte(2);
    let start = Instant::now();
    let f = channel
        .funding_challenge(channel_id, Atomic::new(20_000_000), 600)
        .await
        .expect("funding");
    let fp = buyer::pay_escrow(&b.buyer, &f, now()).expect("sign");
    let s = channel.fund(&fp, &f).await.expect("fund");
    let (mut hashes, mut fee) = (s.tx_hashes, s.fee_native);
    let mut counts = std::collections::HashMap::new();
    for i in 0..TASKS {
        let r = channel
            .challenge(&terms(
                &format!("c{i}"),
                10_000,
                workers[i % 3],
                Some(creator),
            ))
            .expect("challenge");
        let n = counts.entry(i % 3).or_insert(0u128);
        *n += 1;
        let p = voucher_payload(&b.buyer, channel_addr, channel_id, &r, *n);
        channel
            .settle(&channel.verify(&p, &r).await.expect("valid"))
            .await
            .expect("accept");
    }
    let s = channel
        .finalize(&Release::PendingVouchers)
        .await
        .expect("claim");
    fee += s.fee_native;
    hashes.extend(s.tx_hashes);
    rows.push(Row {
        rail: "base-channel (incl. 1 funding tx)",
        txs: hashes.len(),
        gas: gas_of(b, &hashes).await,
        fee_wei: fee,
        wall: start.elapsed(),
    });
    rows
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let b = rt.block_on(setup());
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    benches(&mut c, &rt, &b);
    c.final_summary();

    let rows = rt.block_on(thousand_tasks(&b));
    println!();
    println!(
        "On-chain cost of 1,000 tasks (anvil, 3 workers, 10,000-unit tasks, 10 % commission + 2 % fee on split rails)"
    );
    println!(
        "| rail | transactions | gas | gas per task | fee at 1 gwei (ETH) | fee paid on anvil (wei) | wall time |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.6} | {} | {:.2} s |",
            r.rail,
            r.txs,
            r.gas,
            r.gas / 1_000,
            r.gas as f64 * 1e-9,
            r.fee_wei,
            r.wall.as_secs_f64()
        );
    }
}
