//! The gateway-side acceptance check: each refusal, and what is accepted.

mod common;

use std::collections::BTreeSet;

use common::*;
use d402_core::identity::SignatureError;
use d402_core::{ContentId, Identity};
use d402_registry::error::RegistrationError;
use d402_registry::namespace::{NamespaceProof, NamespaceProofDocument};
use d402_registry::policy::{DEFAULT_MAX_CREATOR_COMMISSION_BPS, max_commission_from};
use d402_registry::registration::register;
use d402_registry::{AcceptancePolicy, PolicyRefusal, Rail};

#[test]
fn a_well_formed_registration_is_accepted_with_its_terms() {
    let reg = registration(1000);
    let accepted = policy().check(&reg, &manifest()).unwrap();
    assert_eq!(accepted.creator_commission_bps, 1000);
    assert_eq!(accepted.manifest_cid, manifest().cid().unwrap());
    assert_eq!(accepted.implementation_cid, ContentId::of(COMPONENT));
    assert_eq!(accepted.registration_cid, reg.cid().unwrap());
    assert_eq!(accepted.publisher, publisher().public_id());
    assert_eq!(accepted.capability.id, "example.extract_product");
    // And it survives a trip through JSON.
    let text = serde_json::to_vec(&reg).unwrap();
    let back = d402_registry::Registration::from_json(&text).unwrap();
    assert_eq!(back, reg);
    back.verify().unwrap();
}

#[test]
fn commission_cap_default_2000() {
    assert_eq!(DEFAULT_MAX_CREATOR_COMMISSION_BPS, 2000);
    assert!(policy().check(&registration(2000), &manifest()).is_ok());
    assert!(matches!(
        policy().check(&registration(2001), &manifest()),
        Err(PolicyRefusal::CommissionAboveCap {
            bps: 2001,
            cap: 2000
        })
    ));
}

#[test]
fn a_configured_lower_cap_is_honoured() {
    let cap = max_commission_from(Some("500")).unwrap();
    let strict = AcceptancePolicy {
        max_creator_commission_bps: cap,
        ..policy()
    };
    assert!(strict.check(&registration(500), &manifest()).is_ok());
    assert!(matches!(
        strict.check(&registration(1000), &manifest()),
        Err(PolicyRefusal::CommissionAboveCap {
            bps: 1000,
            cap: 500
        })
    ));
}

#[test]
fn commission_env_value_parsing() {
    assert_eq!(max_commission_from(None), Ok(2000));
    assert_eq!(max_commission_from(Some("")), Ok(2000));
    assert_eq!(max_commission_from(Some(" 150 ")), Ok(150));
    assert_eq!(max_commission_from(Some("0")), Ok(0));
    assert!(max_commission_from(Some("10001")).is_err());
    assert!(max_commission_from(Some("-1")).is_err());
    assert!(max_commission_from(Some("20%")).is_err());
}

#[test]
fn example_namespace_needs_the_example_owners_proof() {
    let m = manifest();
    // Self-vouched: the publisher is not the trusted owner of `example`.
    let mut t = terms(1000);
    t.namespace_proof = None;
    let self_proved = register(&m, &publisher(), t).unwrap();
    assert!(matches!(
        policy().check(&self_proved, &m),
        Err(PolicyRefusal::NamespaceOwnerMismatch { .. })
    ));

    // No proof at all (re-signed by the publisher so the signature holds).
    let mut body = registration(1000).body;
    body.namespace_proof = None;
    let no_proof = body.sign(&publisher()).unwrap();
    assert!(matches!(
        policy().check(&no_proof, &m),
        Err(PolicyRefusal::MissingNamespaceProof { .. })
    ));

    // The owner's proof for someone else, pasted in.
    let mut body = registration(1000).body;
    body.namespace_proof = Some(
        NamespaceProof::sign(
            &owner(),
            "example",
            &Identity::from_seed([9; 32]).public_id(),
        )
        .unwrap(),
    );
    let pasted = body.sign(&publisher()).unwrap();
    assert!(matches!(
        policy().check(&pasted, &m),
        Err(PolicyRefusal::BadNamespaceProof {
            source: SignatureError::Invalid,
            ..
        })
    ));

    // A namespace this gateway does not trust at all.
    let untrusted = AcceptancePolicy {
        trusted_namespaces: Default::default(),
        ..policy()
    };
    assert!(matches!(
        untrusted.check(&registration(1000), &m),
        Err(PolicyRefusal::UntrustedNamespace { .. })
    ));

    // `register` refuses a proof document made out to another publisher up front.
    let mut t = terms(1000);
    t.namespace_proof = Some(
        NamespaceProofDocument::sign(
            &owner(),
            "example",
            &Identity::from_seed([9; 32]).public_id(),
        )
        .unwrap(),
    );
    assert!(matches!(
        register(&m, &publisher(), t),
        Err(RegistrationError::NamespaceProofMismatch {
            field: "publisher",
            ..
        })
    ));
}

