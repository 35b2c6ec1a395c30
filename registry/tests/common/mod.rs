//! A publisher, a namespace owner, a manifest and a signed registration to test against.
#![allow(dead_code)]

use d402_core::{ContentId, Identity};
use d402_registry::namespace::NamespaceProofDocument;
use d402_registry::registration::{Terms, register};
use d402_registry::{AcceptancePolicy, CreatorWallets, Manifest, Rail, Registration, template};

pub const COMPONENT: &[u8] = b"\0asm pretend component bytes";
pub const EVM: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
pub const EVM_OTHER: &str = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";

pub fn owner() -> Identity {
    Identity::from_seed([1; 32])
}
pub fn publisher() -> Identity {
    Identity::from_seed([2; 32])
}
pub fn solana(seed: u8) -> String {
    bs58::encode([seed; 32]).into_string()
}

pub fn manifest() -> Manifest {
    template("example.extract_product", 1, Some(ContentId::of(COMPONENT))).unwrap()
}

pub fn wallets() -> CreatorWallets {
    CreatorWallets {
        solana: Some(solana(7)),
        evm: Some(EVM.to_string()),
    }
}

pub fn terms(bps: u32) -> Terms {
    Terms {
        namespace: "example".into(),
        namespace_proof: Some(
            NamespaceProofDocument::sign(&owner(), "example", &publisher().public_id()).unwrap(),
        ),
        creator_commission_bps: bps,
        creator_wallets: wallets(),
        issued_at: 1_767_225_600_000,
    }
}

pub fn registration(bps: u32) -> Registration {
    register(&manifest(), &publisher(), terms(bps)).unwrap()
}

pub fn policy() -> AcceptancePolicy {
    AcceptancePolicy {
        required_rails: vec![Rail::Solana, Rail::Evm],
        ..AcceptancePolicy::default()
    }
    .trust("example", &owner().public_id())
}
