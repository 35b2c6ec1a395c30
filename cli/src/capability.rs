//! `d402 capability template | validate | register | inspect` (seed 001). Thin: parse the flags,
//! call `d402-registry`, print JSON.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use cap_std::fs::Dir;
use clap::{Args, Subcommand};
use d402_core::ContentId;
use d402_host::ContentStore;
use d402_registry::namespace::NamespaceProofDocument;
use d402_registry::policy::{MAX_COMMISSION_ENV, max_commission_from};
use d402_registry::registration::{Terms, register};
use d402_registry::wallet::normalize_evm;
use d402_registry::{
    AcceptancePolicy, CreatorWallets, MAX_DOCUMENT_BYTES, Manifest, Rail, Registration, template,
};
use serde_json::json;

use crate::keys::{self, Role};

#[derive(Args, Debug)]
pub struct CapabilityArgs {
    #[command(subcommand)]
    command: CapabilityCommand,
}

#[derive(Subcommand, Debug)]
enum CapabilityCommand {
    /// Print a valid starter manifest.
    Template {
        /// Dotted capability id; the first segment is the namespace (`example.extract_product`).
        #[arg(long)]
        id: String,
        #[arg(long, value_name = "N")]
        version: u32,
        /// Put this component's CID in the manifest (otherwise a placeholder to replace).
        #[arg(long, value_name = "FILE.wasm")]
        wasm: Option<PathBuf>,
    },
    /// Check a manifest against the schema and the semantic rules; errors name the field.
    Validate {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Sign a registration of a manifest with commission terms, and print it.
    Register(RegisterArgs),
    /// Verify a registration (signature, namespace proof, CIDs) and print its terms.
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
struct RegisterArgs {
    /// The manifest.
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// The publisher's state folder: key in DIR/keys/publisher.key, content store in DIR.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// The namespace: the first segment of the manifest id.
    #[arg(long, value_name = "NS")]
    namespace: String,
    /// The namespace owner's proof (`d402 namespace proof`). Without one, the publisher vouches
    /// for itself, which gateways accept only if it is the namespace's trusted owner.
    #[arg(long, value_name = "FILE")]
    namespace_proof: Option<PathBuf>,
    /// Commission in basis points of accepted gross worker payout (1000 = 10%).
    #[arg(long, value_name = "N")]
    creator_commission_bps: u32,
    /// Base58 Solana public key the commission is paid to on the solana rail.
    #[arg(long, value_name = "W")]
    creator_solana_wallet: Option<String>,
    /// 0x EVM address the commission is paid to on the evm rail (given its EIP-55 checksum if
    /// it has none).
    #[arg(long, value_name = "W")]
    creator_evm_wallet: Option<String>,
    /// The component: checked against the manifest's implementation CID and stored.
    #[arg(long, value_name = "FILE.wasm")]
    wasm: Option<PathBuf>,
    /// Issue time in ms since the Unix epoch (default: now).
    #[arg(long, value_name = "MS")]
    issued_at: Option<u64>,
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// The registration.
    file: PathBuf,
    /// The manifest, to recompute its CID and compare.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// A state folder whose content store may hold the manifest.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Also run the gateway acceptance policy, trusting OWNER (`ed25519:<hex>`) for NS
    /// (repeatable). Needs the manifest.
    #[arg(long = "trust-namespace", value_name = "NS=OWNER")]
    trust_namespace: Vec<String>,
    /// With --trust-namespace: a rail the gateway settles on, which needs a creator wallet
    /// (repeatable: solana, evm).
    #[arg(long = "rail", value_name = "RAIL")]
    rails: Vec<Rail>,
    /// With --trust-namespace: the commission cap.
    #[arg(long, env = MAX_COMMISSION_ENV, value_name = "BPS")]
    max_creator_commission_bps: Option<String>,
    /// With --trust-namespace: accept only these manifest CIDs (repeatable).
    #[arg(long = "accept-manifest", value_name = "CID")]
    accept_manifest: Vec<ContentId>,
    /// With --trust-namespace: accept only these implementation CIDs (repeatable).
    #[arg(long = "accept-implementation", value_name = "CID")]
    accept_implementation: Vec<ContentId>,
}

pub fn run(args: CapabilityArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CapabilityCommand::Template { id, version, wasm } => {
            let cid = wasm
                .map(|w| read(&w).map(|b| ContentId::of(&b)))
                .transpose()?;
            print_json(&template(&id, version, cid)?)
        }
        CapabilityCommand::Validate { file } => {
            let manifest = read_manifest(&file)?;
            print_json(&json!({
                "valid": true,
                "capability": format!("{}@{}", manifest.id, manifest.version),
                "manifest": manifest.cid()?,
                "implementation": manifest.implementation.cid,
            }))
        }
        CapabilityCommand::Register(args) => register_cmd(args),
        CapabilityCommand::Inspect(args) => inspect(args),
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

/// Reads a file, refusing (before reading it) one far larger than any document we accept.
fn read_document(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > 4 * MAX_DOCUMENT_BYTES as u64 {
        bail!(
            "{} is {len} bytes, more than the {MAX_DOCUMENT_BYTES}-byte limit",
            path.display()
        );
    }
    read(path)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn read_manifest(path: &Path) -> anyhow::Result<Manifest> {
    Manifest::from_json(&read_document(path)?).with_context(|| path.display().to_string())
}

fn open_store(state: &Path) -> anyhow::Result<ContentStore> {
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let dir = Dir::open_ambient_dir(state, cap_std::ambient_authority())
        .with_context(|| format!("opening state folder {}", state.display()))?;
    Ok(ContentStore::open(&dir)?)
}

fn register_cmd(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let manifest = read_manifest(&args.file)?;
    let publisher = keys::load(&args.state, Role::Publisher)?;
    let component = match &args.wasm {
        Some(path) => {
            let bytes = read(path)?;
            manifest
                .check_component(&bytes)
                .with_context(|| format!("--wasm {}", path.display()))?;
            Some(bytes)
        }
        None => None,
    };
    let namespace_proof = args
        .namespace_proof
        .as_ref()
        .map(|path| {
            NamespaceProofDocument::from_json(&read_document(path)?)
                .with_context(|| format!("--namespace-proof {}", path.display()))
        })
        .transpose()?;
    let evm = args
        .creator_evm_wallet
        .as_deref()
        .map(normalize_evm)
        .transpose()
        .map_err(|e| anyhow::anyhow!("/creatorWallets/evm: {e}"))?;
    let wallets = CreatorWallets {
        solana: args.creator_solana_wallet,
        evm,
    };
    if args.creator_commission_bps > 0 && wallets.solana.is_none() && wallets.evm.is_none() {
        bail!(
            "a commission of {} bps needs somewhere to be paid: give --creator-solana-wallet and/or --creator-evm-wallet",
            args.creator_commission_bps
        );
    }
    let issued_at = match args.issued_at {
        Some(ms) => ms,
        None => d402_core::clock::now_ms(),
    };
    let registration = register(
        &manifest,
        &publisher,
        Terms {
            namespace: args.namespace,
            namespace_proof,
            creator_commission_bps: args.creator_commission_bps,
            creator_wallets: wallets,
            issued_at,
        },
    )?;

    let store = open_store(&args.state)?;
    let (manifest_cid, manifest_bytes) = manifest.canonical()?;
    store.put_verified(&manifest_cid, &manifest_bytes)?;
    if let Some(bytes) = &component {
        store.put_verified(&manifest.implementation.cid, bytes)?;
    }
    let reg_bytes = d402_core::content_id::canonical_json(&registration)?;
    store.put_verified(&registration.cid()?, &reg_bytes)?;
    print_json(&registration)
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let registration = Registration::from_json(&read_document(&args.file)?)
        .with_context(|| args.file.display().to_string())?;
    registration
        .verify()
        .with_context(|| args.file.display().to_string())?;
    let body = &registration.body;

    let manifest = match (&args.manifest, &args.state) {
        (Some(path), _) => Some(read_manifest(path)?),
        (None, Some(state)) => open_store(state)?
            .get(&body.manifest)?
            .map(|bytes| Manifest::from_json(&bytes).context("the manifest in the content store"))
            .transpose()?,
        (None, None) => None,
    };
    if let Some(m) = &manifest {
        registration.check_manifest(m)?;
    }

    let policy = if args.trust_namespace.is_empty() {
        None
    } else {
        let Some(m) = &manifest else {
            bail!("--trust-namespace needs the manifest: give --manifest FILE or --state DIR")
        };
        let mut policy = AcceptancePolicy {
            max_creator_commission_bps: max_commission_from(
                args.max_creator_commission_bps.as_deref(),
            )?,
            required_rails: args.rails.clone(),
            accepted_manifest_cids: (!args.accept_manifest.is_empty()).then(|| {
                args.accept_manifest
                    .iter()
                    .copied()
                    .collect::<BTreeSet<_>>()
            }),
            accepted_implementation_cids: (!args.accept_implementation.is_empty()).then(|| {
                args.accept_implementation
                    .iter()
                    .copied()
                    .collect::<BTreeSet<_>>()
            }),
            ..AcceptancePolicy::default()
        };
        for spec in &args.trust_namespace {
            let (ns, owner) = spec
                .split_once('=')
                .with_context(|| format!("--trust-namespace {spec:?}: expected NS=OWNER"))?;
            policy = policy.trust(ns, owner);
        }
        Some(
            policy
                .check(&registration, m)
                .context("gateway policy refuses")?,
        )
    };

    print_json(&json!({
        "registration": registration.cid()?,
        "signature": "valid",
        "publisher": body.publisher,
        "namespace": body.namespace,
        "namespaceOwner": body.namespace_proof.as_ref().map(|p| &p.owner),
        "manifest": body.manifest,
        "manifestChecked": manifest.is_some(),
        "capability": manifest.as_ref().map(|m| format!("{}@{}", m.id, m.version)),
        "implementation": manifest.as_ref().map(|m| m.implementation.cid),
        "creatorCommissionBps": body.creator_commission_bps,
        "creatorWallets": body.creator_wallets,
        "issuedAt": body.issued_at,
        "policy": policy.map(|_| "accepted"),
    }))
}
