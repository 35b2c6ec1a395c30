//! Tampering with any single field of a signed registration or of a manifest, or with one byte of
//! the component, is detected with a specific error (property tests); garbage never panics.

mod common;

use common::*;
use d402_core::ContentId;
use d402_core::identity::SignatureError;
use d402_registry::error::RegistrationError;
use d402_registry::{Manifest, PolicyRefusal, Registration};
use proptest::prelude::*;
use serde_json::Value;

/// One change to one field of a registration body.
#[derive(Debug, Clone)]
enum RegistrationEdit {
    Commission(u32),
    SolanaWallet(u8),
    EvmWallet,
    DropWallet(bool),
    Manifest(Vec<u8>),
    Namespace(String),
    IssuedAt(u64),
    Publisher(u8),
    ProofOwner(u8),
}

fn registration_edit() -> impl Strategy<Value = RegistrationEdit> {
    prop_oneof![
        (0u32..=10_000)
            .prop_filter("changed", |b| *b != 1000)
            .prop_map(RegistrationEdit::Commission),
        (8u8..=255).prop_map(RegistrationEdit::SolanaWallet),
        Just(RegistrationEdit::EvmWallet),
        any::<bool>().prop_map(RegistrationEdit::DropWallet),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(RegistrationEdit::Manifest),
        "[a-z][a-z0-9_]{0,12}"
            .prop_filter("changed", |n| n != "example")
            .prop_map(RegistrationEdit::Namespace),
        (0u64..(1 << 53))
            .prop_filter("changed", |t| *t != 1_767_225_600_000)
            .prop_map(RegistrationEdit::IssuedAt),
        (3u8..=255).prop_map(RegistrationEdit::Publisher),
        (3u8..=255).prop_map(RegistrationEdit::ProofOwner),
    ]
}