#[test]
fn the_namespace_must_own_the_manifest_id() {
    let mut t = terms(1000);
    t.namespace = "other".into();
    assert!(matches!(
        register(&manifest(), &publisher(), t),
        Err(RegistrationError::NamespaceMismatch { .. })
    ));
}

#[test]
fn a_creator_wallet_is_needed_for_every_rail() {
    let mut body = registration(1000).body;
    body.creator_wallets.evm = None;
    let reg = body.clone().sign(&publisher()).unwrap();
    assert!(matches!(
        policy().check(&reg, &manifest()),
        Err(PolicyRefusal::MissingCreatorWallet { rail: Rail::Evm })
    ));
    let solana_only = AcceptancePolicy {
        required_rails: vec![Rail::Solana],
        ..policy()
    };
    assert!(solana_only.check(&reg, &manifest()).is_ok());
    // No commission asked, nowhere to pay it needed.
    body.creator_commission_bps = 0;
    body.creator_wallets = Default::default();
    let free = body.sign(&publisher()).unwrap();
    assert!(policy().check(&free, &manifest()).is_ok());
}

#[test]
fn exact_cid_lists_are_enforced() {
    let reg = registration(1000);
    let m = manifest();
    let other = ContentId::of(b"something else");
    let p = AcceptancePolicy {
        accepted_manifest_cids: Some(BTreeSet::from([other])),
        ..policy()
    };
    assert!(matches!(
        p.check(&reg, &m),
        Err(PolicyRefusal::ManifestNotAccepted { .. })
    ));
    let p = AcceptancePolicy {
        accepted_manifest_cids: Some(BTreeSet::from([m.cid().unwrap()])),
        accepted_implementation_cids: Some(BTreeSet::from([other])),
        ..policy()
    };
    assert!(matches!(
        p.check(&reg, &m),
        Err(PolicyRefusal::ImplementationNotAccepted { .. })
    ));
    let p = AcceptancePolicy {
        accepted_manifest_cids: Some(BTreeSet::from([m.cid().unwrap()])),
        accepted_implementation_cids: Some(BTreeSet::from([ContentId::of(COMPONENT)])),
        ..policy()
    };
    assert!(p.check(&reg, &m).is_ok());
}

#[test]
fn unsigned_mode_skips_only_the_signature() {
    let mut reg = registration(1000);
    reg.body.issued_at += 1;
    assert!(matches!(
        policy().check(&reg, &manifest()),
        Err(PolicyRefusal::BadSignature(SignatureError::Invalid))
    ));
    let lax = AcceptancePolicy {
        require_signature: false,
        ..policy()
    };
    assert!(lax.check(&reg, &manifest()).is_ok());
    reg.body.creator_commission_bps = 5000;
    assert!(matches!(
        lax.check(&reg, &manifest()),
        Err(PolicyRefusal::CommissionAboveCap { .. })
    ));
}
