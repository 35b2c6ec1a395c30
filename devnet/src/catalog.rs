//! The example capabilities the devnet publishes, written the way a capability author hands them
//! to a gateway operator: one folder per capability with `registration.json`, `manifest.json` and
//! `component.wasm` (what `d402 node --publish DIR` reads).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use d402_capability_artifacts as artifacts;
use d402_core::Canonicalizer;
use d402_core::{ContentId, Identity};
use d402_registry::CreatorWallets;
use d402_registry::manifest::{ValidationClass, template};
use d402_registry::registration::{Terms, register};

/// A capability the devnet sells.
pub struct Example {
    pub capability: &'static str,
    pub description: &'static str,
    /// Where `d402-capability-artifacts` built the component.
    component: &'static str,
    /// The creator's commission on this capability, in basis points.
    pub commission_bps: u32,
}

pub const PAGE_TO_MARKDOWN: &str = "web.page_to_markdown@1";
pub const EXTRACT_METADATA: &str = "web.extract_metadata@1";
pub const MERKLE_VERIFY: &str = "merkle.verify_proof@1";
/// The page conversion sold as *scoreable*: each worker freezes its own copy of a live page, and
/// the validator compares the conversions with [`COMPARE_TEXT`].
pub const LIVE_PAGE_TO_MARKDOWN: &str = "web.page_to_markdown_live@1";
pub const COMPARE_TEXT: &str = "compare.text_similarity@1";
pub const COMPARE_JSON: &str = "compare.json_fields@1";
/// The score two live-page conversions must reach to agree: 0.85 (two loads of the devnet's
/// live page differ in a counter and a time, and score about 0.95).
pub const LIVE_PAGE_THRESHOLD: u32 = 850_000;
/// Workers that convert one live page: the scored conversion's quorum.
pub const LIVE_PAGE_QUORUM: u32 = 3;

pub const EXAMPLES: [Example; 6] = [
    Example {
        capability: PAGE_TO_MARKDOWN,
        description: "The main content of a web page as Markdown, frozen by a headless browser",
        component: artifacts::PAGE_TO_MARKDOWN_COMPONENT,
        commission_bps: 1000,
    },
    Example {
        capability: EXTRACT_METADATA,
        description: "A page's title, description, language, canonical URL, headings and links",
        component: artifacts::EXTRACT_METADATA_COMPONENT,
        commission_bps: 500,
    },
    Example {
        capability: MERKLE_VERIFY,
        description: "Checks a Merkle inclusion proof against a root",
        component: artifacts::MERKLE_VERIFY_COMPONENT,
        commission_bps: 0,
    },
    Example {
        capability: LIVE_PAGE_TO_MARKDOWN,
        description: "The main content of a live web page as Markdown: each worker freezes its own copy, and the conversions are compared by score",
        component: artifacts::PAGE_TO_MARKDOWN_COMPONENT,
        commission_bps: 1000,
    },
    Example {
        capability: COMPARE_TEXT,
        description: "Comparator: word-shingle Jaccard and word edit distance between outputs' text, in millionths",
        component: artifacts::COMPARE_TEXT_COMPONENT,
        commission_bps: 0,
    },
    Example {
        capability: COMPARE_JSON,
        description: "Comparator: the share of JSON fields on which outputs agree, in millionths",
        component: artifacts::COMPARE_JSON_COMPONENT,
        commission_bps: 0,
    },
];

/// The namespaces of [`EXAMPLES`]; the devnet's publisher owns them all.
pub const NAMESPACES: [&str; 3] = ["web", "merkle", "compare"];

/// Writes every example's folder under `dir`, registered by `publisher` with commissions paid to
/// `creator_evm` (and `creator_solana` when given). Returns the folders.
pub fn write(
    dir: &Path,
    publisher: &Identity,
    creator_evm: &str,
    creator_solana: Option<&str>,
    issued_at_ms: u64,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut folders = Vec::new();
    for example in &EXAMPLES {
        let component = std::fs::read(example.component).with_context(|| {
            format!(
                "reading the {} component at {} (built with the d402 binary)",
                example.capability, example.component
            )
        })?;
        let (id, version) = example
            .capability
            .split_once('@')
            .ok_or_else(|| anyhow!("{}: no version", example.capability))?;
        let version: u32 = version.parse()?;
        let mut manifest = template(id, version, Some(ContentId::of(&component)))?;
        manifest.description = example.description.to_string();
        match example.capability {
            LIVE_PAGE_TO_MARKDOWN => {
                manifest.permissions.snapshot = true;
                manifest.validation.class = ValidationClass::Scoreable;
                manifest.validation.canonicalizer = None;
                manifest.validation.comparator = Some(COMPARE_TEXT.into());
                manifest.validation.threshold = Some(LIVE_PAGE_THRESHOLD);
                manifest.validation.quorum = LIVE_PAGE_QUORUM;
            }
            COMPARE_TEXT | COMPARE_JSON => {
                manifest.input_schema = serde_json::json!({
                    "type": "object",
                    "properties": {"candidates": {"type": "array", "items": {"type": "string"}}},
                    "required": ["candidates"]
                });
                manifest.output_schema = serde_json::json!({
                    "type": "object",
                    "properties": {"scores": {"type": "array"}},
                    "required": ["scores"]
                });
                manifest.validation.class = ValidationClass::Exact;
                manifest.validation.canonicalizer = Some(Canonicalizer::Jcs);
                manifest.validation.quorum = 1;
            }
            MERKLE_VERIFY => {
                manifest.input_schema = serde_json::json!({
                    "type": "object",
                    "properties": {
                        "leaf": {"type": "string"}, "root": {"type": "string"},
                        "proof": {"type": "array"}
                    },
                    "required": ["leaf", "root", "proof"]
                });
                manifest.validation.class = ValidationClass::Exact;
                manifest.validation.canonicalizer = Some(Canonicalizer::Jcs);
                manifest.validation.quorum = 1;
            }
            _ => {
                // Web capabilities read a page: frozen once, compared by a quorum of two.
                manifest.permissions.snapshot = true;
                manifest.validation.class = ValidationClass::Canonicalizable;
                manifest.validation.quorum = 2;
            }
        }
        manifest.validate()?;
        let registration = register(
            &manifest,
            publisher,
            Terms {
                namespace: manifest.namespace().to_string(),
                namespace_proof: None,
                creator_commission_bps: example.commission_bps,
                creator_wallets: CreatorWallets {
                    solana: creator_solana.map(str::to_string),
                    evm: Some(creator_evm.to_string()),
                },
                issued_at: issued_at_ms,
            },
        )?;
        let folder = dir.join(id);
        d402_gateway::published::write(&folder, &registration, &manifest, &component)?;
        folders.push(folder);
    }
    Ok(folders)
}