fn apply(reg: &mut Registration, edit: &RegistrationEdit) {
    let body = &mut reg.body;
    match edit {
        RegistrationEdit::Commission(bps) => body.creator_commission_bps = *bps,
        RegistrationEdit::SolanaWallet(seed) => body.creator_wallets.solana = Some(solana(*seed)),
        RegistrationEdit::EvmWallet => body.creator_wallets.evm = Some(EVM_OTHER.into()),
        RegistrationEdit::DropWallet(evm) => {
            if *evm {
                body.creator_wallets.evm = None
            } else {
                body.creator_wallets.solana = None
            }
        }
        RegistrationEdit::Manifest(bytes) => {
            body.manifest = ContentId::of(bytes);
        }
        RegistrationEdit::Namespace(ns) => body.namespace = ns.clone(),
        RegistrationEdit::IssuedAt(t) => body.issued_at = *t,
        RegistrationEdit::Publisher(seed) => {
            body.publisher = d402_core::Identity::from_seed([*seed; 32]).public_id()
        }
        RegistrationEdit::ProofOwner(seed) => {
            if let Some(p) = body.namespace_proof.as_mut() {
                p.owner = d402_core::Identity::from_seed([*seed; 32]).public_id();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Changing any one field of a signed registration breaks its signature, and the gateway
    /// refuses it for exactly that reason; the registration CID changes too.
    #[test]
    fn any_edited_registration_field_breaks_the_signature(edit in registration_edit()) {
        let original = registration(1000);
        let mut reg = original.clone();
        apply(&mut reg, &edit);
        prop_assert_ne!(reg.cid().unwrap(), original.cid().unwrap());
        prop_assert!(matches!(reg.verify_signature(), Err(RegistrationError::Signature(SignatureError::Invalid))));
        let refusal = policy().check(&reg, &manifest()).unwrap_err();
        prop_assert!(matches!(refusal, PolicyRefusal::BadSignature(SignatureError::Invalid)), "{:?}", refusal);
    }

    /// An attacker who edits a field and signs again with their own key still cannot pass: the
    /// namespace proof is the owner's word for the original publisher only.
    #[test]
    fn an_edited_and_resigned_registration_fails_the_namespace_proof(edit in registration_edit()) {
        let attacker = d402_core::Identity::from_seed([66; 32]);
        let mut reg = registration(1000);
        apply(&mut reg, &edit);
        let resigned = match reg.body.clone().sign(&attacker) {
            Ok(r) => r,
            // An edit that makes the body malformed cannot even be signed.
            Err(RegistrationError::Document(_)) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        let refusal = policy().check(&resigned, &manifest()).unwrap_err();
        prop_assert!(matches!(
            refusal,
            PolicyRefusal::BadNamespaceProof { .. }
                | PolicyRefusal::NamespaceOwnerMismatch { .. }
                | PolicyRefusal::ManifestCidMismatch { .. }
                | PolicyRefusal::UntrustedNamespace { .. }
                | PolicyRefusal::NamespaceMismatch { .. }
        ), "{:?}", refusal);
    }

    /// Changing any one leaf of the registration's JSON (a character of a string, a number, a
    /// boolean) is caught: either the document no longer parses, naming the field, or it parses and
    /// the gateway refuses it. It is never accepted and never panics.
    #[test]
    fn any_edited_json_leaf_is_refused(pick in any::<prop::sample::Index>(), salt in any::<u8>()) {
        let value = serde_json::to_value(registration(1000)).unwrap();
        let leaves = leaf_paths(&value, String::new());
        let path = &leaves[pick.index(leaves.len())];
        let mut edited = value.clone();
        mutate_leaf(edited.pointer_mut(path).unwrap(), salt);
        prop_assume!(edited != value);
        match Registration::from_json(&serde_json::to_vec(&edited).unwrap()) {
            Err(e) => {
                let errors = e.field_errors().expect("field errors");
                prop_assert!(!errors.0.is_empty());
            }
            Ok(reg) => prop_assert!(policy().check(&reg, &manifest()).is_err(), "accepted after editing {}", path),
        }
    }

    /// Changing any one leaf of the manifest changes its CID: the registration no longer covers it.
    #[test]
    fn any_edited_manifest_leaf_is_caught(pick in any::<prop::sample::Index>(), salt in any::<u8>()) {
        let value = serde_json::to_value(manifest()).unwrap();
        let leaves = leaf_paths(&value, String::new());
        let path = &leaves[pick.index(leaves.len())];
        let mut edited = value.clone();
        mutate_leaf(edited.pointer_mut(path).unwrap(), salt);
        prop_assume!(edited != value);
        match Manifest::from_json(&serde_json::to_vec(&edited).unwrap()) {
            Err(e) => prop_assert!(e.field_errors().is_some(), "{}", e),
            Ok(m) => {
                let refusal = policy().check(&registration(1000), &m).unwrap_err();
                prop_assert!(matches!(refusal, PolicyRefusal::ManifestCidMismatch { .. }), "{:?}", refusal);
                let direct = registration(1000).check_manifest(&m);
                prop_assert!(matches!(direct, Err(RegistrationError::ManifestCidMismatch { .. })), "{:?}", direct);
            }
        }
    }

    /// One changed byte of the component is not the implementation the manifest names.
    #[test]
    fn one_flipped_component_byte_is_caught(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = COMPONENT.to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let result = manifest().check_component(&bytes);
        prop_assert!(matches!(result, Err(RegistrationError::ImplementationCidMismatch { .. })), "{:?}", result);
    }

    /// Arbitrary bytes through both parsers: an error or a value, never a panic.
    #[test]
    fn parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Manifest::from_json(&bytes);
        let _ = Registration::from_json(&bytes);
    }

    /// Arbitrary JSON with the right field names in the wrong shapes.
    #[test]
    fn parsers_never_panic_on_json(value in arbitrary_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = Manifest::from_json(&bytes);
        let _ = Registration::from_json(&bytes);
    }
}

#[test]
fn the_component_itself_passes() {
    manifest().check_component(COMPONENT).unwrap();
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("id".to_string()),
        Just("version".to_string()),
        Just("validation".to_string()),
        Just("class".to_string()),
        Just("limits".to_string()),
        Just("fuel".to_string()),
        Just("manifest".to_string()),
        Just("creatorWallets".to_string()),
        Just("evm".to_string()),
        Just("signature".to_string()),
        Just("namespaceProof".to_string()),
        "[a-z]{1,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn leaf_paths(value: &Value, at: String) -> Vec<String> {
    match value {
        Value::Object(map) if !map.is_empty() => map
            .iter()
            .flat_map(|(k, v)| {
                leaf_paths(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                )
            })
            .collect(),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .flat_map(|(i, v)| leaf_paths(v, format!("{at}/{i}")))
            .collect(),
        _ => vec![at],
    }
}

fn mutate_leaf(leaf: &mut Value, salt: u8) {
    *leaf = match leaf.take() {
        Value::String(s) if !s.is_empty() => {
            let mut chars: Vec<char> = s.chars().collect();
            let i = salt as usize % chars.len();
            let alphabet = ['a', 'B', '3', 'x', 'F', '0', '9', 'z'];
            let replacement = alphabet[salt as usize % alphabet.len()];
            chars[i] = if chars[i] == replacement {
                '7'
            } else {
                replacement
            };
            Value::String(chars.into_iter().collect())
        }
        Value::String(_) => Value::from("x"),
        Value::Number(n) => Value::from(n.as_u64().map_or(1, |v| v ^ (1 + salt as u64))),
        Value::Bool(b) => Value::Bool(!b),
        Value::Null => Value::from(salt),
        other => other,
    };
}

/// Hex is one spelling only: an upper-cased signature decodes to the same bytes, so it would give
/// the same signed terms a second registration CID.
#[test]
fn upper_case_hex_is_refused() {
    let mut value = serde_json::to_value(registration(1000)).unwrap();
    let sig = value["signature"].as_str().unwrap().to_uppercase();
    value["signature"] = Value::from(sig);
    let err = Registration::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(err.field_errors().unwrap().mentions("/signature"), "{err}");
    let mut value = serde_json::to_value(registration(1000)).unwrap();
    let publisher = value["publisher"].as_str().unwrap().replace('a', "A");
    value["publisher"] = Value::from(publisher);
    let err = Registration::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(err.field_errors().unwrap().mentions("/publisher"), "{err}");
}
